"""Fixtures for tests that serve the store's models with KServe's model server.

They need the `serve` extra (kserve, scikit-learn, joblib). Without it they skip, except
under CI=true, where a missing package is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelpilot.store.build import build
from modelpilot_dev.local_server import LocalServer

SERVE_PACKAGES = ("kserve", "sklearn", "joblib")


def _need_serve_extra() -> None:
    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if missing and not in_ci:
        pytest.skip(f"needs the serve extra ({', '.join(missing)} missing)")


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_serve_extra()
    root = tmp_path_factory.mktemp("model-store")
    build(root, log=lambda _line: None)
    return root


@pytest.fixture(scope="session")
def servers(store_root: Path) -> Iterator[dict[str, LocalServer]]:
    """iris v1 and v2, each on its own port, started side by side."""
    running = {version: LocalServer("iris", version, root=store_root) for version in ("v1", "v2")}
    try:
        for server in running.values():
            server.start()
        for server in running.values():
            server.wait_ready(timeout=90)
        yield running
    finally:
        for server in running.values():
            server.terminate()
        for server in running.values():
            server.close()


@pytest.fixture
def served_v1(servers: dict[str, LocalServer]) -> LocalServer:
    return servers["v1"]


@pytest.fixture
def served_v2(servers: dict[str, LocalServer]) -> LocalServer:
    return servers["v2"]
