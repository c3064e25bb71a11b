"""The PromQL of a check: built-in templates per gateway flavor, and users' queries
with their placeholders filled in.

Every value substituted into a query is a quoted, escaped PromQL string (JSON's string
escaping is a subset of PromQL's), so a version or model name can never change the
query's meaning. Names that go into a regular expression are DNS labels (validated by
the API), which hold no regex metacharacter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpilot.api import ManagedModel, names
from modelpilot.api.analysis import PLACEHOLDER, AnalysisMetric

GATEWAY_TEMPLATES = frozenset({"success-rate", "latency-p99"})


class QueryError(Exception):
    """The query cannot be built (e.g. a template the gateway flavor has no metrics
    for); the check is inconclusive with this message."""


@dataclass(frozen=True)
class Target:
    """Which version a query is about, and everything a placeholder may name."""

    namespace: str
    model: str
    version: str
    route: str
    service: str
    window: str
    backend: tuple[int, int] | None = None  # (rule, backendRef) in the live route
    shadow: bool = False  # the version gets copies of requests only (Shadow)
    # Knative mode: the revisions that run the version (None in the other modes).
    revisions: tuple[str, ...] | None = None


def target_of(
    model: ManagedModel,
    version: str,
    window: str,
    route: Any,
    *,
    shadow: bool = False,
    revisions: Mapping[str, str] | None = None,
) -> Target:
    """`revisions` (revision -> version) is Knative mode's map of what each revision runs."""
    return Target(
        namespace=model.namespace,
        model=model.name,
        version=version,
        route=names.route_name(model.name),
        service=names.predictor_name(model.name, version),
        window=window,
        backend=backend_position(route, names.predictor_name(model.name, version)),
        shadow=shadow,
        revisions=(
            None
            if model.spec.serving.deployment_mode != "Knative"
            else tuple(sorted(r for r, v in (revisions or {}).items() if v == version))
        ),
    )


def revision_pattern(target: Target) -> str:
    """The version's revisions as one regular expression, for `=~` (revision names are
    DNS labels: nothing in them is a metacharacter)."""
    if target.revisions is None:
        raise QueryError("{{ revision }} names Knative revisions: only in Knative mode")
    if not target.revisions:
        raise QueryError(f"no revision runs {target.version} yet")
    return "|".join(target.revisions)


def backend_position(route: Any, service: str) -> tuple[int, int] | None:
    """Where the weighted backendRef of a Service sits in the route as written: Envoy
    Gateway names clusters by these indices, and pin rules come first (their number
    changes during a rollout)."""
    rules = ((route or {}).get("spec") or {}).get("rules") or []
    for rule_index, rule in enumerate(rules):
        for backend_index, backend in enumerate(rule.get("backendRefs") or []):
            if backend.get("name") == service and "weight" in backend:
                return rule_index, backend_index
    return None


def quoted(value: str) -> str:
    return json.dumps(value)


def fill(query: str, target: Target) -> str:
    values = {
        "namespace": quoted(target.namespace),
        "model": quoted(target.model),
        "version": quoted(target.version),
        "service": quoted(target.service),
        # ModelMesh's own metrics name a model by its InferenceService.
        "inference_service": quoted(names.inference_service_name(target.model, target.version)),
        "route": quoted(target.route),
        "window": target.window,  # a validated duration, used in range selectors
    }

    def value(name: str) -> str:
        # A version's revisions exist only in Knative mode: asked for only where used.
        return quoted(revision_pattern(target)) if name == "revision" else values[name]

    return PLACEHOLDER.sub(lambda match: value(match.group(1)), query)


def _traefik(target: Target) -> dict[str, str]:
    # Traefik names a Gateway API backend <ns>-<service>-<port name>-<port>@kubernetesgateway
    # and a shadow's TraefikService's Services <ns>-<service>-<port>@kubernetescrd: the
    # stable's requests through it and the candidate's copies, with their answers (seen
    # here, 500s of a failing shadow included).
    service = quoted(f"{target.namespace}-{target.service}-.+@kubernetes(gateway|crd)")
    rng = f"[{target.window}]"
    selector = f"service=~{service}"
    return {
        "requests": (
            f"sum(increase(traefik_service_requests_total{{{selector}}}{rng})) or vector(0)"
        ),
        "success-rate": (
            f'100 * (1 - (sum(rate(traefik_service_requests_total{{{selector},code=~"5.."}}'
            f"{rng})) or vector(0)) / sum(rate(traefik_service_requests_total{{{selector}}}"
            f"{rng})))"
        ),
        "latency-p99": (
            "1000 * histogram_quantile(0.99, sum by (le) (rate("
            f"traefik_service_request_duration_seconds_bucket{{{selector}}}{rng})))"
        ),
    }


