"""Knative mode's reads: which version each revision runs, where KServe sends requests,
and whether a version is ready, from the model's InferenceService and the revisions'
Deployments (never from modelpilot's own bookkeeping).

KServe copies the InferenceService's labels onto every revision it makes, and Knative
onto each revision's Deployment, so the version label modelpilot puts on the
InferenceService (`modelpilot.io/serves`) says, on a revision's Deployment, which
version that revision runs. The traffic KServe reports
(`status.components.predictor.traffic`) then reads as weights per version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpilot.api import names
from modelpilot.api.kinds import KNATIVE_REVISION_LABEL
from modelpilot.k8s.readiness import Readiness, condition


@dataclass(frozen=True)
class KnativeView:
    """What the model's InferenceService and its revisions say, per version."""

    carried: str | None  # the version the InferenceService's spec carries
    revisions: dict[str, str] = field(default_factory=dict)  # revision -> version
    weights: dict[str, int] | None = None  # None: a revision's version is not known yet
    current: bool = False  # KServe has reconciled the InferenceService's latest spec
    url: str = ""
    readiness: dict[str, Readiness] = field(default_factory=dict)


def predictor_status(isvc: Mapping[str, Any] | None) -> Mapping[str, Any]:
    status = (isvc or {}).get("status") or {}
    return ((status.get("components") or {}).get("predictor")) or {}


def revision_versions(deployments: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    found = {}
    for deployment in deployments:
        labels = (deployment.get("metadata") or {}).get("labels") or {}
        revision, version = labels.get(KNATIVE_REVISION_LABEL), labels.get(names.SERVES_LABEL)
        if revision and version:
            found[str(revision)] = str(version)
    return found


def knative_view(
    isvc: Mapping[str, Any] | None, deployments: Iterable[Mapping[str, Any]], versions: list[str]
) -> KnativeView:
    if isvc is None:
        missing = Readiness(False, "InferenceService not created yet")
        return KnativeView(None, readiness={v: missing for v in versions})
    meta, status = isvc.get("metadata") or {}, isvc.get("status") or {}
    carried = (meta.get("labels") or {}).get(names.SERVES_LABEL)
    revisions = revision_versions(deployments)
    predictor = predictor_status(isvc)
    traffic = predictor.get("traffic") or []
    weights: dict[str, int] | None = {}
    for entry in traffic:
        version = revisions.get(str(entry.get("revisionName") or ""))
        if version is None:
            weights = None  # a revision whose Deployment is not seen yet
            break
        assert weights is not None
        weights[version] = weights.get(version, 0) + int(entry.get("percent") or 0)
    if weights is not None:
        weights = {v: w for v, w in weights.items() if w > 0}
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    current = observed is not None and observed == generation
    url = str(status.get("url") or "")
    created, ready_revision = (
        predictor.get("latestCreatedRevision"),
        predictor.get("latestReadyRevision"),
    )
    routed = {revisions.get(str(e.get("revisionName") or "")) for e in traffic}
    previous = revisions.get(str(predictor.get("previousRolledoutRevision") or ""))
    readiness = {}
    for version in versions:
        if version == carried:
            readiness[version] = _latest_readiness(
                isvc, current, created, ready_revision, revisions, version, url
            )
        elif version in routed or version == previous:
            # KServe routes to ready revisions only; the previous rolled-out one is kept
            # (scaled down) for a rollback, which Knative scales up on demand.
            readiness[version] = Readiness(True, "", url)
        else:
            readiness[version] = Readiness(
                False, "no revision: Knative mode runs the stable version and the canary only", url
            )
    return KnativeView(carried, revisions, weights, current, url, readiness)


def _latest_readiness(
    isvc: Mapping[str, Any],
    current: bool,
    created: str | None,
    ready_revision: str | None,
    revisions: Mapping[str, str],
    version: str,
    url: str,
) -> Readiness:
    """The version the spec carries is ready when KServe has reconciled that spec and
    its latest revision (the version's) is the latest ready one."""
    if not current:
        return Readiness(False, "KServe has not seen the latest spec", url, stale=True)
    if not created:
        return Readiness(False, "no revision created yet", url)
    if revisions.get(str(created)) not in (None, version):
        return Readiness(False, f"the latest revision {created} runs another version", url)
    if created != ready_revision:
        ready = condition(isvc, "Ready") or {}
        why = ready.get("message") or ready.get("reason") or "not ready"
        return Readiness(False, f"revision {created} not ready: {why}", url, waiting_for_pods=True)
    return Readiness(True, "", url)
