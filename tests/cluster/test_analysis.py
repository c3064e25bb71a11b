"""Canary analysis against the real Prometheus and real traffic: Traefik routes real
requests to KServe's model server processes (the KServe stand-in runs them; pods are
kwok's), Prometheus scrapes both, and the operator judges each step on what it
scraped. The broken candidate is a real artifact that fails on a third of real inputs
(iris/v3 in the model store), not a switch in the gateway."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.kinds import HTTP_ROUTE
from modelpilot.handlers.manage import Settings
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot_dev.gateway import LocalGateway
from modelpilot_dev.load import Load
from modelpilot_dev.prometheus import LocalPrometheus
from modelpilot_dev.standins import StandIns
from modelpilot_dev.watch import Timeline, route_changes
from tests.cluster.helpers import condition, describe_model, eventually, wait_model
from tests.cluster.test_traffic import iris_on, serve_v1, status_of

pytestmark = pytest.mark.cluster

RATE = 40.0  # requests per second: 8 a second on a 20% canary


def analysed(
    gateway: LocalGateway, namespace: str, metrics: list[dict[str, Any]], **analysis: Any
) -> tuple[dict[str, Any], str]:
    document, host = iris_on(
        gateway, namespace, stepWeights=[20, 50], interval="6s", promotion="auto"
    )
    document["spec"]["versions"].append({"name": "v3", "storageUri": "pvc://model-store/iris/v3"})
    document["spec"]["rollout"]["analysis"] = {
        "metrics": metrics, "minRequests": 20, **analysis,
    }  # fmt: skip
    return document, host


def settings(prometheus: LocalPrometheus) -> Settings:
    return Settings(gateway_flavor="traefik", prometheus_url=prometheus.url)


def events(api_client: client.ApiClient, namespace: str, reason: str) -> list[str]:
    found = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [e.message for e in found if e.reason == reason]


def test_a_good_candidate_is_promoted_on_its_metrics(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
) -> None:
    document, host = analysed(
        gateway,
        namespace,
        [
            {"name": "success", "template": "success-rate", "min": 99},
            {"name": "p99", "template": "latency-p99", "max": 2000},
            {"name": "predict-p99", "template": "predict-latency-p99", "max": 1000},
        ],
    )
    with OperatorThread(kube, settings(prometheus), namespaces=[namespace]) as operator:
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=240) as load:
            document["spec"]["rollout"]["target"] = "v2"
            kube.apply(document, manager="test-user")
            wait_model(
                kube,
                namespace,
                lambda s: s.get("stableVersion") == "v2",
                "v2 promoted by its analysis",
                timeout=150,
            )
        checks = dict(operator.state.checks.checks_total)
    status = status_of(kube, namespace)
    assert status["history"][-1]["result"] == "Promoted"
    assert "analysis" not in status["history"][-1]  # not overridden: it passed
    analysis = status["analysis"]
    assert analysis["lastResult"] == "Passed" and analysis["weight"] == 50
    assert analysis["failedChecks"] == 0
    by_name = {m["name"]: m for m in analysis["metrics"]}
    assert by_name["success"]["canary"] == 100.0
    assert 0 < by_name["predict-p99"]["canary"] < 1000
    assert analysis["requests"] >= 20
    assert checks.get("Passed", 0) >= 2  # one per step at least
    total = load.tally()
    print(f"\nchecks {checks}; clients: {total.line()}; last check {analysis}")
    assert total.failed == 0 and total.errors == 0


def test_a_broken_candidate_is_rolled_back_after_threshold_failed_checks(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
    api_client: client.ApiClient,
) -> None:
    document, host = analysed(
        gateway,
        namespace,
        [{"name": "success", "template": "success-rate", "min": 95}],
        threshold=2,
    )
    routes = Timeline(api_client, namespace, HTTP_ROUTE).start()
    with OperatorThread(kube, settings(prometheus), namespaces=[namespace]):
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=240) as load:
            load.wait_answers(load.started, 40)
            broken = copy.deepcopy(document)
            broken["spec"]["rollout"]["target"] = "v3"
            kube.apply(broken, manager="test-user")
            wait_model(
                kube,
                namespace,
                lambda s: s.get("phase") == "Failed",
                "v3 rolled back by its analysis",
                timeout=120,
            )
            eventually(
                lambda: route_changes(routes, "iris")[-1][1] == {"v1": 100},
                what="the route back on v1",
            )
            rolled_back = route_changes(routes, "iris")[-1][0]
            after = load.wait_answers(rolled_back + 1.0, 200)
        total = load.tally()
    routes.stop()
    status = status_of(kube, namespace)
    assert status["weights"] == {"v1": 100}
    degraded = condition({"status": status}, "Degraded")
    assert degraded is not None and degraded["reason"] == "AnalysisFailed"
    assert status["analysis"]["failedChecks"] == 2
    assert status["history"][-1]["version"] == "v3"
    assert status["history"][-1]["result"] == "Failed"
    failed_events = eventually(
        lambda: events(api_client, namespace, "AnalysisFailed"), what="AnalysisFailed"
    )
    assert failed_events and "success " in failed_events[0] and "< min 95" in failed_events[0]
    # v3 never got past its first step: two failed checks there decided it.
    weights = [w.get("v3", 0) for _, w in route_changes(routes, "iris")]
    assert max(weights) == 20
    # Clients saw v3's failures (a third of its share), and none once the route was back.
    print(f"\nclients: {total.line()}; failed {total.failed}; after rollback {after.line()}")
    assert total.failed > 0
    assert after.failed == 0 and after.errors == 0


def test_no_traffic_or_no_prometheus_is_inconclusive_then_paused(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
) -> None:
    """Inconclusive is never a pass: first Prometheus cannot be reached (the error is
    in status), then it answers but the canary has no traffic; either way the weight
    holds and the rollout pauses for a human, never promotes."""
    document, host = analysed(
        gateway,
        namespace,
        [{"name": "success", "template": "success-rate", "min": 95}],
        interval="3s",
        inconclusiveLimit=2,
        prometheus={"address": "http://127.0.0.1:9"},  # discard: nothing listens
    )
    explain = lambda: describe_model(kube, namespace, "iris")  # noqa: E731
    with OperatorThread(kube, settings(prometheus), namespaces=[namespace]):
        serve_v1(kube, namespace, gateway, document, host)
        document["spec"]["rollout"]["target"] = "v2"
        kube.apply(document, manager="test-user")

        def analysis() -> dict[str, Any]:
            return status_of(kube, namespace).get("analysis") or {}

        unreachable = eventually(
            lambda: [m for m in analysis().get("metrics", []) if "unreachable" in m["message"]],
            timeout=60,
            what="a check that could not reach Prometheus",
            explain=explain,
        )
        assert unreachable[0]["result"] == "Inconclusive"
        assert "http://127.0.0.1:9" in unreachable[0]["message"]
        wait_model(
            kube,
            namespace,
            lambda s: s.get("phase") == "Paused",
            "paused after two inconclusive checks",
            timeout=60,
        )
        assert status_of(kube, namespace)["weights"] == {"v1": 80, "v2": 20}
        # Prometheus back (the local one), still no traffic: resume, then inconclusive
        # for want of requests, and paused again.
        del document["spec"]["rollout"]["analysis"]["prometheus"]
        document["metadata"]["annotations"] = {"modelpilot.io/resume": "v2"}
        kube.apply(document, manager="test-user")
        eventually(
            lambda: "fewer than minRequests 20" in str(analysis().get("metrics")),
            timeout=60,
            what="a check that found too few requests",
            explain=explain,
        )
        eventually(
            lambda: (
                status_of(kube, namespace).get("phase") == "Paused"
                and analysis().get("inconclusiveChecks") == 2
            ),
            timeout=60,
            what="paused again",
            explain=explain,
        )
        status = status_of(kube, namespace)
    progressing = condition({"status": status}, "Progressing")
    assert progressing is not None and progressing["reason"] == "AnalysisInconclusive"
    assert status["stableVersion"] == "v1" and status["weights"] == {"v1": 80, "v2": 20}
    assert all(h["version"] != "v2" for h in status.get("history", []))


class Approver:
    """A user's approval service: answers 403 until approved, and keeps what it got."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        self.approved = False
        self.calls: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.calls.append(json.loads(self.rfile.read(length)))
                self.send_response(200 if outer.approved else 403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/approve"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_confirm_promotion_webhook_holds_then_promotes_and_a_dead_event_hook_changes_nothing(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
) -> None:
    approver = Approver()
    document, host = iris_on(gateway, namespace, stepWeights=[50], interval="2s", promotion="auto")
    document["spec"]["rollout"]["webhooks"] = [
        {"name": "approve", "type": "confirm-promotion", "url": approver.url,
         "metadata": {"ticket": "CHG-1"}},
        {"name": "audit", "type": "event", "url": "http://127.0.0.1:9/events", "timeout": "1s"},
    ]  # fmt: skip
    explain = lambda: describe_model(kube, namespace, "iris")  # noqa: E731
    allow = Settings(gateway_flavor="traefik", webhook_allow=("127.0.0.1",))
    try:
        with OperatorThread(kube, allow, namespaces=[namespace]) as operator:
            serve_v1(kube, namespace, gateway, document, host)
            document["spec"]["rollout"]["target"] = "v2"
            kube.apply(document, manager="test-user")
            eventually(
                lambda: (
                    "answered 403"
                    in str((status_of(kube, namespace).get("analysis") or {}).get("confirmation"))
                ),
                timeout=60,
                what="the approval refused",
                explain=explain,
            )
            eventually(lambda: len(approver.calls) >= 2, what="asked again")
            status = status_of(kube, namespace)
            assert status["phase"] == "WaitingPromotion" and status["weights"] == {
                "v1": 50,
                "v2": 50,
            }
            approver.approved = True
            wait_model(
                kube,
                namespace,
                lambda s: s.get("stableVersion") == "v2",
                "promoted once approved",
                timeout=60,
            )
            eventually(
                lambda: operator.state.checks.notifications.get("failed", 0) > 0,
                timeout=30,
                what="the dead event hook given up on",
            )
    finally:
        approver.close()
    assert approver.calls[0] == {
        "name": "iris", "namespace": namespace, "type": "confirm-promotion",
        "metadata": {"ticket": "CHG-1"}, "phase": "WaitingPromotion", "stable": "v1",
        "canary": "v2", "weight": 50,
    }  # fmt: skip
    status = status_of(kube, namespace)
    assert status["history"][-1]["result"] == "Promoted"
    assert status["weights"] == {"v2": 100}


