"""The runtime resolver against KServe's default runtimes (each row of the table), named
runtimes, namespaced runtimes, and how each runtime names the served model."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.runtimes import (
    default_runtimes,
    parse_serving_runtime,
    protocol_kserve_uses,
    resolve_runtime,
)


def pick(
    fmt: str,
    version: str | None = None,
    protocol: str | None = None,
    runtime: str | None = None,
    runtimes: Any = None,
) -> str:
    resolution = resolve_runtime(
        runtimes if runtimes is not None else default_runtimes(),
        model_format=fmt,
        model_format_version=version,
        protocol=protocol,
        runtime_name=runtime,
    )
    assert resolution.runtime is not None, resolution.error
    return resolution.runtime.name


@pytest.mark.parametrize(
    ("fmt", "version", "protocol", "expected"),
    [
        ("sklearn", None, None, "kserve-sklearnserver"),
        ("sklearn", "1", "v1", "kserve-sklearnserver"),
        ("sklearn", None, "v2", "kserve-mlserver"),  # priority 2 beats 1 on v2
        ("sklearn", "0", "v2", "kserve-mlserver"),
        ("xgboost", None, None, "kserve-xgbserver"),
        ("xgboost", None, "v2", "kserve-mlserver"),
        ("lightgbm", "4", None, "kserve-lgbserver"),
        ("lightgbm", "3", "v2", "kserve-mlserver"),
        ("mlflow", None, "v2", "kserve-mlserver"),
        ("huggingface", None, None, "kserve-huggingfaceserver"),
        ("huggingface", None, "v2", "kserve-huggingfaceserver"),
        ("tensorflow", None, None, "kserve-tensorflow-serving"),
        ("tensorflow", None, "v2", "kserve-tritonserver"),
        ("pytorch", None, None, "kserve-torchserve"),
        ("pytorch", None, "v2", "kserve-torchserve"),  # priority 2; triton's is not auto
        ("onnx", None, "v2", "kserve-tritonserver"),
        ("tensorrt", None, "v2", "kserve-tritonserver"),
        ("triton", "2", "v2", "kserve-tritonserver"),
        ("pmml", "4", None, "kserve-pmmlserver"),
        ("paddle", None, "v2", "kserve-paddleserver"),
        ("autogluon", None, None, "kserve-autogluonserver"),
        ("vLLM", None, None, "kserve-vllmserver"),  # lists no protocols: accepts any
        ("vllm", None, "v2", "kserve-vllmserver"),  # format names compare case-blind
    ],
)
def test_default_table(fmt: str, version: str | None, protocol: str | None, expected: str) -> None:
    assert pick(fmt, version, protocol) == expected


@pytest.mark.parametrize(
    ("fmt", "version", "protocol", "error"),
    [
        ("onnx", None, None, "no serving runtime serves format onnx on protocol v1"),
        ("sklearn", "9", None, "no serving runtime serves format sklearn:9 on protocol v1"),
        ("caffe", None, "v2", "no serving runtime serves format caffe on protocol v2"),
    ],
)
def test_no_match_says_why(fmt: str, version: str | None, protocol: str | None, error: str) -> None:
    resolution = resolve_runtime(
        default_runtimes(),
        model_format=fmt,
        model_format_version=version,
        protocol=protocol,
        runtime_name=None,
    )
    assert resolution.runtime is None and resolution.error == error


def test_named_runtime_ignores_auto_select() -> None:
    # Triton lists pytorch without autoSelect: only a named runtime gets it.
    assert pick("pytorch", protocol="v2", runtime="kserve-tritonserver") == "kserve-tritonserver"


def test_named_runtime_must_serve_format() -> None:
    resolution = resolve_runtime(
        default_runtimes(),
        model_format="onnx",
        model_format_version=None,
        protocol="v2",
        runtime_name="kserve-sklearnserver",
    )
    assert resolution.error == "runtime 'kserve-sklearnserver' does not serve format onnx"


def test_named_runtime_must_speak_protocol() -> None:
    resolution = resolve_runtime(
        default_runtimes(),
        model_format="sklearn",
        model_format_version=None,
        protocol="v1",
        runtime_name="kserve-mlserver",
    )
    assert resolution.error == "runtime 'kserve-mlserver' does not speak protocol v1"


def test_unknown_named_runtime() -> None:
    resolution = resolve_runtime(
        default_runtimes(),
        model_format="sklearn",
        model_format_version=None,
        protocol=None,
        runtime_name="my-runtime",
    )
    assert resolution.error == "runtime 'my-runtime' does not exist"


def runtime_object(
    name: str, *, kind: str = "ServingRuntime", priority: int = 1, **spec: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "supportedModelFormats": [
                {"name": "sklearn", "version": "1", "autoSelect": True, "priority": priority}
            ],
            "protocolVersions": ["v1", "v2"],
            "containers": [{"name": "c", "args": ["--name={{.Name}}"]}],
            **spec,
        },
    }


def test_namespaced_runtime_outranks_cluster_runtime() -> None:
    mine = parse_serving_runtime(runtime_object("team-sklearn", priority=1))
    # Even a higher-priority cluster runtime loses to one in the namespace.
    assert pick("sklearn", runtimes=[*default_runtimes(), mine]) == "team-sklearn"


def test_named_runtime_prefers_namespace() -> None:
    cluster = parse_serving_runtime(runtime_object("shared", kind="ClusterServingRuntime"))
    local = parse_serving_runtime(runtime_object("shared"))
    resolution = resolve_runtime(
        [cluster, local],
        model_format="sklearn",
        model_format_version=None,
        protocol=None,
        runtime_name="shared",
    )
    assert resolution.runtime is local


@pytest.mark.parametrize(
    "spec",
    [{"disabled": True}, {"multiModel": True}, {"workerSpec": {"pipelineParallelSize": 2}}],
)
def test_unfit_runtimes_never_match(spec: dict[str, Any]) -> None:
    unfit = parse_serving_runtime(runtime_object("unfit", priority=9, **spec))
    assert pick("sklearn", runtimes=[*default_runtimes(), unfit]) == "kserve-sklearnserver"


def test_higher_priority_wins_within_scope() -> None:
    low = parse_serving_runtime(runtime_object("a-low", priority=1))
    high = parse_serving_runtime(runtime_object("z-high", priority=5))
    assert pick("sklearn", runtimes=[low, high]) == "z-high"


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("kserve-sklearnserver", "arg", "--model_name="),
        ("kserve-mlserver", "env", "MLSERVER_MODEL_NAME"),
        ("kserve-vllmserver", "arg", "--served-model-name="),
        ("kserve-torchserve", "artifact", ""),
        ("kserve-tritonserver", "artifact", ""),
    ],
)
def test_naming_read_from_runtime_template(name: str, kind: str, key: str) -> None:
    runtime = next(r for r in default_runtimes() if r.name == name)
    assert (runtime.naming.kind, runtime.naming.key) == (kind, key)


def test_kserve_defaults_triton_to_v2_before_it_chooses() -> None:
    """KServe's webhook sets protocolVersion v2 on a triton model that has none, then
    chooses the runtime on it: so does modelpilot (a v1 choice finds no runtime)."""
    assert protocol_kserve_uses("triton", None) == "v2"
    assert protocol_kserve_uses("triton", "grpc-v2") == "grpc-v2"  # an explicit one stays
    assert protocol_kserve_uses("onnx", None) is None  # only the legacy predictor.onnx gets v2
    assert pick("triton", "2") == "kserve-tritonserver"


def test_kserve_defaulting_is_not_written_into_the_inference_service() -> None:
    from modelpilot.api import parse_managed_model
    from modelpilot.render import default_render_state, render_model

    document = {
        "apiVersion": "modelpilot.io/v1alpha1",
        "kind": "ManagedModel",
        "metadata": {"name": "resnet", "namespace": "ml"},
        "spec": {
            "modelFormat": {"name": "triton", "version": "2"},
            "versions": [{"name": "v1", "storageUri": "s3://b/resnet/v1"}],
            "traffic": {"gatewayRef": {"name": "gw"}},
        },
    }
    model = parse_managed_model(document)
    rendered = render_model(model, default_render_state(model), default_runtimes())
    isvc = rendered.objects[0]
    assert rendered.runtimes == {"v1": "kserve-tritonserver"}
    assert "protocolVersion" not in isvc["spec"]["predictor"]["model"]
