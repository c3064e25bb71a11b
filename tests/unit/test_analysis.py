"""The analysis' queries (per gateway flavor, placeholders filled safely) and verdicts
(bounds, ratios to stable, inconclusive cases), and one check run end to end on a
fake metrics source."""

from __future__ import annotations

import asyncio
import copy
import math
from typing import Any

import pytest

from modelpilot.analysis.queries import QueryError, fill, metric_query, requests_query, target_of
from modelpilot.analysis.verdict import Measured, judge
from modelpilot.api import ManagedModel, parse_managed_model
from modelpilot.api.analysis import Analysis, AnalysisMetric
from modelpilot.handlers.checks import Job, run_check
from modelpilot.probes.prometheus import PrometheusError
from modelpilot.rollout import CheckRequest
from tests.unit.conftest import BASE


def model(**analysis: Any) -> ManagedModel:
    document = copy.deepcopy(BASE)
    document["spec"]["rollout"] = {"target": "v2", "interval": "30s", "analysis": analysis}
    return parse_managed_model(document)


ROUTE = {
    "spec": {
        "rules": [
            {"backendRefs": [{"name": "iris-v1-predictor", "port": 80}]},
            {"backendRefs": [{"name": "iris-v2-predictor", "port": 80}]},
            {
                "backendRefs": [
                    {"name": "iris-v1-predictor", "port": 80, "weight": 90},
                    {"name": "iris-v2-predictor", "port": 80, "weight": 10},
                ]
            },
        ]
    }
}


def test_placeholders_become_quoted_escaped_strings() -> None:
    target = target_of(model(metrics=[{"name": "x", "query": "up", "min": 1}]), "v2", "1m", None)
    query = fill(
        "sum(rate(x{ns={{namespace}},v={{ version }},s={{service}}}[{{ window }}]))", target
    )
    assert query == 'sum(rate(x{ns="ml",v="v2",s="iris-v2-predictor"}[1m]))'
    hostile = target.__class__(**{**target.__dict__, "version": 'v2"} or vector(1) #'})
    assert fill("x{v={{version}}}", hostile) == 'x{v="v2\\"} or vector(1) #"}'


def test_traefik_templates_select_the_versions_backend() -> None:
    mm = model(metrics=[{"name": "ok", "template": "success-rate", "min": 95}])
    target = target_of(mm, "v2", "30s", ROUTE)
    query = metric_query(mm.spec.rollout.analysis.metrics[0], "traefik", target)  # type: ignore[union-attr]
    assert 'service=~"ml-iris-v2-predictor-.+@kubernetes(gateway|crd)"' in query
    assert 'code=~"5.."' in query and "or vector(0)" in query and "[30s]" in query
    assert requests_query("traefik", target).startswith(
        "sum(increase(traefik_service_requests_total"
    )


def test_envoy_gateway_names_the_cluster_from_the_route_as_written() -> None:
    mm = model(metrics=[{"name": "p99", "template": "latency-p99", "max": 500}])
    target = target_of(mm, "v2", "30s", ROUTE)
    assert target.backend == (2, 1)  # two pin rules come first
    query = metric_query(mm.spec.rollout.analysis.metrics[0], "envoy-gateway", target)  # type: ignore[union-attr]
    assert 'envoy_cluster_name="httproute/ml/iris/rule/2/backend/1"' in query
    with pytest.raises(QueryError, match="no weighted backendRef"):
        metric_query(
            mm.spec.rollout.analysis.metrics[0],  # type: ignore[union-attr]
            "envoy-gateway",
            target_of(mm, "v2", "30s", None),
        )


def test_istio_reads_the_gateway_as_reporter_source() -> None:
    mm = model(metrics=[{"name": "ok", "template": "success-rate", "min": 95}])
    query = metric_query(
        mm.spec.rollout.analysis.metrics[0],
        "istio",
        target_of(mm, "v2", "1m", ROUTE),  # type: ignore[union-attr]
    )
    assert 'reporter="source"' in query and 'destination_service_name="iris-v2-predictor"' in query


def test_gateway_templates_need_a_known_gateway() -> None:
    mm = model(metrics=[{"name": "ok", "template": "success-rate", "min": 95}])
    with pytest.raises(QueryError, match="--gateway-flavor traefik, envoy-gateway or istio"):
        metric_query(
            mm.spec.rollout.analysis.metrics[0], "generic", target_of(mm, "v2", "1m", ROUTE)
        )  # type: ignore[union-attr]


