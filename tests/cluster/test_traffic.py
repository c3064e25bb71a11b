"""What clients see during a rollout, proven with real requests: Traefik (a real Gateway
API data plane) routes by the HTTPRoute the operator writes, to KServe's model server
processes serving iris v1 and v2 from the model store. KServe itself is the stand-in
(Deployments and pods are kwok's; the predictor Service points at the real server).

One rollout under continuous load checks the split at each step and that no request
fails from the first step to the old version's stop. Windows start when the gateway
applied a split (its API, sampled: AppliedWeights), not at a guess after the route write:
under load Traefik has taken more than a second to apply one.
"""

from __future__ import annotations

import copy
import itertools
import os
import signal
import time
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.kinds import HTTP_ROUTE, MANAGED_MODEL
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot.k8s.observe import route_weights
from modelpilot_dev.gateway import TRAEFIK_SETTINGS, Applied, AppliedWeights, LocalGateway
from modelpilot_dev.load import Load, Tally
from modelpilot_dev.prometheus import LocalPrometheus
from modelpilot_dev.standins import StandIns
from modelpilot_dev.watch import Timeline, route_changes
from tests.cluster.helpers import annotate, describe_model, eventually, sample

pytestmark = pytest.mark.cluster

RATE = 250.0  # requests per second: a few seconds per 1,000-request measurement
PER_STEP = 1000  # requests per measurement
TOLERANCE = 5.0  # percentage points
MOMENT = 1.0  # seconds of traffic on each state before the next action
# From a request's send to the gateway reading it, at most (busy cores): one sent this
# close to a split's last sighting may meet the next one.
LAG = 0.1


def failures(load: Load, changes: list[tuple[float, dict[str, int]]]) -> list[str]:
    """Failed requests, grouped by the route change they followed (what to look at
    first): status, the change's index and weights, and when after it they were sent."""
    groups: dict[tuple[int, int], list[float]] = {}
    details: dict[tuple[int, int], str] = {}
    for answer in load.answers:
        if not 200 <= answer.status < 300:
            index = max((i for i, (t, _) in enumerate(changes) if t <= answer.at), default=-1)
            since = answer.at - (changes[index][0] if index >= 0 else load.started)
            groups.setdefault((answer.status, index), []).append(since)
            details.setdefault((answer.status, index), answer.detail)
    offset = time.time() - time.monotonic()  # to compare with the gateway's log
    return [
        f"{len(times)} x {status} after route change {index} "
        f"({changes[index][1] if index >= 0 else 'none'}), {min(times):.2f}-{max(times):.2f}s "
        f"on (at {time.strftime('%H:%M:%S', time.gmtime(changes[index][0] + min(times) + offset))}"
        f"): {details[(status, index)]!r}"
        for (status, index), times in sorted(groups.items())
    ]


# Series of a server that stopped go stale: take each counter's last value.
PREDICTIONS = (
    "sum by (version) (max_over_time("
    'request_predict_seconds_count{{namespace="{namespace}"}}[10m]))'
)
# Traefik names a Gateway API backend <namespace>-<service>-<port name>-<port>@kubernetesgateway.
GATEWAY_REQUESTS = (
    "sum by (service) (max_over_time(traefik_service_requests_total"
    '{{service=~"{namespace}-iris-.*-predictor-http-80@kubernetesgateway",code="200"}}[10m]))'
)


def version_of(backend: str) -> str:
    """The iris version a gateway backend name stands for (<namespace>-iris-<version>-...)."""
    return backend.split("-iris-")[1].split("-")[0]


