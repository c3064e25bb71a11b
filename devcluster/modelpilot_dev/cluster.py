"""A real Kubernetes control plane on loopback, with fake nodes, for tests and demos.

etcd, kube-apiserver, kube-controller-manager (all default controllers: garbage
collection, Deployments, ReplicaSets, HPA), kube-scheduler and kwok run as child
processes from the pinned binaries (see `tools`). Everything lives in one temporary
directory that `stop()` removes after stopping each process it started, by PID.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes import client

from modelpilot_dev import crds, pki, tools
from modelpilot_dev.nodes import NodePool, kwok_args
from modelpilot_dev.procs import ClusterError, Process, free_port, http_ok, wait_for

SERVICE_CIDR = "10.96.0.0/16"  # allocated in the API only; nothing routes to it


class ControlPlane:
    def __init__(
        self,
        node_pool: NodePool | None = None,
        *,
        install_crds: bool = True,
        start_timeout: float = 120.0,
        audit_policy: dict[str, Any] | None = None,
        users: Sequence[str] = (),
        hpa_sync_period: str | None = "2s",
    ) -> None:
        self.node_pool = node_pool or NodePool()
        self.tools_dir = tools.tools_dir()  # set by $MODELPILOT_TOOLS_DIR
        self.install_crds = install_crds
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.processes: list[Process] = []
        self.server = ""  # https URL of kube-apiserver once started
        self.etcd_url = ""
        # Seconds per start step, for people tuning the suite's runtime.
        self.timings: dict[str, float] = {}
        self.audit_policy = audit_policy  # an audit.k8s.io/v1 Policy; None: no audit log
        self.users = tuple(users)  # extra users, in system:masters
        # None: no HPA controller (10,000 HPAs at rest would keep both cores busy).
        self.hpa_sync_period = hpa_sync_period
        self._pki: pki.Pki | None = None
        self._apiserver: Process | None = None

    # --- paths --------------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        return self._root / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self._root / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log (JSON lines), when started with `audit_policy`."""
        return self._root / "audit.log"

    @property
    def _root(self) -> Path:
        if self.root is None:
            raise ClusterError("the control plane is not started")
        return self.root

    # --- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        missing = tools.missing(tools.CONTROL_PLANE)
        if missing:
            raise ClusterError(f"tools not built: {', '.join(missing)}; run `make tools`")
        started = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="modelpilot-sim-"))
        try:
            self.log_dir.mkdir()
            self._pki = pki.create(self._root / "pki")
            self._add_users()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfigs()
            self._start_controllers()
            self._step("nodes", self._create_nodes)
            if self.install_crds:
                self._step("crds", self._install_crds)
        except BaseException as err:
            # The temp dir goes away with the processes, so the logs travel in the error.
            tails = self.format_log_tails()
            self.stop()
            if isinstance(err, Exception):
                raise ClusterError(f"control plane failed to start: {err}\n{tails}") from err
            raise
        self.timings["total"] = time.monotonic() - started

    def stop(self) -> None:
        """Stop every started process (newest first, by PID), then remove the temp dir."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def log_tails(self, lines: int = 30) -> dict[str, str]:
        return {process.name: process.log_tail(lines) for process in self.processes}

    def format_log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {name} (last {lines} lines) ---\n{tail}"
            for name, tail in self.log_tails(lines).items()
        )

    def api_client(self) -> client.ApiClient:
        from kubernetes import config

        # kubernetes' config helpers carry no annotations.
        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call, no-any-return]

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig for one of `users` (written on first use)."""
        if user not in self.users:
            raise ClusterError(f"{user} is not one of this control plane's extra users")
        path = self._root / f"{user}.kubeconfig"
        if not path.exists():
            path.write_text(yaml.safe_dump(self._kubeconfig_for(user)))
            path.chmod(0o600)
        return path

    def kill_apiserver(self) -> None:
        """SIGKILL kube-apiserver (no graceful shutdown) and wait until it is gone."""
        if self._apiserver is None or self._apiserver.pid is None:
            raise ClusterError("the control plane is not started")
        if self._apiserver.alive():
            os.kill(self._apiserver.pid, signal.SIGKILL)
        self._apiserver.stop(grace=30)  # reaps it (nothing left to signal)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again after `kill_apiserver`, with the same arguments
        (port, certificates, etcd, audit log, which it appends to); returns once it is
        ready."""
        if self._apiserver is None:
            raise ClusterError("the control plane is not started")
        if self._apiserver.alive():
            raise ClusterError("kube-apiserver is running")
        self._apiserver.start()
        self._wait_apiserver_ready("kube-apiserver-restart")

    def restart_apiserver(self, down: float = 5.0) -> float:
        """kill -9 kube-apiserver, wait `down` seconds, start it again; returns the
        seconds from the kill until it was ready again."""
        killed = time.monotonic()
        self.kill_apiserver()
        time.sleep(down)
        self.start_apiserver()
        return time.monotonic() - killed

    # --- steps --------------------------------------------------------------------

    def _step(self, name: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        action()
        self.timings[name] = time.monotonic() - started

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.log_dir)
        process.start()
        self.processes.append(process)
        return process

    def _wait(self, what: str, check: Callable[[], bool], step: str) -> None:
        self.timings[step] = wait_for(
            what, check, timeout=self.start_timeout, processes=tuple(self.processes)
        )

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.etcd_url = client_url
        self._spawn(
            "etcd",
            [
                str(tools.binary_path("etcd")),
                f"--data-dir={self._root / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Throwaway data: fsync only slows every write down.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd health", lambda: http_ok(f"{client_url}/health"), "etcd")

    def _add_users(self) -> None:
        """Extra bearer-token users, in system:masters, before the apiserver reads the
        token file."""
        assert self._pki is not None
        lines = []
        for user in self.users:
            token = secrets.token_hex(24)
            self._pki.tokens[user] = token
            lines.append(f'{token},{user},{user},"system:masters"\n')
        with self._pki.token_file.open("a") as tokens:
            tokens.writelines(lines)

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None:
            return []
        policy = self._root / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(self.audit_policy))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            # One file, never rotated: the test reads it whole.
            "--audit-log-maxsize=0",
            "--audit-log-format=json",
            # Each event is written before the response is sent (the default for the log
            # backend, said here because the fault suite relies on it).
            "--audit-log-mode=blocking",
        ]

    def _wait_apiserver_ready(self, step: str) -> None:
        assert self._pki is not None
        admin_token = self._pki.tokens[pki.ADMIN[0]]
        ca = self._pki.ca_cert
        self._wait(
            "kube-apiserver /readyz",
            lambda: http_ok(f"{self.server}/readyz", token=admin_token, ca=ca),
            step,
        )

    def _start_apiserver(self) -> None:
        assert self._pki is not None
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        p = self._pki
        self._apiserver = self._spawn(
            "kube-apiserver",
            [
                str(tools.binary_path("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--token-auth-file={p.token_file}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints
                # validation refuses; nothing in the simulation dials it anyway.
                "--endpoint-reconciler-type=none",
                *self._audit_args(),
            ],
        )
        self._wait_apiserver_ready("kube-apiserver")

    def _kubeconfig_for(self, user: str) -> dict[str, Any]:
        assert self._pki is not None
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "modelpilot-sim",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self._pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": self._pki.tokens[user]}}],
            "contexts": [
                {
                    "name": "modelpilot-sim",
                    "context": {
                        "cluster": "modelpilot-sim",
                        "user": user,
                    },
                }
            ],
            "current-context": "modelpilot-sim",
        }

    def _write_kubeconfigs(self) -> None:
        for user, path in (
            (pki.ADMIN[0], self.kubeconfig),
            (pki.CONTROLLER_MANAGER[0], self._root / "controller-manager.kubeconfig"),
            (pki.SCHEDULER[0], self._root / "scheduler.kubeconfig"),
        ):
            path.write_text(yaml.safe_dump(self._kubeconfig_for(user)))
            path.chmod(0o600)

    def _start_controllers(self) -> None:
        assert self._pki is not None
        kcm_port, scheduler_port, kwok_port = free_port(), free_port(), free_port()
        kcm_config = self._root / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                *_component_argv("kube-controller-manager", kcm_config, kcm_port),
                f"--service-account-private-key-file={self._pki.sa_key}",
                f"--root-ca-file={self._pki.ca_cert}",
                # Each controller acts as its own service account, as in a real cluster, so
                # RBAC is exercised the same way.
                "--use-service-account-credentials",
                # The default controllers are what a real cluster runs (the cloud ones
                # live in cloud-controller-manager; node IPAM is idle without
                # --allocate-node-cidrs); only the HPA's may be left out, below.
                f"--cluster-signing-cert-file={self._pki.ca_cert}",
                f"--cluster-signing-key-file={self._pki.ca_key}",
                # The HPA loop every 2 s instead of 15 s, so tests that change HPA bounds
                # (Shared capacity) see pods move in seconds; the logic is the same.
                *(
                    [f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period}"]
                    if self.hpa_sync_period
                    else ["--controllers=*,-horizontal-pod-autoscaler-controller"]
                ),
            ],
        )
        scheduler_config = self._root / "scheduler.kubeconfig"
        self._spawn(
            "kube-scheduler",
            _component_argv("kube-scheduler", scheduler_config, scheduler_port),
        )
        self._spawn(
            "kwok",
            [
                str(tools.binary_path("kwok")),
                *kwok_args(tools.kwok_stage_dir(), self.kubeconfig, kwok_port),
            ],
        )
        self._wait(
            "kube-controller-manager /healthz",
            lambda: http_ok(f"https://127.0.0.1:{kcm_port}/healthz"),
            "kube-controller-manager",
        )
        self._wait(
            "kube-scheduler /healthz",
            lambda: http_ok(f"https://127.0.0.1:{scheduler_port}/healthz"),
            "kube-scheduler",
        )
        self._wait(
            "kwok /healthz", lambda: http_ok(f"http://127.0.0.1:{kwok_port}/healthz"), "kwok"
        )

    def _create_nodes(self) -> None:
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for manifest in self.node_pool.manifests():
                # A create keeps status (kubelets register that way), so the capacity is
                # there before kwok first sees the node.
                # (kubernetes' types want a V1Node; the client sends a dict as is.)
                core.create_node(manifest)  # type: ignore[arg-type]
            self._wait("nodes Ready", lambda: self._nodes_ready(core), "nodes-ready")
            # The default service account appears a moment after a namespace; pods can
            # only be created once it exists.
            self._wait(
                "default service account",
                lambda: bool(
                    core.list_namespaced_service_account(
                        "default", field_selector="metadata.name=default"
                    ).items
                ),
                "service-accounts",
            )

    def _nodes_ready(self, core: client.CoreV1Api) -> bool:
        wanted = set(self.node_pool.node_names())
        ready = set()
        for node in core.list_node().items:
            # The apiserver always sends a Node's metadata, spec and status.
            assert node.metadata is not None and node.spec is not None and node.status is not None
            conditions = {c.type: c.status for c in (node.status.conditions or [])}
            # The node lifecycle controller taints a node not-ready until it sees the
            # Ready condition; pods would not schedule before that taint is gone.
            not_ready_taint = any(
                t.key.startswith("node.kubernetes.io/") for t in (node.spec.taints or [])
            )
            if conditions.get("Ready") == "True" and not not_ready_taint:
                ready.add(node.metadata.name)
        return wanted <= ready

    def _install_crds(self) -> None:
        with self.api_client() as api:
            started = time.monotonic()
            kserve = crds.kserve_crds()
            self.timings["kserve-crd-generate"] = time.monotonic() - started
            crds.install_crds(api, [*crds.managedmodel_crds(), *kserve, *crds.gateway_api_crds()])
            crds.install_default_runtimes(api)


def _component_argv(binary: str, kubeconfig: Path, port: int) -> list[str]:
    """What kube-controller-manager and kube-scheduler share: who they are, where they
    serve their health endpoint, and no leader election (one of each)."""
    return [
        str(tools.binary_path(binary)),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
    ]
