"""ModelMesh mode on the real control plane: rollouts, abort, rollback, a model that
fails to load, and many models on the shared runtime pods.

The operator runs in-process. ModelMesh is played by modelpilot_dev.modelmesh (shared
runtime pods scheduled on kwok's fake nodes, load before switch, model states as
ModelMesh reports them; no model server answers requests in it yet), the gateway by the
gateway stand-in. Every rollout is recorded, and no weight may ever go to a version
whose InferenceService's current model was not loaded at that moment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api import names
from modelpilot.api.kinds import AUTOSCALER, DEPLOYMENT, INFERENCE_SERVICE, MANAGED_MODEL
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from tests.cluster.helpers import apply_as_user as apply
from tests.cluster.helpers import (
    command,
    eventually,
    model,
    retarget,
    sample,
    settled,
    wait_carried,
)
from tests.cluster.recorder import Recorder

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("no_operator_errors")]
FAST = {"interval": "1s", "progressDeadline": "60s", "scaleDownDelay": "10m"}
RUNTIME_PODS = "modelmesh-service=modelmesh-serving"


def status(kube: Kube, namespace: str, name: str = "iris") -> dict[str, Any]:
    return model(kube, namespace, name).get("status") or {}


def stable_iris(kube: Kube, namespace: str, **rollout: Any) -> dict[str, Any]:
    document = sample("iris-modelmesh", namespace)
    document["spec"]["rollout"] = {**FAST, **rollout, "target": "v1"}
    apply(kube, document)
    settled(kube, namespace, "Stable", "v1")
    wait_carried(kube, namespace, "iris")
    return document


def stable_name_serves(kube: Kube, namespace: str, version: str) -> bool:
    """The stable name's InferenceService names the version and ModelMesh has loaded
    that version's model for it."""
    stable = kube.get(INFERENCE_SERVICE, "iris", namespace) or {}
    versioned = kube.get(INFERENCE_SERVICE, f"iris-{version}", namespace) or {}
    labels = (stable.get("metadata") or {}).get("labels") or {}
    model_status = (stable.get("status") or {}).get("modelStatus") or {}
    return (
        labels.get(names.STABLE_NAME_LABEL) == version
        and stable["spec"]["predictor"]["model"] == versioned["spec"]["predictor"]["model"]
        and model_status.get("transitionStatus") == "UpToDate"
        and stable["status"].get("observedGeneration") == stable["metadata"]["generation"]
    )


def test_a_rollout_promotes_through_modelmesh_and_the_stable_name_follows(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: client.ApiClient
) -> None:
    document = stable_iris(kube, namespace, promotion="auto", stepWeights=[25, 50])
    # The versions' and the stable name's InferenceServices, in ModelMesh mode, and
    # nothing of Standard mode's: no HPA, no predictor Deployment of their own.
    for name in ("iris-v1", "iris-v2", "iris"):
        isvc = kube.get(INFERENCE_SERVICE, name, namespace)
        assert isvc is not None
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "ModelMesh"
    assert kube.list(AUTOSCALER, namespace, {names.MODEL_LABEL: "iris"}) == []
    assert kube.get(DEPLOYMENT, "iris-v1-predictor", namespace) is None
    assert eventually(lambda: stable_name_serves(kube, namespace, "v1"), what="iris on v1")

    with Recorder(api_client, namespace, "iris", model_mesh=True) as recorder:
        retarget(kube, document, "v2")
        settled(kube, namespace, "Stable", "v2")
        recorder.wait_for(lambda r: r.route_is({"v2": 100}), "the route on v2")
    assert recorder.assert_safe() == [
        {"v1": 100},
        {"v1": 75, "v2": 25},
        {"v1": 50, "v2": 50},
        {"v2": 100},
    ]
    # Promoted: the stable name now serves v2 (ModelMesh loaded it before switching).
    eventually(lambda: stable_name_serves(kube, namespace, "v2"), what="the stable name on v2")
    final = status(kube, namespace)
    assert [h["result"] for h in final["history"]] == ["Promoted"]


