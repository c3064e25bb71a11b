"""Which serving runtime KServe will pick for a model, and how that runtime names it.

One resolver serves both the offline `modelpilot render` (against KServe's default
ClusterServingRuntimes, written below from KServe's documented defaults) and the operator
(against the runtimes the cluster really has). It follows KServe's own selection order:
the namespace's ServingRuntimes first, then the ClusterServingRuntimes; within each, the
runtime whose matching format has the higher priority wins; disabled, multi-model and
multi-node runtimes never match; only formats marked autoSelect match when no runtime is
named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# KServe's runtimes name the served model through a Go template in their container
# args or env; the runtime's own template tells us which knob to turn.
NAME_TEMPLATE = "{{.Name}}"

NamingKind = Literal["arg", "env", "artifact"]


@dataclass(frozen=True)
class SupportedFormat:
    name: str
    version: str | None
    auto_select: bool
    priority: int


@dataclass(frozen=True)
class Naming:
    """How a runtime learns the served model's name.

    kind "arg": a flag such as `--model_name=`; "env": an environment variable;
    "artifact": the runtime reads it from the model artifact (TorchServe, Triton), so
    modelpilot cannot set it and warns instead.
    """

    kind: NamingKind
    key: str = ""


@dataclass(frozen=True)
class ServingRuntimeInfo:
    name: str
    cluster_scoped: bool
    formats: tuple[SupportedFormat, ...]
    protocols: tuple[str, ...]
    naming: Naming
    disabled: bool = False
    multi_model: bool = False
    multi_node: bool = False

    @property
    def kind(self) -> str:
        return "ClusterServingRuntime" if self.cluster_scoped else "ServingRuntime"

    def supports_protocol(self, protocol: str | None) -> bool:
        # A runtime that lists no protocol versions accepts any; an unset protocol is v1.
        return not self.protocols or (protocol or "v1") in self.protocols

    def format_priority(self, name: str, version: str | None, *, auto_only: bool) -> int | None:
        """Priority of the best supported format matching name[:version], else None."""
        best: int | None = None
        for fmt in self.formats:
            if fmt.name.lower() != name.lower():
                continue
            if version is not None and fmt.version != version:
                continue
            if auto_only and not fmt.auto_select:
                continue
            if best is None or fmt.priority > best:
                best = fmt.priority
        return best


@dataclass(frozen=True)
class Resolution:
    """The runtime a version will run on, or why none fits."""

    runtime: ServingRuntimeInfo | None
    error: str = ""


def parse_serving_runtime(obj: Mapping[str, Any]) -> ServingRuntimeInfo:
    """Read a ServingRuntime or ClusterServingRuntime object (as the API returns it)."""
    spec = obj.get("spec") or {}
    formats = tuple(
        SupportedFormat(
            name=str(f.get("name", "")),
            version=None if f.get("version") is None else str(f["version"]),
            auto_select=bool(f.get("autoSelect", False)),
            priority=int(f.get("priority") or 0),
        )
        for f in spec.get("supportedModelFormats") or []
    )
    return ServingRuntimeInfo(
        name=str(obj.get("metadata", {}).get("name", "")),
        cluster_scoped=obj.get("kind") == "ClusterServingRuntime",
        formats=formats,
        protocols=tuple(str(p) for p in spec.get("protocolVersions") or []),
        naming=_naming_from_containers(spec.get("containers") or []),
        disabled=bool(spec.get("disabled", False)),
        multi_model=bool(spec.get("multiModel", False)),
        multi_node=spec.get("workerSpec") is not None,
    )


def _naming_from_containers(containers: Iterable[Mapping[str, Any]]) -> Naming:
    for container in containers:
        for arg in container.get("args") or []:
            if NAME_TEMPLATE in str(arg):
                return Naming("arg", str(arg).split(NAME_TEMPLATE, 1)[0])
        for env in container.get("env") or []:
            if NAME_TEMPLATE in str(env.get("value", "")):
                return Naming("env", str(env["name"]))
    return Naming("artifact")


# KServe's admission webhook (InferenceService defaulting, 0.21) sets these before its
# controller chooses a runtime, so the choice is made on them. Only this rule of the
# webhook bears on the choice: the defaults it sets once a runtime is chosen (MLServer
# and Triton v2, TorchServe v1; MLSERVER_MODEL_NAME only where none is set) change
# neither the runtime nor the name modelpilot sets. Never written into the
# InferenceService: KServe does that itself.
PROTOCOL_BY_FORMAT = {"triton": "v2"}
MODEL_MESH_PROTOCOL = "grpc-v2"


def protocol_kserve_uses(model_format: str, protocol: str | None) -> str | None:
    """The protocol KServe chooses the runtime on: the spec's, else its default."""
    return protocol or PROTOCOL_BY_FORMAT.get(model_format)


