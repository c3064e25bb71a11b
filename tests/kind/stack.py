"""What the kind e2e test installs, pinned in one place, and how.

Everything comes from its project's release manifests (fetched by kubectl inside the
test, so the Docker machine needs the internet): cert-manager; Envoy Gateway, whose
install.yaml carries the Gateway API CRDs of the version it supports; KServe in Standard
mode; then modelpilot's own chart with an image built from this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelpilot_dev.checkout import checkout_root

REPO_ROOT = checkout_root()

# kind v0.31.0's default node image (Kubernetes 1.35; KServe 0.21 needs 1.32 or later).
KIND_MIN_VERSION = (0, 31)
NODE_IMAGE = (
    "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
)
CERT_MANAGER = "v1.20.2"
ENVOY_GATEWAY = "v1.9.0"
KSERVE = "v0.21.0"  # the SDK version modelpilot renders against
SKLEARN_SERVER_IMAGE = f"kserve/sklearnserver:{KSERVE}"
OPERATOR_IMAGE = "modelpilot:kind-e2e"

CERT_MANAGER_YAML = (
    f"https://github.com/cert-manager/cert-manager/releases/download/{CERT_MANAGER}/"
    "cert-manager.yaml"
)
ENVOY_GATEWAY_YAML = (
    f"https://github.com/envoyproxy/gateway/releases/download/{ENVOY_GATEWAY}/install.yaml"
)
KSERVE_YAML = f"https://github.com/kserve/kserve/releases/download/{KSERVE}/kserve.yaml"
KSERVE_RUNTIMES_YAML = (
    f"https://github.com/kserve/kserve/releases/download/{KSERVE}/kserve-cluster-resources.yaml"
)

# Where the kind node sees the model store (a hostPath PersistentVolume points there).
NODE_STORE_PATH = "/mnt/model-store"
GATEWAY_NAMESPACE, GATEWAY_NAME = "gateways", "inference-gateway"
MODELS_NAMESPACE = "models"


def kind_config(store_dir: Path) -> str:
    return yaml.safe_dump(
        {
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "nodes": [
                {
                    "role": "control-plane",
                    "extraMounts": [{"hostPath": str(store_dir), "containerPath": NODE_STORE_PATH}],
                }
            ],
        }
    )


def run(argv: list[str], *, timeout: float = 900, **kwargs: Any) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}"
            f"\n{result.stderr[-4000:]}"
        )
    return result.stdout


def build_store_in_server_image(store_dir: Path) -> None:
    """Train the iris models with the scikit-learn of KServe's sklearn server image, so
    that server surely unpickles them (the builder needs only what that image has)."""
    run(
        [
            "docker", "run", "--rm",
            "--user", f"{os.getuid()}:{os.getgid()}",
            "-e", "HOME=/tmp", "-e", "PYTHONPATH=/src", "-e", "PYTHONDONTWRITEBYTECODE=1",
            "-v", f"{REPO_ROOT / 'operator'}:/src:ro",
            "-v", f"{store_dir}:/out",
            "--entrypoint", "python",
            SKLEARN_SERVER_IMAGE,
            "-m", "modelpilot.store.build", "--root", "/out",
        ]
    )  # fmt: skip


def build_operator_image() -> None:
    run(["docker", "build", "-t", OPERATOR_IMAGE, str(REPO_ROOT)], timeout=1800)


def gateway_manifests() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "envoy"},
            "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            "spec": {
                "gatewayClassName": "envoy",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def store_volume_manifests() -> list[dict[str, Any]]:
    """The model store as a read-only PersistentVolumeClaim `model-store`, which the
    iris sample's `pvc://model-store/iris/<version>` storageUris name."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MODELS_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "model-store"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": NODE_STORE_PATH, "type": "Directory"},
                "claimRef": {"namespace": MODELS_NAMESPACE, "name": "model-store"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "model-store", "namespace": MODELS_NAMESPACE},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": "model-store",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


def kserve_config_patch(config: dict[str, str]) -> dict[str, str]:
    """inferenceservice-config data for Standard mode without KServe's own ingress:
    modelpilot's HTTPRoute is the only route to the predictors."""
    deploy = json.loads(config.get("deploy") or "{}")
    deploy["defaultDeploymentMode"] = "Standard"
    ingress = json.loads(config.get("ingress") or "{}")
    ingress["disableIngressCreation"] = True
    ingress["enableGatewayApi"] = False
    return {"deploy": json.dumps(deploy), "ingress": json.dumps(ingress)}


@dataclass
class Installer:
    """Runs kubectl and helm against the kind cluster."""

    kubectl: Callable[..., str]
    helm: Path
    kubeconfig: Path

    def apply_url(self, url: str) -> None:
        # Server-side: some of these CRDs are too large for client-side apply's annotation.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", url)

    def apply(self, documents: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

    def wait_available(self, namespace: str, *deployments: str, timeout: str = "600s") -> None:
        targets = [f"deployment/{d}" for d in deployments] or ["deployment", "--all"]
        self.kubectl(
            "wait", "-n", namespace, "--for=condition=Available", f"--timeout={timeout}", *targets
        )

    def retry(self, action: Callable[[], object], what: str, attempts: int = 20) -> None:
        """For applies that a webhook refuses until it is serving."""
        for attempt in range(attempts):
            try:
                action()
                return
            except subprocess.CalledProcessError:
                if attempt == attempts - 1:
                    raise
                time.sleep(10)
        raise RuntimeError(f"{what} never succeeded")

    def install_all(self) -> None:
        self.apply_url(CERT_MANAGER_YAML)
        self.wait_available("cert-manager")

        self.apply_url(ENVOY_GATEWAY_YAML)
        self.wait_available("envoy-gateway-system", "envoy-gateway")
        self.apply(gateway_manifests())
        self.kubectl(
            "wait", "-n", GATEWAY_NAMESPACE, "--for=condition=Programmed", "--timeout=600s",
            f"gateway/{GATEWAY_NAME}",
        )  # fmt: skip

        self.retry(lambda: self.apply_url(KSERVE_YAML), "KServe")
        self.wait_available("kserve", "kserve-controller-manager")
        current = json.loads(
            self.kubectl(
                "get", "configmap", "inferenceservice-config", "-n", "kserve", "-o", "json"
            )
        )
        patch = {"data": kserve_config_patch(current.get("data") or {})}
        self.kubectl(
            "patch", "configmap", "inferenceservice-config", "-n", "kserve", "--type", "merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
        self.kubectl("rollout", "restart", "-n", "kserve", "deployment/kserve-controller-manager")
        self.kubectl(
            "rollout", "status", "-n", "kserve", "deployment/kserve-controller-manager",
            "--timeout=600s",
        )  # fmt: skip
        self.retry(lambda: self.apply_url(KSERVE_RUNTIMES_YAML), "KServe's runtimes")

        run(
            [
                str(self.helm), "install", "modelpilot", str(REPO_ROOT / "charts" / "modelpilot"),
                "--kubeconfig", str(self.kubeconfig),
                "--namespace", "modelpilot-system", "--create-namespace",
                "--set", f"image.repository={OPERATOR_IMAGE.split(':')[0]}",
                "--set", f"image.tag={OPERATOR_IMAGE.split(':')[1]}",
                "--set", "image.pullPolicy=Never",
                "--wait", "--timeout", "10m",
            ]
        )  # fmt: skip
        self.apply(store_volume_manifests())