def test_abort_then_rollback_in_modelmesh_mode(
    kube: Kube,
    namespace: str,
    operator: OperatorThread,
    api_client: client.ApiClient,
    kubeconfig: Path,
) -> None:
    document = stable_iris(kube, namespace, interval="10m")
    with Recorder(api_client, namespace, "iris", model_mesh=True) as recorder:
        retarget(kube, document, "v2")
        eventually(
            lambda: status(kube, namespace).get("weights") == {"v1": 90, "v2": 10},
            what="canary at 10%",
        )
        command(kubeconfig, namespace, "abort", "iris")
        settled(kube, namespace, "Aborted", "v1")
        recorder.wait_for(lambda r: r.route_is({"v1": 100}), "the route back on v1")
    assert recorder.assert_safe() == [{"v1": 100}, {"v1": 90, "v2": 10}, {"v1": 100}]
    assert stable_name_serves(kube, namespace, "v1")

    # Again, promoted this time, then rolled back within the scale-down window.
    document["spec"]["rollout"].update(promotion="auto", stepWeights=[50], interval="1s")
    apply(kube, retarget(kube, document, "v2"))
    command(kubeconfig, namespace, "retry", "iris")
    settled(kube, namespace, "Stable", "v2")
    eventually(lambda: stable_name_serves(kube, namespace, "v2"), what="the stable name on v2")
    with Recorder(api_client, namespace, "iris", model_mesh=True) as recorder:
        command(kubeconfig, namespace, "rollback", "iris")
        settled(kube, namespace, "Aborted", "v1")
        recorder.wait_for(lambda r: r.route_is({"v1": 100}), "the route back on v1")
    assert recorder.assert_safe()[-1] == {"v1": 100}
    assert status(kube, namespace)["history"][-1]["result"] == "RolledBack"
    eventually(lambda: stable_name_serves(kube, namespace, "v1"), what="the stable name on v1")


def test_a_version_that_fails_to_load_never_gets_traffic(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: client.ApiClient
) -> None:
    document = sample("iris-modelmesh", namespace)
    document["spec"]["versions"][1]["storageUri"] = "s3://models/iris/broken"
    document["spec"]["rollout"] = {**FAST, "progressDeadline": "8s", "target": "v1"}
    apply(kube, document)
    settled(kube, namespace, "Stable", "v1")
    with Recorder(api_client, namespace, "iris", model_mesh=True) as recorder:
        retarget(kube, document, "v2")
        settled(kube, namespace, "Failed", "v1")
    assert recorder.assert_safe() == [{"v1": 100}]
    v2 = next(v for v in status(kube, namespace)["versions"] if v["name"] == "v2")
    assert not v2["ready"] and "ModelLoadFailed" in v2["message"]


def test_a_hundred_models_share_two_runtime_pods(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: client.ApiClient
) -> None:
    count = 100
    for index in range(count):
        document = sample("iris-modelmesh", namespace)
        document["metadata"]["name"] = f"m{index:03d}"
        document["spec"]["versions"] = document["spec"]["versions"][:1]
        document["spec"]["rollout"] = {"target": "v1"}
        apply(kube, document)

    def all_stable() -> bool:
        models = kube.list(MANAGED_MODEL, namespace, {})
        return len(models) == count and all(
            (m.get("status") or {}).get("phase") == "Stable" for m in models
        )

    eventually(all_stable, timeout=300, interval=2, what=f"{count} models Stable")
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=RUNTIME_PODS)
    assert len(pods.items) == 2
    assert {p.status.phase for p in pods.items if p.status} == {"Running"}
    # Each model: its version's InferenceService and its stable name's; no pod of its own.
    isvcs = kube.list(INFERENCE_SERVICE, namespace, {names.MANAGED_BY: "modelpilot"})
    assert len(isvcs) == 2 * count
    everything = client.CoreV1Api(api_client).list_namespaced_pod(namespace)
    assert len(everything.items) == 2
