"""Fixtures for tests against the simulated control plane (modelpilot_dev).

The control plane is started once per session. Its binaries are built on first use
(several minutes cold; `python -m modelpilot_dev tools` does it ahead of time). Without
Go and without built tools, cluster tests skip with one reason, except under CI=true,
where a missing tool is a failure.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s import client as k8s_client
from modelpilot.k8s.client import Kube
from modelpilot.store.build import build
from modelpilot_dev import tools
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.gateway import TRAEFIK_SETTINGS, LocalGateway
from modelpilot_dev.prometheus import LocalPrometheus
from modelpilot_dev.standins import StandIns
from tests.cluster.test_chart import Cli, make_cli

_NO_GO = "cluster tests need Go to build the control-plane tools (go not found)"
_PLANE = pytest.StashKey[ControlPlane]()
_STARTUP = pytest.StashKey[str]()
_GATEWAY = pytest.StashKey[LocalGateway]()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_without_go() -> None:
    if tools.missing() and tools.go_binary() is None and not _in_ci():
        pytest.skip(_NO_GO)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    _skip_without_go()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    # A cold build takes many minutes; say so rather than look hung.
    built = tools.ensure_all(
        log=lambda line: (
            reporter.write_line(f"[tools] {line}")
            if reporter is not None and not line.endswith(": cached")
            else None
        )
    )
    plane = ControlPlane()
    plane.start()
    request.config.stash[_PLANE] = plane
    request.config.stash[_STARTUP] = ", ".join(
        [f"built {name} {secs:.0f}s" for name, secs in built.items()]
        + [f"{step} {secs:.1f}s" for step, secs in plane.timings.items()]
    )
    try:
        yield plane
    finally:
        del request.config.stash[_PLANE]
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def dynamic(api_client: client.ApiClient) -> DynamicClient:
    return DynamicClient(api_client)


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    # Pods are refused until the namespace's default service account exists.
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(
        name, field_selector="metadata.name=default"
    ).items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default service account in {name} after 30s")
        time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as err:
            if err.status != 404:
                raise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and isinstance(report.longrepr, tuple)
        and report.longrepr[2].endswith(_NO_GO)
    ):
        # pytest files a fixture's skip under each test's line; one shared location
        # folds them into a single summary line.
        report.longrepr = (__file__, _skip_without_go.__code__.co_firstlineno, _NO_GO)
    plane = item.config.stash.get(_PLANE, None)
    if report.failed and plane is not None and "control_plane" in item.fixturenames:
        report.sections.append(("control plane logs", plane.format_log_tails()))
    gateway = item.config.stash.get(_GATEWAY, None)
    if report.failed and gateway is not None and "gateway" in item.fixturenames:
        report.sections.append(("gateway (Traefik) log", gateway.log_tail()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    startup = terminalreporter.config.stash.get(_STARTUP, None)
    if startup:
        terminalreporter.write_line(f"control plane start: {startup}")


# --- the operator and the stand-ins for KServe and the gateway ------------------------
# No KServe and no gateway controller run in the simulated cluster:
# modelpilot_dev.standins plays both (see its docstring).


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    """The operator's own client (a separate connection pool from the tests')."""
    return Kube(k8s_client.api_client(str(control_plane.kubeconfig)))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample model store (iris v1 and v2), trained once per session."""
    root = tmp_path_factory.mktemp("model-store")
    build(root, log=lambda _line: None)
    return root


@pytest.fixture(scope="session")
def standins(control_plane: ControlPlane, model_store: Path) -> Iterator[StandIns]:
    """KServe's stand-in serves models from the store for real (see its docstring)."""
    api = k8s_client.api_client(str(control_plane.kubeconfig))
    with StandIns(api, model_store=model_store) as running:
        yield running


@pytest.fixture(scope="session")
def prometheus(
    control_plane: ControlPlane, gateway: LocalGateway, standins: StandIns
) -> Iterator[LocalPrometheus]:
    """Prometheus scraping the gateway and every real model server, each second."""
    with LocalPrometheus(control_plane.log_dir, gateway_metrics=gateway.metrics_url) as running:
        running.start()
        standins.kserve.store_servers.report_to(running)
        standins.knative.report_to(running)
        yield running


@pytest.fixture(scope="session")
def gateway(
    request: pytest.FixtureRequest, control_plane: ControlPlane, api_client: client.ApiClient
) -> Iterator[LocalGateway]:
    """Traefik, a real Gateway API data plane, behind Gateway gateways/traefik."""
    with LocalGateway(
        control_plane.kubeconfig, control_plane.log_dir, name="traefik", namespace="gateways"
    ) as running:
        running.start(api_client)
        request.config.stash[_GATEWAY] = running
        try:
            yield running
        finally:
            del request.config.stash[_GATEWAY]


@pytest.fixture
def operator(kube: Kube, namespace: str, standins: StandIns) -> Iterator[OperatorThread]:
    with OperatorThread(kube, TRAEFIK_SETTINGS, namespaces=[namespace]) as running:
        yield running


# --- helm and kubectl, the pinned ones (the chart and RBAC tests) ---------------------


@pytest.fixture(scope="session")
def cli(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Cli:
    return make_cli(control_plane, api_client, tmp_path_factory)


@pytest.fixture
def no_operator_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The operator logs no error in the test (a module asks for it with usefixtures)."""
    caplog.set_level(logging.ERROR, logger="modelpilot")
    yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