def _envoy_gateway(target: Target) -> dict[str, str]:
    if target.backend is None:
        raise QueryError(f"{target.service} has no weighted backendRef in the HTTPRoute yet")
    rule, backend = target.backend
    cluster = quoted(f"httproute/{target.namespace}/{target.route}/rule/{rule}/backend/{backend}")
    rng = f"[{target.window}]"
    selector = f"envoy_cluster_name={cluster}"
    return {
        "requests": (
            f"sum(increase(envoy_cluster_upstream_rq_total{{{selector}}}{rng})) or vector(0)"
        ),
        "success-rate": (
            "100 * (1 - (sum(rate(envoy_cluster_upstream_rq_xx{"
            f'{selector},envoy_response_code_class="5"}}{rng})) or vector(0)) / '
            f"sum(rate(envoy_cluster_upstream_rq_total{{{selector}}}{rng})))"
        ),
        "latency-p99": (
            "histogram_quantile(0.99, sum by (le) (rate("
            f"envoy_cluster_upstream_rq_time_bucket{{{selector}}}{rng})))"
        ),
    }


def _istio(target: Target) -> dict[str, str]:
    # The gateway reports as the source; KServe's Standard pods have no sidecar, so
    # destination-side series do not exist.
    selector = (
        f'reporter="source",destination_service_namespace={quoted(target.namespace)},'
        f"destination_service_name={quoted(target.service)}"
    )
    rng = f"[{target.window}]"
    return {
        "requests": (f"sum(increase(istio_requests_total{{{selector}}}{rng})) or vector(0)"),
        "success-rate": (
            f'100 * (1 - (sum(rate(istio_requests_total{{{selector},response_code=~"5.."}}'
            f"{rng})) or vector(0)) / sum(rate(istio_requests_total{{{selector}}}{rng})))"
        ),
        "latency-p99": (
            "histogram_quantile(0.99, sum by (le) (rate("
            f"istio_request_duration_milliseconds_bucket{{{selector}}}{rng})))"
        ),
    }


def _knative(target: Target) -> dict[str, str]:
    # Knative's queue-proxy, in front of every revision's pods, counts and times each
    # request it proxies (milliseconds), labelled with the revision's name.
    selector = (
        f"namespace_name={quoted(target.namespace)},"
        f"revision_name=~{quoted(revision_pattern(target))}"
    )
    rng = f"[{target.window}]"
    return {
        "requests": f"sum(increase(revision_request_count{{{selector}}}{rng})) or vector(0)",
        "success-rate": (
            f'100 * (1 - (sum(rate(revision_request_count{{{selector},response_code_class="5xx"}}'
            f"{rng})) or vector(0)) / sum(rate(revision_request_count{{{selector}}}{rng})))"
        ),
        "latency-p99": (
            "histogram_quantile(0.99, sum by (le) (rate("
            f"revision_request_latencies_bucket{{{selector}}}{rng})))"
        ),
    }


def _model_server(target: Target) -> dict[str, str]:
    # KServe's Python servers; their pods scraped with the pod label
    # serving.kserve.io/inferenceservice kept as `inferenceservice` (in Knative mode,
    # where every revision has the one InferenceService's name, serving.knative.dev/
    # revision kept as `revision`).
    if target.revisions is not None:
        selector = (
            f"namespace={quoted(target.namespace)},revision=~{quoted(revision_pattern(target))}"
        )
    else:
        selector = (
            f"namespace={quoted(target.namespace)},inferenceservice="
            f"{quoted(names.inference_service_name(target.model, target.version))}"
        )
    rng = f"[{target.window}]"
    return {
        "requests": (
            f"sum(increase(request_predict_seconds_count{{{selector}}}{rng})) or vector(0)"
        ),
        "predict-latency-p99": (
            "1000 * histogram_quantile(0.99, sum by (le) (rate("
            f"request_predict_seconds_bucket{{{selector}}}{rng})))"
        ),
    }


GATEWAY_QUERIES = {"traefik": _traefik, "envoy-gateway": _envoy_gateway, "istio": _istio}
# Gateways whose metrics were seen here to count a shadow's copies and their answers.
COUNTS_MIRRORED = frozenset({"traefik"})


def _gateway_sees(flavor: str, target: Target) -> bool:
    return flavor in GATEWAY_QUERIES and (not target.shadow or flavor in COUNTS_MIRRORED)


def requests_query(flavor: str, target: Target) -> str:
    """Requests the version served in the window: counted at the gateway when its
    metrics are known (and, for a shadow, count the copies), else by the model server;
    in Knative mode by the revisions' queue-proxies."""
    if target.revisions is not None:
        return _knative(target)["requests"]
    if _gateway_sees(flavor, target):
        return GATEWAY_QUERIES[flavor](target)["requests"]
    return _model_server(target)["requests"]


def metric_query(metric: AnalysisMetric, flavor: str, target: Target) -> str:
    if metric.query is not None:
        return fill(metric.query, target)
    template = metric.template or ""
    if template in GATEWAY_TEMPLATES and target.revisions is not None:
        return _knative(target)[template]
    if template in GATEWAY_TEMPLATES:
        if flavor not in GATEWAY_QUERIES:
            raise QueryError(
                f"template {template} reads the gateway's metrics: run the operator with "
                f"--gateway-flavor traefik, envoy-gateway or istio (it is {flavor}), or "
                "write a query"
            )
        if not _gateway_sees(flavor, target):
            raise QueryError(
                f"template {template}: {flavor}'s metrics do not count a shadow's copies; "
                "judge a shadow there on predict-latency-p99 or a query of the model "
                "server's metrics"
            )
        return GATEWAY_QUERIES[flavor](target)[template]
    return _model_server(target)[template]
