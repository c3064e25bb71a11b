"""The traffic and capacity state a render is made for.

The CLI renders the state at rest (the target carries everything); the operator passes
the state it observed and the rollout decided on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelpilot.api import ManagedModel
from modelpilot.api.gateways import GatewayFlavor


@dataclass(frozen=True)
class VersionState:
    weight: int = 0
    pinned: bool = False
    min_replicas: int | None = None  # overrides spec.autoscaling (Shared capacity)
    max_replicas: int | None = None
    stopped: bool = False  # KServe's serving.kserve.io/stop: pods gone, GPUs freed


@dataclass(frozen=True)
class RenderState:
    versions: Mapping[str, VersionState] = field(default_factory=dict)
    route: bool = True  # a brand-new model gets no route until its target is ready
    legacy_raw_deployment: bool = False  # KServe < 0.16 calls Standard "RawDeployment"
    gateway_flavor: GatewayFlavor = "generic"  # decides what the HTTPRoute may carry
    # ABTest and BlueGreen: the version requests matching spec.rollout.match go to.
    matched: str | None = None
    # Shadow: the version that gets a copy of the weighted split's requests.
    mirrored: str | None = None
    # Traefik: the mirroring TraefikService has existed long enough for the route to
    # name it (see Settings.mirror_settle); until then it is written, not routed to.
    mirror_ready: bool = True
    # The version the rollout holds stable: ModelMesh mode's stable name serves it.
    stable: str | None = None
    # Knative mode: the version the InferenceService carries (its latest revision's), and
    # the percent of requests KServe sends that revision (None: all of them).
    latest: str | None = None
    canary_percent: int | None = None

    def of(self, version: str) -> VersionState:
        return self.versions.get(version, VersionState())

    @property
    def weights(self) -> dict[str, int]:
        return {name: s.weight for name, s in self.versions.items() if s.weight > 0}


def default_render_state(
    model: ManagedModel,
    weights: Mapping[str, int] | None = None,
    *,
    legacy_raw_deployment: bool = False,
    gateway_flavor: GatewayFlavor = "generic",
) -> RenderState:
    """At rest: the target carries 100% (or the given weights); every version is pinned."""
    chosen = dict(weights) if weights else {model.spec.target: 100}
    stable = max(chosen, key=lambda v: chosen[v])
    canary = next((v for v in chosen if v != stable and chosen[v] > 0), None)
    return RenderState(
        versions={
            v.name: VersionState(weight=chosen.get(v.name, 0), pinned=True)
            for v in model.spec.versions
        },
        stable=stable,
        # Knative: a split is a canary on the latest revision; at rest the target alone.
        latest=canary or stable,
        canary_percent=chosen[canary] if canary else None,
        legacy_raw_deployment=legacy_raw_deployment,
        gateway_flavor=gateway_flavor,
    )


def parse_weights(text: str, known: list[str]) -> dict[str, int]:
    """Parse `v1=90,v2=10`; the weights must name known versions and sum to 100."""
    weights: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--weights: {part!r} is not VERSION=PERCENT (e.g. v1=90,v2=10)")
        if name.strip() not in known:
            raise ValueError(
                f"--weights: {name.strip()!r} names no version; known: {', '.join(known)}"
            )
        weights[name.strip()] = int(value)
    if sum(weights.values()) != 100:
        raise ValueError(f"--weights: must sum to 100 (got {sum(weights.values())})")
    return weights
