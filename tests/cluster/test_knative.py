"""Knative mode on the real control plane: a canary through KServe's
canaryTrafficPercent, abort and rollback, scale to zero and back, and a canary whose
pods cannot be scheduled.

The operator runs in-process. KServe's Knative mode is played by modelpilot_dev.knative
(revisions as Deployments scheduled on kwok's fake nodes, KServe's traffic rules, scale
to zero and an activator that scales back on a request; no model server answers requests
in it yet). Every InferenceService write is recorded: no percent may ever go to a
revision before it was ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api import names
from modelpilot.api.kinds import (
    AUTOSCALER,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
)
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot_dev.standins import StandIns
from modelpilot_dev.watch import Timeline
from tests.cluster.helpers import apply_as_user as apply
from tests.cluster.helpers import (
    command,
    eventually,
    knative_traffic,
    model,
    retarget,
    sample,
    settled,
)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("no_operator_errors")]
FAST = {"interval": "1s", "progressDeadline": "60s", "scaleDownDelay": "10m"}


def status(kube: Kube, namespace: str) -> dict[str, Any]:
    return model(kube, namespace, "iris").get("status") or {}


def stable_iris(kube: Kube, namespace: str, **spec: Any) -> dict[str, Any]:
    document = sample("iris-knative", namespace)
    document["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2}
    document["spec"]["rollout"] = {**FAST, "target": "v1", "stepWeights": [25, 50]}
    document["spec"].update(spec)
    apply(kube, document)
    settled(kube, namespace, "Stable", "v1")
    eventually(
        lambda: knative_traffic(kube, namespace) == {"v1": 100}, what="KServe's traffic on v1"
    )
    return document


def written(timeline: Timeline) -> list[tuple[str | None, int | None]]:
    """Each distinct (version carried, canaryTrafficPercent) the operator wrote."""
    found: list[tuple[str | None, int | None]] = []
    for _, isvc in timeline.snapshot():
        entry = (
            (isvc["metadata"].get("labels") or {}).get(names.SERVES_LABEL),
            isvc["spec"]["predictor"].get("canaryTrafficPercent"),
        )
        if not found or found[-1] != entry:
            found.append(entry)
    return found


def test_a_canary_steps_through_kserves_percent_and_promotes(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: client.ApiClient
) -> None:
    document = stable_iris(kube, namespace)
    assert kube.list(AUTOSCALER, namespace, {names.MODEL_LABEL: "iris"}) == []
    assert kube.list(HTTP_ROUTE, namespace, {names.MODEL_LABEL: "iris"}) == []
    assert status(kube, namespace)["url"] == f"http://iris.{namespace}.example.com"
    isvcs = Timeline(api_client, namespace, INFERENCE_SERVICE).start()
    retarget(kube, document, "v2", promotion="auto")
    settled(kube, namespace, "Stable", "v2")
    eventually(
        lambda: knative_traffic(kube, namespace) == {"v2": 100}, what="KServe's traffic on v2"
    )
    # Status (the decision) is written before the InferenceService that carries it out:
    # wait for the write that drops the percent before the recording stops.
    eventually(lambda: written(isvcs)[-1] == ("v2", None), what="the percent dropped")
    isvcs.stop()
    # Promoting sends the canary 100% (all to the latest revision), then at rest KServe's
    # percent goes: the promoted revision is the rolled-out one.
    assert written(isvcs) == [
        ("v1", None),
        ("v2", 0),
        ("v2", 25),
        ("v2", 50),
        ("v2", 100),
        ("v2", None),
    ]
    assert [h["result"] for h in status(kube, namespace)["history"]] == ["Promoted"]


def test_abort_and_rollback_are_kserves_percent_zero(
    kube: Kube, namespace: str, operator: OperatorThread, kubeconfig: Path
) -> None:
    document = stable_iris(kube, namespace, rollout={**FAST, "target": "v1", "interval": "10m"})
    document = retarget(kube, document, "v2")
    eventually(lambda: knative_traffic(kube, namespace) == {"v1": 90, "v2": 10}, what="v2 at 10%")
    command(kubeconfig, namespace, "abort", "iris")
    settled(kube, namespace, "Aborted", "v1")
    eventually(lambda: knative_traffic(kube, namespace) == {"v1": 100}, what="all back on v1")
    isvc = kube.get(INFERENCE_SERVICE, "iris", namespace)
    assert isvc is not None and isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0

    document = retarget(kube, document, "v2", promotion="auto", stepWeights=[50], interval="1s")
    command(kubeconfig, namespace, "retry", "iris")
    settled(kube, namespace, "Stable", "v2")
    eventually(lambda: knative_traffic(kube, namespace) == {"v2": 100}, what="v2 promoted")
    command(kubeconfig, namespace, "rollback", "iris")
    settled(kube, namespace, "Aborted", "v1")
    eventually(lambda: knative_traffic(kube, namespace) == {"v1": 100}, what="rolled back to v1")
    assert status(kube, namespace)["history"][-1]["result"] == "RolledBack"


def test_scale_to_zero_and_back_on_a_request(
    kube: Kube, namespace: str, operator: OperatorThread, standins: StandIns
) -> None:
    stable_iris(kube, namespace, autoscaling={"minReplicas": 0, "maxReplicas": 2})
    revision = kube.get(DEPLOYMENT, "iris-predictor-00001-deployment", namespace)
    assert revision is not None

    def replicas() -> int:
        found = kube.get(DEPLOYMENT, "iris-predictor-00001-deployment", namespace) or {}
        return int((found.get("spec") or {}).get("replicas") or 0)

    eventually(lambda: replicas() == 0, timeout=60, what="scaled to zero when idle")
    assert status(kube, namespace)["phase"] == "Stable"
    assert all(v["ready"] for v in status(kube, namespace)["versions"] if v["name"] == "v1")
    assert standins.knative.request(namespace, "iris")  # the activator holds it until a pod
    assert replicas() >= 1


def test_a_canary_that_cannot_be_scheduled_fails_with_the_schedulers_reason(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    document = stable_iris(
        kube, namespace, rollout={**FAST, "target": "v1", "progressDeadline": "10s"}
    )
    document["spec"]["versions"][1]["resources"] = {
        "requests": {"cpu": "512"},
        "limits": {"cpu": "512"},
    }
    retarget(kube, document, "v2")
    settled(kube, namespace, "Failed", "v1", timeout=60)
    assert knative_traffic(kube, namespace) == {"v1": 100}
    v2 = next(v for v in status(kube, namespace)["versions"] if v["name"] == "v2")
    assert "Insufficient cpu" in v2["message"], v2
