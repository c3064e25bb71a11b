"""The simulated control plane behaves like a real cluster where modelpilot relies on it:
garbage collection, scheduling against node capacity and taints, Deployments becoming
Available, and its CRDs being served."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelpilot.api.kinds import CLUSTER_SERVING_RUNTIME, GATEWAY, HTTP_ROUTE, INFERENCE_SERVICE
from modelpilot_dev import crds, tools
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.nodes import GPU_RESOURCE
from modelpilot_dev.procs import wait_for

pytestmark = pytest.mark.cluster

# Deadlines only bound a broken run; the conditions usually hold within seconds.
DEADLINE = 90.0


def _deployment(
    name: str, replicas: int, resources: dict[str, Any], gpu: bool = False
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "example.invalid/app:1",
                "resources": {"requests": resources, "limits": resources},
            }
        ],
    }
    if gpu:
        pod_spec["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def _pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def test_kubectl_from_the_tools_talks_to_it(control_plane: ControlPlane) -> None:
    kubectl = str(tools.binary_path("kubectl"))
    nodes = subprocess.run(
        [kubectl, "--kubeconfig", str(control_plane.kubeconfig), "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert sorted(nodes) == sorted(f"node/{n}" for n in control_plane.node_pool.node_names())
    version = subprocess.run(
        [kubectl, "--kubeconfig", str(control_plane.kubeconfig), "version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "Server Version: v1.36.3" in version


def test_deleting_an_owner_garbage_collects_the_owned(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})
    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for("garbage collection of the owned ConfigMap", owned_gone, timeout=DEADLINE)
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_deployment_that_fits_becomes_available_on_cpu_nodes(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(
        namespace, _deployment("web", 3, {"cpu": "500m", "memory": "256Mi"})
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return conditions.get("Available") == "True" and status.available_replicas == 3

    wait_for("Deployment web Available with 3 replicas", available, timeout=DEADLINE)
    pods = _pods(core, namespace, "web")
    assert all(p.status.phase == "Running" for p in pods)
    # The GPU nodes are tainted, so pods without the toleration stay off them.
    assert {p.spec.node_name.split("-")[0] for p in pods} == {"cpu"}


def test_gpu_requests_beyond_the_pool_stay_pending_with_the_scheduler_reason(
    api_client: client.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    per_pod = 2
    fitting = control_plane.node_pool.total_gpus // per_pod
    apps.create_namespaced_deployment(
        namespace,
        _deployment("llm", fitting + 1, {"cpu": "1", GPU_RESOURCE: str(per_pod)}, gpu=True),
    )

    def split_as_expected() -> bool:
        pods = _pods(core, namespace, "llm")
        running = [p for p in pods if p.status.phase == "Running"]
        pending = [p for p in pods if p.status.phase == "Pending" and not p.spec.node_name]
        return len(running) == fitting and len(pending) == 1 and _unschedulable(pending[0])

    wait_for(f"{fitting} llm pods Running and 1 Pending", split_as_expected, timeout=DEADLINE)
    pending = next(p for p in _pods(core, namespace, "llm") if p.status.phase == "Pending")
    scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
    assert scheduled.status == "False"
    assert scheduled.reason == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in scheduled.message
    running = [p for p in _pods(core, namespace, "llm") if p.status.phase == "Running"]
    assert {p.spec.node_name.split("-")[0] for p in running} == {"gpu"}


def _unschedulable(pod: client.V1Pod) -> bool:
    return any(
        c.type == "PodScheduled" and c.reason == "Unschedulable"
        for c in pod.status.conditions or []
    )


def test_managedmodel_crd_is_established(api_client: client.ApiClient) -> None:
    wanted = crds.managedmodel_crds()
    if not wanted:
        pytest.skip("manifests/crd/ holds no CRD yet")
    ext = client.ApiextensionsV1Api(api_client)
    for crd in wanted:
        served = ext.read_custom_resource_definition(crd["metadata"]["name"])
        assert served.spec.group == "modelpilot.io"
        conditions = {c.type: c.status for c in served.status.conditions}
        assert conditions.get("Established") == "True"


def test_gateway_api_and_kserve_crds_are_established(api_client: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    names = {crd.metadata.name: crd for crd in ext.list_custom_resource_definition().items}
    for name in (
        HTTP_ROUTE.resource,
        GATEWAY.resource,
        INFERENCE_SERVICE.resource,
        CLUSTER_SERVING_RUNTIME.resource,
    ):
        assert name in names, name
        conditions = {c.type: c.status for c in names[name].status.conditions}
        assert conditions.get("Established") == "True", name