@pytest.mark.parametrize("flavor", ["envoy-gateway", "istio"])
def test_a_shadow_is_judged_where_its_copies_are_counted(flavor: str) -> None:
    """Envoy Gateway's and Istio's metrics were not seen to count mirrored requests:
    a shadow's volume comes from the model server, and gateway templates say why they
    cannot judge it; stable, serving as always, is still read at the gateway."""
    mm = model(metrics=[{"name": "ok", "template": "success-rate", "min": 95}])
    shadow = target_of(mm, "v2", "1m", ROUTE, shadow=True)
    assert "request_predict_seconds_count" in requests_query(flavor, shadow)
    with pytest.raises(QueryError, match="do not count a shadow's copies"):
        metric_query(mm.spec.rollout.analysis.metrics[0], flavor, shadow)  # type: ignore[union-attr]
    stable = target_of(mm, "v1", "1m", ROUTE)
    assert "request_predict_seconds" not in requests_query(flavor, stable)
    assert "request_predict" not in metric_query(
        mm.spec.rollout.analysis.metrics[0],
        flavor,
        stable,  # type: ignore[union-attr]
    )


def test_predict_latency_reads_the_model_server() -> None:
    mm = model(metrics=[{"name": "p99", "template": "predict-latency-p99", "max": 200}])
    query = metric_query(
        mm.spec.rollout.analysis.metrics[0],
        "generic",
        target_of(mm, "v2", "1m", ROUTE),  # type: ignore[union-attr]
    )
    assert "request_predict_seconds_bucket" in query and 'inferenceservice="iris-v2"' in query


def knative_model(*metrics: dict[str, Any]) -> ManagedModel:
    document = copy.deepcopy(BASE)
    del document["spec"]["traffic"]
    document["spec"]["serving"] = {"deploymentMode": "Knative"}
    document["spec"]["rollout"] = {"target": "v2", "analysis": {"metrics": list(metrics)}}
    return parse_managed_model(document)


REVISIONS = {
    "iris-predictor-00001": "v1",
    "iris-predictor-00002": "v2",
    "iris-predictor-00003": "v2",
}


@pytest.mark.parametrize("flavor", ["traefik", "envoy-gateway", "generic"])
def test_knative_templates_read_the_versions_revisions_at_queue_proxy(flavor: str) -> None:
    mm = knative_model(RATE, P99, {"name": "predict", "template": "predict-latency-p99", "max": 9})
    rate, p99, predict = mm.spec.rollout.analysis.metrics  # type: ignore[union-attr]
    target = target_of(mm, "v2", "30s", None, revisions=REVISIONS)
    revisions = 'revision_name=~"iris-predictor-00002|iris-predictor-00003"'
    for query in (metric_query(rate, flavor, target), requests_query(flavor, target)):
        assert "revision_request_count{" in query and revisions in query
        assert 'namespace_name="ml"' in query
    assert 'response_code_class="5xx"' in metric_query(rate, flavor, target)
    latency = metric_query(p99, flavor, target)
    assert "revision_request_latencies_bucket{" in latency and revisions in latency
    assert 'revision=~"iris-predictor-00002|iris-predictor-00003"' in metric_query(
        predict, flavor, target
    )
    stable = target_of(mm, "v1", "30s", None, revisions=REVISIONS)
    assert 'revision_name=~"iris-predictor-00001"' in metric_query(rate, flavor, stable)


def test_the_revision_placeholder_and_a_version_without_revisions() -> None:
    query = {"name": "q", "query": "x{r=~{{ revision }},v={{ version }}}", "min": 1}
    mm = knative_model(query)
    metric = mm.spec.rollout.analysis.metrics[0]  # type: ignore[union-attr]
    target = target_of(mm, "v2", "1m", None, revisions=REVISIONS)
    assert (
        metric_query(metric, "traefik", target)
        == 'x{r=~"iris-predictor-00002|iris-predictor-00003",v="v2"}'
    )
    unseen = target_of(mm, "v3", "1m", None, revisions=REVISIONS)
    with pytest.raises(QueryError, match="no revision runs v3 yet"):
        metric_query(metric, "traefik", unseen)
    with pytest.raises(QueryError, match="no revision runs v3 yet"):
        requests_query("traefik", unseen)
    standard = target_of(model(metrics=[RATE]), "v2", "1m", ROUTE)
    with pytest.raises(QueryError, match="only in Knative mode"):
        fill("x{r=~{{ revision }}}", standard)


