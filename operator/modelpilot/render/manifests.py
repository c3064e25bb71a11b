"""Pure builders: a ManagedModel and a render state in, Kubernetes manifests out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpilot.api import ManagedModel, Problem, names
from modelpilot.api.gateways import Mirror, traits_of
from modelpilot.api.kinds import KSERVE_DEPLOYMENT_MODE
from modelpilot.api.spec import Metric
from modelpilot.api.strategies import RequestMatch
from modelpilot.render.engine import RenderError, render_fragment, render_template
from modelpilot.render.predictor import Predictor, plan_predictor
from modelpilot.render.state import RenderState
from modelpilot.runtimes import ServingRuntimeInfo

AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
STOP = "serving.kserve.io/stop"
DEFAULT_GPU_METRIC = "DCGM_FI_DEV_GPU_UTIL"


class UnservableModel(ValueError):
    """Some version cannot be served: no runtime fits it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Rendered:
    objects: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    runtimes: dict[str, str | None] = field(default_factory=dict)  # version -> runtime


@dataclass(frozen=True)
class ServingPlan:
    """What each version serves, planned and rendered once per reconcile: the rollout
    compares it with what runs before the InferenceServices are rendered around it."""

    predictors: dict[str, Predictor]
    served: dict[str, dict[str, Any]]  # version -> its spec.predictor.model


def plan_serving(
    model: ManagedModel, runtimes: Sequence[ServingRuntimeInfo], *, all_runtimes: bool = False
) -> ServingPlan:
    """all_runtimes: runtimes are every one in the model's scope, so a runtime a version
    names and they lack does not exist (KServe would never serve it)."""
    predictors = plan_predictors(model, runtimes, all_runtimes=all_runtimes)
    return ServingPlan(
        predictors=predictors,
        served={v: render_served_model(p) for v, p in predictors.items()},
    )


def render_served_model(predictor: Predictor) -> dict[str, Any]:
    """The InferenceService's spec.predictor.model: what the version serves, and how."""
    return render_fragment("served_model.yaml.j2", p=predictor)


def plan_predictors(
    model: ManagedModel, runtimes: Sequence[ServingRuntimeInfo], *, all_runtimes: bool = False
) -> dict[str, Predictor]:
    planned: dict[str, Predictor] = {}
    problems: list[Problem] = []
    for version in model.spec.versions:
        result = plan_predictor(model, version, runtimes, all_runtimes=all_runtimes)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            planned[version.name] = result
    if problems:
        raise UnservableModel(problems)
    return planned


