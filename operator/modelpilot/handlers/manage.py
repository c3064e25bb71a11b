"""One level-based reconcile for create, resume, update and every wake-up.

Read the ManagedModel and its children, decide (the pure rollout machine), render (the
pure renderer), apply what changed, prune what was removed, write status, post Events,
consume commands. The same input always converges to the same children; a reconcile
that finds nothing to change writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from typing import Any

from modelpilot.api import InvalidManagedModel, ManagedModel, parse_managed_model
from modelpilot.api.model import API_VERSION, KIND, PLURAL
from modelpilot.api.status import ManagedModelStatus, VersionStatus
from modelpilot.handlers.conditions import condition_of, set_condition
from modelpilot.k8s.cache import ChildCache
from modelpilot.k8s.children import (
    contains,
    content_hash,
    foreign_controller,
    needs_apply,
    same,
)
from modelpilot.k8s.children import with_owner as owned
from modelpilot.k8s.client import Kube
from modelpilot.k8s.events import post_event
from modelpilot.k8s.observe import (
    GATEWAY,
    HPA,
    ISVC,
    Snapshot,
    replicas_of,
    route_accepted,
    route_weights,
    snapshot,
)
from modelpilot.k8s.runtime_index import RuntimeIndex
from modelpilot.render import RenderState, UnservableModel, VersionState, names, render_model
from modelpilot.render.manifests import plan_predictors, render_inference_service
from modelpilot.rollout import (
    Event,
    Observations,
    Plan,
    VersionObservation,
    decide,
    parse_commands,
    stamp,
)
from modelpilot.rollout.machine import ROLLING

log = logging.getLogger(__name__)
RESYNC_WHILE_NOT_READY = 30.0


@dataclass(frozen=True)
class Settings:
    route_gate: bool = True
    legacy_raw_deployment: bool = False


@dataclass
class Outcome:
    requeue_after: float | None = None
    writes: int = 0  # children applied or deleted
    phase: str | None = None


def manage(
    kube: Kube,
    namespace: str,
    name: str,
    runtimes: RuntimeIndex,
    settings: Settings,
    children: ChildCache,
    now: dt.datetime | None = None,
) -> Outcome:
    """Children are read from the operator's watch cache. The ManagedModel itself is
    always read fresh: its status is the rollout's memory."""
    moment = now or dt.datetime.now(dt.UTC)
    body = kube.get(API_VERSION, KIND, name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Outcome()  # gone or going: the garbage collector removes the children
    status = ManagedModelStatus.model_validate(body.get("status") or {})
    try:
        model = parse_managed_model({k: v for k, v in body.items() if k != "status"})
    except InvalidManagedModel as invalid:
        # Nothing is retried and no child is touched: the next spec change wakes us.
        message = "; ".join(str(p) for p in invalid.problems)
        return _degraded(kube, body, status, "InvalidSpec", message, moment)
    return Reconcile(kube, body, model, status, runtimes, settings, children, moment).run()


def _degraded(
    kube: Kube,
    body: dict[str, Any],
    status: ManagedModelStatus,
    reason: str,
    message: str,
    moment: dt.datetime,
) -> Outcome:
    generation = body["metadata"].get("generation")
    previous = condition_of(status.conditions, "Degraded")
    conditions = set_condition(
        status.conditions, "Degraded", True, reason, message, generation, stamp(moment)
    )
    updated = status.model_copy(update={"conditions": conditions})
    outcome = Outcome(phase=status.phase)
    _write_status(kube, body, status, updated)
    if previous is None or (previous.status, previous.reason, previous.message) != (
        "True",
        reason,
        message,
    ):
        event = Event("Warning", reason, message)
        post_event(kube.api, body, event)
    return outcome


def _write_status(
    kube: Kube, body: dict[str, Any], old: ManagedModelStatus, new: ManagedModelStatus
) -> bool:
    before = old.model_dump(by_alias=True, exclude_none=True)
    after = new.model_dump(by_alias=True, exclude_none=True)
    if before == after:
        return False
    kube.patch_status(body, merge_patch(before, after))
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
        kube: Kube,
        body: dict[str, Any],
        model: ManagedModel,
        status: ManagedModelStatus,
        runtimes: RuntimeIndex,
        settings: Settings,
        children: ChildCache,
        moment: dt.datetime,
    ) -> None:
        self.kube, self.body, self.model, self.status = kube, body, model, status
        self.runtimes, self.settings, self.now = runtimes, settings, moment
        self.children = children
        self.outcome = Outcome()
        self.degraded: tuple[str, str] | None = None

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def run(self) -> Outcome:
        spec, model = self.model.spec, self.model
        known = [v.name for v in spec.versions]
        in_use = [v for v, w in self.status.weights.items() if w > 0 and v not in known]
        if in_use:
            return _degraded(
                self.kube,
                self.body,
                self.status,
                "VersionInUse",
                f"{', '.join(in_use)} still carries traffic and cannot be removed from "
                "spec.versions: set spec.rollout.target to another version, let it be "
                "promoted, then remove it",
                self.now,
            )
        runtimes = self.runtimes.for_namespace(model.namespace)
        try:
            predictors = plan_predictors(model, runtimes)
        except UnservableModel as unservable:
            message = "; ".join(str(p) for p in unservable.problems)
            return _degraded(self.kube, self.body, self.status, "NoRuntime", message, self.now)

        seen = snapshot(self.kube, model, known, self.children.read)
        self._keep_last_verdict_when_stale(seen)
        served = {
            v: render_inference_service(model, p, RenderState())["spec"]["predictor"]["model"]
            for v, p in predictors.items()
        }
        self._not_ready_while_changing(seen, served)
        revisions = {v: content_hash(m) for v, m in served.items()}
        plan = decide(spec, self.status, self._observations(seen, revisions), self.now)
        state = RenderState(
            versions={
                v: VersionState(
                    weight=plan.weights.get(v, 0),
                    pinned=seen.readiness[v].ready and v not in plan.stopped,
                    min_replicas=plan.replicas.get(v),
                    max_replicas=plan.replicas.get(v),
                    stopped=v in plan.stopped,
                )
                for v in known
            },
            route=bool(plan.weights),
            legacy_raw_deployment=self.settings.legacy_raw_deployment,
        )
        rendered = render_model(model, state, runtimes)
        self._apply(rendered.objects, seen, plan)
        if self._may_have_leftovers(plan):
            self._prune({(o["kind"], o["metadata"]["name"]) for o in rendered.objects})
        self._finish(plan, seen, rendered.runtimes, rendered.warnings)
        return self.outcome

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
            versions[version] = VersionObservation(
                ready=readiness.ready,
                message=readiness.message,
                available_replicas=available,
                replicas=replicas,
            )
        accepted = route_accepted(seen.route)
        if accepted and route_weights(seen.route, self.model.name) != self.status.weights:
            accepted = False  # accepted, but not the weights status says we sent
        return Observations(
            versions=versions,
            route_accepted=accepted,
            commands=parse_commands(self.model.metadata.annotations),
            revisions=revisions,
            route_gate=self.settings.route_gate,
        )

    def _apply(self, objects: list[dict[str, Any]], seen: Snapshot, plan: Plan) -> None:
        conflicts = []
        for obj in objects:
            live = seen.live(obj)
            if live is not None:
                other = foreign_controller(live, self.uid)
                if other is not None:
                    conflicts.append(f"{obj['kind']} {obj['metadata']['name']} is held by {other}")
                    continue
            desired = owned(obj, self.body)
            if not needs_apply(desired, live):
                continue
            self._warn_in_place_update(obj, live)
            self.kube.apply(desired)
            self.outcome.writes += 1
        if conflicts:
            self.degraded = ("NameConflict", "; ".join(conflicts) + ": rename the model or version")

    def _warn_in_place_update(self, obj: dict[str, Any], live: dict[str, Any] | None) -> None:
        if live is None or obj["kind"] != "InferenceService":
            return
        version = obj["metadata"]["labels"][names.VERSION_LABEL]
        if self.status.weights.get(version, 0) <= 0:
            return
        want = obj["spec"]["predictor"]["model"]
        have = (live.get("spec") or {}).get("predictor", {}).get("model", {})
        if contains(have, want) and contains(want, have):
            return
        changed = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        self._event(
            "Warning",
            "InPlaceUpdate",
            f"{version} carries traffic and its predictor changed ({', '.join(changed)}): "
            "KServe restarts its pods in place, with no canary; publish a new version name "
            "to roll it out instead",
        )

    def _may_have_leftovers(self, plan: Plan) -> bool:
        """Children go away only when the spec changed (a version removed) or a version
        was stopped (its HPA): scanning the cache on every other reconcile finds
        nothing. observedGeneration is written after pruning, so an interrupted prune
        reruns."""
        stopped_before = {v.name for v in self.status.versions if v.stopped}
        generation = self.body["metadata"].get("generation")
        return self.status.observed_generation != generation or plan.stopped != stopped_before

    def _prune(self, keep: set[tuple[str, str]]) -> None:
        labels = {names.MODEL_LABEL: self.model.name, names.MANAGED_BY: "modelpilot"}
        for live in self.children.children_of(self.model.namespace, labels):
            meta, kind = live["metadata"], live["kind"]
            if kind not in (HPA[1], ISVC[1]) or (kind, meta["name"]) in keep:
                continue
            if foreign_controller(live, self.uid) is not None:
                continue
            self.kube.delete(live["apiVersion"], kind, meta["name"], self.model.namespace)
            self.outcome.writes += 1
            self._event("Normal", "Removed", f"{kind} {meta['name']} removed")

    def _finish(
        self, plan: Plan, seen: Snapshot, runtimes: dict[str, str | None], warnings: list[str]
    ) -> None:
        model, spec = self.model, self.model.spec
        generation = self.body["metadata"].get("generation")
        now = stamp(self.now)
        versions = [
            VersionStatus(
                name=v.name,
                inference_service=names.inference_service_name(model.name, v.name),
                runtime=runtimes.get(v.name) or (v.runtime or spec.runtime or ""),
                ready=seen.readiness[v.name].ready,
                stopped=v.name in plan.stopped,
                url=seen.readiness[v.name].url,
                message="" if seen.readiness[v.name].ready else seen.readiness[v.name].message,
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
            plan.status.phase or "Pending",
            plan.message if rolling else "",
            generation,
            now,
        )
        degraded = self.degraded
        if degraded is None and plan.status.phase == "Failed":
            degraded = ("RolloutFailed", plan.message)
        conditions = set_condition(
            conditions,
            "Degraded",
            degraded is not None,
            degraded[0] if degraded else "AsExpected",
            degraded[1] if degraded else "; ".join(warnings),
            generation,
            now,
        )
        updated = plan.status.model_copy(
            update={
                "observed_generation": generation,
                "versions": versions,
                "ready_versions": f"{ready_count}/{len(versions)}",
                "url": self._url(),
                "conditions": conditions,
            }
        )
        _write_status(self.kube, self.body, self.status, updated)
        self.outcome.phase = updated.phase
        previous = condition_of(self.status.conditions, "Degraded")
        if degraded and (previous is None or previous.message != degraded[1]):
            self._event("Warning", degraded[0], degraded[1])
        for event in plan.events:
            self._event(event.type, event.reason, event.message)
        if plan.consumed:
            self.kube.patch(self.body, {"metadata": {"annotations": dict.fromkeys(plan.consumed)}})
        wake = [plan.requeue_after] if plan.requeue_after is not None else []
        if ready_count < len([v for v in versions if not v.stopped]):
            wake.append(RESYNC_WHILE_NOT_READY)
        self.outcome.requeue_after = min(wake) if wake else None

    def _url(self) -> str | None:
        """The model's address through the gateway: its first hostname, else the
        Gateway's first address."""
        hostnames = self.model.spec.traffic.hostnames
        if hostnames:
            return f"http://{hostnames[0]}"
        ref = self.model.spec.traffic.gateway_ref
        gateway = self.kube.get(*GATEWAY, ref.name, ref.namespace or self.model.namespace)
        addresses = ((gateway or {}).get("status") or {}).get("addresses") or []
        return f"http://{addresses[0]['value']}" if addresses else None

    def _event(self, kind: str, reason: str, message: str) -> None:
        event = Event(kind, reason, message)  # type: ignore[arg-type]
        post_event(self.kube.api, self.body, event)


__all__ = ["PLURAL", "Outcome", "Settings", "manage"]
