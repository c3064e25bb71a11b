"""Shadow traffic with real requests: Traefik mirrors through the TraefikService the
operator writes (its kubernetescrd provider, with its CRDs from its Go module), the
candidate's KServe model server (run by the KServe stand-in; pods are kwok's) answers
the copies, and Traefik discards those answers. Envoy Gateway's and Istio's
RequestMirror route is checked against Gateway API's real schema (no such gateway runs
here)."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from kubernetes import client

from modelpilot.api import parse_managed_model
from modelpilot.api.kinds import HTTP_ROUTE, TRAEFIK_SERVICE
from modelpilot.handlers.manage import Settings
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot.k8s.observe import route_mirror, route_weights
from modelpilot.render import RenderState, VersionState, render_route
from modelpilot_dev.gateway import TRAEFIK_SETTINGS, LocalGateway
from modelpilot_dev.load import Load
from modelpilot_dev.prometheus import LocalPrometheus
from modelpilot_dev.standins import StandIns
from modelpilot_dev.watch import Timeline
from tests.cluster.helpers import annotate, eventually, wait_model
from tests.cluster.test_strategies import SETTLE, seen_at
from tests.cluster.test_traffic import iris_on, serve_v1

pytestmark = pytest.mark.cluster

PREDICTIONS = re.compile(r"^request_predict_seconds_count(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def predictions(standins: StandIns, namespace: str, isvc: str) -> int:
    """What the version's model server says it predicted (KServe's own counter)."""
    server = standins.kserve.store_servers.running()[(namespace, isvc)]
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(v) for v in PREDICTIONS.findall(text)))


def explain_failures(load: Load, routes: Timeline, gateway: LocalGateway) -> str:
    """Each failed request with the route writes around it, then the gateway's errors."""
    writes = [
        (at, "mirror" if route_mirror(r) else "plain", r["metadata"]["resourceVersion"])
        for at, r in routes.snapshot()
    ]
    lines = []
    for answer in load.answers:
        if not 200 <= answer.status < 300:
            before = [w for w in writes if w[0] <= answer.at]
            last = before[-1] if before else None
            since = f"{answer.at - last[0]:.2f}s after the {last[1]} route" if last else "first"
            lines.append(f"{answer.status} {since}: {answer.detail!r}")
    return "\n".join([*lines, gateway.log_tail(20)])


def test_a_shadow_gets_its_share_of_copies_and_clients_see_only_stable(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    api_client: client.ApiClient,
) -> None:
    percent = 40
    document, host = iris_on(
        gateway, namespace, strategy="Shadow", mirrorPercent=percent, iterations=1,
        interval="5s", promotion="manual",
    )  # fmt: skip
    routes = Timeline(api_client, namespace, HTTP_ROUTE).start()
    with OperatorThread(kube, TRAEFIK_SETTINGS, namespaces=[namespace]) as operator:
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=80, seconds=240) as load:
            document["spec"]["rollout"]["target"] = "v2"
            kube.apply(document, manager="test-user")
            status = wait_model(
                kube, namespace, lambda s: s.get("phase") == "WaitingPromotion",
                "the shadow through its iteration",
            )  # fmt: skip
            assert (status["mirroredVersion"], status["mirrorPercent"]) == ("v2", percent)
            assert status["weights"] == {"v1": 100}
            assert [e["name"] for e in status["mirrorObjects"]] == ["iris-v1-mirror"]
            mirrored = seen_at(routes, lambda r: route_mirror(r) == "iris-v1-mirror")
            load.wait_answers(mirrored + SETTLE, 50)
            since, before = time.monotonic(), predictions(standins, namespace, "iris-v2")
            during = load.wait_answers(since, 800)
            until = time.monotonic()
            copies = predictions(standins, namespace, "iris-v2") - before
            sent = load.tally(since, until).requests
            annotate(kube, document, "modelpilot.io/abort", "v2")
            status = wait_model(
                kube, namespace, lambda s: s.get("phase") == "Aborted" and not s.get(
                    "mirrorObjects"), "the shadow aborted and its TraefikService gone",
            )  # fmt: skip
            assert "mirroredVersion" not in status
        total = load.tally()
    routes.stop()
    share = 100.0 * copies / sent
    print(
        f"\nclients: {total.line()}; during the shadow {during.line()}; the candidate got "
        f"{copies} copies of {sent} requests ({share:.1f}%, mirrorPercent {percent})"
    )
    # Clients only ever got stable's answers, and none failed.
    assert set(total.by_version) == {"v1"}
    assert total.failed == 0 and total.errors == 0, explain_failures(load, routes, gateway)
    assert abs(share - percent) <= 5, share
    assert kube.get(TRAEFIK_SERVICE, "iris-v1-mirror", namespace) is None
    assert operator.error is None


