"""The chart, the raw manifests and the Dockerfile, read as files (no helm, no cluster).

tests/cluster/test_chart.py renders and installs them; these checks say quickly what a
reviewer would: versions agree, every value and every RBAC rule says why it is there,
and the raw manifests are exactly what the kustomization and install.yaml list.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

import modelpilot
from modelpilot_dev.checkout import checkout_root

ROOT = checkout_root()
CHART = ROOT / "charts" / "modelpilot"
MANIFESTS = ROOT / "manifests"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):")
# Keys inside a Kubernetes ResourceRequirements: their parent's comment covers them.
UNCOMMENTED_UNDER = ("resources.requests.", "resources.limits.")
# `modelpilot run`'s leader election flags.
ELECTION_FLAGS = ("--leader-elect", "--no-leader-elect", "--lease-", "--renew-", "--retry-")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_chart_versions_follow_the_package() -> None:
    chart = load(CHART / "Chart.yaml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "modelpilot"
    assert chart["appVersion"] == project["version"] == modelpilot.__version__
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    path: list[tuple[int, str]] = []
    missing = []
    for number, line in enumerate(lines):
        match = KEY.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
        dotted = ".".join(k for _, k in path)
        previous = lines[number - 1].strip() if number else ""
        if not previous.startswith("#") and not dotted.startswith(UNCOMMENTED_UNDER):
            missing.append(dotted)
    assert missing == []


def test_schema_covers_exactly_the_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = load(CHART / "values.yaml")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) - {"global"} == set(values)
    assert set(schema["required"]) <= set(values)
    assert values["routeGate"] is True
    assert values["watchNamespaces"] == []
    assert values["kserveLegacyRawDeployment"] is False
    assert values["image"]["tag"] == ""  # the chart's appVersion
    # Two replicas, one leading on a Lease; a PDB and a spread across nodes by default.
    assert values["replicas"] == 2
    assert values["leaderElection"] == {
        "enabled": True,
        "leaseName": "",  # the release's full name
        "leaseDuration": 15,
        "renewDeadline": 10,
        "retryPeriod": 2,
    }
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    assert values["affinity"] == {}  # the chart's default anti-affinity
    election = schema["properties"]["leaderElection"]
    assert election["additionalProperties"] is False
    assert set(election["properties"]) == set(values["leaderElection"])
    for key in ("leaseDuration", "renewDeadline", "retryPeriod"):
        assert election["properties"][key] == {**election["properties"][key], "type": "integer"}
        assert election["properties"][key]["minimum"] == 1
    assert schema["properties"]["replicas"] == {
        **schema["properties"]["replicas"], "type": "integer", "minimum": 0
    }  # fmt: skip
    budget = schema["properties"]["podDisruptionBudget"]
    assert budget["additionalProperties"] is False
    assert set(budget["properties"]) == set(values["podDisruptionBudget"])


def test_chart_crd_is_the_generated_one() -> None:
    crd = "modelpilot.io_managedmodels.yaml"
    assert (CHART / "crds" / crd).read_text() == (MANIFESTS / "crd" / crd).read_text()


def rules_with_comments(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each RBAC rule with the comment lines right above it ("" when none)."""
    lines = path.read_text().splitlines()
    found = []
    for number, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            comment = []
            above = number - 1
            while above >= 0 and lines[above].startswith("#"):
                comment.insert(0, lines[above].lstrip("# "))
                above -= 1
            found.append(" ".join(comment))
    rules = [rule for doc in documents(path) for rule in doc.get("rules") or []]
    assert len(found) == len(rules)
    return list(zip(found, rules, strict=True))


def test_every_rbac_rule_says_why_and_grants_no_wildcard_or_secret() -> None:
    rules = rules_with_comments(MANIFESTS / "rbac" / "roles.yaml")
    assert len(rules) >= 10
    for comment, rule in rules:
        assert comment, f"rule without a comment: {rule}"
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        if rule["resources"] == ["pods"]:
            assert rule["verbs"] == ["list"]
        if rule["resources"] == ["traefikservices"]:
            # A shadow's TraefikService is read by name and deleted, never listed.
            assert rule["verbs"] == ["get", "create", "patch", "delete"]
    assert any(rule["resources"] == ["traefikservices"] for _, rule in rules)


def test_the_lease_is_the_operators_in_the_release_namespace_only() -> None:
    """Leader election's RBAC: a Role (never a ClusterRole) in the namespace the raw
    manifests install into, to create leases and get and update the one Lease by name;
    no list, no watch, no other role touches leases."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in documents(MANIFESTS / "rbac" / "roles.yaml"):
        by_kind.setdefault(doc["kind"], []).append(doc)
    leases = [
        (doc, rule)
        for docs in by_kind.values()
        for doc in docs
        for rule in doc.get("rules") or []
        if "leases" in rule["resources"]
    ]
    assert {(doc["kind"], doc["metadata"]["namespace"]) for doc, _ in leases} == {
        ("Role", "modelpilot-system")
    }
    assert [rule for _, rule in leases] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["modelpilot"],
            "verbs": ["get", "update"],
        },
    ]
    (binding,) = [
        doc
        for doc in by_kind["RoleBinding"]
        if doc["roleRef"]["name"] == leases[0][0]["metadata"]["name"]
    ]
    assert binding["metadata"]["namespace"] == "modelpilot-system"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "modelpilot", "namespace": "modelpilot-system"}
    ]


def test_the_kustomization_and_install_yaml_hold_the_same_documents() -> None:
    kustomization = load(MANIFESTS / "kustomization.yaml")
    listed = [MANIFESTS / name for name in kustomization["resources"]]
    assert all(path.is_file() for path in listed)
    generated = sorted((MANIFESTS / "rbac").glob("*.yaml")) + sorted(
        (MANIFESTS / "operator").glob("*.yaml")
    )
    assert set(generated) <= set(listed)  # no file left out of the install
    in_order = [doc for path in listed for doc in documents(path)]
    assert documents(MANIFESTS / "install.yaml") == in_order
    assert [doc["kind"] for doc in in_order[:2]] == ["CustomResourceDefinition", "Namespace"]


def test_operator_deployment_is_two_restricted_pods_electing_a_leader() -> None:
    deployment = next(
        doc for doc in documents(MANIFESTS / "operator" / "deployment.yaml")
        if doc["kind"] == "Deployment"
    )  # fmt: skip
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    # The new pod starts (a standby) before an old one stops and releases the Lease.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = spec["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert [arg for arg in args if arg.startswith(ELECTION_FLAGS)] == [
        "--leader-elect",
        "--lease-name=modelpilot",
        "--lease-namespace=modelpilot-system",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
    ]
    assert pod["containers"][0]["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    selector = spec["selector"]["matchLabels"]
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector},
                    },
                }
            ]
        }
    }
    (budget,) = documents(MANIFESTS / "operator" / "poddisruptionbudget.yaml")
    assert budget["kind"] == "PodDisruptionBudget"
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["resources"]["limits"]["memory"]


def test_dockerfile_is_multi_stage_non_root_and_runs_the_operator() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert sum(line.startswith("FROM ") for line in lines) == 2
    assert any("pip wheel" in line for line in lines)
    assert any("pip install" in line and ".whl" in line for line in lines)
    user = next(line.split()[1] for line in lines if line.startswith("USER "))
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert lines[-1] == 'ENTRYPOINT ["modelpilot", "run"]'
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!operator/" in ignored and "!pyproject.toml" in ignored