def resolve_runtime(
    runtimes: Iterable[ServingRuntimeInfo],
    *,
    model_format: str,
    model_format_version: str | None,
    protocol: str | None,
    runtime_name: str | None,
    multi_model: bool = False,
) -> Resolution:
    """Pick the runtime KServe would pick for one predictor. multi_model: for ModelMesh,
    which loads models only into multi-model runtimes and speaks gRPC v2 to them (its
    REST proxy turns v2 REST into gRPC)."""
    protocol = MODEL_MESH_PROTOCOL if multi_model else protocol_kserve_uses(model_format, protocol)
    candidates = [r for r in runtimes if not r.disabled]
    wanted = f"{model_format}:{model_format_version}" if model_format_version else model_format
    if runtime_name:
        # A named runtime: KServe looks in the namespace first, then the cluster.
        named = sorted(
            (r for r in candidates if r.name == runtime_name), key=lambda r: r.cluster_scoped
        )
        if not named:
            return Resolution(None, f"runtime {runtime_name!r} does not exist")
        runtime = named[0]
        if runtime.multi_model != multi_model:
            return Resolution(None, _wrong_kind(runtime_name, multi_model=multi_model))
        if runtime.format_priority(model_format, model_format_version, auto_only=False) is None:
            return Resolution(None, f"runtime {runtime_name!r} does not serve format {wanted}")
        if not runtime.supports_protocol(protocol):
            return Resolution(
                None, f"runtime {runtime_name!r} does not speak protocol {protocol or 'v1'}"
            )
        return Resolution(runtime)

    ranked: list[tuple[bool, int, str, ServingRuntimeInfo]] = []
    for runtime in candidates:
        if runtime.multi_model != multi_model or runtime.multi_node:
            continue
        if not runtime.supports_protocol(protocol):
            continue
        priority = runtime.format_priority(model_format, model_format_version, auto_only=True)
        if priority is not None:
            ranked.append((runtime.cluster_scoped, -priority, runtime.name, runtime))
    if not ranked:
        return Resolution(
            None,
            f"no {'multi-model ' if multi_model else ''}serving runtime serves format "
            f"{wanted} on protocol {protocol or 'v1'}",
        )
    ranked.sort(key=lambda entry: entry[:3])
    return Resolution(ranked[0][3])


def _wrong_kind(name: str, *, multi_model: bool) -> str:
    if multi_model:
        return (
            f"runtime {name!r} is single-model: ModelMesh mode loads models into a "
            "multi-model runtime (spec.multiModel: true); name one"
        )
    return (
        f"runtime {name!r} is multi-model (ModelMesh's): name a single-model runtime, or "
        "set spec.serving.deploymentMode ModelMesh"
    )


# KServe's default ClusterServingRuntimes as documented for late 2026: formats with
# priorities, protocols, and how each names the served model. Written by this project
# from those facts (not copied): images are placeholders, since no pod of them ever runs
# in the simulated cluster.
_DEFAULTS: tuple[tuple[str, list[tuple[str, list[str], int, bool]], list[str], str, str], ...] = (
    # (name, [(format, versions, priority, autoSelect)], protocols, naming kind, key)
    ("kserve-sklearnserver", [("sklearn", ["1"], 1, True)], ["v1", "v2"], "arg", "--model_name="),
    ("kserve-xgbserver", [("xgboost", ["2"], 1, True)], ["v1", "v2"], "arg", "--model_name="),
    ("kserve-lgbserver", [("lightgbm", ["4"], 1, True)], ["v1", "v2"], "arg", "--model_name="),
    (
        "kserve-mlserver",
        [
            ("sklearn", ["0", "1"], 2, True),
            ("xgboost", ["1", "2"], 2, True),
            ("lightgbm", ["3", "4"], 2, True),
            ("mlflow", ["1", "2"], 1, True),
        ],
        ["v2"],
        "env",
        "MLSERVER_MODEL_NAME",
    ),
    (
        "kserve-huggingfaceserver",
        [("huggingface", ["1"], 1, True)],
        ["v2", "v1"],
        "arg",
        "--model_name=",
    ),
    (
        "kserve-tensorflow-serving",
        [("tensorflow", ["1", "2"], 2, True)],
        ["v1", "grpc-v1"],
        "arg",
        "--model_name=",
    ),
    ("kserve-torchserve", [("pytorch", ["1"], 2, True)], ["v1", "v2", "grpc-v2"], "artifact", ""),
    (
        "kserve-tritonserver",
        [
            ("tensorrt", ["8"], 1, True),
            ("tensorflow", ["1", "2"], 1, True),
            ("onnx", ["1"], 1, True),
            ("triton", ["2"], 1, True),
            ("pytorch", ["1"], 1, False),
        ],
        ["v2", "grpc-v2"],
        "artifact",
        "",
    ),
    ("kserve-pmmlserver", [("pmml", ["3", "4"], 1, True)], ["v1", "v2"], "arg", "--model_name="),
    ("kserve-paddleserver", [("paddle", ["2"], 1, True)], ["v1", "v2"], "arg", "--model_name="),
    (
        "kserve-autogluonserver",
        [("autogluon", ["1"], 1, True)],
        ["v1", "v2"],
        "arg",
        "--model_name=",
    ),
    ("kserve-vllmserver", [("vLLM", ["1"], 1, True)], [], "arg", "--served-model-name="),
)