def test_a_failing_shadow_costs_clients_nothing_and_is_rolled_back_on_its_errors(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
    api_client: client.ApiClient,
) -> None:
    """iris/v3 fails a third of real inputs with 500. Traefik counts a mirror's answers
    under the mirrored Service (seen here), so success-rate judges the shadow."""
    document, host = iris_on(
        gateway, namespace, strategy="Shadow", iterations=3, interval="6s", then="Canary",
        stepWeights=[20], promotion="auto",
    )  # fmt: skip
    document["spec"]["versions"].append({"name": "v3", "storageUri": "pvc://model-store/iris/v3"})
    document["spec"]["rollout"]["analysis"] = {
        "metrics": [{"name": "success", "template": "success-rate", "min": 99}],
        "minRequests": 20,
    }
    settings = Settings(gateway_flavor="traefik", prometheus_url=prometheus.url)
    routes = Timeline(api_client, namespace, HTTP_ROUTE).start()
    with OperatorThread(kube, settings, namespaces=[namespace]) as operator:
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=40, seconds=240) as load:
            document["spec"]["rollout"]["target"] = "v3"
            kube.apply(document, manager="test-user")
            status = wait_model(
                kube, namespace, lambda s: s.get("phase") == "Failed", "v3 rolled back",
                timeout=150,
            )  # fmt: skip
            eventually(
                lambda: kube.get(TRAEFIK_SERVICE, "iris-v1-mirror", namespace) is None,
                what="the TraefikService deleted",
            )
        total = load.tally()
    routes.stop()
    analysis = status["analysis"]
    print(f"\nclients: {total.line()}; analysis: {analysis}")
    assert status["stableVersion"] == "v1"
    assert analysis["failedChecks"] >= 2 and "success" in str(analysis["metrics"])
    # Never a weight for v3: it failed in the shadow, before any canary step.
    assert all(route_weights(r, "iris").get("v3", 0) == 0 for _, r in routes.snapshot())
    assert any(route_mirror(r) for _, r in routes.snapshot())  # it was mirrored to
    assert set(total.by_version) == {"v1"} and total.failed == 0 and total.errors == 0
    assert predictions(standins, namespace, "iris-v3") > 0  # it did see the copies
    assert operator.error is None


@pytest.mark.parametrize("percent", [30, 100])
def test_the_request_mirror_route_fits_the_gateway_api_schema(
    kube: Kube, namespace: str, percent: int
) -> None:
    """Envoy Gateway's and Istio's shadow: the apiserver, with Gateway API's CRDs,
    accepts the route with its RequestMirror filter (a server-side dry run)."""
    model = parse_managed_model(
        {
            "apiVersion": "modelpilot.io/v1alpha1",
            "kind": "ManagedModel",
            "metadata": {"name": "iris", "namespace": namespace},
            "spec": {
                "modelFormat": {"name": "sklearn"},
                "versions": [
                    {"name": "v1", "storageUri": "gs://b/iris/v1"},
                    {"name": "v2", "storageUri": "gs://b/iris/v2"},
                ],
                "traffic": {"gatewayRef": {"name": "gw"}},
                "rollout": {"target": "v2", "strategy": "Shadow", "mirrorPercent": percent},
            },
        }
    )
    state = RenderState(
        versions={"v1": VersionState(weight=100, pinned=True), "v2": VersionState(pinned=True)},
        mirrored="v2",
        gateway_flavor="envoy-gateway",
    )
    route = render_route(model, state)
    accepted = kube.apply(route, dry_run=True, manager="test-user")
    mirror = accepted["spec"]["rules"][-1]["filters"][0]
    assert mirror["type"] == "RequestMirror"
    assert mirror["requestMirror"]["backendRef"]["name"] == "iris-v2-predictor"
    assert mirror["requestMirror"].get("percent") == (percent if percent < 100 else None)
