"""Generate KServe's CRDs (InferenceService, ServingRuntime, ClusterServingRuntime).

KServe publishes its CRD YAML only in its own repository, which this project cannot
fetch, and no package ships it. The `kserve` Python SDK does ship the API's model classes
(`openapi_types` maps each Python attribute to a type name, `attribute_map` maps it to
the JSON key), and the `kubernetes` client ships the core types they reference, so the
structural schema is rebuilt by walking those classes.

The result is strict where it matters to modelpilot: a field that KServe does not have is
refused by the API server (server-side apply reports "field not declared in schema"), so a
renderer that emits a misspelt or invented field fails in the cluster tests as it would in
a real cluster. Validation that the SDK cannot express (required fields, enums, CEL rules
and KServe's webhooks) is not reproduced.

The SDK is heavy (FastAPI, pandas, grpc), so it is imported lazily here and this module is
never imported by the operator.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

Schema = dict[str, Any]

GROUP = "serving.kserve.io"

# Deeper than any real path through the KServe and core types (about 12); the limit only
# guards against a self-referencing type, which then accepts anything below that level.
MAX_DEPTH = 24

_LIST = re.compile(r"^(?:list|List)\[(?P<item>.+)\]$")
_DICT = re.compile(r"^(?:dict\(|Dict\[)\s*str\s*,\s*(?P<value>.+?)\s*[)\]]$")

_PRIMITIVES: dict[str, Schema] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    # metav1.Time under its Go name (the SDK did not generate a class for it).
    "V1Time": {"type": "string", "format": "date-time"},
}

# A resource.Quantity is written as `1`, `"1"` or `"500m"`; the API server stores it as a
# string. Kubernetes' own CRD generator declares it the same way.
QUANTITY: Schema = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}
# intstr.IntOrString (ports, maxSurge): the Python client types these as plain `object`.
INT_OR_STRING: Schema = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}
# Anything the SDK leaves open: the accepted value cannot be narrowed without guessing.
OPEN: Schema = {"x-kubernetes-preserve-unknown-fields": True}

_QUANTITY_TYPES = {"ResourceQuantity", "Quantity", "V1beta1MetricQuantity"}

# Attributes that the Python clients type as `str` (or a dict of `str`) although the Go
# type is a Quantity, so an integer such as `nvidia.com/gpu: 1` must be accepted there.
_QUANTITY_FIELDS = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
    ("V1EmptyDirVolumeSource", "size_limit"),
    ("V1ResourceFieldSelector", "divisor"),
}

# Attributes the clients type as `object`: IntOrString ones get the narrow schema; the
# rest (FieldsV1 in managedFields) really are arbitrary JSON.
_INT_OR_STRING_FIELDS = {
    ("V1HTTPGetAction", "port"),
    ("V1TCPSocketAction", "port"),
    ("V1GRPCAction", "port"),
    ("V1RollingUpdateDeployment", "max_surge"),
    ("V1RollingUpdateDeployment", "max_unavailable"),
}

# Type names the KServe SDK references but never generated a class for. Kubernetes' own
# types resolve to the kubernetes client's class of the same Go type. KServe's
# v1alpha1.WorkerSpec and Knative's types have no class anywhere: they stay open.
_ALIASES = {
    "K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior": "V2HorizontalPodAutoscalerBehavior",
}


def _find_class(name: str) -> type | None:
    import kserve.models as kserve_models  # heavy: only when generating
    import kubernetes.client.models as k8s_models

    name = _ALIASES.get(name, name)
    for module in (kserve_models, k8s_models):
        cls: type | None = getattr(module, name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return cls
    return None


class SchemaBuilder:
    """Turns SDK type names into structural OpenAPI v3 schemas.

    `unresolved` collects the type names that fell back to an open schema, so tests can
    check that nothing unexpected did.
    """

    def __init__(self, find_class: Callable[[str], type | None] = _find_class) -> None:
        self._find_class = find_class
        self.unresolved: set[str] = set()

    def for_type(
        self,
        type_name: str,
        *,
        owner: str = "",
        attr: str = "",
        depth: int = 0,
        path: tuple[str, ...] = (),
    ) -> Schema:
        type_name = type_name.strip()
        if (m := _LIST.match(type_name)) is not None:
            item = self.for_type(m["item"], owner=owner, attr=attr, depth=depth + 1, path=path)
            return {"type": "array", "items": item}
        if (m := _DICT.match(type_name)) is not None:
            value = self.for_type(m["value"], owner=owner, attr=attr, depth=depth + 1, path=path)
            return {"type": "object", "additionalProperties": value}
        if type_name in _QUANTITY_TYPES or (owner, attr) in _QUANTITY_FIELDS:
            return copy.deepcopy(QUANTITY)
        if type_name == "object":
            return copy.deepcopy(INT_OR_STRING if (owner, attr) in _INT_OR_STRING_FIELDS else OPEN)
        if type_name in _PRIMITIVES:
            return copy.deepcopy(_PRIMITIVES[type_name])
        cls = self._find_class(type_name)
        if cls is None:
            self.unresolved.add(type_name)
            return dict(OPEN)
        if depth > MAX_DEPTH or type_name in path:
            return dict(OPEN)
        return self.for_class(cls, depth=depth + 1, path=(*path, type_name))

    def for_class(self, cls: type, *, depth: int = 0, path: tuple[str, ...] = ()) -> Schema:
        types: dict[str, str] = cls.openapi_types  # type: ignore[attr-defined]
        keys: dict[str, str] = cls.attribute_map  # type: ignore[attr-defined]
        properties = {
            keys[attr]: self.for_type(
                type_name, owner=cls.__name__, attr=attr, depth=depth, path=path
            )
            for attr, type_name in sorted(types.items())
        }
        return {"type": "object", "properties": properties}


def _root_schema(spec: Schema) -> Schema:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            # KServe's controller owns status and it is built from Knative types that the
            # SDK lacks; the simulated cluster lets tests write any status there.
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }


def _crd(
    *,
    kind: str,
    plural: str,
    version: str,
    scope: str,
    schema: Schema,
    short_names: list[str] | None = None,
    columns: list[Schema] | None = None,
) -> dict[str, Any]:
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if short_names:
        names["shortNames"] = short_names
    version_entry: dict[str, Any] = {
        "name": version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
    }
    if columns:
        version_entry["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "names": names, "scope": scope, "versions": [version_entry]},
    }


def kserve_version() -> str:
    from importlib.metadata import version

    return version("kserve")


def generate(builder: SchemaBuilder | None = None) -> list[dict[str, Any]]:
    """The three CRDs as API objects, InferenceService first."""
    builder = builder or SchemaBuilder()
    isvc_spec = builder.for_type("V1beta1InferenceServiceSpec")
    runtime_spec = builder.for_type("V1alpha1ServingRuntimeSpec")
    isvc_columns = [
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return [
        _crd(
            kind="InferenceService",
            plural="inferenceservices",
            version="v1beta1",
            scope="Namespaced",
            schema=_root_schema(isvc_spec),
            short_names=["isvc"],
            columns=isvc_columns,
        ),
        _crd(
            kind="ServingRuntime",
            plural="servingruntimes",
            version="v1alpha1",
            scope="Namespaced",
            schema=_root_schema(runtime_spec),
        ),
        _crd(
            kind="ClusterServingRuntime",
            plural="clusterservingruntimes",
            version="v1alpha1",
            scope="Cluster",
            schema=_root_schema(runtime_spec),
        ),
    ]
