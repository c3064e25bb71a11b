"""The Helm chart and the raw manifests, on the real control plane.

helm and kubectl are the pinned ones the tools step built. Every install goes into a
namespace that enforces Pod Security "restricted", so a pod template that breaks the
profile is refused by the apiserver and the Deployment never becomes Available. The
operator's image does not exist here: kwok marks the scheduled pod Running, which is
what the kube-controller-manager needs to call the Deployment Available.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelpilot_dev import tools
from modelpilot_dev.cluster import ControlPlane
from tests.cluster.helpers import ROOT, eventually

pytestmark = pytest.mark.cluster

CHART = ROOT / "charts" / "modelpilot"
MANIFESTS = ROOT / "manifests"
KUSTOMIZE_NAMESPACE = "modelpilot-system"  # where manifests/ installs
CRD_NAME = "managedmodels.modelpilot.io"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
AVAILABLE_TIMEOUT = 120.0  # the machine is shared: generous, never a timing assertion


@dataclass(frozen=True)
class Cli:
    """helm and kubectl against the control plane, with helm's state in a temp dir."""

    helm_bin: str
    kubectl_bin: str
    env: dict[str, str]
    kube_version: str  # the apiserver's, e.g. v1.36.3

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([self.helm_bin, *args], self.env, check)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([self.kubectl_bin, *args], self.env, check)

    def template(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`helm template` offline, for the control plane's Kubernetes version."""
        return self.helm(
            "template", "modelpilot", str(CHART), "--kube-version", self.kube_version, *args,
            check=check,
        )  # fmt: skip

    def can_i(self, subject: str, *args: str) -> bool:
        result = self.kubectl("auth", "can-i", "--as", subject, *args, check=False)
        if result.returncode not in (0, 1):
            raise AssertionError(f"kubectl auth can-i {args}: {result.stderr}")
        return result.returncode == 0


def _run(argv: Sequence[str], env: dict[str, str], check: bool) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def make_cli(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Cli:
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    version = client.VersionApi(api_client).get_code().git_version
    return Cli(str(tools.binary_path("helm")), str(tools.binary_path("kubectl")), env, version)


def fresh_namespace(core: client.CoreV1Api, labels: dict[str, str] | None = None) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    # Pods are refused until the namespace's default service account exists.
    eventually(
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        timeout=30,
        what=f"the default service account in {name}",
    )
    return name


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise


@pytest.fixture
def restricted_namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace that enforces Pod Security "restricted"."""
    core = client.CoreV1Api(api_client)
    name = fresh_namespace(core, RESTRICTED)
    yield name
    delete_namespace(core, name)


@contextlib.contextmanager
def helm_release(cli: Cli, namespace: str, *args: str) -> Iterator[str]:
    """`helm install` a uniquely named release; always uninstalled afterwards."""
    name = f"mp-{uuid.uuid4().hex[:8]}"
    try:
        cli.helm("install", name, str(CHART), "--namespace", namespace, *args)
        yield name
    finally:
        cli.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def fullname(release: str) -> str:
    return release if "modelpilot" in release else f"{release}-modelpilot"


def operator_pods(
    api_client: client.ApiClient, namespace: str, name: str
) -> list[client.V1Pod] | None:
    """The Deployment's pods once it is rolled out on its current spec: every replica
    updated and available, no old pod left (terminating ones included), each Running on
    a kwok node; else None."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    deployment = apps.read_namespaced_deployment(name, namespace)
    status, want = deployment.status, deployment.spec.replicas
    available = any(c.type == "Available" and c.status == "True" for c in status.conditions or [])
    if not available or status.observed_generation != deployment.metadata.generation:
        return None
    if (status.replicas, status.updated_replicas, status.available_replicas) != (want,) * 3:
        return None
    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    if len(pods) != want or any(pod.metadata.deletion_timestamp is not None for pod in pods):
        return None
    for pod in pods:
        node = core.read_node(pod.spec.node_name) if pod.spec.node_name else None
        if node is None or (node.metadata.labels or {}).get("type") != "kwok":
            return None
        if pod.status.phase != "Running":
            return None
    return pods


def wait_available(api_client: client.ApiClient, namespace: str, name: str) -> list[client.V1Pod]:
    try:
        return eventually(
            lambda: operator_pods(api_client, namespace, name),
            timeout=AVAILABLE_TIMEOUT,
            interval=0.5,
            what=f"Deployment {namespace}/{name} rolled out, its pods on kwok nodes",
        )
    except AssertionError as timeout:
        raise AssertionError(
            f"{timeout}\n{why_not_available(api_client, namespace, name)}"
        ) from None


def why_not_available(api_client: client.ApiClient, namespace: str, name: str) -> str:
    """The Deployment's and its ReplicaSets' conditions (a Pod Security refusal shows
    as the ReplicaSet's ReplicaFailure)."""
    apps = client.AppsV1Api(api_client)
    deployment = apps.read_namespaced_deployment(name, namespace)
    said = [
        f"Deployment {c.type}={c.status} {c.reason}: {c.message}"
        for c in deployment.status.conditions or []
    ]
    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    for replica_set in apps.list_namespaced_replica_set(namespace, label_selector=selector).items:
        said += [
            f"ReplicaSet {replica_set.metadata.name} {c.type}={c.status}: {c.message}"
            for c in replica_set.status.conditions or []
        ]
    return "\n".join(said)


def container_args(api_client: client.ApiClient, namespace: str, name: str) -> list[str]:
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    return list(deployment.spec.template.spec.containers[0].args or [])


def gone(read: Any, *args: str) -> bool:
    try:
        read(*args)
    except ApiException as err:
        if err.status == 404:
            return True
        raise
    return False


def objects(text: str) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    """The documents of a multi-document YAML text, by (kind, namespace, name)."""
    found = {}
    for document in yaml.safe_load_all(text):
        if document:
            meta = document["metadata"]
            found[(document["kind"], meta.get("namespace"), meta["name"])] = document
    return found


# --- helm, offline ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "watchNamespaces={team-a,team-b}", "--set", "routeGate=false"]],
    ids=["defaults", "watch-namespaces"],
)
def test_helm_lint_strict(cli: Cli, values: list[str]) -> None:
    result = cli.helm("lint", "--strict", str(CHART), "--kube-version", cli.kube_version, *values)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("routeGate=maybe", "at '/routeGate': got string, want boolean"),
        ("watchNamespaces=team-a", "at '/watchNamespaces': got string, want array"),
        ("watchNamespaces={Team_A}", "'Team_A' does not match pattern"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
        ("replicas=-1", "at '/replicas': minimum: got -1, want 0"),
        ("leaderElection.leaseDuration=0", "at '/leaderElection/leaseDuration': minimum: got 0"),
        ("resources.requests.nvidia\\.com/gpu=1", "additional properties 'nvidia.com/gpu'"),
        ("gatewayFlavor=nginx", "at '/gatewayFlavor': value must be one of"),
        ("prometheusUrl=prometheus:9090", "at '/prometheusUrl': 'prometheus:9090' does not match"),
    ],
)
def test_values_that_break_the_schema_are_refused(cli: Cli, value: str, complaint: str) -> None:
    for command in (["template", "modelpilot"], ["lint"]):
        result = cli.helm(
            *command, str(CHART), "--kube-version", cli.kube_version, "--set", value, check=False
        )
        assert result.returncode != 0, f"helm {command[0]} accepted {value}"
        said = result.stdout + result.stderr  # lint reports on stdout
        assert "don't meet the specifications of the schema" in said
        assert complaint in said


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("leaderElection.enabled=false", "replicas is 2 but leaderElection.enabled is false"),
        (
            "leaderElection.renewDeadline=20",
            "leaderElection.renewDeadline (20) must be less than leaderElection.leaseDuration (15)",
        ),
    ],
)
def test_values_the_templates_refuse(cli: Cli, value: str, complaint: str) -> None:
    """What the schema cannot say, the templates refuse (`fail`): template and install
    stop on it. (`helm lint` only reports a template's `fail` as INFO.)"""
    for result in (
        cli.template("--set", value, check=False),
        cli.helm("install", "mp", str(CHART), "--dry-run=client", "--set", value, check=False),
    ):
        assert result.returncode != 0, f"{result.args} accepted {value}"
        assert complaint in result.stderr


