"""The generated CRD: committed copies in sync, structural, described, with its rules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelpilot.api.crd import CRD_FILE_NAME, crd_yaml, managed_model_crd
from modelpilot_dev.checkout import checkout_root

ROOT = checkout_root()


@pytest.mark.parametrize("folder", ["manifests/crd", "charts/modelpilot/crds"])
def test_committed_crd_matches_generator(folder: str) -> None:
    committed = (ROOT / folder / CRD_FILE_NAME).read_text()
    assert committed == crd_yaml(), f"{folder}/{CRD_FILE_NAME} drifted: run `make manifests`"


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if "items" in schema:
        found += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += walk(schema["additionalProperties"], f"{path}{{}}")
    return found


def schema() -> dict[str, Any]:
    return managed_model_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_every_field_has_a_description() -> None:
    missing = [
        path
        for path, node in walk(schema())
        if not path.endswith(("[]", "{}", ".metadata")) and not node.get("description")
    ]
    assert missing == []


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert not {"$ref", "anyOf", "title", "$defs"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path


def test_quantities_and_open_objects() -> None:
    nodes = dict(walk(schema()))
    quantity = nodes[".spec.resources.limits{}"]
    assert quantity["x-kubernetes-int-or-string"] is True and quantity["minimum"] == 0
    assert re.match(quantity["pattern"], "8Gi") and not re.match(quantity["pattern"], "-1Gi")
    assert not re.match(quantity["pattern"], "lots")
    assert nodes[".spec.autoscaling.behavior"]["x-kubernetes-preserve-unknown-fields"] is True
    assert nodes[".spec.protocolVersion"]["enum"] == ["v1", "v2"]
    assert "default" not in nodes[".spec.protocolVersion"]
    assert nodes[".spec.versions"]["maxItems"] == 15
    assert nodes[".spec.traffic.hostnames"]["maxItems"] == 16


def test_names_columns_and_status() -> None:
    crd = managed_model_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "ManagedModel",
        "managedmodels",
        ["mm"],
        ["modelpilot"],
    )
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Stable",
        "Canary",
        "Weight",
        "Phase",
        "Ready",
        "Strategy",
        "Age",
    ]


def test_cel_rules_present() -> None:
    messages = [
        rule["message"]
        for _, node in walk(schema())
        for rule in node.get("x-kubernetes-validations", [])
    ]
    for expected in (
        "version names must be unique",
        "rollout.target must name a version in spec.versions",
        "set exactly one of storageUri or storage",
        "stepWeights must be strictly increasing",
        "minReplicas must not exceed maxReplicas",
    ):
        assert expected in messages
    assert any(m.startswith("metadata.name must be a DNS-1035 label") for m in messages)
    assert any(m.startswith("'<model>-<version>-predictor' must fit") for m in messages)
