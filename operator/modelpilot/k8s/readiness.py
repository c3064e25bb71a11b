"""Whether a version is ready, from what KServe and the Deployment report (never from
modelpilot's own bookkeeping)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelpilot.k8s.children import same

# The container KServe runs the model server in, in every predictor pod it makes.
KSERVE_CONTAINER = "kserve-container"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str = ""
    url: str = ""
    # The Deployment has not yet observed its latest spec (a scale or a template change,
    # for a few milliseconds): its status says nothing new, so the last verdict stands.
    stale: bool = False
    # Not ready for want of pods: the pods' scheduling would tell why.
    waiting_for_pods: bool = False


def condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    conditions: list[Mapping[str, Any]] = ((obj or {}).get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == kind:
            return cond
    return None


def version_readiness(
    isvc: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]] = (),
) -> Readiness:
    """Ready when the predictor Deployment has rolled out its current template (every pod
    on it), at least one of its pods is available, and the InferenceService is Ready.

    In Standard mode KServe copies the Deployment's observedGeneration into the
    InferenceService status, so the InferenceService alone cannot tell a stale Ready from
    a fresh one: the Deployment is read too. KServe's Ready follows the Deployment's
    Available condition, which turns False while the HPA scales up a small Deployment
    (25% maxUnavailable rounds to zero pods); a scale-up does not make a version unready,
    so a rolled-out Deployment with available pods counts as serving then.
    """
    if isvc is None:
        return Readiness(False, "InferenceService not created yet")
    url = str((isvc.get("status") or {}).get("url") or "")
    if deployment is None:
        # KServe says in the InferenceService's conditions why it made no Deployment (an
        # unknown runtime, a missing service account): that is the reason to show.
        said = _kserve_says(isvc)
        return Readiness(
            False,
            "predictor Deployment not created yet" + (f"; KServe: {said}" if said else ""),
            url,
        )
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
    uid = (isvc.get("metadata") or {}).get("uid")
    if uid and owners and uid not in owners:
        # A model deleted and created again under its name: until the garbage collector
        # removes it, the old InferenceService's Deployment says nothing of the new one
        # (seen in the fault suite's churn on busy cores: weight on a version with no pod).
        return Readiness(False, "predictor Deployment still the previous InferenceService's", url)
    desired = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    available = int(status.get("availableReplicas", 0) or 0)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return Readiness(
            False, "predictor Deployment has not seen its latest spec", url, stale=True
        )
    if not template_matches(isvc, deployment):
        return Readiness(
            False, "KServe has not yet applied the InferenceService's spec to its pods", url
        )
    total = int(status.get("replicas", 0) or 0)
    if total > updated:
        # Pods of an older template remain: the rollout of the current one is not done.
        # (Fewer updated pods than desired alone is a scale-up, not a rollout.)
        message = f"{updated}/{total} predictor pods on the current spec"
        reason = unschedulable_reason(pods)
        message = f"{message}; {reason}" if reason else message
        return Readiness(False, message, url, waiting_for_pods=True)
    if available < min(1, desired):
        message = _waiting(status, desired, pods, "available")
        return Readiness(False, message, url, waiting_for_pods=True)
    ready = condition(isvc, "Ready")
    if ready is not None and ready.get("status") == "True":
        return Readiness(True, "", url)
    if ready is not None and _mirrors_availability(ready):
        # KServe's Ready only repeats the Deployment's availability (late, or during a
        # scale-up); the Deployment itself was judged above.
        return Readiness(True, "", url)
    why = (ready or {}).get("message") or (ready or {}).get("reason") or "not reported"
    return Readiness(False, f"InferenceService not Ready: {why}", url)


# ModelMesh's states of a model that answers requests: Standby is registered but not in
# memory (its first request waits for a load), yet served.
SERVING_MODEL_STATES = ("Loaded", "Standby")


def model_mesh_readiness(isvc: Mapping[str, Any] | None) -> Readiness:
    """ModelMesh mode: ready when ModelMesh serves the model of the InferenceService's
    current spec (transitionStatus UpToDate) and that model is loaded or on standby.
    While a changed spec loads, ModelMesh keeps serving the previous model; that one is
    not what the version now names, so the version waits. An InferenceService status
    with an observedGeneration older than its spec is stale: the last verdict stands."""
    if isvc is None:
        return Readiness(False, "InferenceService not created yet")
    status = isvc.get("status") or {}
    url = str(status.get("url") or "")
    generation = (isvc.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if observed is not None and generation is not None and observed < generation:
        return Readiness(False, "ModelMesh has not seen the latest spec", url, stale=True)
    model = status.get("modelStatus") or {}
    states = model.get("states") or {}
    active, target = states.get("activeModelState"), states.get("targetModelState")
    transition = model.get("transitionStatus")
    failure = model.get("lastFailureInfo") or {}
    why = ": ".join(str(x) for x in (failure.get("reason"), failure.get("message")) if x)
    if transition in ("BlockedByFailedLoad", "InvalidSpec") or active == "FailedToLoad":
        said = f"ModelMesh: {transition if transition != 'UpToDate' else active}"
        return Readiness(False, f"{said}; {why}" if why else said, url)
    if transition is None:
        return Readiness(False, "ModelMesh has not reported on the model yet", url)
    if transition != "UpToDate":
        return Readiness(False, f"ModelMesh is loading the new model ({target or 'Pending'})", url)
    if active not in SERVING_MODEL_STATES:
        return Readiness(False, f"ModelMesh model {active or 'Pending'}", url)
    ready = condition(isvc, "Ready")
    if ready is None or ready.get("status") != "True":
        said = (ready or {}).get("message") or (ready or {}).get("reason") or "not reported"
        return Readiness(False, f"InferenceService not Ready: {said}", url)
    return Readiness(True, "", url)


def model_copies(isvc: Mapping[str, Any] | None) -> int:
    """ModelMesh mode: copies of the model loaded in runtime pods (its replicas)."""
    copies = (((isvc or {}).get("status") or {}).get("modelStatus") or {}).get("copies") or {}
    return int(copies.get("totalCopies") or 0)


def _kserve_says(isvc: Mapping[str, Any]) -> str:
    """The first False condition that explains itself, Ready's last."""
    conditions = list((isvc.get("status") or {}).get("conditions") or [])
    conditions.sort(key=lambda c: c.get("type") == "Ready")
    for cond in conditions:
        if cond.get("status") == "False" and (cond.get("message") or cond.get("reason")):
            text = ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x)
            return f"{cond.get('type')} {text}"
    return ""