def per_version(prometheus: LocalPrometheus, promql: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for series in prometheus.query(promql):
        labels = series["metric"]
        version = labels.get("version") or version_of(labels["service"])
        found[version] = found.get(version, 0) + int(float(series["value"][1]))
    return found


def propagation(load: Load, changes: list[tuple[float, dict[str, int]]]) -> list[str]:
    """For each route change that adds or removes a version: seconds from the write being
    seen to the first answer by an added version, or the last by a removed one. Printed,
    not asserted (wall clock); the bench is the place for its percentiles."""
    found = []
    for (_, before), (at, after) in itertools.pairwise(changes):
        for version in sorted(set(after) - set(before)):
            first = min(
                (a.at for a in load.answers if a.version == version and a.at >= at), default=None
            )
            if first is not None:
                found.append(f"+{version}: {first - at:.2f}s")
        for version in sorted(set(before) - set(after)):
            last = max(
                (a.at for a in load.answers if a.version == version and a.at >= at), default=at
            )
            found.append(f"-{version}: {last - at:.2f}s")
    return found


def applied_spans(applied: AppliedWeights) -> list[Applied]:
    """The splits the gateway applied for iris, by version."""
    return [
        replace(span, weights={version_of(backend): w for backend, w in span.weights.items()})
        for span in applied.spans()
    ]


def applied_span(applied: AppliedWeights, weights: dict[str, int], after: float) -> Applied:
    """The first split by `weights` the gateway applied after `after` (a moment before
    the route carrying them was written), once it has."""
    return eventually(
        lambda: next(
            (s for s in applied_spans(applied) if s.since > after and s.weights == weights), None
        ),
        timeout=60,
        interval=0.05,
        what=f"the gateway applying {weights}",
        explain=lambda: applied_spans(applied)[-3:],
    )


def routed_by(load: Load, span: Applied) -> Tally:
    """Requests sent while the gateway certainly routed by a split."""
    return load.tally(span.since, span.until - LAG)


def first_rv(timeline: Timeline, check: Any) -> int:
    """The resourceVersion of the first write seen that passes check."""
    return min(int(o["metadata"]["resourceVersion"]) for _, o in timeline.snapshot() if check(o))


def status_of(kube: Kube, namespace: str) -> dict[str, Any]:
    return ((kube.get(MANAGED_MODEL, "iris", namespace) or {}).get("status")) or {}


def iris_on(gateway: LocalGateway, namespace: str, **rollout: Any) -> tuple[dict[str, Any], str]:
    """The store's iris behind the real gateway, on a hostname of its own: an earlier
    test's model, still being deleted, must not share this one's traffic (two routes for
    one host on one gateway split it)."""
    document = sample("iris-store", namespace)
    host = f"iris.{namespace}.example.com"
    document["spec"]["traffic"] = {
        "gatewayRef": {"name": gateway.name, "namespace": gateway.namespace},
        "hostnames": [host],
    }
    document["spec"]["rollout"].update(rollout)
    return document, host


def serve_v1(
    kube: Kube, namespace: str, gateway: LocalGateway, document: dict[str, Any], host: str
) -> None:
    """Apply the model; return once v1 is stable and the gateway serves it (the route is
    written after the status that decided it)."""
    kube.apply(document, manager="test-user")
    eventually(
        lambda: status_of(kube, namespace).get("phase") == "Stable",
        timeout=120,
        what="iris stable on v1",
        explain=lambda: describe_model(kube, namespace, "iris"),
    )
    eventually(
        lambda: gateway.request("/v2/models/iris/ready", host=host)[0] == 200,
        what="the gateway serving iris",
    )


def test_a_canary_splits_real_traffic_by_its_weights_and_fails_no_request(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
    api_client: client.ApiClient,
) -> None:
    document, host = iris_on(
        gateway, namespace, stepWeights=[25, 50], interval="10s", scaleDownDelay="4s"
    )
    explain = lambda: describe_model(kube, namespace, "iris")  # noqa: E731
    routes = Timeline(api_client, namespace, HTTP_ROUTE).start()
    models = Timeline(api_client, namespace, MANAGED_MODEL).start()
    applied = AppliedWeights(gateway, host).start()

    def wait_last_applied(count: int) -> None:
        """Until `count` requests went by the last route written, once applied (and a
        few more: routed_by leaves out the last LAG seconds)."""
        (before, _), (_, weights) = route_changes(routes, "iris")[-2:]
        load.wait_answers(applied_span(applied, weights, before).since, count + int(2 * RATE * LAG))

    with OperatorThread(kube, TRAEFIK_SETTINGS, namespaces=[namespace]):
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=300) as load:
            load.wait_answers(load.started, 200)
            changed = copy.deepcopy(document)
            changed["spec"]["rollout"]["target"] = "v2"
            kube.apply(changed, manager="test-user")
            eventually(
                lambda: status_of(kube, namespace).get("phase") == "WaitingPromotion",
                timeout=120,
                what="the last step",
                explain=explain,
            )
            wait_last_applied(PER_STEP)
            annotate(kube, changed, "modelpilot.io/promote", "v2")
            eventually(
                lambda: any(
                    v["name"] == "v1" and v.get("stopped")
                    for v in status_of(kube, namespace).get("versions") or []
                ),
                timeout=60,
                what="v1 stopped after its scale-down window",
                explain=explain,
            )
            eventually(
                lambda: not standins.kserve.store_servers.running().get((namespace, "iris-v1")),
                what="v1's server stopped",
            )
            stopped = time.monotonic()
            load.wait_answers(stopped, 500)  # traffic after the old version is gone
            # and a full measurement on the last weights (a busy machine sends slower)
            wait_last_applied(PER_STEP)
        total = load.tally()
    routes.stop()
    models.stop()
    applied.stop()

    changes = route_changes(routes, "iris")
    assert [w for _, w in changes] == [
        {"v1": 100},
        {"v1": 75, "v2": 25},
        {"v1": 50, "v2": 50},
        {"v2": 100},
    ]
    # Each step's mix, measured on requests sent while the gateway routed by it.
    spans = [
        applied_span(applied, w, before) for (before, _), (_, w) in itertools.pairwise(changes)
    ]
    report = []
    for span in spans:
        window, weights = routed_by(load, span), span.weights
        report.append(f"{weights}: {window.line()} over {window.requests} requests")
        assert window.requests >= PER_STEP, report[-1]
        for version, weight in weights.items():
            assert abs(window.share(version) - weight) <= TOLERANCE, report[-1]
    report.append(
        "route write seen -> gateway applied: "
        + ", ".join(
            f"{s.since - seen:.2f}s" for s, (seen, _) in zip(spans, changes[1:], strict=True)
        )
    )
    report.append(f"route write seen -> traffic: {', '.join(propagation(load, changes))}")
    print(
        "\n"
        + "\n".join(report)
        + f"\ntotal: {total.line()}, p50 {total.p50_ms} ms, p99 {total.p99_ms} ms"
    )

    # Not one request failed: steps, promotion, the scale-down window and v1's stop.
    assert total.failed == 0 and total.errors == 0, failures(load, changes)
    # v2 got weight only once the operator counted it ready: the status that says so was
    # stored before the route that carries v2 (resourceVersions: one etcd orders both),
    # and the gateway sends it nothing but by that route.
    ready = first_rv(
        models,
        lambda m: any(
            v["name"] == "v2" and v.get("ready")
            for v in (m.get("status") or {}).get("versions") or []
        ),
    )
    assert ready < first_rv(routes, lambda r: route_weights(r, "iris").get("v2", 0) > 0)
    # Once the gateway applied the route without v1, v1 answered nothing.
    assert load.tally(spans[-1].since).by_version.get("v1", 0) == 0

    # Prometheus saw the same traffic: each model server counted exactly the predictions
    # its clients got, and the gateway at least those (plus a few readiness probes). Its
    # scrapes of the two come at different moments: wait until both caught up.
    def scraped() -> tuple[dict[str, int], dict[str, int]]:
        return (
            per_version(prometheus, PREDICTIONS.format(namespace=namespace)),
            per_version(prometheus, GATEWAY_REQUESTS.format(namespace=namespace)),
        )

    served, routed = eventually(
        lambda: (
            counts
            if (counts := scraped())[0] == total.by_version
            and all(counts[1].get(v, 0) >= n for v, n in total.by_version.items())
            else None
        ),
        timeout=30,
        what="the clients' requests counted in Prometheus",
        explain=lambda: (scraped(), total.by_version),
    )
    print(f"Prometheus: model servers {served}, gateway {routed}")
    for version, count in served.items():
        assert routed[version] - count <= 100, (routed, served)