def render_inference_service(
    model: ManagedModel,
    predictor: Predictor,
    state: RenderState,
    served: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """served: the predictor's model section when already rendered (plan_serving)."""
    spec = model.spec
    version_state = state.of(predictor.version)
    if model_mesh(model):
        # ModelMesh sizes the shared runtime pods itself and has no stop: a stopped
        # version stays registered, loaded only while ModelMesh has room for it.
        annotations = {**spec.serving.annotations, KSERVE_DEPLOYMENT_MODE: "ModelMesh"}
    else:
        annotations = {
            **spec.serving.annotations,
            KSERVE_DEPLOYMENT_MODE: "RawDeployment" if state.legacy_raw_deployment else "Standard",
            AUTOSCALER_CLASS: "external",
        }
        if version_state.stopped:
            annotations[STOP] = "true"
    return render_template(
        "inference_service.yaml.j2",
        name=names.inference_service_name(model.name, predictor.version),
        namespace=model.namespace,
        labels={**spec.serving.labels, **names.common_labels(model.name, predictor.version)},
        annotations=annotations,
        mode=model.spec.serving.deployment_mode,
        min_replicas=version_state.min_replicas or spec.autoscaling.min_replicas,
        max_replicas=version_state.max_replicas or spec.autoscaling.max_replicas,
        timeout=spec.serving.timeout,
        deployment_strategy=spec.serving.deployment_strategy,
        p=predictor,
        served=served if served is not None else render_served_model(predictor),
    )


def model_mesh(model: ManagedModel) -> bool:
    return model.spec.serving.deployment_mode == "ModelMesh"


def knative(model: ManagedModel) -> bool:
    return model.spec.serving.deployment_mode == "Knative"


def render_knative_service(
    model: ManagedModel, predictor: Predictor, state: RenderState, served: dict[str, Any]
) -> dict[str, Any]:
    """Knative mode: the model's one InferenceService, named after it, carrying the
    version the rollout put last (the canary, or the stable version at rest). KServe
    makes a revision of each predictor it carries and sends canaryTrafficPercent of the
    requests to the latest one, the rest to the one rolled out before; without it, all
    to the latest. The version label reaches each revision (KServe copies the
    InferenceService's labels onto them), which says which version a revision runs."""
    spec = model.spec
    scaling = spec.autoscaling
    return render_template(
        "inference_service.yaml.j2",
        name=names.knative_service_name(model.name),
        namespace=model.namespace,
        labels={
            **spec.serving.labels,
            **names.common_labels(model.name),
            names.SERVES_LABEL: predictor.version,
        },
        annotations={
            **spec.serving.annotations,
            KSERVE_DEPLOYMENT_MODE: "Serverless" if state.legacy_raw_deployment else "Knative",
        },
        mode="Knative",
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        scale_metric=scaling.scale_metric,
        scale_target=scaling.scale_target,
        canary_percent=state.canary_percent,
        timeout=spec.serving.timeout,
        p=predictor,
        served=served,
    )


def stable_name(model: ManagedModel) -> str:
    return names.stable_name(model.name, model.spec.served_model_name)


def render_stable_name(model: ManagedModel, stable: str, served: dict[str, Any]) -> dict[str, Any]:
    """ModelMesh mode: the stable name's InferenceService serves the stable version. A
    promotion changes what it serves, and ModelMesh keeps serving the model it had until
    the new one is loaded, so callers of the stable name never meet an unloaded model.
    It also serves the weighted split on gateways that drop per-backend rewrites."""
    return render_template(
        "inference_service.yaml.j2",
        name=stable_name(model),
        namespace=model.namespace,
        labels={
            **model.spec.serving.labels,
            **names.common_labels(model.name),
            names.STABLE_NAME_LABEL: stable,
        },
        annotations={**model.spec.serving.annotations, KSERVE_DEPLOYMENT_MODE: "ModelMesh"},
        mode="ModelMesh",
        served=served,
    )


def render_autoscaler(model: ManagedModel, version: str, state: RenderState) -> dict[str, Any]:
    scaling = model.spec.autoscaling
    version_state = state.of(version)
    return render_template(
        "autoscaler.yaml.j2",
        name=names.autoscaler_name(model.name, version),
        namespace=model.namespace,
        labels=names.common_labels(model.name, version),
        deployment=names.predictor_name(model.name, version),
        min_replicas=version_state.min_replicas or scaling.min_replicas,
        max_replicas=version_state.max_replicas or scaling.max_replicas,
        metrics=[_hpa_metric(m) for m in scaling.metrics],
        behavior=scaling.behavior,
    )


def _hpa_metric(metric: Metric) -> dict[str, Any]:
    if metric.type in ("cpu", "memory"):
        target = {"type": "Utilization", "averageUtilization": metric.average_utilization}
        return {"type": "Resource", "resource": {"name": metric.type, "target": target}}
    if metric.type == "gpu":
        name = metric.metric_name or DEFAULT_GPU_METRIC
        value: Any = metric.average_utilization
    else:
        name, value = metric.metric_name or "", metric.average_value
    # Quantities as strings: the form the apiserver stores, so a re-apply is a no-op.
    target = {"type": "AverageValue", "averageValue": str(value)}
    return {"type": "Pods", "pods": {"metric": {"name": name}, "target": target}}


def render_route(model: ManagedModel, state: RenderState) -> dict[str, Any]:
    spec = model.spec
    if spec.traffic is None:
        raise RenderError("a route needs spec.traffic (Knative mode has none)")
    traffic = spec.traffic
    weights = state.weights
    if sum(weights.values()) != 100:
        raise RenderError(f"route weights must sum to 100, got {weights}")
    way = _Way(model)
    order = [v.name for v in spec.versions]
    # A header naming the version on each weighted backend: harmless to the model
    # server, and on Envoy Gateway it gives each backend its own cluster and stats.
    tagged = traits_of(state.gateway_flavor).split_backends_for_metrics
    backends = [
        {
            "service": way.service(v),
            "weight": weights[v],
            "filters": way.filters(v) + (_version_header(v) if tagged else []),
        }
        for v in order
        if v in weights
    ]
    matched = state.matched if state.matched and not state.of(state.matched).stopped else None
    ab_matches = [way.match(_route_match(m)) for m in spec.rollout.match] if matched else []
    pins = []
    for v in order:
        if state.of(v).pinned and not state.of(v).stopped:
            pin = {"type": "Exact", "name": traffic.pin_header, "value": v}
            # The pin wins over an A/B match: Gateway API ranks a match with more
            # header conditions first, so each A/B match is repeated with the pin added.
            matches = [way.match({"headers": [pin]})] + [
                {**m, "headers": [pin, *m.get("headers", [])]} for m in ab_matches
            ]
            pins.append({"matches": matches, "service": way.service(v), "filters": way.filters(v)})
    mirror = _mirror(model, state)
    if mirror == "TraefikService" and not state.mirror_ready:
        mirror = None
    if mirror == "TraefikService":
        backends = []  # the TraefikService sends them all to stable, a copy to the shadow
    return render_template(
        "route.yaml.j2",
        name=names.route_name(model.name),
        namespace=model.namespace,
        labels=names.common_labels(model.name),
        gateway=traffic.gateway_ref,
        hostnames=traffic.hostnames,
        port=way.port,
        pins=pins,
        matched=(
            {
                "matches": ab_matches,
                "service": way.service(matched),
                "filters": way.filters(matched),
            }
            if matched
            else None
        ),
        split_matches=[way.match({})],
        backends=backends,
        timeout=f"{spec.serving.timeout}s" if spec.serving.timeout else None,
        mirror_filter=_mirror_filter(model, state) if mirror == "RequestMirror" else None,
        traefik_mirror=(
            names.mirror_name(model.name, _stable_of(state)) if mirror == "TraefikService" else None
        ),
    )


class _Way:
    """How a route reaches a version. Standard: its predictor Service, any path. ModelMesh:
    the namespace's modelmesh-serving Service, which serves every model and picks one by
    the name in the path, so the route matches the served name's paths and rewrites the
    name to the version's InferenceService (clients keep calling the served name)."""

    def __init__(self, model: ManagedModel) -> None:
        self.model = model
        self.mesh = model_mesh(model)
        self.port = names.MODEL_MESH_REST_PORT if self.mesh else 80
        self.prefix = f"/v2/models/{stable_name(model)}"

    def service(self, version: str) -> str:
        if self.mesh:
            return names.MODEL_MESH_SERVICE
        return names.predictor_name(self.model.name, version)

    def match(self, match: dict[str, Any]) -> dict[str, Any]:
        path = self.prefix if self.mesh else "/"
        if not self.mesh and match:
            return match  # no path: Gateway API's default, every path
        return {"path": {"type": "PathPrefix", "value": path}, **match}

    def filters(self, version: str) -> list[dict[str, Any]]:
        if not self.mesh:
            return []
        rewritten = f"/v2/models/{names.inference_service_name(self.model.name, version)}"
        return [
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": rewritten}
                },
            }
        ]


