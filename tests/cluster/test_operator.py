"""The operator reconciling ManagedModels on the real control plane.

The operator runs in-process against a real kube-apiserver with real controllers
(Deployments, ReplicaSets, HPA, garbage collector, scheduler) and kwok's fake nodes. No
KServe and no gateway controller run here: modelpilot_dev.standins plays both (KServe's
Standard mode: a Deployment and Service per InferenceService, Ready from the Deployment's
real availability; the gateway: HTTPRoutes marked Accepted). Readiness therefore follows
real scheduling on the fake nodes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api import parse_managed_model
from modelpilot.api.kinds import (
    AUTOSCALER,
    CUSTOM_RESOURCE_DEFINITION,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KSERVE_ISVC_LABEL,
    MANAGED_MODEL,
    POD,
)
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.children import contains
from modelpilot.k8s.client import Kube
from modelpilot.render import default_render_state, render_model
from modelpilot.runtimes import default_runtimes
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import (
    children,
    condition,
    eventually,
    model,
    sample,
    spec_versions,
    wait_carried,
)

pytestmark = pytest.mark.cluster
USER = "test-user"  # the field manager a person's kubectl would use


def apply(kube: Kube, document: dict[str, Any]) -> dict[str, Any]:
    return kube.apply(document, manager=USER)


def wait_degraded(kube: Kube, namespace: str, name: str, reason: str) -> dict[str, Any]:
    """The model's Degraded condition, once it carries reason."""

    def degraded() -> dict[str, Any] | None:
        cond = condition(model(kube, namespace, name), "Degraded")
        return cond if cond and cond["reason"] == reason else None

    return eventually(degraded, what=f"{name} Degraded {reason}")


