"""What one version's predictor runs: the model-wide spec with the version's overrides,
GPUs, scheduling, and the served model name set the way the chosen runtime reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpilot.api import ManagedModel, ManagedModelSpec, ModelVersion, Problem
from modelpilot.runtimes import ServingRuntimeInfo, resolve_runtime


@dataclass(frozen=True)
class Predictor:
    version: str
    model_format: dict[str, str]
    runtime: str | None  # as the user named it; KServe picks when None
    resolved_runtime: str | None  # what KServe will run it on, when known
    runtime_version: str | None
    protocol_version: str | None
    storage_uri: str | None
    storage: dict[str, Any] | None
    args: list[str]
    env: list[dict[str, Any]]
    resources: dict[str, dict[str, Any]]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    service_account_name: str | None
    warnings: list[str] = field(default_factory=list)


def plan_predictor(
    model: ManagedModel,
    version: ModelVersion,
    runtimes: Sequence[ServingRuntimeInfo],
    *,
    all_runtimes: bool = False,
) -> Predictor | Problem:
    spec = model.spec
    index = spec.versions.index(version)
    format_version = version.model_format_version or spec.model_format.version
    runtime_name = version.runtime or spec.runtime
    args = [*spec.args, *version.args]
    env = _merge_env(spec, version)
    warnings: list[str] = []
    served = spec.served_model_name or model.name
    model_mesh = spec.serving.deployment_mode == "ModelMesh"

    resolution = resolve_runtime(
        runtimes,
        model_format=spec.model_format.name,
        model_format_version=format_version,
        protocol=spec.protocol_version,
        runtime_name=runtime_name,
        multi_model=model_mesh,
    )
    runtime = resolution.runtime
    where = f"spec.versions[{index}] ({version.name})"
    unknown = runtime_name and not any(r.name == runtime_name for r in runtimes)
    if runtime is None and unknown and all_runtimes:
        path = f"spec.versions[{index}].runtime" if version.runtime else "spec.runtime"
        return Problem(
            path,
            f"runtime {runtime_name!r} exists neither in namespace {model.namespace} nor in "
            "the cluster: create that ServingRuntime or name one that exists",
        )
    if runtime is None and unknown:
        # Offline (`modelpilot render`) only the default runtimes are known.
        warnings.append(
            f"{where}: runtime {runtime_name!r} is not known here, so modelpilot cannot "
            f"tell how it names the model; make sure it serves {served!r}"
        )
    elif runtime is None:
        path = f"spec.versions[{index}].runtime" if version.runtime else where
        return Problem(path, resolution.error)
    elif model_mesh:
        # ModelMesh names each model after its InferenceService, and its runtime pods
        # are shared: a model's own arguments and environment reach no process.
        runtime_name = runtime.name  # the one validated here, not ModelMesh's own pick
        if args or env:
            warnings.append(
                f"{where}: ModelMesh mode passes no args or env to the shared runtime "
                "pods; set them in the ServingRuntime"
            )
        args, env = [], []
    elif runtime.naming.kind == "arg":
        flag = runtime.naming.key.rstrip("=")
        if not any(a == flag or a.startswith(f"{flag}=") for a in args):
            args.append(f"{runtime.naming.key}{served}")
    elif runtime.naming.kind == "env":
        if not any(e["name"] == runtime.naming.key for e in env):
            env.append({"name": runtime.naming.key, "value": served})
    else:
        warnings.append(
            f"{where}: runtime {runtime.name} reads the model name from the artifact; "
            f"make sure it serves {served!r} or calls through the route get 404"
        )

    storage = (
        version.storage.model_dump(by_alias=True, exclude_defaults=True)
        if (version.storage is not None)
        else None
    )
    model_format = {"name": spec.model_format.name}
    if format_version:
        model_format["version"] = format_version
    return Predictor(
        version=version.name,
        model_format=model_format,
        runtime=runtime_name,
        resolved_runtime=runtime.name if runtime else None,
        runtime_version=version.runtime_version or spec.runtime_version,
        protocol_version=spec.protocol_version,
        storage_uri=version.storage_uri,
        storage=storage,
        args=args,
        env=env,
        resources=_resources(spec, version),
        node_selector=_node_selector(spec),
        tolerations=_tolerations(spec),
        service_account_name=version.service_account_name or spec.serving.service_account_name,
        warnings=warnings,
    )


def _merge_env(spec: ManagedModelSpec, version: ModelVersion) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for var in [*spec.env, *version.env]:
        merged[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    return list(merged.values())


def _resources(spec: ManagedModelSpec, version: ModelVersion) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in ("requests", "limits"):
        values = dict(getattr(spec.resources, kind))
        if version.resources is not None:
            values.update(getattr(version.resources, kind))
        if spec.gpu is not None:
            # Extended resources must have requests equal to limits; say both.
            # As a string, the form quantities take in Kubernetes' own types.
            values[spec.gpu.resource_name] = str(spec.gpu.count)
        if values:
            out[kind] = values
    return out


def _node_selector(spec: ManagedModelSpec) -> dict[str, str]:
    selector = dict(spec.serving.node_selector)
    if spec.gpu is not None and spec.gpu.product:
        selector["nvidia.com/gpu.product"] = spec.gpu.product
    return selector


def _tolerations(spec: ManagedModelSpec) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.serving.tolerations]
    if spec.gpu is not None and spec.gpu.tolerate:
        gpu = {"key": spec.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}
        if gpu not in tolerations:
            tolerations.append(gpu)
    return tolerations
