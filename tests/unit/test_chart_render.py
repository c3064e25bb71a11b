"""The chart rendered by `helm template` (offline, no cluster) with values other than
the defaults: replicas and leader election, the PodDisruptionBudget, the default
anti-affinity, the leader election's Role, and the values the chart refuses.

helm is the pinned one `make tools` builds. Without it these tests skip, except under
CI=true, where a missing tool is a failure. tests/cluster/test_chart.py installs the
chart for real.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml

from modelpilot_dev import tools
from modelpilot_dev.checkout import checkout_root

CHART = checkout_root() / "charts" / "modelpilot"
RELEASE_NAMESPACE = "ops"
# The chart's kubeVersion check needs one offline; the output does not depend on it.
KUBE_VERSION = "1.36.3"
ELECTION_FLAGS = ("--leader-elect", "--no-leader-elect", "--lease-", "--renew-", "--retry-")
SELECTOR = {"app.kubernetes.io/name": "modelpilot", "app.kubernetes.io/instance": "modelpilot"}

Objects = dict[tuple[str, str | None, str], dict[str, Any]]


@pytest.fixture(scope="module")
def helm() -> str:
    path = tools.binary_path("helm")
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if not path.is_file() and not in_ci:
        pytest.skip("needs the pinned helm: run `make tools`")
    return str(path)


def template(helm: str, *values: str) -> subprocess.CompletedProcess[str]:
    """`helm template` release `modelpilot` into namespace ops, with these values."""
    return subprocess.run(
        [
            helm, "template", "modelpilot", str(CHART),
            "--namespace", RELEASE_NAMESPACE, "--kube-version", KUBE_VERSION, *values,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def render(helm: str, *values: str) -> Objects:
    """The rendered documents by (kind, namespace, name)."""
    result = template(helm, *values)
    assert result.returncode == 0, result.stderr
    found: Objects = {}
    for document in yaml.safe_load_all(result.stdout):
        if document:
            meta = document["metadata"]
            found[(document["kind"], meta.get("namespace"), meta["name"])] = document
    return found


def refusal(helm: str, *values: str) -> str:
    result = template(helm, *values)
    assert result.returncode != 0, f"helm template accepted {values}"
    return result.stderr


def deployment(rendered: Objects) -> dict[str, Any]:
    return rendered[("Deployment", RELEASE_NAMESPACE, "modelpilot")]


def election_args(rendered: Objects) -> list[str]:
    args = deployment(rendered)["spec"]["template"]["spec"]["containers"][0]["args"]
    return [arg for arg in args if arg.startswith(ELECTION_FLAGS)]


def lease_rules(rendered: Objects) -> dict[tuple[str, str | None, str], list[dict[str, Any]]]:
    """Every role's rules that name leases, by the role's (kind, namespace, name)."""
    return {
        key: [rule for rule in obj["rules"] if "leases" in rule["resources"]]
        for key, obj in rendered.items()
        if key[0] in ("Role", "ClusterRole")
        and any("leases" in rule["resources"] for rule in obj["rules"])
    }


def test_two_replicas_roll_one_at_a_time_with_a_budget_spread_over_nodes(helm: str) -> None:
    rendered = render(helm)
    spec = deployment(rendered)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    budget = rendered[("PodDisruptionBudget", RELEASE_NAMESPACE, "modelpilot")]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}
    assert spec["selector"]["matchLabels"] == SELECTOR
    pod = spec["template"]["spec"]
    (preferred,) = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": SELECTOR},
    }
    assert set(pod["affinity"]) == {"podAntiAffinity"}  # preferred only: never Pending
    (container,) = pod["containers"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert election_args(rendered) == [
        "--leader-elect",
        "--lease-name=modelpilot",
        "--lease-namespace=ops",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
    ]


def test_election_values_reach_the_flags_and_the_role(helm: str) -> None:
    rendered = render(
        helm,
        "--set", "replicas=3",
        "--set", "leaderElection.leaseName=models-leader",
        "--set", "leaderElection.leaseDuration=30",
        "--set", "leaderElection.renewDeadline=20",
        "--set", "leaderElection.retryPeriod=5",
        "--set", "podDisruptionBudget.maxUnavailable=50%",
    )  # fmt: skip
    assert deployment(rendered)["spec"]["replicas"] == 3
    assert election_args(rendered) == [
        "--leader-elect",
        "--lease-name=models-leader",
        "--lease-namespace=ops",
        "--lease-duration=30",
        "--renew-deadline=20",
        "--retry-period=5",
    ]
    role = ("Role", RELEASE_NAMESPACE, "modelpilot-leader-election")
    assert lease_rules(rendered)[role][1]["resourceNames"] == ["models-leader"]
    budget = rendered[("PodDisruptionBudget", RELEASE_NAMESPACE, "modelpilot")]
    assert budget["spec"]["maxUnavailable"] == "50%"


@pytest.mark.parametrize(
    "watch",
    [[], ["--set", "watchNamespaces={team-a,team-b}"], ["--set", "watchNamespaces={ops,team-a}"]],
    ids=["all-namespaces", "watch-namespaces", "watch-the-release-namespace"],
)
def test_the_lease_role_is_in_the_release_namespace_only(helm: str, watch: list[str]) -> None:
    """get, create and update on leases, nothing else, in a Role of the release
    namespace, whether the operator manages every namespace or a few (the release's
    own among them, where its models' Role has another name)."""
    rendered = render(helm, *watch)
    role = ("Role", RELEASE_NAMESPACE, "modelpilot-leader-election")
    assert lease_rules(rendered) == {
        role: [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": ["modelpilot"],
                "verbs": ["get", "update"],
            },
        ]
    }
    verbs = {verb for rule in lease_rules(rendered)[role] for verb in rule["verbs"]}
    assert verbs == {"get", "create", "update"}
    binding = rendered[("RoleBinding", RELEASE_NAMESPACE, "modelpilot-leader-election")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "modelpilot-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "modelpilot", "namespace": RELEASE_NAMESPACE}
    ]
    # Nothing cluster-wide grants leases, and no other namespace gets the Role.
    assert not any(
        key[2] == "modelpilot-leader-election" and key[1] != RELEASE_NAMESPACE for key in rendered
    )


