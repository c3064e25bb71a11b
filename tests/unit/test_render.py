"""Each rendered kind, the served-name rules, render state, and determinism."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from modelpilot.api import parse_managed_model
from modelpilot.api.gateways import traits_of
from modelpilot.render import (
    RenderError,
    RenderState,
    UnservableModel,
    VersionState,
    default_render_state,
    parse_weights,
    render_model,
)
from modelpilot.render.engine import render_fragment
from modelpilot.runtimes import default_runtimes

Doc = Callable[..., dict[str, Any]]


def render(
    document: dict[str, Any], state: RenderState | None = None, **kwargs: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    model = parse_managed_model(document)
    rendered = render_model(
        model, state or default_render_state(model, **kwargs), default_runtimes()
    )
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}


def model_spec(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    return objects[("InferenceService", name)]["spec"]["predictor"]["model"]


def test_children_and_order(doc: Doc) -> None:
    model = parse_managed_model(doc())
    rendered = render_model(model, default_render_state(model), default_runtimes())
    assert [(o["kind"], o["metadata"]["name"]) for o in rendered.objects] == [
        ("InferenceService", "iris-v1"),
        ("HorizontalPodAutoscaler", "iris-v1"),
        ("InferenceService", "iris-v2"),
        ("HorizontalPodAutoscaler", "iris-v2"),
        ("HTTPRoute", "iris"),
    ]
    assert rendered.runtimes == {"v1": "kserve-sklearnserver", "v2": "kserve-sklearnserver"}


def test_inference_service(doc: Doc) -> None:
    isvc = render(doc(serving={"timeout": 30, "annotations": {"team": "ml"}}))[
        ("InferenceService", "iris-v1")
    ]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["namespace"] == "ml"
    assert isvc["metadata"]["annotations"] == {
        "team": "ml",
        "serving.kserve.io/deploymentMode": "Standard",
        "serving.kserve.io/autoscalerClass": "external",
    }
    assert isvc["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "modelpilot",
        "modelpilot.io/model": "iris",
        "modelpilot.io/version": "v1",
    }
    predictor = isvc["spec"]["predictor"]
    assert predictor["timeout"] == 30
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 1)
    assert predictor["model"] == {
        "modelFormat": {"name": "sklearn"},
        "storageUri": "gs://bucket/iris/v1",
        "args": ["--model_name=iris"],
    }


def test_legacy_raw_deployment(doc: Doc) -> None:
    isvc = render(doc(), legacy_raw_deployment=True)[("InferenceService", "iris-v1")]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_gpu_scheduling_and_limits(doc: Doc) -> None:
    objects = render(
        doc(
            gpu={"count": 2, "product": "NVIDIA-H100-80GB-HBM3"},
            resources={"limits": {"memory": "16Gi"}},
            serving={
                "nodeSelector": {"pool": "gpu"},
                "tolerations": [{"key": "spot", "operator": "Exists"}],
            },
        )
    )
    predictor = objects[("InferenceService", "iris-v2")]["spec"]["predictor"]
    assert predictor["model"]["resources"] == {
        "requests": {"nvidia.com/gpu": "2"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"},
    }
    assert predictor["nodeSelector"] == {
        "pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert predictor["tolerations"] == [
        {"key": "spot", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]


def test_gpu_without_toleration_and_other_vendor(doc: Doc) -> None:
    objects = render(doc(gpu={"count": 1, "resourceName": "amd.com/gpu", "tolerate": False}))
    predictor = objects[("InferenceService", "iris-v1")]["spec"]["predictor"]
    assert "tolerations" not in predictor and "nodeSelector" not in predictor
    assert predictor["model"]["resources"]["limits"] == {"amd.com/gpu": "1"}


def test_version_overrides(doc: Doc) -> None:
    versions = [
        {"name": "v1", "storageUri": "s3://a"},
        {
            "name": "v2",
            "storage": {"key": "minio", "path": "iris/v2"},
            "runtimeVersion": "1.5.0",
            "modelFormatVersion": "1",
            "resources": {"requests": {"cpu": "2"}},
            "args": ["--workers=2"],
            "env": [{"name": "A", "value": "version"}, {"name": "C", "value": "3"}],
            "serviceAccountName": "reader",
        },
    ]
    objects = render(
        doc(
            versions=versions,
            args=["--verbose"],
            env=[{"name": "A", "value": "model"}, {"name": "B", "value": "2"}],
            resources={"requests": {"cpu": "1", "memory": "1Gi"}},
            serving={"serviceAccountName": "default-sa"},
        )
    )
    v1 = objects[("InferenceService", "iris-v1")]["spec"]["predictor"]
    v2 = objects[("InferenceService", "iris-v2")]["spec"]["predictor"]
    assert v1["serviceAccountName"] == "default-sa"
    assert v2["serviceAccountName"] == "reader"
    assert v2["model"]["storage"] == {"key": "minio", "path": "iris/v2"}
    assert "storageUri" not in v2["model"]
    assert v2["model"]["runtimeVersion"] == "1.5.0"
    assert v2["model"]["modelFormat"] == {"name": "sklearn", "version": "1"}
    assert v2["model"]["args"] == ["--verbose", "--workers=2", "--model_name=iris"]
    assert v2["model"]["env"] == [
        {"name": "A", "value": "version"},
        {"name": "B", "value": "2"},
        {"name": "C", "value": "3"},
    ]
    assert v2["model"]["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}}
    assert v1["model"]["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}}


def test_served_name_on_mlserver_is_env_not_arg(doc: Doc) -> None:
    model = model_spec(render(doc(protocolVersion="v2")), "iris-v1")
    assert "args" not in model  # an arg would replace MLServer's command
    assert model["env"] == [{"name": "MLSERVER_MODEL_NAME", "value": "iris"}]
    assert model["protocolVersion"] == "v2"


def test_served_model_name_override(doc: Doc) -> None:
    model = model_spec(render(doc(servedModelName="flowers")), "iris-v1")
    assert model["args"] == ["--model_name=flowers"]


def test_user_set_name_wins_arg(doc: Doc) -> None:
    model = model_spec(render(doc(args=["--model_name", "mine"])), "iris-v1")
    assert model["args"] == ["--model_name", "mine"]
    model = model_spec(render(doc(args=["--model_name=mine"])), "iris-v1")
    assert model["args"] == ["--model_name=mine"]


def test_user_set_name_wins_env(doc: Doc) -> None:
    env = [{"name": "MLSERVER_MODEL_NAME", "value": "mine"}]
    model = model_spec(render(doc(protocolVersion="v2", env=env)), "iris-v1")
    assert model["env"] == env


def test_vllm_naming(doc: Doc) -> None:
    model = model_spec(render(doc(modelFormat={"name": "vLLM"})), "iris-v1")
    assert model["args"] == ["--served-model-name=iris"]


@pytest.mark.parametrize(
    ("fmt", "runtime"), [("pytorch", "kserve-torchserve"), ("onnx", "kserve-tritonserver")]
)
def test_artifact_named_runtimes_warn(doc: Doc, fmt: str, runtime: str) -> None:
    model = parse_managed_model(doc(modelFormat={"name": fmt}, protocolVersion="v2"))
    rendered = render_model(model, default_render_state(model), default_runtimes())
    assert len(rendered.warnings) == 2
    assert f"runtime {runtime} reads the model name from the artifact" in rendered.warnings[0]
    isvc = rendered.objects[0]["spec"]["predictor"]["model"]
    assert "args" not in isvc and "env" not in isvc


def test_unknown_named_runtime_warns_and_keeps_runtime(doc: Doc) -> None:
    model = parse_managed_model(doc(runtime="my-custom"))
    rendered = render_model(model, default_render_state(model), default_runtimes())
    assert "runtime 'my-custom' is not known here" in rendered.warnings[0]
    assert rendered.objects[0]["spec"]["predictor"]["model"]["runtime"] == "my-custom"
    assert rendered.runtimes["v1"] is None


def test_unservable_format_names_version(doc: Doc) -> None:
    model = parse_managed_model(doc(modelFormat={"name": "caffe"}))
    with pytest.raises(UnservableModel) as caught:
        render_model(model, default_render_state(model), default_runtimes())
    assert [str(p) for p in caught.value.problems] == [
        "spec.versions[0] (v1): no serving runtime serves format caffe on protocol v1",
        "spec.versions[1] (v2): no serving runtime serves format caffe on protocol v1",
    ]


def test_autoscaler(doc: Doc) -> None:
    scaling = {
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [
            {"type": "memory", "averageUtilization": 60},
            {"type": "gpu", "averageUtilization": 75},
            {"type": "pods", "metricName": "queue_len", "averageValue": "500m"},
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    }
    hpa = render(doc(autoscaling=scaling))[("HorizontalPodAutoscaler", "iris-v2")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iris-v2-predictor",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 60},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "DCGM_FI_DEV_GPU_UTIL"},
                "target": {"type": "AverageValue", "averageValue": "75"},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "queue_len"},
                "target": {"type": "AverageValue", "averageValue": "500m"},
            },
        },
    ]
    assert hpa["spec"]["behavior"] == scaling["behavior"]


def test_default_hpa_metric_is_cpu_80(doc: Doc) -> None:
    hpa = render(doc())[("HorizontalPodAutoscaler", "iris-v1")]
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 80},
    }
    assert "behavior" not in hpa["spec"]


def test_route_default_state(doc: Doc) -> None:
    route = render(
        doc(
            traffic={
                "gatewayRef": {"name": "gw", "namespace": "gateways", "sectionName": "https"},
                "hostnames": ["iris.example.com"],
                "pinHeader": "x-v",
            },
            serving={"timeout": 45},
        )
    )[("HTTPRoute", "iris")]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "gw",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert spec["hostnames"] == ["iris.example.com"]
    pins, weighted = spec["rules"][:2], spec["rules"][2]
    assert [p["matches"][0]["headers"][0] for p in pins] == [
        {"type": "Exact", "name": "x-v", "value": "v1"},
        {"type": "Exact", "name": "x-v", "value": "v2"},
    ]
    assert pins[0]["backendRefs"] == [{"name": "iris-v1-predictor", "port": 80}]
    assert weighted["backendRefs"] == [{"name": "iris-v2-predictor", "port": 80, "weight": 100}]
    assert weighted["timeouts"] == {"request": "45s"}


def test_route_weights(doc: Doc) -> None:
    route = render(doc(), weights={"v1": 90, "v2": 10})[("HTTPRoute", "iris")]
    assert route["spec"]["rules"][-1]["backendRefs"] == [
        {"name": "iris-v1-predictor", "port": 80, "weight": 90},
        {"name": "iris-v2-predictor", "port": 80, "weight": 10},
    ]
    assert "timeouts" not in route["spec"]["rules"][-1]


def _filters(route: dict[str, Any]) -> list[Any]:
    found = []
    for rule in route["spec"]["rules"]:
        found += rule.get("filters", [])
        for backend in rule["backendRefs"]:
            found += backend.get("filters", [])
    return found


@pytest.mark.parametrize("flavor", ["generic", "traefik"])
def test_routes_carry_no_filter_where_the_gateway_breaks_on_or_drops_them(
    doc: Doc, flavor: str
) -> None:
    route = render(doc(), weights={"v1": 90, "v2": 10}, gateway_flavor=flavor)[
        ("HTTPRoute", "iris")
    ]
    assert _filters(route) == []
    assert traits_of(flavor).mirror != "RequestMirror"
    assert not traits_of(flavor).backend_filters


def test_envoy_gateway_routes_name_the_version_on_each_weighted_backend(doc: Doc) -> None:
    route = render(doc(), weights={"v1": 90, "v2": 10}, gateway_flavor="envoy-gateway")[
        ("HTTPRoute", "iris")
    ]
    weighted = route["spec"]["rules"][-1]["backendRefs"]
    assert [b["filters"] for b in weighted] == [
        [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "x-modelpilot-version", "value": v}]},
            }
        ]
        for v in ("v1", "v2")
    ]
    pins = route["spec"]["rules"][:-1]
    assert all("filters" not in b for rule in pins for b in rule["backendRefs"])


def test_an_unknown_gateway_flavor_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="use one of generic, traefik, envoy-gateway, istio"):
        traits_of("nginx")


def test_state_overrides_replicas_pins_and_stop(doc: Doc) -> None:
    state = RenderState(
        versions={
            "v1": VersionState(weight=100, pinned=True, min_replicas=3, max_replicas=3),
            "v2": VersionState(stopped=True),
        }
    )
    objects = render(doc(), state)
    v1 = objects[("InferenceService", "iris-v1")]
    v2 = objects[("InferenceService", "iris-v2")]
    assert (v1["spec"]["predictor"]["minReplicas"], v1["spec"]["predictor"]["maxReplicas"]) == (
        3,
        3,
    )
    assert objects[("HorizontalPodAutoscaler", "iris-v1")]["spec"]["minReplicas"] == 3
    assert v2["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
    assert ("HorizontalPodAutoscaler", "iris-v2") not in objects  # nothing to scale
    rules = objects[("HTTPRoute", "iris")]["spec"]["rules"]
    assert len(rules) == 2  # one pin (v1) + the weighted rule


def test_no_route_before_first_ready(doc: Doc) -> None:
    objects = render(doc(), RenderState(versions={"v2": VersionState(pinned=True)}))
    assert ("HTTPRoute", "iris") not in objects
    objects = render(doc(), RenderState(versions={"v2": VersionState(weight=100)}, route=False))
    assert ("HTTPRoute", "iris") not in objects


def test_weights_must_sum_to_100(doc: Doc) -> None:
    state = RenderState(versions={"v1": VersionState(weight=60), "v2": VersionState(weight=30)})
    with pytest.raises(RenderError, match="must sum to 100"):
        render(doc(), state)


def test_values_cannot_break_yaml(doc: Doc) -> None:
    # Quotes, colons, newlines and YAML syntax in values stay values.
    nasty = 'a: b\n- c "d" {e}: [f] # g'
    objects = render(doc(args=[nasty], serving={"annotations": {"note": nasty}}))
    isvc = objects[("InferenceService", "iris-v1")]
    assert isvc["metadata"]["annotations"]["note"] == nasty
    assert isvc["spec"]["predictor"]["model"]["args"][0] == nasty


def test_values_keep_their_type_and_are_never_read_as_structure() -> None:
    # A float YAML 1.1 would read back as a string, strings YAML would read as a bool
    # or null, and the text that stands for a value in the template: all come back as
    # given, because no value goes through YAML.
    storage = {
        "ratio": 1e-05,
        "flag": "yes",
        "nothing": "null",
        "looks_like_a_slot": "<modelpilot value 0>",
        "nested": [{"n": 3, "f": 2.5}],
    }
    predictor = SimpleNamespace(
        model_format={"name": "sklearn"},
        runtime=None,
        runtime_version=None,
        protocol_version="v2",
        storage_uri=None,
        storage=storage,
        args=["<modelpilot value 1>"],
        env=[],
        resources={},
    )
    served = render_fragment("served_model.yaml.j2", p=predictor)
    assert served["storage"] == storage
    assert type(served["storage"]["ratio"]) is float
    assert served["args"] == ["<modelpilot value 1>"]
    assert served["protocolVersion"] == "v2"
    assert "runtime" not in served  # a null is dropped


def test_deterministic_output(doc: Doc) -> None:
    def dump() -> str:
        model = parse_managed_model(doc(gpu={"count": 1}, env=[{"name": "X", "value": "1"}]))
        rendered = render_model(model, default_render_state(model), default_runtimes())
        return yaml.safe_dump_all(rendered.objects, sort_keys=False)

    assert dump() == dump()


def test_parse_weights() -> None:
    assert parse_weights("v1=90, v2=10", ["v1", "v2"]) == {"v1": 90, "v2": 10}
    with pytest.raises(ValueError, match="must sum to 100"):
        parse_weights("v1=90,v2=20", ["v1", "v2"])
    with pytest.raises(ValueError, match="'v3' names no version; known: v1, v2"):
        parse_weights("v3=100", ["v1", "v2"])
    with pytest.raises(ValueError, match="is not VERSION=PERCENT"):
        parse_weights("v1:100", ["v1", "v2"])
