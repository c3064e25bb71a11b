"""Knative mode with real requests: the operator drives iris (from the model store) in
Knative mode, and requests go through the Knative stand-in's ingress and activator
(modelpilot_dev.knative_ingress) to KServe's model server processes, one per revision
while it has replicas. KServe and Knative themselves are the stand-in (see
modelpilot_dev.knative); revisions' pods are kwok's, the answers are the real servers'.

A request for a revision scaled to zero is held by the activator until its server is
back, and answered; a canary under continuous load splits by KServe's percent and fails
no request, from v1 alone through the 50% step to v2 alone.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from modelpilot.api.kinds import DEPLOYMENT, INFERENCE_SERVICE, MANAGED_MODEL
from modelpilot.handlers.manage import Settings
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot_dev.load import IRIS_ROWS, Load
from modelpilot_dev.prometheus import LocalPrometheus
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import (
    annotate,
    condition,
    describe_model,
    eventually,
    knative_traffic,
    sample,
    settled,
)
from tests.cluster.helpers import apply_as_user as apply

pytestmark = pytest.mark.cluster

RATE = 50.0  # requests per second through the ingress
PER_STEP = 300  # answers measured at the 50% step
TOLERANCE = 10.0  # percentage points: 300 coin flips are within 10 of 50 nearly always
AFTER_PROMOTION = 200  # answers after v2 took all traffic, every one from v2
SETTLE = 0.5  # seconds after a traffic change is seen before its mix is measured


def iris(namespace: str, **spec: Any) -> dict[str, Any]:
    """The Knative sample, its versions from the model store (iris v1 and v2)."""
    document = sample("iris-knative", namespace)
    for version in document["spec"]["versions"]:
        version["storageUri"] = f"pvc://model-store/iris/{version['name']}"
    document["spec"].update(spec)
    return document


def host(kube: Kube, namespace: str) -> str:
    """The InferenceService's URL host, as KServe reports it: what clients send."""
    isvc = kube.get(INFERENCE_SERVICE, "iris", namespace) or {}
    url = str((isvc.get("status") or {}).get("url") or "")
    assert url.startswith("http://"), isvc.get("status")
    return url.removeprefix("http://")