def test_more_than_one_replica_needs_leader_election(helm: str) -> None:
    said = refusal(helm, "--set", "replicas=2", "--set", "leaderElection.enabled=false")
    assert "replicas is 2 but leaderElection.enabled is false" in said
    said = refusal(helm, "--set", "leaderElection.enabled=false")  # the default replicas: 2
    assert "replicas is 2 but leaderElection.enabled is false" in said


def test_one_replica_without_leader_election_is_recreated_without_a_lease(helm: str) -> None:
    rendered = render(helm, "--set", "replicas=1", "--set", "leaderElection.enabled=false")
    spec = deployment(rendered)["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    assert election_args(rendered) == ["--no-leader-elect"]
    assert lease_rules(rendered) == {}
    assert not any(key[2] == "modelpilot-leader-election" for key in rendered)
    assert not any(kind == "PodDisruptionBudget" for kind, _, _ in rendered)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (
            "leaderElection.renewDeadline=15",
            "leaderElection.renewDeadline (15) must be less than leaderElection.leaseDuration (15)",
        ),
        (
            "leaderElection.leaseDuration=8",
            "leaderElection.renewDeadline (10) must be less than leaderElection.leaseDuration (8)",
        ),
        (
            "leaderElection.retryPeriod=10",
            "leaderElection.retryPeriod (10) must be less than leaderElection.renewDeadline (10)",
        ),
    ],
)
def test_lease_timings_out_of_order_are_refused(helm: str, value: str, complaint: str) -> None:
    assert complaint in refusal(helm, "--set", value)
    # Without leader election the timings are unused: not checked.
    render(helm, "--set", "replicas=1", "--set", "leaderElection.enabled=false", "--set", value)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=-1", "at '/replicas': minimum: got -1, want 0"),
        ("replicas=two", "at '/replicas': got string, want integer"),
        ("leaderElection.enabled=yes", "at '/leaderElection/enabled': got string, want boolean"),
        ("leaderElection.leaseDuration=0", "at '/leaderElection/leaseDuration': minimum: got 0"),
        ("leaderElection.retryPeriod=0", "at '/leaderElection/retryPeriod': minimum: got 0"),
        ("leaderElection.leaseName=Lease_1", "at '/leaderElection/leaseName': 'Lease_1' does not"),
        ("leaderElection.lease=x", "at '/leaderElection': additional properties 'lease'"),
        ("podDisruptionBudget.enabled=no", "at '/podDisruptionBudget/enabled': got string"),
        ("podDisruptionBudget.maxUnavailable=0", "at '/podDisruptionBudget/maxUnavailable'"),
    ],
)
def test_new_values_that_break_the_schema_are_refused(
    helm: str, value: str, complaint: str
) -> None:
    said = refusal(helm, "--set", value)
    assert "don't meet the specifications of the schema" in said
    assert complaint in said