def test_abort_and_rollback_fail_no_request(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    api_client: client.ApiClient,
) -> None:
    document, host = iris_on(
        gateway, namespace, stepWeights=[50], interval="2s", scaleDownDelay="10m", promotion="auto"
    )
    explain = lambda: describe_model(kube, namespace, "iris")  # noqa: E731

    def annotate(key: str, value: str) -> None:
        kube.apply(
            {**document, "metadata": {**document["metadata"], "annotations": {key: value}}},
            manager="test-user",
        )

    def wait(what: str, check: Any) -> None:
        eventually(
            lambda: check(status_of(kube, namespace)), timeout=120, what=what, explain=explain
        )

    routes = Timeline(api_client, namespace, HTTP_ROUTE).start()
    with OperatorThread(kube, TRAEFIK_SETTINGS, namespaces=[namespace]):
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=300) as load:
            document["spec"]["rollout"]["target"] = "v2"
            document["spec"]["rollout"]["interval"] = "10m"  # hold the canary at 50%
            kube.apply(document, manager="test-user")
            wait("the canary at 50%", lambda s: s.get("weights") == {"v1": 50, "v2": 50})
            load.wait_answers(time.monotonic() + MOMENT, 300)
            annotate("modelpilot.io/abort", "v2")
            wait("aborted", lambda s: s.get("phase") == "Aborted")
            load.wait_answers(time.monotonic() + MOMENT, 300)
            # Promote for real, then roll back inside the scale-down window.
            document["spec"]["rollout"]["interval"] = "2s"
            kube.apply(document, manager="test-user")
            annotate("modelpilot.io/retry", "v2")
            wait("v2 promoted", lambda s: s.get("stableVersion") == "v2")
            load.wait_answers(time.monotonic() + MOMENT, 300)
            annotate("modelpilot.io/rollback", "v1")
            wait("rolled back", lambda s: s.get("stableVersion") == "v1")
            eventually(
                lambda: route_changes(routes, "iris")[-1][1] == {"v1": 100}, what="route on v1"
            )
            load.wait_answers(time.monotonic() + MOMENT, 500)
        total = load.tally()
    routes.stop()
    weights = [w for _, w in route_changes(routes, "iris")]
    assert weights == [
        {"v1": 100},
        {"v1": 50, "v2": 50},
        {"v1": 100},
        {"v1": 50, "v2": 50},
        {"v2": 100},
        {"v1": 100},
    ], weights
    print(f"\nabort, retry, promote, rollback: {total.line()} over {total.requests} requests")
    assert total.by_version.get("v1") and total.by_version.get("v2")
    assert total.failed == 0 and total.errors == 0, failures(load, route_changes(routes, "iris"))


