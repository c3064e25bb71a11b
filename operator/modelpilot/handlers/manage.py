"""One level-based reconcile for create, resume, update and every wake-up.

Read the ManagedModel and its children, decide (the pure rollout machine), render (the
pure renderer), then write: prune what was removed, write status, consume commands,
post Events, apply what changed (the route first). The same input always converges to
the same children; a reconcile that finds nothing to change writes nothing.

Status goes before the children. It is the rollout's memory: once a decision is in
status, a crash before the route carries it only delays it, and the next reconcile
carries it out. Written the other way round, a crash between the two let a restarted
operator decide again from the older status and move traffic back to weights the
rollout had already left. Every read and write goes through one `Cluster`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelpilot.api import InvalidManagedModel, ManagedModel, names, parse_managed_model
from modelpilot.api.events import Event, EventType
from modelpilot.api.gateways import GatewayFlavor, traits_of
from modelpilot.api.kinds import (
    AUTOSCALER,
    GATEWAY,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KINDS_BY_NAME,
    MANAGED_MODEL,
    TRAEFIK_SERVICE,
)
from modelpilot.api.status import ManagedModelStatus, MirrorObject, VersionStatus
from modelpilot.handlers.checks import Checks
from modelpilot.handlers.conditions import condition_of, set_condition
from modelpilot.handlers.registry import RegistryClients, mlflow_clients, resolve
from modelpilot.handlers.renders import RenderMemo
from modelpilot.k8s.children import contains, content_hash, foreign_controller, needs_apply, same
from modelpilot.k8s.cluster import ChildRejected, Cluster, KindNotServed
from modelpilot.k8s.observe import (
    Snapshot,
    replicas_of,
    route_accepted,
    route_mirror,
    route_pinned,
    route_weights,
    snapshot,
)
from modelpilot.k8s.runtime_index import RuntimeIndex
from modelpilot.probes.webhooks import DEFAULT_WEBHOOK_ALLOW, refusal
from modelpilot.render import (
    Rendered,
    RenderState,
    UnservableModel,
    VersionState,
    mirror_object_name,
)
from modelpilot.rollout import Observations, Plan, VersionObservation, decide, parse_commands, stamp
from modelpilot.rollout.commands import unknown_commands
from modelpilot.rollout.durations import seconds_since
from modelpilot.rollout.machine import HALTED, ROLLING
from modelpilot.rollout.registry import disagreement
from modelpilot.rollout.slots import RolloutSlots, wants_to_start

log = logging.getLogger(__name__)
# A version short of pods shows the scheduler's reason, read from its pods, which no
# watch delivers: look again this often while one is. Any other readiness comes from
# watched children. A resync of every model that waits asks 330 reconciles a second of
# 10,000 waiting models; the operator managed 17 on this machine, and the resyncs
# starved the reconciles that had news (README, Benchmarks: 10,000 at rest).
RESYNC_WHILE_WAITING_FOR_PODS = 30.0
PRUNABLE_KINDS = frozenset({INFERENCE_SERVICE.kind, AUTOSCALER.kind})


@dataclass(frozen=True)
class Settings:
    route_gate: bool = True
    legacy_raw_deployment: bool = False
    gateway_flavor: GatewayFlavor = "generic"
    prometheus_url: str | None = None  # for analysis without its own address
    webhook_allow: tuple[str, ...] = DEFAULT_WEBHOOK_ALLOW  # hosts webhooks may call
    prometheus_auth: Path | None = None  # a mounted Secret: token, or username+password
    # Seconds a shadow's TraefikService exists before the route names it, and stays after
    # a route without it was accepted: above Traefik's providersThrottleDuration (2 s by
    # default), which delays each provider's configuration on its own.
    mirror_settle: float = 3.0
    # Seconds a version due to stop keeps its pods after the gateway accepted a route
    # sending it nothing: gateways report a route accepted before their data plane has
    # switched (Traefik writes status, then throttles its providers), so pods stopped at
    # once fail the requests still in transit (seen: 7 of 809 pinned requests, 502).
    drain_delay: float = 5.0
    registry_auth: Path | None = None  # a mounted Secret for the model registries
    # MLflow's signed webhooks wake registry-driven models sooner (off without a port).
    registry_webhook_port: int | None = None
    registry_webhook_secret: Path | None = None  # the HMAC key's file
    # Rollouts in flight at once across the models this operator manages; None: any.
    max_concurrent_rollouts: int | None = None
    # This process owns the models whose shard_of(namespace, name, shards) is shard.
    shards: int = 1
    shard: int = 0


@dataclass
class Outcome:
    requeue_after: float | None = None
    writes: int = 0  # children applied or deleted
    phase: str | None = None
    canary_weight: int | None = None
    analysis_result: str | None = None  # the last check's
    failed_checks: int = 0


@dataclass
class Writes:
    """What one reconcile decided to write, gathered before the first write goes out."""

    applies: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    degraded: tuple[str, str] | None = None  # (reason, message)


def manage(
    cluster: Cluster,
    namespace: str,
    name: str,
    serving_runtimes: RuntimeIndex,
    settings: Settings,
    now: dt.datetime | None = None,
    checks: Checks | None = None,
    registries: RegistryClients | None = None,
    alive: Callable[[], bool] = lambda: True,
    registry_woken: bool = False,
    slots: RolloutSlots | None = None,
    renders: RenderMemo | None = None,
) -> Outcome:
    """The ManagedModel is always read fresh (its status is the rollout's memory); its
    children come from the operator's watch cache. registries: how to reach a model
    registry (default: MLflow over its REST API). alive: False once the model's
    deletion has been seen, so a reconcile in flight stops before its next child write.
    registry_woken: a signed registry webhook asked for a poll now. slots: the
    operator's limit on rollouts in flight, shared by every model. renders: the last
    renders, shared by every reconcile (None: render afresh)."""
    moment = now or dt.datetime.now(dt.UTC)
    body = cluster.get(MANAGED_MODEL, name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Outcome()  # gone or going: the garbage collector removes the children
    status = ManagedModelStatus.model_validate(body.get("status") or {})
    try:
        model = parse_managed_model({k: v for k, v in body.items() if k != "status"})
    except InvalidManagedModel as invalid:
        # Nothing is retried and no child is touched: the next spec change wakes us.
        message = "; ".join(str(p) for p in invalid.problems)
        return degrade(cluster, body, status, "InvalidSpec", message, moment)
    next_poll = None
    if model.spec.registry is not None:
        resolved = resolve(
            model,
            status,
            registries or mlflow_clients(settings.registry_auth),
            moment,
            woken=registry_woken,
        )
        write_status(cluster, body, status, resolved.status)
        status, next_poll = resolved.status, resolved.next_poll
        if resolved.model is None:
            assert resolved.held is not None
            held = degrade(cluster, body, status, *resolved.held, moment)
            held.requeue_after = next_poll
            return held
        model = resolved.model
    outcome = Reconcile(
        cluster, body, model, status, serving_runtimes, settings, moment, checks, alive, slots,
        renders,
    ).run()  # fmt: skip
    if next_poll is not None:
        waits = [t for t in (outcome.requeue_after, next_poll) if t is not None]
        outcome.requeue_after = min(waits)
    return outcome


def degrade(
    cluster: Cluster,
    body: dict[str, Any],
    status: ManagedModelStatus,
    reason: str,
    message: str,
    moment: dt.datetime,
) -> Outcome:
    """Say why the model cannot be reconciled, once; touch no child."""
    generation = body["metadata"].get("generation")
    previous = condition_of(status.conditions, "Degraded")
    conditions = set_condition(
        status.conditions, "Degraded", True, reason, message, generation, stamp(moment)
    )
    write_status(cluster, body, status, status.model_copy(update={"conditions": conditions}))
    if previous is None or (previous.status, previous.reason, previous.message) != (
        "True",
        reason,
        message,
    ):
        cluster.post_event(body, Event("Warning", reason, message))
    return Outcome(phase=status.phase)


def write_status(
    cluster: Cluster, body: dict[str, Any], old: ManagedModelStatus, new: ManagedModelStatus
) -> bool:
    before = old.model_dump(by_alias=True, exclude_none=True)
    after = new.model_dump(by_alias=True, exclude_none=True)
    if before == after:
        return False
    cluster.patch_status(body, merge_patch(before, after))
    return True


def merge_patch(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns before into after: a key that is gone
    must be sent as null, at every depth (weights {v1: 50, v2: 50} -> {v2: 100})."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif value != old:
            patch[key] = value
    return patch


class Reconcile:
    def __init__(
        self,
        cluster: Cluster,
        body: dict[str, Any],
        model: ManagedModel,
        status: ManagedModelStatus,
        serving_runtimes: RuntimeIndex,
        settings: Settings,
        moment: dt.datetime,
        checks: Checks | None = None,
        alive: Callable[[], bool] = lambda: True,
        slots: RolloutSlots | None = None,
        renders: RenderMemo | None = None,
    ) -> None:
        self.cluster, self.body, self.model, self.status = cluster, body, model, status
        self.alive, self.slots = alive, slots
        self.renders = renders if renders is not None else RenderMemo(models_kept=1)
        self.serving_runtimes, self.settings, self.now = serving_runtimes, settings, moment
        self.checks = checks  # None: no analysis runs (a rollout that needs one waits)
        self.outcome = Outcome()
        self.stopped: frozenset[str] = frozenset()  # what this reconcile stops
        self.mirror_objects: list[MirrorObject] = list(status.mirror_objects)
        self.mirror_wake: float | None = None  # a TraefikService waits out its settle time
        self.unrouted: dict[str, str] = {}  # versions due to stop: since when unrouted
        self.stop_wake: float | None = None  # a stop waits out the drain delay

    @property
    def key(self) -> tuple[str, str]:
        return (self.model.namespace, self.model.name)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def run(self) -> Outcome:
        model = self.model
        rejected = condition_of(self.status.conditions, "Degraded")
        if (
            rejected is not None
            and (rejected.status, rejected.reason) == ("True", "ChildRejected")
            and rejected.observed_generation == self.body["metadata"].get("generation")
        ):
            return Outcome(phase=self.status.phase)  # refused as it is: wait for a change
        known = [v.name for v in model.spec.versions]
        seen = snapshot(self.cluster, model, known)
        # Weight on the live route counts too: status may already be ahead of it.
        carried = {**self._live_weights(seen), **self.status.weights}
        in_use = sorted(v for v, w in carried.items() if w > 0 and v not in known)
        if in_use:
            return self._degrade(
                "VersionInUse",
                f"{', '.join(in_use)} still carries traffic and cannot be removed from "
                "spec.versions: set spec.rollout.target to another version, let it be "
                "promoted, then remove it",
            )
        flavor = self.settings.gateway_flavor
        if model.spec.rollout.strategy == "Shadow" and traits_of(flavor).mirror is None:
            return self._degrade(
                "MirrorUnsupported",
                f"spec.rollout.strategy Shadow needs a gateway that mirrors requests; the "
                f"operator runs with --gateway-flavor {flavor}, which promises no mirror (a "
                "gateway may fail every request of a rule with one): run it with "
                "--gateway-flavor traefik, envoy-gateway or istio, or choose another strategy",
            )
        runtimes = self.serving_runtimes.for_namespace(model.namespace)
        try:
            serving = self.renders.serving(model, runtimes, self.serving_runtimes.complete)
        except UnservableModel as unservable:
            return self._degrade("NoRuntime", "; ".join(str(p) for p in unservable.problems))

        self._keep_last_verdict_when_stale(seen)
        self._not_ready_while_changing(seen, serving.served)
        revisions = {v: content_hash(m) for v, m in serving.served.items()}
        plan = decide(model.spec, self.status, self._observations(seen, revisions), self.now)
        self.stopped = plan.stopped - self._stops_waiting_for_the_route(plan, seen)
        stable = plan.status.stable_version or model.spec.target
        state = RenderState(
            versions={
                v: VersionState(
                    weight=plan.weights.get(v, 0),
                    pinned=seen.readiness[v].ready and v not in plan.stopped,
                    min_replicas=plan.replicas.get(v) or plan.floors.get(v),
                    max_replicas=plan.replicas.get(v) or self._ceiling(plan.floors.get(v)),
                    stopped=v in self.stopped,
                )
                for v in known
            },
            route=bool(plan.weights),
            matched=plan.matched,
            mirrored=plan.mirrored,
            mirror_ready=False,
            legacy_raw_deployment=self.settings.legacy_raw_deployment,
            gateway_flavor=self.settings.gateway_flavor,
            stable=stable,
            **self._knative_state(plan, seen, stable),
        )
        try:
            ready = self._mirror_objects(mirror_object_name(model, state), seen)
        except KindNotServed as missing:
            return self._degrade(
                "MirrorUnavailable",
                f"{missing}: mirroring on --gateway-flavor traefik needs Traefik's CRDs "
                "installed and its kubernetescrd provider on",
            )
        rendered = self.renders.render(model, replace(state, mirror_ready=ready), serving)
        writes = self._changes(rendered, seen)
        if self._may_have_leftovers(plan):
            self._prune({(o["kind"], o["metadata"]["name"]) for o in rendered.objects})
        warnings = [
            *rendered.warnings,
            *self._refused_webhooks(),
            *unknown_commands(self.model.metadata.annotations),
        ]
        self._write(plan, seen, rendered.runtimes, warnings, writes)
        if plan.check is not None and self.checks is not None:
            # Knative mode: which revision runs which version, for the queries.
            runs = seen.knative.revisions if seen.knative is not None else None
            self.checks.request(self.key, model, plan.check, seen.route, runs)
        return self.outcome

    def _live_weights(self, seen: Snapshot) -> dict[str, int]:
        """Where requests go now, per version: the route's split, or in Knative mode
        KServe's traffic over the revisions (empty while a revision is not known)."""
        if seen.knative is not None:
            return dict(seen.knative.weights or {})
        return route_weights(seen.route, self.model.name)

    def _knative_state(self, plan: Plan, seen: Snapshot, stable: str) -> dict[str, Any]:
        """Knative mode: which version the InferenceService carries and the canary's
        percent. A canary (rolling, or halted: KServe's abort and rollback are its
        percent set to 0, the candidate kept) is carried with its weight; at rest the
        stable version alone. A halted candidate stays carried at 0% once the rollout
        settles back: carrying the stable version again would make a new revision, and
        until it is ready Knative would route to the latest ready one, the candidate."""
        if seen.knative is None:
            return {}
        status = plan.status
        canary = status.canary_version
        if canary and status.phase in ROLLING | HALTED:
            return {"latest": canary, "canary_percent": plan.weights.get(canary, 0)}
        carried = seen.knative.carried
        if carried and carried != stable and self.model.spec.version(carried) is not None:
            return {"latest": carried, "canary_percent": 0}
        return {"latest": stable, "canary_percent": None}

    def _ceiling(self, floor: int | None) -> int | None:
        """An HPA's max must not fall below a raised min."""
        spec_max = self.model.spec.autoscaling.max_replicas
        return floor if floor is not None and floor > spec_max else None

    def _degrade(self, reason: str, message: str) -> Outcome:
        return degrade(self.cluster, self.body, self.status, reason, message, self.now)

    def _stops_waiting_for_the_route(self, plan: Plan, seen: Snapshot) -> frozenset[str]:
        """A version to stop keeps serving until the live route sends it nothing (its
        pin rule gone) and the gateway accepted that route: the stand-in, like a real
        pod, stops answering at once, and clients pinned to it would get 502s while
        the gateway still routes to it. It is unpinned in this reconcile's route. Then
        it keeps its pods `drain_delay` longer (Argo Rollouts' scaleDownDelaySeconds):
        a gateway's data plane switches some time after it reports the route accepted.
        Status keeps when that began, so a restart does not start the delay over."""
        newly = plan.stopped - {v.name for v in self.status.versions if v.stopped}
        if not newly or seen.knative is not None:
            # Knative mode stops nothing: Knative scales unrouted revisions to zero.
            return frozenset()
        still_routed = route_pinned(seen.route, self.model.name) | set(
            route_weights(seen.route, self.model.name)
        )
        settled = not self.settings.route_gate or bool(route_accepted(seen.route))
        since = {v.name: v.unrouted_at for v in self.status.versions}
        waiting, waits = set(), []
        for version in newly:
            if version in still_routed or not settled:
                waiting.add(version)
                continue
            self.unrouted[version] = since.get(version) or stamp(self.now)
            left = self.settings.drain_delay - seconds_since(self.unrouted[version], self.now)
            if left > 0:
                waiting.add(version)
                waits.append(left)
        self.stop_wake = min(waits) if waits else None
        return frozenset(waiting)

    def _mirror_objects(self, wanted: str | None, seen: Snapshot) -> bool:
        """A shadow's TraefikService (not watched: its CRD is Traefik's), read fresh while
        wanted. Traefik loads routes (Gateway API provider) and TraefikServices (CRD
        provider) separately, so a route naming one its other provider has not loaded
        yet, or no longer has, fails requests with 404 (seen: 2 of 1,244). So the route
        names it only once it has existed for `mirror_settle`, and it is deleted only
        `mirror_settle` after the gateway accepted a route without it. Status remembers
        each one, so a later reconcile (or a restarted operator) still finds it. Says
        whether the route may name the wanted one."""
        ns, now, settle = self.model.namespace, stamp(self.now), self.settings.mirror_settle
        if wanted is not None:
            seen.mirror = self.cluster.get(TRAEFIK_SERVICE, wanted, ns)
        in_use = route_mirror(seen.route)
        settled = not self.settings.route_gate or bool(route_accepted(seen.route))
        kept, ready, waits = [], False, []
        for entry in self.status.mirror_objects:
            if entry.name == wanted:
                continue
            if entry.name == in_use or not settled:
                kept.append(entry.model_copy(update={"released_at": None}))
            elif entry.released_at is None:
                kept.append(entry.model_copy(update={"released_at": now}))
                waits.append(settle)
            elif seconds_since(entry.released_at, self.now) < settle:
                kept.append(entry)
                waits.append(settle - seconds_since(entry.released_at, self.now))
            else:
                self.cluster.delete(TRAEFIK_SERVICE, entry.name, ns)
                self.outcome.writes += 1
        if wanted is not None:
            known = next((e for e in self.status.mirror_objects if e.name == wanted), None)
            written = known.written_at if known is not None and seen.mirror else now
            age = seconds_since(written, self.now)
            # Already routed through (e.g. before a restart): it stays so.
            ready = age >= settle or in_use == wanted
            if not ready:
                waits.append(settle - age)
            kept.append(MirrorObject(name=wanted, written_at=written))
        self.mirror_objects = sorted(kept, key=lambda e: e.name)
        self.mirror_wake = max(0.5, min(waits)) if waits else None
        return ready

    def _keep_last_verdict_when_stale(self, seen: Snapshot) -> None:
        before = {v.name: v for v in self.status.versions}
        for version, readiness in seen.readiness.items():
            if readiness.stale and version in before:
                seen.readiness[version] = replace(
                    readiness, ready=before[version].ready, message=before[version].message
                )

    def _not_ready_while_changing(self, seen: Snapshot, served: dict[str, Any]) -> None:
        """A version whose InferenceService is about to change is judged on what it will
        run, not on what it ran: no new weight for it until KServe has rolled it."""
        for version, isvc in seen.isvcs.items():
            live = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
            if version in served and not same(live, served[version]):
                seen.readiness[version] = replace(
                    seen.readiness[version],
                    ready=False,
                    message="its InferenceService is being updated",
                )

    def _observations(self, seen: Snapshot, revisions: dict[str, str]) -> Observations:
        versions = {}
        for version, readiness in seen.readiness.items():
            replicas, available = replicas_of(seen.deployments.get(version))
            if version in seen.copies:  # ModelMesh mode: loaded copies stand for pods
                replicas = available = seen.copies[version]
            versions[version] = VersionObservation(
                ready=readiness.ready,
                message=readiness.message,
                available_replicas=available,
                replicas=replicas,
            )
        if seen.knative is not None:
            # KServe's traffic is the route: reconciled for the spec written last, and
            # splitting as status says it was told to.
            accepted: bool | None = seen.knative.current
        else:
            accepted = route_accepted(seen.route)
        if accepted and self._live_weights(seen) != self.status.weights:
            accepted = False  # accepted, but not the weights status says we sent
        return Observations(
            versions=versions,
            route_accepted=accepted,
            commands=parse_commands(self.model.metadata.annotations),
            revisions=revisions,
            route_gate=self.settings.route_gate,
            check=self.checks.latest(self.key) if self.checks else None,
            **self._admission(),
        )

    def _admission(self) -> dict[str, Any]:
        """May this model start a rollout now (--max-concurrent-rollouts)?"""
        slots = self.slots
        if slots is None or slots.limit is None:
            return {}
        status = self.status
        admitted = slots.admit(
            self.key,
            rolling=status.phase in ROLLING,
            wants=wants_to_start(self.model.spec, status),
            since=status.queued_since or stamp(self.now),
        )
        return {
            "may_start": admitted.may_start,
            "queue": (admitted.in_flight, slots.limit),
        }

    def _changes(self, rendered: Rendered, seen: Snapshot) -> Writes:
        """The children that need an apply; a name someone else holds is not taken."""
        writes, conflicts = Writes(), []
        owned = self.renders.owned(self.model, rendered, self.body)
        for obj, desired in zip(rendered.objects, owned, strict=True):
            live = seen.live(obj)
            if live is not None:
                other = foreign_controller(live, self.uid)
                if other is not None:
                    conflicts.append(f"{obj['kind']} {obj['metadata']['name']} is held by {other}")
                    continue
            if needs_apply(desired, live):
                writes.applies.append(desired)
                writes.events += self._in_place_update(obj, live)
        if conflicts:
            writes.degraded = (
                "NameConflict",
                "; ".join(conflicts) + ": rename the model or version",
            )
        return writes

    def _in_place_update(self, obj: dict[str, Any], live: dict[str, Any] | None) -> list[Event]:
        if live is None or obj["kind"] != INFERENCE_SERVICE.kind:
            return []
        version = obj["metadata"]["labels"].get(names.VERSION_LABEL)
        if version is None or self.status.weights.get(version, 0) <= 0:
            return []  # ModelMesh's stable name changes what it serves at each promotion
        want = obj["spec"]["predictor"]["model"]
        have = (live.get("spec") or {}).get("predictor", {}).get("model", {})
        if contains(have, want) and contains(want, have):
            return []
        changed = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        how = (
            "ModelMesh loads the new model and switches to it"
            if self.model.spec.serving.deployment_mode == "ModelMesh"
            else "KServe restarts its pods in place"
        )
        return [
            Event(
                "Warning",
                "InPlaceUpdate",
                f"{version} carries traffic and its predictor changed ({', '.join(changed)}): "
                f"{how}, with no canary; publish a new version name to roll it out instead",
            )
        ]

    def _may_have_leftovers(self, plan: Plan) -> bool:
        """Children go away only when the spec changed (a version removed) or a version
        was stopped (its HPA): scanning the cache on every other reconcile finds
        nothing. Pruning comes before the status write that records observedGeneration,
        so an interrupted prune reruns."""
        stopped_before = {v.name for v in self.status.versions if v.stopped}
        generation = self.body["metadata"].get("generation")
        # A registry-driven model's versions change with no change of spec.
        listed_before = {v.name for v in self.status.versions}
        return (
            self.status.observed_generation != generation
            or self.stopped != stopped_before
            or listed_before != {v.name for v in self.model.spec.versions}
        )

    def _prune(self, keep: set[tuple[str, str]]) -> None:
        labels = {names.MODEL_LABEL: self.model.name, names.MANAGED_BY: "modelpilot"}
        for live in self.cluster.cached_children(self.model.namespace, labels):
            meta, kind = live["metadata"], live["kind"]
            if kind not in PRUNABLE_KINDS or (kind, meta["name"]) in keep:
                continue
            if foreign_controller(live, self.uid) is not None or not self.alive():
                continue
            self.cluster.delete(KINDS_BY_NAME[kind], meta["name"], self.model.namespace)
            self.outcome.writes += 1
            self._event("Normal", "Removed", f"{kind} {meta['name']} removed")

    def _write(
        self,
        plan: Plan,
        seen: Snapshot,
        runtimes: dict[str, str | None],
        warnings: list[str],
        writes: Writes,
    ) -> None:
        """Status (the decision), then the children that carry it out, then the commands
        it consumed, and last the Events that tell of it: a person's promote reaches the
        route after two writes, not four (on a busy apiserver each waits its turn). A
        crash before the command is consumed shows the next reconcile a command already
        carried out, which the machine consumes without a word (see _refuse). The
        Events are posted even when a child write fails: the next reconcile starts from
        the new status and would not tell them again."""
        updated = self._next_status(plan, seen, runtimes, warnings, writes.degraded)
        write_status(self.cluster, self.body, self.status, updated)
        self.outcome.phase = updated.phase
        self.outcome.canary_weight = updated.canary_weight
        if updated.analysis is not None:
            self.outcome.analysis_result = updated.analysis.last_result
            self.outcome.failed_checks = updated.analysis.failed_checks
        try:
            if not self._apply_children(writes, updated):
                return
            if plan.consumed:
                patch = {"annotations": dict.fromkeys(plan.consumed)}
                self.cluster.patch_metadata(self.body, patch)
        finally:
            self._tell(plan, writes, updated)

        wake = [plan.requeue_after] if plan.requeue_after is not None else []
        # A stop, or a TraefikService's removal, waits for the gateway; the route's
        # status change wakes it sooner.
        if self.stopped != plan.stopped:
            wake.append(self.stop_wake if self.stop_wake is not None else 1.0)
        if self.mirror_wake is not None:
            wake.append(self.mirror_wake)
        if any(r.waiting_for_pods and not r.ready for r in seen.readiness.values()):
            wake.append(RESYNC_WHILE_WAITING_FOR_PODS)
        self.outcome.requeue_after = min(wake) if wake else None

    def _apply_children(self, writes: Writes, updated: ManagedModelStatus) -> bool:
        """False when the reconcile ends here (the model deleted meanwhile, or a child
        refused)."""
        # The route first: it takes traffic (a pin rule, a weight) away from a version
        # before that version's InferenceService is stopped. It never gives traffic to
        # a version this reconcile creates: weight goes only to versions seen ready.
        # Only a shadow's TraefikService goes before it: the route names it.
        order = {TRAEFIK_SERVICE.kind: 0, HTTP_ROUTE.kind: 1}
        for desired in sorted(writes.applies, key=lambda o: order.get(o["kind"], 2)):
            if not self.alive():
                # Deleted while this reconcile ran: a child written now would outlive
                # its owner until the garbage collector finds it (a route to versions
                # already being deleted).
                self.outcome.requeue_after = None
                return False
            try:
                self.cluster.apply(desired)
            except ChildRejected as refused:
                # The same spec is refused every time: say why, once, and wait for a
                # spec change instead of retrying with backoff forever.
                degrade(
                    self.cluster, self.body, updated, "ChildRejected",
                    f"{refused}; fix the spec (nothing is retried until it changes)", self.now,
                )  # fmt: skip
                self.outcome.requeue_after = None
                return False
            self.outcome.writes += 1
        return True

    def _tell(self, plan: Plan, writes: Writes, updated: ManagedModelStatus) -> None:
        previous = condition_of(self.status.conditions, "Degraded")
        # A failed rollout has its Event from the machine; a name conflict and a first
        # version past its deadline have this one.
        conflict = writes.degraded
        if conflict and (previous is None or previous.message != conflict[1]):
            self._event("Warning", conflict[0], conflict[1])
        if plan.reason == "ProgressDeadlineExceeded" and (
            previous is None or previous.reason != plan.reason
        ):
            self._event("Warning", plan.reason, plan.message)
        deferred = plan.stopped - self.stopped  # waiting for the gateway: told when done
        for event in [*plan.events, *writes.events]:
            if event.stops is None or event.stops not in deferred:
                self.cluster.post_event(self.body, event)
        self._notify(plan, updated)

    def _refused_webhooks(self) -> list[str]:
        """Hooks the operator will not call, said in the Degraded condition's message up
        front (a refused gating hook also fails its checks)."""
        found = []
        for index, hook in enumerate(self.model.spec.rollout.webhooks):
            why = refusal(hook.url, self.settings.webhook_allow)
            if why is not None:
                found.append(f"spec.rollout.webhooks[{index}] ({hook.name}): {why}")
        return found

    def _notify(self, plan: Plan, updated: ManagedModelStatus) -> None:
        """Tell the notification webhooks (best effort, off the reconcile)."""
        if self.checks is None or not self.model.spec.rollout.webhooks:
            return
        state = {
            "phase": updated.phase,
            "stable": updated.stable_version,
            "canary": updated.canary_version,
            "weight": updated.canary_weight or 0,
        }
        for event in plan.events:
            detail = {"type": event.type, "reason": event.reason, "message": event.message}
            self.checks.notify(self.model, "event", {**state, "event": detail})
        if updated.phase != self.status.phase and updated.phase in ("Failed", "Aborted"):
            self.checks.notify(self.model, "rollback", state)
        if any(event.reason == "Promoted" for event in plan.events):
            self.checks.notify(self.model, "post-rollout", state)

    def _next_status(
        self,
        plan: Plan,
        seen: Snapshot,
        runtimes: dict[str, str | None],
        warnings: list[str],
        conflict: tuple[str, str] | None,
    ) -> ManagedModelStatus:
        model, spec = self.model, self.model.spec
        generation = self.body["metadata"].get("generation")
        now = stamp(self.now)
        versions = [
            VersionStatus(
                name=v.name,
                inference_service=names.inference_service_name(model.name, v.name),
                runtime=runtimes.get(v.name) or (v.runtime or spec.runtime or ""),
                ready=seen.readiness[v.name].ready,
                stopped=v.name in self.stopped,
                url=seen.readiness[v.name].url,
                # A stopped version has no pods on purpose: no reason to report.
                message=""
                if seen.readiness[v.name].ready or v.name in self.stopped
                else seen.readiness[v.name].message,
                unrouted_at=None if v.name in self.stopped else self.unrouted.get(v.name),
            )
            for v in spec.versions
        ]
        ready_count = sum(1 for v in versions if v.ready)
        serving = plan.status.stable_version or spec.target
        serving_ready = any(v.ready for v in versions if v.name == serving)
        conditions = set_condition(
            self.status.conditions,
            "Ready",
            serving_ready and bool(plan.weights),
            "Serving" if serving_ready and plan.weights else "NotReady",
            plan.message,
            generation,
            now,
        )
        rolling = plan.status.phase in ROLLING
        conditions = set_condition(
            conditions,
            "Progressing",
            rolling,
            (plan.reason if plan.status.phase == "Paused" or plan.reason == "Queued" else None)
            or plan.status.phase
            or "Pending",
            plan.message if rolling or plan.reason == "Queued" else "",
            generation,
            now,
        )
        degraded = conflict
        if degraded is None and plan.status.phase == "Failed":
            failed = plan.reason if plan.reason != "Queued" else None
            degraded = (failed or "RolloutFailed", plan.message)
        late = plan.reason == "ProgressDeadlineExceeded"
        if degraded is None and late:
            degraded = ("ProgressDeadlineExceeded", plan.message)
        conditions = set_condition(
            conditions,
            "Degraded",
            degraded is not None,
            degraded[0] if degraded else "AsExpected",
            degraded[1] if degraded else "; ".join(warnings),
            generation,
            now,
        )
        registry = plan.status.registry
        if registry is not None:
            said = disagreement(
                registry.alias_version, plan.status.stable_version, plan.status.phase
            )
            registry = registry.model_copy(update={"disagreement": said})
        updated = plan.status.model_copy(
            update={
                "registry": registry,
                "observed_generation": generation,
                "versions": versions,
                "ready_versions": f"{ready_count}/{len(versions)}",
                "url": self._url(),
                "conditions": conditions,
                "mirror_objects": self.mirror_objects,
            }
        )
        return updated

    def _url(self) -> str | None:
        """The model's address through the gateway: its first hostname, else the
        Gateway's first address."""
        traffic = self.model.spec.traffic
        if traffic is None:  # Knative mode: KServe's ingress serves its URL
            isvc = self.cluster.cached(
                INFERENCE_SERVICE, names.knative_service_name(self.model.name), self.model.namespace
            )
            return str(((isvc or {}).get("status") or {}).get("url") or "") or None
        hostnames = traffic.hostnames
        if hostnames:
            return f"http://{hostnames[0]}"
        ref = traffic.gateway_ref
        gateway = self.cluster.get(GATEWAY, ref.name, ref.namespace or self.model.namespace)
        addresses = ((gateway or {}).get("status") or {}).get("addresses") or []
        return f"http://{addresses[0]['value']}" if addresses else None

    def _event(self, kind: EventType, reason: str, message: str) -> None:
        self.cluster.post_event(self.body, Event(kind, reason, message))


__all__ = ["Outcome", "Settings", "manage"]