def ready(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    found = model(kube, namespace, name)
    cond = condition(found, "Ready")
    return found if cond and cond["status"] == "True" else None


def test_sample_converges_to_rendered_children(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    document = sample("sklearn-iris", namespace)
    started = time.monotonic()
    created = apply(kube, document)
    expected = {
        ("InferenceService", "iris-v1"),
        ("InferenceService", "iris-v2"),
        ("HorizontalPodAutoscaler", "iris-v1"),
        ("HorizontalPodAutoscaler", "iris-v2"),
    }
    eventually(lambda: expected <= children(kube, namespace).keys(), what="children")
    print(f"\napply -> all versioned children present: {time.monotonic() - started:.2f}s")
    found = eventually(lambda: ready(kube, namespace, "iris"), what="Ready condition")
    print(
        f"apply -> Ready (pods scheduled by kube-scheduler, Running by kwok): "
        f"{time.monotonic() - started:.2f}s"
    )
    status = found["status"]
    assert status["phase"] == "Stable" and status["stableVersion"] == "v2"
    assert status["weights"] == {"v2": 100}
    assert [v["name"] for v in status["versions"]] == ["v1", "v2"]
    assert all(v["runtime"] == "kserve-sklearnserver" for v in status["versions"])
    assert status["url"] == "http://iris.models.example.com"
    assert status["observedGeneration"] == found["metadata"]["generation"]

    # At rest, with both versions ready, the children are exactly what `render` shows
    # for v2 at 100% (a pin rule per version appears once that version is ready).
    parsed = parse_managed_model(created)
    rendered = render_model(parsed, default_render_state(parsed, {"v2": 100}), default_runtimes())

    def mismatches() -> list[tuple[str, str]]:
        live = children(kube, namespace)
        return [
            (o["kind"], o["metadata"]["name"])
            for o in rendered.objects
            if (o["kind"], o["metadata"]["name"]) not in live
            or not contains(live[(o["kind"], o["metadata"]["name"])]["spec"], o["spec"])
        ]

    eventually(lambda: mismatches() == [], what="children equal to the rendered ones")
    live = children(kube, namespace)
    for obj in rendered.objects:
        owner = live[(obj["kind"], obj["metadata"]["name"])]["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "ManagedModel",
            created["metadata"]["uid"],
            True,
        )


def test_add_and_remove_versions(kube: Kube, namespace: str, operator: OperatorThread) -> None:
    document = sample("cpu-single", namespace)
    apply(kube, document)
    eventually(lambda: ready(kube, namespace, "sentiment"), what="Ready")
    v2 = {"name": "v2", "storageUri": "pvc://models/sentiment/v2"}
    document["spec"]["versions"].append(v2)
    document["spec"]["rollout"] = {"target": "v1"}
    apply(kube, document)
    eventually(
        lambda: ("HorizontalPodAutoscaler", "sentiment-v2") in children(kube, namespace),
        what="v2 children",
    )
    document["spec"]["versions"] = [document["spec"]["versions"][0]]
    apply(kube, document)
    eventually(
        lambda: (
            not {("InferenceService", "sentiment-v2"), ("HorizontalPodAutoscaler", "sentiment-v2")}
            & children(kube, namespace).keys()
        ),
        what="v2 children removed",
    )

    # The stable version carries all traffic: removing it is refused, nothing deleted.
    before = spec_versions(kube, namespace)
    document["spec"]["versions"] = [v2]
    document["spec"]["rollout"] = {"target": "v2"}
    apply(kube, document)

    cond = wait_degraded(kube, namespace, "sentiment", "VersionInUse")
    assert "v1 still carries traffic" in cond["message"]
    time.sleep(2)
    assert spec_versions(kube, namespace) == before


def test_hand_edit_of_child_is_reverted(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    apply(kube, sample("cpu-single", namespace))
    eventually(lambda: kube.get(AUTOSCALER, "sentiment-v1", namespace), what="HPA")
    kube.patch(
        {
            "apiVersion": AUTOSCALER.api_version,
            "kind": AUTOSCALER.kind,
            "metadata": {"name": "sentiment-v1", "namespace": namespace},
        },
        {"spec": {"maxReplicas": 7}},
    )
    eventually(
        lambda: kube.get(AUTOSCALER, "sentiment-v1", namespace)["spec"]["maxReplicas"] == 1,
        timeout=20,
        what="maxReplicas reverted to 1",
    )


def test_gpu_version_that_cannot_fit_says_why(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    # Each fake GPU node has 2 GPUs: a 4-GPU pod fits nowhere.
    document = sample("huggingface-llm-gpu", namespace, gpu={"count": 4})
    document["spec"].pop("env")  # no Secret here for the HF token
    apply(kube, document)

    def reason() -> str | None:
        versions = (model(kube, namespace, "llama-chat").get("status") or {}).get("versions")
        message = (versions or [{}])[0].get("message", "")
        return message if "Insufficient nvidia.com/gpu" in message else None

    message = eventually(reason, timeout=60, what="the scheduler's reason in status")
    assert "unschedulable" in message
    found = model(kube, namespace, "llama-chat")
    assert found["status"]["phase"] == "Pending"
    assert condition(found, "Ready")["status"] == "False"
    assert kube.get(HTTP_ROUTE, "llama-chat", namespace) is None  # no route before it is ready


def test_gpu_version_that_fits_becomes_ready(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    document = sample("huggingface-llm-gpu", namespace, gpu={"count": 1})
    document["spec"].pop("env")
    document["spec"]["gpu"]["product"] = "NVIDIA-A100-SXM4-40GB"  # what the pool has
    apply(kube, document)
    eventually(lambda: ready(kube, namespace, "llama-chat"), what="Ready on a GPU node")
    pods = kube.list(POD, namespace, {KSERVE_ISVC_LABEL: "llama-chat-llama31-8b"})
    assert pods and pods[0]["spec"]["nodeName"].startswith("gpu-")


def test_restart_writes_nothing(kube: Kube, namespace: str, standins: StandIns) -> None:
    with OperatorThread(kube, namespaces=[namespace]):
        apply(kube, sample("sklearn-iris", namespace))
        eventually(lambda: ready(kube, namespace, "iris"), what="Ready")
        time.sleep(2)  # let the last status write and its echo settle
        before = spec_versions(kube, namespace)
        mm_before = model(kube, namespace, "iris")["metadata"]["resourceVersion"]
    with OperatorThread(kube, namespaces=[namespace]) as again:
        eventually(lambda: again.state.metrics.reconciles >= 1, what="a reconcile")
        time.sleep(3)
        assert spec_versions(kube, namespace) == before
        assert model(kube, namespace, "iris")["metadata"]["resourceVersion"] == mm_before
        assert again.state.metrics.child_writes == 0


def test_hpa_finds_its_deployment(kube: Kube, namespace: str, operator: OperatorThread) -> None:
    apply(kube, sample("cpu-single", namespace))
    eventually(
        lambda: kube.get(DEPLOYMENT, "sentiment-v1-predictor", namespace),
        what="predictor Deployment",
    )

    def able_to_scale() -> dict[str, Any] | None:
        cond = condition(kube.get(AUTOSCALER, "sentiment-v1", namespace), "AbleToScale")
        return cond if cond and cond["status"] == "True" else None

    eventually(able_to_scale, timeout=90, what="HPA AbleToScale (kube-controller-manager)")


def relax_crd(kube: Kube) -> dict[str, Any]:
    """Let anything into spec, as an older or looser CRD would have."""
    crd = kube.get(CUSTOM_RESOURCE_DEFINITION, "managedmodels.modelpilot.io", None)
    assert crd is not None
    loose = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    relaxed = {
        "apiVersion": crd["apiVersion"],
        "kind": crd["kind"],
        "metadata": {"name": crd["metadata"]["name"]},
        "spec": {
            **crd["spec"],
            "versions": [
                {
                    **crd["spec"]["versions"][0],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {**schema["properties"], "spec": loose},
                        }
                    },
                }
            ],
        },
    }
    kube.apply(relaxed, manager=USER)
    return crd


def test_bad_spec_past_admission_degrades_without_storm(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    apply(kube, sample("cpu-single", namespace))
    eventually(lambda: ready(kube, namespace, "sentiment"), what="Ready")
    wait_carried(kube, namespace, "sentiment")
    before = spec_versions(kube, namespace)
    original = relax_crd(kube)
    try:
        bad = sample("cpu-single", namespace)
        bad["spec"]["rollout"] = {"stepWeights": [50, 10]}

        def accepted() -> bool:
            try:
                apply(kube, bad)
                return True
            except Exception:
                return False  # the relaxed schema may take a moment to be served

        eventually(accepted, timeout=30, what="the relaxed CRD to admit a bad spec")
    finally:
        restored = {k: original[k] for k in ("apiVersion", "kind", "spec")}
        restored["metadata"] = {"name": original["metadata"]["name"]}
        kube.apply(restored, manager=USER)

    cond = wait_degraded(kube, namespace, "sentiment", "InvalidSpec")
    assert "spec.rollout.stepWeights: must be strictly increasing" in cond["message"]
    reconciles = operator.state.metrics.reconciles
    time.sleep(30)
    extra = operator.state.metrics.reconciles - reconciles
    print(f"\nreconciles of an invalid model over 30 s: {extra}")
    assert extra <= 2
    assert spec_versions(kube, namespace) == before  # children untouched


def test_a_child_the_apiserver_refuses_degrades_once_without_retrying(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    """An HPA behaviour the autoscaling API refuses (passed through from the spec): the
    apiserver's message in Degraded (ChildRejected), one Event, no retry storm."""
    document = sample("cpu-single", namespace)
    document["spec"]["autoscaling"] = {"behavior": {"scaleUp": {"selectPolicy": "Sometimes"}}}
    apply(kube, document)
    name = document["metadata"]["name"]
    cond = wait_degraded(kube, namespace, name, "ChildRejected")
    assert "HorizontalPodAutoscaler" in cond["message"] and "selectPolicy" in cond["message"]
    errors = operator.state.metrics.errors
    version = model(kube, namespace, name)["metadata"]["resourceVersion"]
    time.sleep(10)
    # No traceback, no backoff loop, and nothing written: children's events still wake
    # the model (its children keep changing), which then finds nothing to do.
    assert operator.state.metrics.errors == errors
    assert model(kube, namespace, name)["metadata"]["resourceVersion"] == version
    events = client.CoreV1Api(kube.api).list_namespaced_event(namespace).items
    assert [e.reason for e in events].count("ChildRejected") == 1
    # The fix is a spec change; the model then converges.
    del document["spec"]["autoscaling"]
    apply(kube, document)
    eventually(lambda: ready(kube, namespace, name), timeout=60, what="ready once fixed")
    cond = condition(model(kube, namespace, name), "Degraded")
    assert cond is not None and cond["status"] == "False"


def test_idle_models_write_nothing(kube: Kube, namespace: str, operator: OperatorThread) -> None:
    names = [f"idle-{i}" for i in range(20)]
    for name in names:
        document = sample("cpu-single", namespace)
        document["metadata"]["name"] = name
        apply(kube, document)
    eventually(
        lambda: all(ready(kube, namespace, n) for n in names), timeout=120, what="20 models Ready"
    )
    time.sleep(3)
    children_before = spec_versions(kube, namespace)
    models_before = {n: model(kube, namespace, n)["metadata"]["resourceVersion"] for n in names}
    writes_before = operator.state.metrics.child_writes
    time.sleep(60)
    changed = [k for k, v in spec_versions(kube, namespace).items() if children_before.get(k) != v]
    models_changed = [
        n
        for n in names
        if model(kube, namespace, n)["metadata"]["resourceVersion"] != models_before[n]
    ]
    print(
        f"\n20 idle models, 60 s: {len(changed)} child writes, {len(models_changed)} "
        f"ManagedModel writes, {operator.state.metrics.child_writes - writes_before} "
        "writes counted by the operator"
    )
    assert changed == [] and models_changed == []
    assert operator.state.metrics.child_writes == writes_before


def test_name_collision_is_not_taken_over(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    first = sample("cpu-single", namespace)
    first["metadata"]["name"] = "a-b"
    first["spec"]["versions"][0]["name"] = "c"
    apply(kube, first)
    eventually(lambda: kube.get(INFERENCE_SERVICE, "a-b-c", namespace), what="a-b-c")
    owner_before = kube.get(INFERENCE_SERVICE, "a-b-c", namespace)["metadata"]["ownerReferences"][
        0
    ]["uid"]
    before = spec_versions(kube, namespace)
    second = sample("cpu-single", namespace)
    second["metadata"]["name"] = "a"
    second["spec"]["versions"][0]["name"] = "b-c"
    apply(kube, second)

    cond = wait_degraded(kube, namespace, "a", "NameConflict")
    assert "ManagedModel/a-b" in cond["message"]
    time.sleep(2)
    isvc = kube.get(INFERENCE_SERVICE, "a-b-c", namespace)
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == owner_before
    assert (
        spec_versions(kube, namespace)[("InferenceService", "a-b-c")]
        == before[("InferenceService", "a-b-c")]
    )


def test_unlabelled_object_holding_a_name_is_not_taken_over(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    # An object someone else made under a child's name, without our labels, must be
    # seen before any apply (the operator's cache holds unlabelled ones too).
    squatter = {
        "apiVersion": INFERENCE_SERVICE.api_version,
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {"name": "solo-v1", "namespace": namespace},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://x"}}
        },
    }
    apply(kube, squatter)
    before = kube.get(INFERENCE_SERVICE, "solo-v1", namespace)
    document = sample("cpu-single", namespace)
    document["metadata"]["name"] = "solo"
    document["spec"]["versions"][0]["name"] = "v1"
    apply(kube, document)

    cond = wait_degraded(kube, namespace, "solo", "NameConflict")
    assert "InferenceService solo-v1 is held by an object no controller owns" in cond["message"]
    after = kube.get(INFERENCE_SERVICE, "solo-v1", namespace)
    assert after["metadata"].get("ownerReferences") is None
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    assert after["spec"] == before["spec"]


def test_unservable_format_degrades_without_children(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    apply(kube, sample("cpu-single", namespace, modelFormat={"name": "caffe"}))

    cond = wait_degraded(kube, namespace, "sentiment", "NoRuntime")
    assert "no serving runtime serves format caffe" in cond["message"]
    assert children(kube, namespace) == {}


def test_delete_collects_children(kube: Kube, namespace: str, operator: OperatorThread) -> None:
    apply(kube, sample("sklearn-iris", namespace))
    eventually(lambda: ready(kube, namespace, "iris"), what="Ready")
    assert children(kube, namespace)
    kube.delete(MANAGED_MODEL, "iris", namespace)
    eventually(lambda: kube.get(MANAGED_MODEL, "iris", namespace) is None, what="model deleted")
    eventually(
        lambda: children(kube, namespace) == {}, timeout=60, what="children garbage-collected"
    )
    eventually(
        lambda: not client.AppsV1Api(kube.api).list_namespaced_deployment(namespace).items,
        timeout=60,
        what="predictor Deployments collected",
    )
