"""KServe CRDs generated from the kserve SDK: the schema itself, then the API server's
verdict on objects checked against it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from modelpilot.runtimes import parse_serving_runtime
from modelpilot_dev import kserve_crds


@pytest.fixture(scope="module")
def generated() -> dict[str, dict[str, Any]]:
    return {crd["spec"]["names"]["kind"]: crd for crd in kserve_crds.generate()}


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def test_three_crds_with_the_kserve_scopes(generated: dict[str, dict[str, Any]]) -> None:
    assert set(generated) == {"InferenceService", "ServingRuntime", "ClusterServingRuntime"}
    isvc = generated["InferenceService"]["spec"]
    assert (isvc["group"], isvc["scope"], isvc["versions"][0]["name"]) == (
        "serving.kserve.io",
        "Namespaced",
        "v1beta1",
    )
    assert isvc["versions"][0]["subresources"] == {"status": {}}
    assert generated["ServingRuntime"]["spec"]["scope"] == "Namespaced"
    assert generated["ClusterServingRuntime"]["spec"]["scope"] == "Cluster"


def test_fields_come_from_the_sdk_with_json_names(generated: dict[str, dict[str, Any]]) -> None:
    predictor = _spec_schema(generated["InferenceService"])["properties"]["predictor"]
    model = predictor["properties"]["model"]["properties"]
    assert model["storageUri"] == {"type": "string"}
    assert model["modelFormat"]["properties"]["name"] == {"type": "string"}
    assert predictor["properties"]["minReplicas"] == {"type": "integer"}
    toleration = predictor["properties"]["tolerations"]["items"]["properties"]
    assert set(toleration) == {"key", "operator", "value", "effect", "tolerationSeconds"}


def test_quantities_take_int_or_string(generated: dict[str, dict[str, Any]]) -> None:
    predictor = _spec_schema(generated["InferenceService"])["properties"]["predictor"]
    limits = predictor["properties"]["model"]["properties"]["resources"]["properties"]["limits"]
    assert limits["type"] == "object"
    assert limits["additionalProperties"]["x-kubernetes-int-or-string"] is True
    port = predictor["properties"]["containers"]["items"]["properties"]["readinessProbe"][
        "properties"
    ]["httpGet"]["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True


def test_only_known_gaps_fall_back_to_open_schemas() -> None:
    builder = kserve_crds.SchemaBuilder()
    kserve_crds.generate(builder)
    # The SDK names v1alpha1.WorkerSpec but has no class for it (see kserve_crds).
    assert builder.unresolved == {"V1alpha1WorkerSpec"}


def test_self_reference_is_cut_off_with_an_open_schema() -> None:
    class Node:
        openapi_types = {"child": "Node", "name": "str"}
        attribute_map = {"child": "child", "name": "name"}

    builder = kserve_crds.SchemaBuilder(lambda name: Node if name == "Node" else None)
    schema = builder.for_type("Node")
    assert schema["properties"]["name"] == {"type": "string"}
    assert schema["properties"]["child"] == kserve_crds.OPEN


# --- against the API server ------------------------------------------------------------

GPU_ISVC: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "llm"},
    "spec": {
        "predictor": {
            "minReplicas": 1,
            "maxReplicas": 2,
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "model": {
                "modelFormat": {"name": "huggingface"},
                "storageUri": "pvc://models/llm",
                "args": ["--max-model-len=4096"],
                "resources": {
                    "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1},
                    "limits": {"cpu": "8", "memory": "24Gi", "nvidia.com/gpu": 1},
                },
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
            },
        }
    },
}


def _apply(dynamic: DynamicClient, namespace: str, body: dict[str, Any]) -> Any:
    api = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return api.server_side_apply(
        body, namespace=namespace, field_manager="modelpilot-test", dry_run="All"
    )


@pytest.mark.cluster
def test_realistic_gpu_inferenceservice_is_accepted(dynamic: DynamicClient, namespace: str) -> None:
    applied = _apply(dynamic, namespace, GPU_ISVC)
    model = applied.spec.predictor.model
    assert model.storageUri == "pvc://models/llm"
    assert model.resources.limits["nvidia.com/gpu"] == 1


@pytest.mark.cluster
@pytest.mark.parametrize("gpus", [1, "1", "2"])
def test_gpu_quantity_as_int_or_string(
    dynamic: DynamicClient, namespace: str, gpus: int | str
) -> None:
    body = copy.deepcopy(GPU_ISVC)
    body["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] = gpus
    applied = _apply(dynamic, namespace, body)
    assert applied.spec.predictor.model.resources.limits["nvidia.com/gpu"] == gpus


@pytest.mark.cluster
def test_field_kserve_lacks_is_refused(dynamic: DynamicClient, namespace: str) -> None:
    body = copy.deepcopy(GPU_ISVC)
    body["spec"]["predictor"]["model"]["storageUrl"] = "pvc://models/typo"
    with pytest.raises(DynamicApiError) as refused:
        _apply(dynamic, namespace, body)
    assert "field not declared in schema" in str(refused.value.body)
    assert "storageUrl" in str(refused.value.body)


@pytest.mark.cluster
def test_wrong_type_is_refused(dynamic: DynamicClient, namespace: str) -> None:
    body = copy.deepcopy(GPU_ISVC)
    body["spec"]["predictor"]["minReplicas"] = "one"
    # Server-side apply refuses while building the typed patch (the API server answers
    # 500 there); a plain create goes through validation and answers 422 Invalid.
    with pytest.raises(DynamicApiError) as applied:
        _apply(dynamic, namespace, body)
    assert "spec.predictor.minReplicas: expected numeric" in str(applied.value.body)
    api = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    with pytest.raises(DynamicApiError) as created:
        api.create(body, namespace=namespace, dry_run="All")
    assert created.value.status == 422
    assert "spec.predictor.minReplicas" in str(created.value.body)


@pytest.mark.cluster
def test_default_cluster_serving_runtimes_are_installed(dynamic: DynamicClient) -> None:
    api = dynamic.resources.get(
        api_version="serving.kserve.io/v1alpha1", kind="ClusterServingRuntime"
    )
    runtimes = {item.metadata.name: item.to_dict() for item in api.get().items}
    assert "kserve-huggingfaceserver" in runtimes
    parsed = parse_serving_runtime(runtimes["kserve-huggingfaceserver"])
    assert parsed.cluster_scoped
    assert parsed.format_priority("huggingface", "1", auto_only=True) == 1