@pytest.mark.parametrize(
    "values",
    [
        ["--set", "replicas=1"],
        ["--set", "replicas=0"],
        ["--set", "podDisruptionBudget.enabled=false"],
    ],
    ids=["one-replica", "stopped", "disabled"],
)
def test_no_budget_without_a_second_replica_or_when_disabled(helm: str, values: list[str]) -> None:
    rendered = render(helm, *values)
    assert not any(kind == "PodDisruptionBudget" for kind, _, _ in rendered)


def test_a_users_affinity_replaces_the_default(helm: str) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                ]
            }
        }
    }
    rendered = render(helm, "--set-json", f"affinity={json.dumps(affinity)}")
    assert deployment(rendered)["spec"]["template"]["spec"]["affinity"] == affinity


def test_a_registry_webhook_secret_serves_the_receiver_behind_its_own_service(helm: str) -> None:
    assert ("Service", RELEASE_NAMESPACE, "modelpilot-registry-webhook") not in render(helm)
    rendered = render(helm, "--set", "registryWebhook.secretName=mlflow-webhook")
    pod = deployment(rendered)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--registry-webhook-port=8082" in container["args"]
    secret_file = "--registry-webhook-secret-file=/etc/modelpilot/registry-webhook/secret"
    assert secret_file in container["args"]
    assert {"name": "registry-hook", "containerPort": 8082, "protocol": "TCP"} in container["ports"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "registry-webhook")
    assert mount["mountPath"] == "/etc/modelpilot/registry-webhook" and mount["readOnly"]
    volume = next(v for v in pod["volumes"] if v["name"] == "registry-webhook")
    assert volume["secret"] == {
        "secretName": "mlflow-webhook",
        "items": [{"key": "secret", "path": "secret"}],
    }
    service = rendered[("Service", RELEASE_NAMESPACE, "modelpilot-registry-webhook")]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "registry-hook", "protocol": "TCP"}
    ]
    # Mounted, never read through the API: no Role or rule names Secrets.
    assert not any(
        "secrets" in rule.get("resources", [])
        for key, obj in rendered.items()
        if key[0] in ("Role", "ClusterRole")
        for rule in obj["rules"]
    )
    said = refusal(helm, "--set", "registryWebhook.secretName=Bad_Name")
    assert "at '/registryWebhook/secretName'" in said


def test_shards_get_a_deployment_a_budget_and_a_lease_each(helm: str) -> None:
    rendered = render(helm, "--set", "shards=3")
    assert ("Deployment", RELEASE_NAMESPACE, "modelpilot") not in rendered
    for shard in range(3):
        name = f"modelpilot-shard-{shard}"
        pod = rendered[("Deployment", RELEASE_NAMESPACE, name)]["spec"]
        args = pod["template"]["spec"]["containers"][0]["args"]
        assert ["--shards=3", f"--shard={shard}"] == [a for a in args if a.startswith("--shard")]
        assert pod["selector"]["matchLabels"]["modelpilot.io/shard"] == str(shard)
        assert pod["template"]["metadata"]["labels"]["modelpilot.io/shard"] == str(shard)
        budget = rendered[("PodDisruptionBudget", RELEASE_NAMESPACE, name)]["spec"]
        assert budget["selector"]["matchLabels"]["modelpilot.io/shard"] == str(shard)
    by_name = next(rule for rule in lease_rules(rendered).popitem()[1] if "resourceNames" in rule)
    assert by_name["resourceNames"] == [f"modelpilot-shard-{i}" for i in range(3)]
    unsharded = deployment(render(helm))
    assert "modelpilot.io/shard" not in unsharded["spec"]["selector"]["matchLabels"]
    assert "at '/shards'" in refusal(helm, "--set", "shards=0")