def _version_header(version: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": names.VERSION_HEADER, "value": version}]},
        }
    ]


def _mirror(model: ManagedModel, state: RenderState) -> Mirror | None:
    """How this render copies requests to a shadow: only while one is running, onto a
    split that is all stable's, and only where the gateway can."""
    shadow = state.mirrored
    if shadow is None or state.of(shadow).stopped or len(state.weights) != 1:
        return None
    if _stable_of(state) == shadow:
        return None
    return traits_of(state.gateway_flavor).mirror


def _stable_of(state: RenderState) -> str:
    return next(iter(state.weights))


def _mirror_filter(model: ManagedModel, state: RenderState) -> dict[str, Any]:
    backend = {"name": names.predictor_name(model.name, state.mirrored or ""), "port": 80}
    percent = model.spec.rollout.mirror_percent
    # All of them is the filter's default: left out, a gateway without the (extended)
    # percent field mirrors the same.
    return {"backendRef": backend, "percent": percent if percent < 100 else None}


def mirror_object_name(model: ManagedModel, state: RenderState) -> str | None:
    """The TraefikService a shadow needs on --gateway-flavor traefik; None otherwise."""
    if _mirror(model, state) != "TraefikService":
        return None
    return names.mirror_name(model.name, _stable_of(state))


def render_mirror(model: ManagedModel, state: RenderState) -> dict[str, Any] | None:
    """Traefik's mirroring TraefikService, while a shadow runs on --gateway-flavor
    traefik (whether or not the route names it yet); None otherwise."""
    name = mirror_object_name(model, state)
    if name is None:
        return None
    stable = _stable_of(state)
    return render_template(
        "mirror.yaml.j2",
        name=name,
        namespace=model.namespace,
        labels=names.common_labels(model.name),
        service=names.predictor_name(model.name, stable),
        shadow_service=names.predictor_name(model.name, state.mirrored or ""),
        percent=model.spec.rollout.mirror_percent,
    )


