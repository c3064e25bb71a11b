"""Whether a version is ready, from what KServe and the Deployment report (never from
modelpilot's own bookkeeping)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str = ""
    url: str = ""
    # The Deployment has not yet observed its latest spec (a scale or a template change,
    # for a few milliseconds): its status says nothing new, so the last verdict stands.
    stale: bool = False


def condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
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
        return Readiness(False, "predictor Deployment not created yet", url)
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    desired = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    available = int(status.get("availableReplicas", 0) or 0)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return Readiness(
            False, "predictor Deployment has not seen its latest spec", url, stale=True
        )
    if updated < desired or int(status.get("replicas", 0) or 0) > updated:
        return Readiness(False, _waiting(status, desired, pods, "updated"), url)
    if available < min(1, desired):
        return Readiness(False, _waiting(status, desired, pods, "available"), url)
    ready = condition(isvc, "Ready")
    if ready is not None and ready.get("status") == "True":
        return Readiness(True, "", url)
    if 0 < available < desired:
        return Readiness(True, "", url)  # scaling up: serving meanwhile
    why = (ready or {}).get("message") or (ready or {}).get("reason") or "not reported"
    return Readiness(False, f"InferenceService not Ready: {why}", url)


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