def _mirrors_availability(ready: Mapping[str, Any]) -> bool:
    reason, message = str(ready.get("reason") or ""), str(ready.get("message") or "")
    return reason == "MinimumReplicasUnavailable" or "minimum availability" in message


def template_matches(isvc: Mapping[str, Any], deployment: Mapping[str, Any]) -> bool:
    """The Deployment's model container carries its InferenceService's current args and
    resources: KServe has applied the spec we wrote, not only an older one."""
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    container = next(
        (c for c in template.get("containers") or [] if c.get("name") == KSERVE_CONTAINER), None
    )
    if container is None:
        return True  # not KServe's layout: nothing to compare against
    if model.get("resources") and not same(container.get("resources") or {}, model["resources"]):
        return False
    args = container.get("args") or []
    return all(arg in args for arg in model.get("args") or [])


def _waiting(
    status: Mapping[str, Any], desired: int, pods: Iterable[Mapping[str, Any]], what: str
) -> str:
    have = int(status.get(f"{what}Replicas", 0) or 0)
    message = f"{have}/{desired} predictor pods {what}"
    reason = unschedulable_reason(pods)
    return f"{message}; {reason}" if reason else message


def unschedulable_reason(pods: Iterable[Mapping[str, Any]]) -> str:
    """The scheduler's word on a Pending pod, e.g. '0/4 nodes are available: 2
    Insufficient nvidia.com/gpu ...'."""
    for pod in pods:
        scheduled = condition(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False" and scheduled.get("message"):
            return f"pod {pod['metadata']['name']} unschedulable: {scheduled['message']}"
    return ""