def test_kube_version_gate(cli: Cli) -> None:
    assert cli.kube_version.startswith("v1.36.")  # the pinned, version-stamped apiserver
    assert cli.template(check=False).returncode == 0
    old = cli.helm("template", "x", str(CHART), "--kube-version", "1.29.9", check=False)
    assert old.returncode != 0
    assert "chart requires kubeVersion: >=1.30.0-0" in old.stderr


def test_values_reach_the_operator_and_rbac(cli: Cli) -> None:
    defaults = objects(cli.template("--namespace", "ops").stdout)
    args = defaults[("Deployment", "ops", "modelpilot")]["spec"]["template"]["spec"]["containers"][
        0
    ]["args"]
    assert args == [
        "--gateway-flavor=generic",
        "--mirror-settle=3",
        "--drain-delay=5",
        "--leader-elect",
        "--lease-name=modelpilot",
        "--lease-namespace=ops",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
        "--liveness-port=8080",
        "--metrics-port=8081",
    ]
    assert ("ClusterRoleBinding", None, "modelpilot") in defaults
    # The only Role: leader election's, in the release namespace.
    assert [key for key in defaults if key[0] in ("Role", "RoleBinding")] == [
        ("Role", "ops", "modelpilot-leader-election"),
        ("RoleBinding", "ops", "modelpilot-leader-election"),
    ]

    scoped = objects(
        cli.template(
            "--namespace", "ops",
            "--set", "watchNamespaces={team-a,team-b}",
            "--set", "routeGate=false",
            "--set", "kserveLegacyRawDeployment=true",
            "--set", "gatewayFlavor=traefik",
        ).stdout
    )  # fmt: skip
    args = scoped[("Deployment", "ops", "modelpilot")]["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert args == [
        "--namespace=team-a",
        "--namespace=team-b",
        "--no-route-gate",
        "--gateway-flavor=traefik",
        "--mirror-settle=3",
        "--drain-delay=5",
        "--kserve-legacy-raw-deployment",
        "--leader-elect",
        "--lease-name=modelpilot",
        "--lease-namespace=ops",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
        "--liveness-port=8080",
        "--metrics-port=8081",
    ]
    for ns in ("team-a", "team-b"):
        assert ("Role", ns, "modelpilot") in scoped
        assert ("RoleBinding", ns, "modelpilot") in scoped
    # The Lease's Role stays in the release namespace, not in the watched ones.
    assert sorted(key for key in scoped if key[0] == "Role") == [
        ("Role", "ops", "modelpilot-leader-election"),
        ("Role", "team-a", "modelpilot"),
        ("Role", "team-b", "modelpilot"),
    ]
    # Only the small read-only ClusterRole stays cluster-wide.
    assert [key for key in scoped if key[0] == "ClusterRole"] == [
        ("ClusterRole", None, "modelpilot-cluster-reader")
    ]
    reader = scoped[("ClusterRole", None, "modelpilot-cluster-reader")]
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in reader["rules"])


