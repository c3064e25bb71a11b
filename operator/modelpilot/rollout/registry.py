"""Which versions a registry-driven model serves (spec.registry), decided from what the
registry last said and where traffic is: pure, so a restart decides the same."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelpilot.api.spec import ManagedModelSpec, ModelVersion
from modelpilot.api.status import RegistryStatus, RegistryVersion
from modelpilot.rollout.machine import HALTED


def version_name(registry_version: int) -> str:
    """v7 for registry version 7: stable across polls and restarts."""
    return f"v{registry_version}"


def served_versions(
    known: Sequence[RegistryVersion],
    alias_version: int,
    stable: str | None,
    weights: Mapping[str, int],
    keep: int,
) -> list[RegistryVersion]:
    """The alias's version (the target), the stable version until the canary ends,
    every version that still carries traffic, then up to keep others (stopped, for a
    rollback), newest first; the rest are pruned."""
    needed = {version_name(alias_version), *(v for v, w in weights.items() if w > 0)}
    if stable is not None:
        needed.add(stable)
    newest_first = sorted(known, key=lambda v: -v.registry_version)
    chosen = [v for v in newest_first if v.name in needed]
    kept = [v for v in newest_first if v.name not in needed][:keep]
    return sorted([*chosen, *kept], key=lambda v: -v.registry_version)


def registry_spec(spec: ManagedModelSpec, registry: RegistryStatus) -> ManagedModelSpec:
    """The spec the rest of the reconcile works on: the registry's versions, the alias's
    version as the target. Never written back: the operator writes no spec."""
    assert registry.alias_version is not None
    versions = [ModelVersion(name=v.name, storage_uri=v.storage_uri) for v in registry.versions]
    rollout = spec.rollout.model_copy(update={"target": version_name(registry.alias_version)})
    return spec.model_copy(update={"versions": versions, "rollout": rollout})


def disagreement(alias_version: int | None, stable: str | None, phase: str | None) -> str | None:
    """What status says while a rollback or an abort keeps serving another version than
    the alias names: the hold lasts until the alias moves (to either side)."""
    if alias_version is None or stable is None or phase not in HALTED:
        return None
    wanted = version_name(alias_version)
    if stable == wanted:
        return None
    return (
        f"the registry's alias names {wanted} but {stable} serves ({phase}): held until "
        f"the alias moves; move it to {stable[1:]} to agree, or to a new version to roll out"
    )
