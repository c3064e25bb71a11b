"""Generate the ManagedModel CRD from the pydantic models.

The pydantic JSON schema is close to, but not, a Kubernetes structural schema: it uses
$refs, anyOf-with-null for optional fields and titles. This turns it into one: refs
inlined, optionals collapsed, int-or-string quantities marked, open objects marked
`x-kubernetes-preserve-unknown-fields`, CEL rules carried over.
"""

from __future__ import annotations

from typing import Any

import yaml

from modelpilot.api.model import (
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from modelpilot.api.spec import MAX_MODEL_PLUS_VERSION, REGISTRY_VERSION_ROOM, ManagedModelSpec
from modelpilot.api.status import ManagedModelStatus

CRD_FILE_NAME = f"{GROUP}_{PLURAL}.yaml"

_KEPT_KEYWORDS = (
    "type", "description", "enum", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "maxProperties", "x-kubernetes-validations",
)  # fmt: skip

_ROOT_RULES = [
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must be a DNS-1035 label (lower-case letters, digits and "
        "'-', starting with a letter, no dots): it names Services",
    },
    {
        "rule": f"!has(self.spec.versions) || self.spec.versions.all(v, "
        f"size(self.metadata.name) + size(v.name) <= {MAX_MODEL_PLUS_VERSION})",
        "message": "'<model>-<version>-predictor' must fit in 63 characters: keep model and "
        f"version names within {MAX_MODEL_PLUS_VERSION} characters together",
    },
    {
        "rule": f"!has(self.spec.registry) || size(self.metadata.name) <= "
        f"{MAX_MODEL_PLUS_VERSION - REGISTRY_VERSION_ROOM}",
        "message": "with spec.registry versions are named v<number> (up to "
        f"{REGISTRY_VERSION_ROOM} characters): keep metadata.name within "
        f"{MAX_MODEL_PLUS_VERSION - REGISTRY_VERSION_ROOM} characters",
    },
]

_PRINTER_COLUMNS = [
    ("Stable", "string", ".status.stableVersion", "Version with all traffic at rest"),
    ("Canary", "string", ".status.canaryVersion", "Version being rolled out"),
    ("Weight", "integer", ".status.canaryWeight", "Percent of traffic on the canary"),
    ("Phase", "string", ".status.phase", "Rollout phase"),
    ("Ready", "string", ".status.readyVersions", "Ready versions out of all"),
    ("Strategy", "string", ".spec.rollout.strategy", "Canary, ABTest or BlueGreen"),
    ("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
]


def structural_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn a pydantic JSON schema (with its $defs) into a Kubernetes structural schema."""
    defs = schema.get("$defs", {})
    return _convert(schema, defs)


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        types = sorted(b.get("type", "") for b in branches)
        if types == ["integer", "string"]:
            # Each branch's bounds (an integer's minimum, a string's pattern) apply to
            # values of its type only, as in Kubernetes' own quantity schemas.
            bounds = {k: v for b in branches for k, v in b.items() if k != "type"}
            return _keep({**bounds, **outer, "x-kubernetes-int-or-string": True}, defs)
        if len(branches) != 1:
            raise ValueError(f"cannot express union {branches} in a structural schema")
        return _convert({**branches[0], **outer}, defs)
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    return _keep(node, defs)


def _keep(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: node[k] for k in _KEPT_KEYWORDS if k in node}
    if node.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-int-or-string"] = True
    default = node.get("default")
    if default is not None and not isinstance(default, dict):
        out["default"] = default
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if properties:
            out["properties"] = {k: _convert(v, defs) for k, v in properties.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(extra, dict):
            out["additionalProperties"] = _convert(extra, defs)
        else:
            # An object the spec passes through unchanged (HPA behavior, a deployment
            # strategy, an EnvVarSource): its shape is Kubernetes', checked downstream.
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = _convert(node["items"], defs)
    return out


def crd_schema() -> dict[str, Any]:
    spec = structural_schema(ManagedModelSpec.model_json_schema(by_alias=True))
    status = structural_schema(
        ManagedModelStatus.model_json_schema(by_alias=True, mode="serialization")
    )
    spec["description"] = "What the model should look like: its versions and how to ship them."
    status["description"] = "Where traffic is and what the operator observed."
    return {
        "type": "object",
        "description": "A model with versions, served by KServe, routed by the Gateway API, "
        "rolled out by canary.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "modelpilot.io/v1alpha1"},
            "kind": {"type": "string", "description": "ManagedModel"},
            # The apiserver allows nothing here but the type (and name rules).
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": _ROOT_RULES,
    }


def managed_model_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p, "description": d}
                        for n, t, p, d in _PRINTER_COLUMNS
                    ],
                    "schema": {"openAPIV3Schema": crd_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `modelpilot crd` from modelpilot.api. Do not edit.\n"
    return header + yaml.safe_dump(managed_model_crd(), sort_keys=False, width=100)
