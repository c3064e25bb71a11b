"""The kind e2e tier (marker `kind`, `make kind-e2e`): a real cluster in Docker with
cert-manager, Envoy Gateway, KServe in Standard mode and modelpilot's chart.

Needs a Docker engine, kind >= 0.31 (on PATH, as $KIND, or downloaded by pytest-kind-ng
when $KIND_VERSION names it), pytest-kind-ng (the `kind` extra), kubectl and helm (the
ones `make tools` builds, else on PATH) and the internet for images and release
manifests. Without a Docker engine every test skips with that reason, CI included.
`--keep-cluster` (pytest-kind-ng's option) keeps the cluster for a look afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelpilot.k8s.client import Kube, api_client
from modelpilot_dev import tools
from tests.kind import stack

CLUSTER_NAME = "modelpilot-e2e"


def docker_problem() -> str | None:
    """Why no Docker engine answers, or None when one does."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else result.returncode}"
    return None


def _version(text: str) -> tuple[int, ...]:
    found = re.search(r"v(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def kind_binary(downloadable: str) -> tuple[Path | None, str | None]:
    """(the kind to use, None) or (None, why not); (None, None): pytest-kind-ng downloads
    `downloadable`, its $KIND_VERSION."""
    found = os.environ.get("KIND") or shutil.which("kind")
    wanted = ".".join(map(str, stack.KIND_MIN_VERSION))
    if found:
        out = subprocess.run([found, "version"], capture_output=True, text=True, check=False)
        if _version(out.stdout) < stack.KIND_MIN_VERSION:
            return None, f"{found} is {out.stdout.strip() or 'unknown'}; kind >= v{wanted} needed"
        return Path(found), None
    if _version(downloadable) < stack.KIND_MIN_VERSION:
        return None, (
            f"no kind on PATH, and pytest-kind-ng would download {downloadable}; install kind "
            f">= v{wanted} or set KIND_VERSION=v0.31.0"
        )
    return None, None


def built_or_on_path(name: str) -> Path | None:
    built = tools.binary_path(name)
    if built.is_file():
        return built
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass
class KindEnv:
    cluster: Any  # pytest_kind.KindCluster
    kube: Kube
    kubeconfig: Path
    store_dir: Path


@pytest.fixture(scope="session")
def kind_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KindEnv]:
    problem = docker_problem()
    if problem:
        pytest.skip(f"kind e2e tests need a Docker engine: {problem}")
    pytest_kind = pytest.importorskip(
        "pytest_kind", reason="kind e2e tests need pytest-kind-ng: pip install -e '.[kind]'"
    )
    from pytest_kind import cluster as kind_cluster_module

    kind_path, why = kind_binary(kind_cluster_module.KIND_VERSION)
    if why:
        pytest.skip(f"kind e2e tests: {why}")
    kubectl, helm = built_or_on_path("kubectl"), built_or_on_path("helm")
    if kubectl is None or helm is None:
        pytest.skip("kind e2e tests need kubectl and helm: run `make tools` or put them on PATH")

    work = tmp_path_factory.mktemp("kind")
    store_dir = work / "model-store"
    store_dir.mkdir(mode=0o755)  # the model server in the pod reads it as another user
    stack.build_store_in_server_image(store_dir)
    stack.build_operator_image()
    config = work / "kind.yaml"
    config.write_text(stack.kind_config(store_dir))

    cluster = pytest_kind.KindCluster(
        CLUSTER_NAME,
        kubeconfig=work / "kubeconfig",
        image=stack.NODE_IMAGE,
        kind_path=kind_path,
        kubectl_path=kubectl,
    )
    cluster.create(config_file=config)
    try:
        cluster.load_docker_image(stack.OPERATOR_IMAGE)
        stack.Installer(cluster.kubectl, helm, cluster.kubeconfig_path).install_all()
        kube = Kube(api_client(str(cluster.kubeconfig_path)))
        yield KindEnv(cluster, kube, Path(cluster.kubeconfig_path), store_dir)
    finally:
        if not request.config.getoption("keep_cluster", default=False):
            cluster.delete()