# modelmesh-serving's default ClusterServingRuntimes (its quickstart installs them), the
# same way: multi-model, spoken to over gRPC v2 through ModelMesh's built-in adapters.
_MODEL_MESH_DEFAULTS: tuple[tuple[str, list[tuple[str, str]]], ...] = (
    # (name, [(format, version)]), every format auto-selected
    ("mlserver-1.x", [("sklearn", "0"), ("xgboost", "1"), ("lightgbm", "3")]),
    (
        "triton-2.x",
        [("keras", "2"), ("onnx", "1"), ("pytorch", "1"), ("tensorflow", "1"), ("tensorflow", "2")],
    ),
    ("ovms-1.x", [("openvino_ir", "opset1"), ("onnx", "1")]),
)


def model_mesh_cluster_serving_runtimes() -> list[dict[str, Any]]:
    """modelmesh-serving's default runtimes as API objects (multi-model)."""
    return [
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterServingRuntime",
            "metadata": {"name": name},
            "spec": {
                "supportedModelFormats": [
                    {"name": fmt, "version": version, "autoSelect": True}
                    for fmt, version in formats
                ],
                "protocolVersions": [MODEL_MESH_PROTOCOL],
                "multiModel": True,
                "grpcEndpoint": "port:8085",
                "grpcDataEndpoint": "port:8001",
                "containers": [
                    {
                        "name": name.split("-", 1)[0],
                        "image": f"example.invalid/modelpilot-placeholder/{name}:latest",
                    }
                ],
            },
        }
        for name, formats in _MODEL_MESH_DEFAULTS
    ]


def default_cluster_serving_runtimes() -> list[dict[str, Any]]:
    """KServe's default ClusterServingRuntimes as API objects, then modelmesh-serving's
    (for the offline resolver and for installing into the simulated cluster)."""
    objects: list[dict[str, Any]] = []
    for name, formats, protocols, naming_kind, key in _DEFAULTS:
        container: dict[str, Any] = {
            "name": "kserve-container",
            "image": f"example.invalid/modelpilot-placeholder/{name}:latest",
            "args": ["--model_dir=/mnt/models", "--http_port=8080"],
        }
        if naming_kind == "arg":
            container["args"] = [f"{key}{NAME_TEMPLATE}", *container["args"]]
        elif naming_kind == "env":
            container["args"] = []
            container["env"] = [
                {"name": key, "value": NAME_TEMPLATE},
                {"name": "MLSERVER_MODEL_URI", "value": "/mnt/models"},
            ]
        spec: dict[str, Any] = {
            "supportedModelFormats": [
                {"name": fmt, "version": version, "autoSelect": auto, "priority": priority}
                for fmt, versions, priority, auto in formats
                for version in versions
            ],
            "containers": [container],
        }
        if protocols:
            spec["protocolVersions"] = protocols
        objects.append(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ClusterServingRuntime",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    return objects + model_mesh_cluster_serving_runtimes()


def default_runtimes() -> list[ServingRuntimeInfo]:
    return [parse_serving_runtime(obj) for obj in default_cluster_serving_runtimes()]
