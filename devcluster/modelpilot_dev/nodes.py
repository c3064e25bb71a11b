"""The fake nodes of the simulated cluster and how kwok drives them.

The nodes are plain Node objects that kwok keeps Ready; the real kube-scheduler places
pods on them against their declared capacity, and kwok then marks scheduled pods Running
and Ready. So a GPU request that does not fit stays Pending with the scheduler's own
reason, and a Deployment whose pods fit becomes Available.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# kwok manages only nodes carrying this annotation (its documented convention).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
# The label NVIDIA's GPU feature discovery puts on GPU nodes; models pin a GPU type by it.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class NodeGroup:
    """`count` identical nodes named `<prefix>-<i>`."""

    prefix: str
    count: int
    cpu: str = "8"
    memory: str = "32Gi"
    gpus: int = 0
    gpu_product: str = "NVIDIA-A100-SXM4-40GB"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    # GPU nodes carry the taint the NVIDIA GPU operator's docs recommend, so that only
    # pods tolerating it (as modelpilot's rendered predictors do) land there.
    taint_gpus: bool = True


@dataclass(frozen=True)
class NodePool:
    groups: tuple[NodeGroup, ...] = (
        NodeGroup("cpu", 2),
        NodeGroup("gpu", 2, gpus=2),
    )

    @property
    def total_gpus(self) -> int:
        return sum(group.count * group.gpus for group in self.groups)

    def node_names(self) -> list[str]:
        return [f"{g.prefix}-{i}" for g in self.groups for i in range(g.count)]

    def manifests(self) -> list[dict[str, Any]]:
        return [node_manifest(g, f"{g.prefix}-{i}") for g in self.groups for i in range(g.count)]


def node_manifest(group: NodeGroup, name: str) -> dict[str, Any]:
    capacity = {"cpu": group.cpu, "memory": group.memory, "pods": str(group.pods)}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        **group.labels,
    }
    taints: list[dict[str, str]] = []
    if group.gpus:
        capacity[GPU_RESOURCE] = str(group.gpus)
        labels[GPU_PRODUCT_LABEL] = group.gpu_product
        labels["nvidia.com/gpu.count"] = str(group.gpus)
        if group.taint_gpus:
            taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
        },
        "spec": {"taints": taints} if taints else {},
        # kwok keeps conditions and addresses current; capacity is ours to declare.
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def kwok_args(stage_dir: Path, kubeconfig: Path, server_port: int) -> list[str]:
    stages = sorted(
        path
        for path in stage_dir.rglob("*.yaml")
        if path.name != "kustomization.yaml" and "testdata" not in path.parts
    )
    args = [
        f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
        f"--server-address=127.0.0.1:{server_port}",
        # Pod IPs are only written into status; nothing ever connects to them.
        "--cidr=10.244.0.0/16",
        "--node-ip=10.240.0.1",
    ]
    args += [f"--config={path}" for path in stages]
    return args