def test_unknown_placeholder_and_missing_bound_are_refused() -> None:
    from modelpilot.api import InvalidManagedModel

    with pytest.raises(InvalidManagedModel) as err:
        model(metrics=[{"name": "x", "query": "up{a={{ pod }}}"}])
    text = str(err.value.problems)
    assert "unknown placeholder pod" in text and "at least one bound" in text


def analysis(*metrics: dict[str, Any], **rest: Any) -> Analysis:
    return Analysis(metrics=[AnalysisMetric.model_validate(m) for m in metrics], **rest)


RATE = {"name": "ok", "template": "success-rate", "min": 95}
P99 = {"name": "p99", "template": "latency-p99", "maxRatioToStable": 1.5}


def test_bounds_and_ratios() -> None:
    rules = analysis(RATE, P99)
    plenty = Measured(canary=400)
    good = judge(rules, plenty, {"ok": Measured(99.5), "p99": Measured(120, 100)})
    assert good.result == "Passed"
    bad = judge(rules, plenty, {"ok": Measured(68.0), "p99": Measured(120, 100)})
    assert (bad.result, bad.message) == ("Failed", "ok 68 < min 95")
    slow = judge(rules, plenty, {"ok": Measured(100), "p99": Measured(400, 100)})
    assert slow.result == "Failed" and "4x the stable's 100 > maxRatioToStable 1.5" in slow.message
    both_slow = judge(rules, plenty, {"ok": Measured(100), "p99": Measured(400, 390)})
    assert both_slow.result == "Passed"


def test_inconclusive_is_never_a_pass() -> None:
    rules = analysis(RATE, P99, minRequests=50)
    few = judge(rules, Measured(canary=3), {"ok": Measured(100), "p99": Measured(1, 1)})
    assert few.result == "Inconclusive" and "served 3 requests" in few.message
    nan = judge(rules, Measured(canary=400), {"ok": Measured(math.nan), "p99": Measured(1, 1)})
    assert nan.result == "Inconclusive" and "no value for the canary" in nan.message
    down = judge(rules, Measured(error="Prometheus at http://x unreachable"), {})
    assert down.result == "Inconclusive" and "unreachable" in down.message
    no_stable = judge(rules, Measured(canary=400), {"ok": Measured(100), "p99": Measured(5, None)})
    assert no_stable.result == "Inconclusive"
    # a failed bound beats an inconclusive one
    mixed = judge(rules, Measured(canary=400), {"ok": Measured(50), "p99": Measured(5, None)})
    assert mixed.result == "Failed"


class FakeNumbers:
    """A metrics source answering by substring of the query (the decision logic's twin;
    the real client is tested against a real Prometheus in the cluster tier)."""

    def __init__(self, answers: dict[str, float | None], error: str | None = None) -> None:
        self.answers, self.error, self.asked = answers, error, []  # type: ignore[var-annotated]

    async def number(self, query: str, at: float) -> float | None:
        self.asked.append(query)
        if self.error:
            raise PrometheusError(self.error)
        for parts, value in self.answers.items():
            if all(part in query for part in parts.split(" && ")):
                return value
        return None


def test_a_check_asks_for_the_stable_value_only_for_relative_bounds() -> None:
    mm = model(metrics=[RATE, P99], minRequests=10)
    numbers = FakeNumbers({
        "increase(traefik_service_requests_total && iris-v2": 300.0,
        "100 * (1 - && iris-v2": 97.0,
        "histogram_quantile && iris-v2": 120.0,
        "histogram_quantile && iris-v1": 100.0,
    })  # fmt: skip
    job = Job(mm, CheckRequest(canary="v2", stable="v1", weight=10), ROUTE)
    report = asyncio.run(run_check(job, "traefik", numbers, 1_700_000_000.0))
    assert report.result == "Passed" and report.requests == 300.0
    assert [m.name for m in report.metrics] == ["ok", "p99"]
    assert report.at == "2023-11-14T22:13:20Z"
    assert sum("iris-v1" in q for q in numbers.asked) == 1  # the ratio's stable side only