def test_a_canary_whose_server_dies_loses_its_traffic(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    gateway: LocalGateway,
    api_client: client.ApiClient,
) -> None:
    """v2's model server is killed at 50%: requests to it fail until the gateway applied
    the route without it, then none fails and none reaches v2; once its server is back
    (the stand-in restarts it, as a kubelet would a container), the canary gets its
    weight back."""
    document, host = iris_on(gateway, namespace, stepWeights=[50], interval="10m")
    routes = Timeline(api_client, namespace, HTTP_ROUTE).start()
    applied = AppliedWeights(gateway, host).start()
    with OperatorThread(kube, TRAEFIK_SETTINGS, namespaces=[namespace]):
        serve_v1(kube, namespace, gateway, document, host)
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=300) as load:
            document["spec"]["rollout"]["target"] = "v2"
            kube.apply(document, manager="test-user")
            eventually(
                lambda: route_changes(routes, "iris")[-1][1] == {"v1": 50, "v2": 50},
                timeout=120,
                what="the canary at 50%",
            )
            load.wait_answers(time.monotonic() + MOMENT, 300)
            server = standins.kserve.store_servers.running()[(namespace, "iris-v2")]
            assert server.pid is not None
            # Requests in flight when it dies fail too: count from just before.
            killed = time.monotonic() - 0.1
            os.kill(server.pid, signal.SIGKILL)
            eventually(
                lambda: route_changes(routes, "iris")[-1][1] == {"v1": 100},
                timeout=60,
                what="the route without v2",
                explain=lambda: describe_model(kube, namespace, "iris"),
            )
            dropped = route_changes(routes, "iris")[-1][0]
            applied_span(applied, {"v1": 100}, killed)
            eventually(
                lambda: route_changes(routes, "iris")[-1][1] == {"v1": 50, "v2": 50},
                timeout=120,
                what="v2 back at 50% once its server is back",
                explain=lambda: describe_model(kube, namespace, "iris"),
            )
            back = applied_span(applied, {"v1": 50, "v2": 50}, dropped).since
            load.wait_answers(back, 500)
        total = load.stop()
    routes.stop()
    applied.stop()
    gone = applied_span(applied, {"v1": 100}, killed)
    during = load.tally(killed, gone.since)
    without = routed_by(load, gone)  # until v2 was back
    after = load.tally(gone.since)
    print(
        f"\nv2 killed: {during.failed + during.errors} failed until the gateway applied the "
        f"route without it ({dropped - killed:.2f}s to the write, {gone.since - dropped:.2f}s more "
        f"to apply); then {without.line()}; total {total.line()}"
    )
    assert without.requests >= 100, without  # the restart took long enough to look
    assert without.by_version.get("v2", 0) == 0 and without.failed + without.errors == 0
    assert load.tally(until=killed).failed == 0
    assert after.failed == 0 and after.errors == 0, failures(load, route_changes(routes, "iris"))
    assert load.tally(back).by_version.get("v2", 0) > 0