def test_analysis_values_reach_the_operator_and_mount_the_secret(cli: Cli) -> None:
    rendered = objects(
        cli.template(
            "--namespace", "ops",
            "--set", "prometheusUrl=http://prometheus.monitoring:9090",
            "--set", "prometheusAuth.secretName=prometheus-reader",
            "--set", "webhookAllow={*.svc,approvals.example.com}",
        ).stdout
    )  # fmt: skip
    pod = rendered[("Deployment", "ops", "modelpilot")]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    for flag in (
        "--webhook-allow=*.svc",
        "--webhook-allow=approvals.example.com",
        "--prometheus-url=http://prometheus.monitoring:9090",
        "--prometheus-auth-dir=/etc/modelpilot/prometheus-auth",
    ):
        assert flag in args
    assert {"name": "prometheus-auth", "secret": {"secretName": "prometheus-reader"}} in pod[
        "volumes"
    ]
    mount = {"name": "prometheus-auth", "mountPath": "/etc/modelpilot/prometheus-auth"}
    assert {**mount, "readOnly": True} in pod["containers"][0]["volumeMounts"]
    # No RBAC on Secrets: the Secret is mounted, never read through the API.
    for key, obj in rendered.items():
        if key[0] in ("Role", "ClusterRole"):
            assert all("secrets" not in rule.get("resources", []) for rule in obj["rules"])


