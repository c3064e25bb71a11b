"""The bench's world: the simulated cluster with KServe's stand-in in instant mode (Ready
at once, no pods) and the gateway stand-in, both in a process of their own, and the
operator as its own process so that its CPU and memory are its own."""

from __future__ import annotations

import sys
import time
from typing import Any

from kubernetes import client

from modelpilot.api.kinds import MANAGED_MODEL
from modelpilot.k8s.client import Kube, api_client
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.operator_process import OperatorProcess, start_operator
from modelpilot_dev.procs import Process
from modelpilot_dev.watch import KindWatch


class ModelMirror(KindWatch):
    """The bench namespace's ManagedModels as the watch last delivered them: the bench's
    probes read these instead of listing every model several times a second (which
    cost the apiserver more than the operator did)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace, MANAGED_MODEL)
        self._objects: dict[str, dict[str, Any]] = {}

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._objects.pop(obj["metadata"]["name"], None)
        else:
            self._objects[obj["metadata"]["name"]] = obj

    def models(self) -> list[dict[str, Any]]:
        return list(self._objects.copy().values())


class World:
    def __init__(self, namespace: str = "bench", hpa_sync_period: str | None = "2s") -> None:
        self.namespace = namespace
        self.plane = ControlPlane(hpa_sync_period=hpa_sync_period)
        self.standins: Process | None = None
        self.operator: OperatorProcess | None = None
        self.operators: list[OperatorProcess] = []
        self.mirror: ModelMirror | None = None

    def __enter__(self) -> World:
        self.plane.start()
        self.api = api_client(str(self.plane.kubeconfig))
        self.kube = Kube(self.api)
        # kubernetes' types want a V1Namespace; the client sends a dict as is.
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": self.namespace}})  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        core = client.CoreV1Api(self.api)
        while not core.list_namespaced_service_account(
            self.namespace, field_selector="metadata.name=default"
        ).items:
            if time.monotonic() > deadline:
                raise TimeoutError("namespace has no default service account")
            time.sleep(0.1)
        self.standins = Process(
            "standins",
            [sys.executable, "-m", "modelpilot_dev", "standins", str(self.plane.kubeconfig)],
            self.plane.log_dir,
        )
        self.standins.start()
        self.mirror = ModelMirror(self.api, self.namespace).start()
        return self

    def models(self) -> list[dict[str, Any]]:
        """The bench namespace's ManagedModels, from the watch."""
        assert self.mirror is not None
        return self.mirror.models()

    def start_operator(self, *extra: str, name: str = "operator") -> OperatorProcess:
        """An operator process; the first one started is `operator`, the one the
        sections measure."""
        started = start_operator(
            self.plane.kubeconfig, self.plane.log_dir, self.namespace, *extra, name=name
        )
        self.operators.append(started)
        if self.operator is None:
            self.operator = started
        return started

    def __exit__(self, *_: Any) -> None:
        if self.mirror is not None:
            self.mirror.stop()
        for operator in self.operators:
            operator.stop()
        if self.standins is not None:
            self.standins.stop(grace=5)
        self.plane.stop()