def _route_match(match: RequestMatch) -> dict[str, Any]:
    """A spec.rollout.match entry in HTTPRoute's shape."""
    found: dict[str, Any] = {}
    if match.headers:
        found["headers"] = [
            {"type": h.type, "name": h.name, "value": h.value} for h in match.headers
        ]
    if match.query_params:
        found["queryParams"] = [
            {"type": q.type, "name": q.name, "value": q.value} for q in match.query_params
        ]
    return found


def render_model(
    model: ManagedModel,
    state: RenderState,
    runtimes: Sequence[ServingRuntimeInfo] = (),
    *,
    serving: ServingPlan | None = None,
) -> Rendered:
    """Every child of the model, in a stable order: per version its InferenceService and
    HPA (none while stopped; none in ModelMesh mode), then ModelMesh mode's stable name,
    then a shadow's TraefikService, then the HTTPRoute.
    serving: planned already (then runtimes are not consulted again)."""
    serving = serving or plan_serving(model, runtimes)
    predictors = serving.predictors
    objects: list[dict[str, Any]] = []
    warnings: list[str] = []
    if knative(model):
        latest = state.latest or model.spec.target
        predictor = predictors[latest]
        service = render_knative_service(model, predictor, state, serving.served[latest])
        return Rendered(
            objects=[service],
            warnings=predictor.warnings,
            runtimes={name: p.resolved_runtime for name, p in predictors.items()},
        )
    mesh = model_mesh(model)
    for version in model.spec.versions:
        predictor = predictors[version.name]
        warnings += predictor.warnings
        served = serving.served[version.name]
        objects.append(render_inference_service(model, predictor, state, served))
        if not state.of(version.name).stopped and not mesh:
            objects.append(render_autoscaler(model, version.name, state))
    if mesh and state.stable in serving.served:
        objects.append(render_stable_name(model, state.stable, serving.served[state.stable]))
    if state.route and state.weights:
        mirror = render_mirror(model, state)
        if mirror is not None:
            objects.append(mirror)  # before the route that names it
        objects.append(render_route(model, state))
    return Rendered(
        objects=objects,
        warnings=warnings,
        runtimes={name: p.resolved_runtime for name, p in predictors.items()},
    )