def test_metrics_service_and_optional_service_monitor(cli: Cli) -> None:
    rendered = objects(cli.template("--namespace", "ops").stdout)
    service = rendered[("Service", "ops", "modelpilot-metrics")]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not any(kind == "ServiceMonitor" for kind, _, _ in rendered)

    enabled = ("--set", "metrics.serviceMonitor.enabled=true")
    refused = cli.template(*enabled, check=False)
    assert refused.returncode != 0
    assert "no monitoring.coreos.com/v1 ServiceMonitor" in refused.stderr
    monitor = objects(
        cli.template(
            "--namespace", "ops", *enabled,
            "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
        ).stdout
    )[("ServiceMonitor", "ops", "modelpilot")]  # fmt: skip
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["spec"]["selector"].items()


def test_notes_say_how_to_apply_a_sample_and_watch_it(cli: Cli) -> None:
    def notes(*values: str) -> str:
        dry_run = cli.helm("install", "mp", str(CHART), "--dry-run=client", "-n", "ops", *values)
        return dry_run.stdout.split("NOTES:", 1)[1]

    everywhere = notes()
    assert "kubectl apply -f manifests/samples/sklearn-iris.yaml" in everywhere
    assert "kubectl get mm -n default -w" in everywhere
    assert "kubectl -n ops rollout status deployment/mp-modelpilot" in everywhere
    scoped = notes("--set", "watchNamespaces={team-a,team-b}", "--set", "routeGate=false")
    assert "these namespaces: team-a, team-b" in scoped
    assert "namespace: team-a/' manifests/samples/sklearn-iris.yaml | kubectl apply -f -" in scoped
    assert "kubectl get mm -n team-a -w" in scoped
    assert "--no-route-gate" in scoped
    assert "of the 2 replicas, the one holding Lease mp-modelpilot acts" in everywhere
    assert "kubectl -n ops get lease mp-modelpilot -o jsonpath=" in everywhere
    alone = notes("--set", "replicas=1", "--set", "leaderElection.enabled=false")
    assert "Lease" not in alone


def test_raw_manifests_are_generated_from_the_chart(cli: Cli) -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-install.py"), "--check", "--helm", cli.helm_bin],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    install = objects((MANIFESTS / "install.yaml").read_text())
    chart = objects(cli.template("--namespace", KUSTOMIZE_NAMESPACE).stdout)
    extra = {("Namespace", None, KUSTOMIZE_NAMESPACE), ("CustomResourceDefinition", None, CRD_NAME)}
    assert install.keys() - chart.keys() == extra
    assert all(install[key] == chart[key] for key in chart)
    kustomized = objects(cli.kubectl("kustomize", str(MANIFESTS)).stdout)
    assert kustomized == install


# --- helm, on the cluster ----------------------------------------------------------------


def test_privileged_pods_are_refused_in_a_restricted_namespace(
    api_client: client.ApiClient, restricted_namespace: str
) -> None:
    """The control for the tests below: the label really enforces the profile here."""
    pod = {
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/plain"}]},
    }
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api_client).create_namespaced_pod(restricted_namespace, pod)
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in json.loads(refused.value.body)["message"]


