"""Reads: what the cluster says about a model's children, turned into observations."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelpilot.api import ManagedModel, names
from modelpilot.api.kinds import (
    AUTOSCALER,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KNATIVE_REVISION_LABEL,
    KSERVE_ISVC_LABEL,
    POD,
    TRAEFIK_SERVICE,
)
from modelpilot.k8s.children import foreign_controller
from modelpilot.k8s.cluster import Cluster
from modelpilot.k8s.knative import KnativeView, knative_view, predictor_status
from modelpilot.k8s.readiness import (
    Readiness,
    condition,
    model_copies,
    model_mesh_readiness,
    unschedulable_reason,
    version_readiness,
)


@dataclass
class Snapshot:
    """Everything one reconcile read about a model's children."""

    isvcs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by version
    hpas: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    route: dict[str, Any] | None = None
    readiness: dict[str, Readiness] = field(default_factory=dict)
    mirror: dict[str, Any] | None = None  # a shadow's TraefikService, read fresh
    stable_name: dict[str, Any] | None = None  # ModelMesh mode's stable-name InferenceService
    knative: KnativeView | None = None  # Knative mode: the model's InferenceService, read
    copies: dict[str, int] = field(default_factory=dict)  # ModelMesh mode: loaded copies

    def live(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The live counterpart of a desired child."""
        labels = obj["metadata"].get("labels") or {}
        version = labels.get(names.VERSION_LABEL)
        if names.STABLE_NAME_LABEL in labels:
            return self.stable_name
        if names.SERVES_LABEL in labels:  # Knative mode's one InferenceService
            return next(iter(self.isvcs.values()), None)
        if obj["kind"] == HTTP_ROUTE.kind:
            return self.route
        if obj["kind"] == TRAEFIK_SERVICE.kind:
            same_name = self.mirror and self.mirror["metadata"]["name"] == obj["metadata"]["name"]
            return self.mirror if same_name else None
        table = self.isvcs if obj["kind"] == INFERENCE_SERVICE.kind else self.hpas
        return table.get(version or "")


def snapshot(cluster: Cluster, model: ManagedModel, versions: list[str]) -> Snapshot:
    """The model's children as read (from the operator's watch cache); pods, only for a
    version that is not ready, from the API."""
    ns, found = model.namespace, Snapshot()
    if model.spec.serving.deployment_mode == "ModelMesh":
        return _model_mesh_snapshot(cluster, model, versions)
    if model.spec.serving.deployment_mode == "Knative":
        return _knative_snapshot(cluster, model, versions)
    for version in versions:
        isvc_name = names.inference_service_name(model.name, version)
        isvc = cluster.cached(INFERENCE_SERVICE, isvc_name, ns)
        hpa = cluster.cached(AUTOSCALER, names.autoscaler_name(model.name, version), ns)
        deployment = cluster.cached(DEPLOYMENT, names.predictor_name(model.name, version), ns)
        if isvc is not None:
            found.isvcs[version] = isvc
        if hpa is not None:
            found.hpas[version] = hpa
        if deployment is not None:
            found.deployments[version] = deployment
        if (foreign := _held_by_another(isvc, model)) is not None:
            found.readiness[version] = foreign
            continue
        pods: list[dict[str, Any]] = []
        first = version_readiness(isvc, deployment)
        if first.waiting_for_pods:
            # Only a version short of pods costs a pod list: the scheduler's reason.
            pods = cluster.list_objects(POD, ns, {KSERVE_ISVC_LABEL: isvc_name})
        found.readiness[version] = version_readiness(isvc, deployment, pods) if pods else first
    found.route = cluster.cached(HTTP_ROUTE, names.route_name(model.name), ns)
    return found


def _held_by_another(isvc: Mapping[str, Any] | None, model: ManagedModel) -> Readiness | None:
    """Not ready, when another owner controls the InferenceService; None when it is this
    model's (or absent). Another's under the same name is, most often, a deleted model's
    that the garbage collector has not removed yet while a model of the same name is
    created again: Ready, but about to go (seen in the churn fault suite: the new model
    routed to it)."""
    uid = model.metadata.uid
    if isvc is None or uid is None or foreign_controller(isvc, uid) is None:
        return None
    return Readiness(
        False,
        f"InferenceService {isvc['metadata']['name']} is not this model's (a deleted "
        "model's of the same name, not yet removed, or someone else's)",
    )


def _model_mesh_snapshot(cluster: Cluster, model: ManagedModel, versions: list[str]) -> Snapshot:
    """ModelMesh mode: InferenceServices only (the runtime's pods are shared, not the
    version's), and the stable name's."""
    ns, found = model.namespace, Snapshot()
    for version in versions:
        isvc = cluster.cached(
            INFERENCE_SERVICE, names.inference_service_name(model.name, version), ns
        )
        if isvc is not None:
            found.isvcs[version] = isvc
        foreign = _held_by_another(isvc, model)
        found.readiness[version] = foreign if foreign is not None else model_mesh_readiness(isvc)
        found.copies[version] = model_copies(isvc)
    # Whoever's it is: a name taken by another owner is refused at the write.
    found.stable_name = cluster.cached(
        INFERENCE_SERVICE, names.stable_name(model.name, model.spec.served_model_name), ns
    )
    found.route = cluster.cached(HTTP_ROUTE, names.route_name(model.name), ns)
    return found


def _knative_snapshot(cluster: Cluster, model: ManagedModel, versions: list[str]) -> Snapshot:
    """Knative mode: the model's InferenceService, and its revisions' Deployments (they
    carry the model's labels, as KServe copies them): no route, no HPA."""
    ns, found = model.namespace, Snapshot()
    isvc = cluster.cached(INFERENCE_SERVICE, names.knative_service_name(model.name), ns)
    children = cluster.cached_children(ns, {names.MODEL_LABEL: model.name})
    revisions = [
        d
        for d in children
        if d["kind"] == DEPLOYMENT.kind
        and KNATIVE_REVISION_LABEL in (d["metadata"].get("labels") or {})
    ]
    view = knative_view(isvc, revisions, versions)
    if isvc is not None:  # under "" when not ours: the write then says whose it is
        found.isvcs[view.carried or ""] = isvc
    by_version = {
        view.revisions.get(d["metadata"]["labels"][KNATIVE_REVISION_LABEL]): d for d in revisions
    }
    for version in versions:
        readiness = view.readiness[version]
        if readiness.waiting_for_pods:
            # Only a revision short of pods costs a pod list: the scheduler's reason.
            created = str(predictor_status(isvc).get("latestCreatedRevision") or "")
            pods = cluster.list_objects(POD, ns, {KNATIVE_REVISION_LABEL: created})
            reason = unschedulable_reason(pods)
            if reason:
                readiness = replace(readiness, message=f"{readiness.message}; {reason}")
        found.readiness[version] = readiness
        if version in by_version:
            found.deployments[version] = by_version[version]
    found.knative = view
    return found


def _model_backends(
    route: Mapping[str, Any] | None, model: str, *, matched: bool
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(version, backendRef) of a model's predictor Services in the route's rules that
    match requests by header or query (pin, A/B: matched) or not (the weighted split)."""
    prefix = f"{model}-"
    for rule in ((route or {}).get("spec") or {}).get("rules") or []:
        by_match = any(m.get("headers") or m.get("queryParams") for m in rule.get("matches") or [])
        if by_match != matched:
            continue
        for backend in rule.get("backendRefs") or []:
            name = str(backend.get("name", ""))
            if name == names.MODEL_MESH_SERVICE:
                # ModelMesh mode: the version is the InferenceService the path is
                # rewritten to, by the backend's filter or else the rule's.
                called = _rewritten_model(backend) or _rewritten_model(rule)
                if called and called.startswith(prefix):
                    yield called[len(prefix) :], backend
                continue
            # A shadow's TraefikService stands for the stable version it sends all to.
            suffix = "-mirror" if backend.get("kind") == TRAEFIK_SERVICE.kind else "-predictor"
            if name.startswith(prefix) and name.endswith(suffix):
                yield name[len(prefix) : -len(suffix)], backend


def _rewritten_model(holder: Mapping[str, Any]) -> str | None:
    """The model name a URLRewrite filter puts into /v2/models/<name> paths."""
    for item in holder.get("filters") or []:
        path = ((item.get("urlRewrite") or {}).get("path")) or {}
        replaced = str(path.get("replacePrefixMatch") or "")
        if item.get("type") == "URLRewrite" and replaced.startswith("/v2/models/"):
            return replaced[len("/v2/models/") :]
    return None


def route_mirror(route: Mapping[str, Any] | None) -> str | None:
    """The TraefikService the live route sends requests through, if any."""
    for rule in ((route or {}).get("spec") or {}).get("rules") or []:
        for backend in rule.get("backendRefs") or []:
            if backend.get("kind") == TRAEFIK_SERVICE.kind:
                return str(backend.get("name"))
    return None


def route_weights(route: Mapping[str, Any] | None, model: str) -> dict[str, int]:
    """The weights the live route carries, per version (the split, not pin or A/B rules)."""
    return {
        version: int(backend.get("weight", 1))
        for version, backend in _model_backends(route, model, matched=False)
    }


def route_pinned(route: Mapping[str, Any] | None, model: str) -> set[str]:
    """Versions the live route still sends some requests to by a match (pin or A/B)."""
    return {version for version, _ in _model_backends(route, model, matched=True)}


def route_accepted(route: Mapping[str, Any] | None) -> bool | None:
    """Accepted by its gateway for the route's current generation; None without a route."""
    if not route:
        return None
    generation = (route.get("metadata") or {}).get("generation")
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return False
    for parent in parents:
        accepted = condition({"status": parent}, "Accepted")
        if not accepted or accepted.get("status") != "True":
            return False
        if accepted.get("observedGeneration") != generation:
            return False
    return True


def replicas_of(deployment: Mapping[str, Any] | None) -> tuple[int, int]:
    """(spec.replicas, availableReplicas) of a predictor Deployment."""
    if not deployment:
        return 0, 0
    spec = int((deployment.get("spec") or {}).get("replicas", 0) or 0)
    available = int((deployment.get("status") or {}).get("availableReplicas", 0) or 0)
    return spec, available