def test_a_slow_candidate_fails_latency_but_a_slowdown_of_both_versions_does_not(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
) -> None:
    """iris/v4 is a 1,000-tree forest: real, correct, and ~25x slower than v1. Against
    v1 an absolute p99 bound fails it; against a stable version that is just as slow
    (the same artifact under another name), a bound relative to stable passes it."""
    document, host = analysed(
        gateway,
        namespace,
        [
            {"name": "p99", "template": "latency-p99", "max": 20},
            {"name": "p99-vs-stable", "template": "latency-p99", "maxRatioToStable": 2},
        ],
        threshold=1,
    )
    document["spec"]["versions"] = [
        {"name": "v1", "storageUri": "pvc://model-store/iris/v1"},
        {"name": "slow", "storageUri": "pvc://model-store/iris/v4"},
        {"name": "slow-too", "storageUri": "pvc://model-store/iris/v4"},
    ]
    with OperatorThread(kube, settings(prometheus), namespaces=[namespace]):
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=300) as load:
            document["spec"]["rollout"]["target"] = "slow"
            kube.apply(document, manager="test-user")
            wait_model(
                kube,
                namespace,
                lambda s: s.get("phase") == "Failed",
                "the slow version rolled back",
                timeout=120,
            )
            failed = status_of(kube, namespace)["analysis"]["metrics"]
            # Now both versions are slow: the slow one is made stable by hand (retried
            # without analysis), then slow-too is judged against it, relative only.
            del document["spec"]["rollout"]["analysis"]
            document["spec"]["rollout"]["stepWeights"] = [50]
            document["metadata"]["annotations"] = {"modelpilot.io/retry": "slow"}
            kube.apply(document, manager="test-user")
            del document["metadata"]["annotations"]
            wait_model(
                kube,
                namespace,
                lambda s: s.get("stableVersion") == "slow",
                "slow made stable without analysis",
                timeout=120,
            )
            # The 1,000-tree forest is CPU-bound (about 100 ms an answer on a slow 2-core
            # machine, 25 ms on a faster one, slower still while the machine is busy):
            # clients get fewer answers a second than they ask for. One step at half the
            # traffic gives the canary 20 in the window even then (at 20%, a busy run
            # once saw 16).
            document["spec"]["rollout"]["analysis"] = {
                "metrics": [
                    {"name": "p99-vs-stable", "template": "latency-p99", "maxRatioToStable": 2}
                ],
                "minRequests": 20,
                "interval": "15s",
            }
            document["spec"]["rollout"]["stepWeights"] = [50]
            document["spec"]["rollout"]["target"] = "slow-too"
            kube.apply(document, manager="test-user")
            wait_model(
                kube,
                namespace,
                lambda s: s.get("stableVersion") == "slow-too",
                "slow-too promoted: as slow as stable",
                timeout=150,
            )
        total = load.tally()
    by_name = {m["name"]: m for m in failed}
    print(f"\nslow vs v1: {failed}\nslow-too vs slow: {status_of(kube, namespace)['analysis']}")
    assert by_name["p99"]["result"] == "Failed" and by_name["p99"]["canary"] > 20
    assert by_name["p99-vs-stable"]["result"] == "Failed"  # 25x v1's p99
    passed = status_of(kube, namespace)["analysis"]["metrics"][0]
    assert passed["result"] == "Passed" and passed["canary"] > 20 and passed["stable"] > 20
    assert total.failed == 0 and total.errors == 0