def test_helm_install_upgrade_uninstall(
    cli: Cli, api_client: client.ApiClient, restricted_namespace: str
) -> None:
    ns = restricted_namespace
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    policy = client.PolicyV1Api(api_client)
    with helm_release(cli, ns) as release:
        name = fullname(release)
        pods = wait_available(api_client, ns, name)
        assert len(pods) == 2
        for pod in pods:
            assert pod.spec.security_context.run_as_non_root is True
            assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
            env = {e.name: e.value_from.field_ref.field_path for e in pod.spec.containers[0].env}
            assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
        assert "--no-route-gate" not in container_args(api_client, ns, name)
        assert f"--lease-namespace={ns}" in container_args(api_client, ns, name)
        deployment = client.AppsV1Api(api_client).read_namespaced_deployment(name, ns)
        strategy = deployment.spec.strategy
        assert (deployment.spec.replicas, strategy.type) == (2, "RollingUpdate")
        rolling = strategy.rolling_update
        assert (rolling.max_unavailable, rolling.max_surge) == (0, 1)
        budget = policy.read_namespaced_pod_disruption_budget(name, ns)
        assert budget.spec.max_unavailable == 1
        assert budget.spec.selector.match_labels == deployment.spec.selector.match_labels
        assert core.read_namespaced_service(f"{name}-metrics", ns).spec.ports[0].port == 8081
        assert rbac.read_cluster_role(f"{name}-cluster-reader").rules
        lease_role = rbac.read_namespaced_role(f"{name}-leader-election", ns)
        assert lease_role.rules[1].resource_names == [name]
        assert rbac.read_namespaced_role_binding(f"{name}-leader-election", ns).subjects

        cli.helm(
            "upgrade", release, str(CHART), "-n", ns, "--reuse-values", "--set", "routeGate=false"
        )
        assert "--no-route-gate" in container_args(api_client, ns, name)
        upgraded = wait_available(api_client, ns, name)
        # RollingUpdate: two new pods, every old one gone.
        assert len(upgraded) == 2
        assert {p.metadata.uid for p in upgraded}.isdisjoint(p.metadata.uid for p in pods)
        assert "routeGate: false" in cli.helm("get", "values", release, "-n", ns).stdout

        cli.helm("uninstall", release, "-n", ns, "--wait")
        assert cli.helm("list", "-n", ns, "-q").stdout.strip() == ""
    apps = client.AppsV1Api(api_client)
    eventually(lambda: gone(apps.read_namespaced_deployment, name, ns), what="Deployment gone")
    assert gone(core.read_namespaced_service_account, name, ns)
    assert gone(policy.read_namespaced_pod_disruption_budget, name, ns)
    assert gone(rbac.read_namespaced_role, f"{name}-leader-election", ns)
    assert gone(rbac.read_cluster_role, name)
    assert gone(rbac.read_cluster_role, f"{name}-cluster-reader")
    # Helm never deletes the CRDs of crds/: every ManagedModel outlives the release.
    ext = client.ApiextensionsV1Api(api_client)
    assert ext.read_custom_resource_definition(CRD_NAME).metadata.deletion_timestamp is None


# --- kubectl apply -k manifests/ ---------------------------------------------------------


def kustomize_overlay(tmp_path: Path) -> Path:
    """manifests/ as a base (copied) with an overlay that turns the route gate off: how a
    user changes a value on this install path."""
    base = tmp_path / "base"
    shutil.copytree(MANIFESTS, base, ignore=shutil.ignore_patterns("samples", "install.yaml"))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../base"],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "modelpilot"},
                        "patch": yaml.safe_dump(
                            [
                                {
                                    "op": "add",
                                    "path": "/spec/template/spec/containers/0/args/-",
                                    "value": "--no-route-gate",
                                }
                            ]
                        ),
                    }
                ],
            }
        )
    )
    return overlay


def test_kubectl_apply_k_install_upgrade_uninstall(
    cli: Cli, api_client: client.ApiClient, tmp_path: Path
) -> None:
    ns, name = KUSTOMIZE_NAMESPACE, "modelpilot"
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    uninstall = ("delete", "-f", str(MANIFESTS / "operator"), "-f", str(MANIFESTS / "rbac"))
    eventually(lambda: gone(core.read_namespace, ns), timeout=120, what=f"no namespace {ns}")
    try:
        cli.kubectl("apply", "-k", str(MANIFESTS))
        assert core.read_namespace(ns).metadata.labels.items() >= RESTRICTED.items()
        pods = wait_available(api_client, ns, name)
        assert len(pods) == 2
        assert "--no-route-gate" not in container_args(api_client, ns, name)
        policy = client.PolicyV1Api(api_client)
        assert policy.read_namespaced_pod_disruption_budget(name, ns).spec.max_unavailable == 1
        assert rbac.read_namespaced_role(f"{name}-leader-election", ns).rules

        cli.kubectl("apply", "-k", str(kustomize_overlay(tmp_path)))
        assert "--no-route-gate" in container_args(api_client, ns, name)
        upgraded = wait_available(api_client, ns, name)
        assert {p.metadata.uid for p in upgraded}.isdisjoint(p.metadata.uid for p in pods)

        # Uninstall without the CRD (as `helm uninstall` does): deleting the CRD would
        # delete every ManagedModel in the cluster.
        cli.kubectl(*uninstall, "--timeout=120s")
        assert gone(core.read_namespace, ns)
        assert gone(rbac.read_cluster_role, name)
        assert gone(rbac.read_cluster_role_binding, f"{name}-cluster-reader")
        ext = client.ApiextensionsV1Api(api_client)
        assert ext.read_custom_resource_definition(CRD_NAME).metadata.deletion_timestamp is None
    finally:
        cli.kubectl(*uninstall, "--ignore-not-found", "--wait=false", check=False)