def infer(url: str, host: str) -> tuple[int, dict[str, Any]]:
    """One v2 inference request, as the load generator sends it."""
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                        "data": IRIS_ROWS[0]}]}  # fmt: skip
    request = urllib.request.Request(
        f"{url}/v2/models/iris/infer",
        data=json.dumps(body).encode(),
        headers={"Host": host, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {"error": err.read().decode(errors="replace")}


def replicas(kube: Kube, namespace: str, revision: str) -> int:
    found = kube.get(DEPLOYMENT, f"{revision}-deployment", namespace) or {}
    return int((found.get("spec") or {}).get("replicas") or 0)


def test_a_request_for_a_revision_at_zero_is_held_and_served(
    kube: Kube, namespace: str, operator: OperatorThread, standins: StandIns
) -> None:
    knative = standins.knative
    assert knative.ingress_url is not None
    revision = "iris-predictor-00001"
    rollout = {"target": "v1", "interval": "1s", "progressDeadline": "90s"}
    apply(kube, iris(namespace, autoscaling={"minReplicas": 0, "maxReplicas": 2}, rollout=rollout))
    settled(kube, namespace, "Stable", "v1")
    eventually(
        lambda: (
            replicas(kube, namespace, revision) == 0
            and (namespace, revision) not in knative.servers()
        ),
        timeout=60,
        what="v1's revision at zero, its server gone",
    )

    started = time.monotonic()
    status, answer = infer(knative.ingress_url, host(kube, namespace))
    cold_ms = (time.monotonic() - started) * 1000
    print(f"\ncold start through the activator: {cold_ms:.0f} ms")
    assert status == 200, answer
    assert answer["model_version"] == "v1"
    assert replicas(kube, namespace, revision) >= 1
    assert (namespace, revision) in knative.servers()

    # An unknown host is no InferenceService's.
    status, answer = infer(knative.ingress_url, f"nothing.{namespace}.example.com")
    assert status == 404 and "no InferenceService" in answer["error"]


def test_a_canary_splits_real_requests_by_kserves_percent_and_fails_none(
    kube: Kube, namespace: str, operator: OperatorThread, standins: StandIns
) -> None:
    knative = standins.knative
    assert knative.ingress_url is not None
    rollout = {
        "target": "v1",
        "stepWeights": [50],
        "interval": "20s",
        "progressDeadline": "90s",
        "promotion": "manual",
    }
    document = iris(namespace, autoscaling={"minReplicas": 1, "maxReplicas": 2}, rollout=rollout)
    apply(kube, document)
    settled(kube, namespace, "Stable", "v1")
    eventually(
        lambda: knative_traffic(kube, namespace) == {"v1": 100}, what="KServe's traffic on v1"
    )

    with Load(
        knative.ingress_url, host=host(kube, namespace), model="iris", rate=RATE, seconds=600
    ) as load:
        load.wait_answers(load.started, 100)
        assert load.tally().by_version.keys() == {"v1"}, load.tally().line()

        canary = copy.deepcopy(document)
        canary["spec"]["rollout"]["target"] = "v2"
        apply(kube, canary)
        eventually(
            lambda: knative_traffic(kube, namespace) == {"v1": 50, "v2": 50},
            timeout=120,
            what="KServe's traffic at 50%",
            explain=lambda: describe_model(kube, namespace, "iris"),
        )
        split_at = time.monotonic() + SETTLE
        split = load.wait_answers(split_at, PER_STEP)
        assert knative_traffic(kube, namespace) == {"v1": 50, "v2": 50}, (
            "the step ended mid-measurement"
        )

        annotate(kube, canary, "modelpilot.io/promote", "v2")
        settled(kube, namespace, "Stable", "v2")
        eventually(
            lambda: knative_traffic(kube, namespace) == {"v2": 100}, what="all traffic on v2"
        )
        promoted_at = time.monotonic() + SETTLE
        after = load.wait_answers(promoted_at, AFTER_PROMOTION)
        # and on past v1's scale to zero (its server stopped) when it is no longer routed
        eventually(
            lambda: (namespace, "iris-predictor-00001") not in knative.servers(),
            timeout=60,
            what="v1's revision at zero once unrouted",
        )
        load.wait_answers(time.monotonic(), 100)
    total = load.tally()

    print(f"\n50% step: {split.line()}")
    print(f"after promotion: {after.line()}")
    print(f"whole run: {total.line()}  p50 {total.p50_ms} ms  p99 {total.p99_ms} ms")
    failed = [a for a in load.answers if not 200 <= a.status < 300]
    assert failed == [], f"{len(failed)} failed, first: {failed[:3]}"
    assert abs(split.share("v2") - 50.0) <= TOLERANCE, split.line()
    assert after.by_version.keys() == {"v2"}, after.line()


def test_analysis_judges_revisions_on_their_queue_proxy_metrics(
    kube: Kube, namespace: str, standins: StandIns, prometheus: LocalPrometheus
) -> None:
    """A good candidate is promoted on what Prometheus scraped of its revision; a broken
    one (iris/v3 fails a third of real inputs) is rolled back by KServe's percent 0."""
    knative = standins.knative
    assert knative.ingress_url is not None
    rollout = {
        "target": "v1",
        "stepWeights": [20, 50],
        "interval": "6s",
        "progressDeadline": "90s",
        "promotion": "auto",
        "analysis": {
            "metrics": [
                {"name": "success", "template": "success-rate", "min": 95},
                {"name": "p99", "template": "latency-p99", "max": 2000},
            ],
            "minRequests": 20,
            "threshold": 2,
        },
    }
    document = iris(namespace, autoscaling={"minReplicas": 1, "maxReplicas": 2}, rollout=rollout)
    document["spec"]["versions"].append({"name": "v3", "storageUri": "pvc://model-store/iris/v3"})
    settings = Settings(prometheus_url=prometheus.url)
    every = ("v1", "v2", "v3")
    with OperatorThread(kube, settings, namespaces=[namespace]):
        apply(kube, document)
        settled(kube, namespace, "Stable", "v1")
        with Load(
            knative.ingress_url, host=host(kube, namespace), model="iris", rate=RATE, seconds=600
        ) as load:
            load.wait_answers(load.started, 40)
            good = copy.deepcopy(document)
            good["spec"]["rollout"]["target"] = "v2"
            started = time.monotonic()
            apply(kube, good)
            settled(kube, namespace, "Stable", "v2", timeout=120)
            promoted_s = time.monotonic() - started
            promoted = kube.get(MANAGED_MODEL, "iris", namespace) or {}
            entry = promoted["status"]["history"][-1]
            assert (entry["version"], entry["result"], entry.get("analysis")) == (
                "v2", "Promoted", None
            )  # fmt: skip

            broken = copy.deepcopy(document)
            broken["spec"]["rollout"]["target"] = "v3"
            started = time.monotonic()
            apply(kube, broken)
            eventually(
                lambda: (
                    (kube.get(MANAGED_MODEL, "iris", namespace) or {})
                    .get("status", {})
                    .get("phase")
                    == "Failed"
                ),
                timeout=120,
                what="v3 rolled back by its analysis",
                explain=lambda: describe_model(kube, namespace, "iris"),
            )
            failed_s = time.monotonic() - started
            eventually(
                lambda: knative_traffic(kube, namespace, versions=every) == {"v2": 100},
                what="KServe's traffic back on v2",
            )
            after = load.wait_answers(time.monotonic() + SETTLE, 200)
        total = load.tally()
    status = (kube.get(MANAGED_MODEL, "iris", namespace) or {})["status"]
    print(f"\nclients: {total.line()}; failed {total.failed}; after rollback {after.line()}")
    print(f"v2 promoted on its metrics in {promoted_s:.1f} s, v3 failed in {failed_s:.1f} s")
    print(f"analysis: {status['analysis']}")
    assert status["history"][-1]["version"] == "v3"
    assert status["history"][-1]["result"] == "Failed"
    assert status["analysis"]["failedChecks"] == 2
    degraded = condition({"status": status}, "Degraded")
    assert degraded is not None and degraded["reason"] == "AnalysisFailed"
    isvc = kube.get(INFERENCE_SERVICE, "iris", namespace) or {}
    assert isvc["spec"]["predictor"].get("canaryTrafficPercent") == 0
    # Clients saw v3's failures while it had a share, and none once it had none.
    assert total.failed > 0
    assert after.failed == 0 and after.errors == 0 and after.by_version.keys() == {"v2"}