def test_a_check_without_prometheus_is_inconclusive_and_says_how_to_fix_it() -> None:
    mm = model(metrics=[RATE])
    job = Job(mm, CheckRequest(canary="v2", stable="v1", weight=10), ROUTE)
    report = asyncio.run(run_check(job, "traefik", None, 0.0))
    assert report.result == "Inconclusive" and "--prometheus-url" in report.message
    down = asyncio.run(run_check(job, "traefik", FakeNumbers({}, "refused"), 0.0))
    assert down.result == "Inconclusive" and "refused" in down.message


def test_webhook_hosts_outside_the_allow_list_are_refused() -> None:
    from modelpilot.probes.webhooks import DEFAULT_WEBHOOK_ALLOW, refusal

    assert refusal("http://approve.ops.svc/hook", DEFAULT_WEBHOOK_ALLOW) is None
    assert refusal("https://approve.ops.svc.cluster.local:8443/x", DEFAULT_WEBHOOK_ALLOW) is None
    why = refusal("http://169.254.169.254/latest/meta-data", DEFAULT_WEBHOOK_ALLOW)
    assert why == (
        "169.254.169.254 is not allowed by the operator's --webhook-allow "
        "(*.svc, *.svc.cluster.local)"
    )
    assert refusal("http://127.0.0.1:8080/x", ("127.0.0.1",)) is None


def test_rollout_webhooks_join_the_analysis_and_a_refusal_fails_the_check() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["rollout"] = {
        "target": "v2",
        "analysis": {"metrics": [RATE], "minRequests": 10},
        "webhooks": [
            {"name": "qa", "type": "rollout", "url": "http://qa.ops.svc/", "metadata": {"a": "b"}}
        ],
    }
    mm = parse_managed_model(document)
    sent: list[dict[str, Any]] = []

    async def refuse(hook: Any, payload: dict[str, Any]) -> tuple[bool, str]:
        sent.append(payload)
        return False, f"webhook {hook.name} answered 403"

    numbers = FakeNumbers({"increase && iris-v2": 300.0, "100 * (1 - && iris-v2": 100.0})
    job = Job(mm, CheckRequest(canary="v2", stable="v1", weight=10), ROUTE)
    report = asyncio.run(run_check(job, "traefik", numbers, 0.0, refuse))
    assert report.result == "Failed" and report.message == "webhook qa answered 403"
    assert [(m.name, m.result) for m in report.metrics] == [
        ("ok", "Passed"),
        ("webhook/qa", "Failed"),
    ]
    assert sent == [
        {
            "name": "iris", "namespace": "ml", "type": "rollout", "metadata": {"a": "b"},
            "phase": "Progressing", "stable": "v1", "canary": "v2", "weight": 10,
        }
    ]  # fmt: skip


def test_prometheus_credentials_come_from_the_mounted_secret(tmp_path: Any) -> None:
    from modelpilot.probes.prometheus import auth_headers

    assert auth_headers(None) == {}
    (tmp_path / "username").write_text("reader\n")
    (tmp_path / "password").write_text("s3cret\n")
    assert auth_headers(tmp_path) == {"Authorization": "Basic cmVhZGVyOnMzY3JldA=="}
    (tmp_path / "token").write_text("abc.def\n")
    assert auth_headers(tmp_path) == {"Authorization": "Bearer abc.def"}  # a token wins
    with pytest.raises(PrometheusError, match="neither a token nor username and password"):
        auth_headers(tmp_path / "missing")


def test_an_ab_test_measures_both_variants_side_by_side() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["rollout"] = {
        "target": "v2",
        "strategy": "ABTest",
        "match": [{"headers": [{"name": "x-beta", "value": "yes"}]}],
        "analysis": {"metrics": [RATE], "minRequests": 10},
    }
    mm = parse_managed_model(document)
    numbers = FakeNumbers({
        "increase && iris-v2": 120.0, "increase && iris-v1": 880.0,
        "100 * (1 - && iris-v2": 99.0, "100 * (1 - && iris-v1": 100.0,
    })  # fmt: skip
    job = Job(mm, CheckRequest(canary="v2", stable="v1", weight=0), ROUTE)
    report = asyncio.run(run_check(job, "traefik", numbers, 0.0))
    assert (report.result, report.requests, report.stable_requests) == ("Passed", 120.0, 880.0)
    assert [(m.canary, m.stable) for m in report.metrics] == [(99.0, 100.0)]
