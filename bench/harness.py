"""The bench's world: the simulated cluster with KServe's stand-in in instant mode (Ready
at once, no pods) and the gateway stand-in, both in a process of their own, and the
operator as its own process so that its CPU and memory are its own."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from kubernetes import client, watch

from modelpilot.k8s.client import Kube, api_client
from modelpilot.sim.cluster import ControlPlane
from modelpilot.sim.procs import Process, free_port, http_ok, wait_for

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MM_RESOURCE = ("modelpilot.io", "v1alpha1")
MM_PLURAL = "managedmodels"


class KindWatch:
    """One kind in the bench namespace: listed first, then watched from the listing's
    resourceVersion (the version of the last object seen can be older than the
    apiserver's watch window: 410 Gone). Subclasses say what to keep of each event; the
    listing arrives as LISTED events, a baseline rather than writes."""

    def __init__(
        self, api: client.ApiClient, namespace: str, group: str, version: str, plural: str
    ) -> None:
        self.api, self.namespace = api, namespace
        self.group, self.version, self.plural = group, version, plural
        self.gaps: list[float] = []  # when a watch expired and the kind was listed again
        self._stop = threading.Event()

    def start(self) -> Self:
        threading.Thread(target=self._run, name=f"watch-{self.plural}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()  # a daemon thread: no need to wait out its watch

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def _lister(self, **kw: Any) -> Any:
        if self.group == "autoscaling":
            hpas = client.AutoscalingV2Api(self.api)
            return hpas.list_namespaced_horizontal_pod_autoscaler(self.namespace, **kw)
        custom = client.CustomObjectsApi(self.api)
        return custom.list_namespaced_custom_object(
            self.group, self.version, self.namespace, self.plural, **kw
        )

    def _run(self) -> None:
        resource_version = self._list()
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self._lister,
                    timeout_seconds=30,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                ):
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.deliver(time.monotonic(), event["type"], obj)
                    if self._stop.is_set():
                        return
            except client.ApiException as err:
                if err.status != 410:
                    raise
                self.gaps.append(time.monotonic())  # events were missed
                resource_version = self._list()

    def _list(self) -> str:
        listing = self._lister()
        if not isinstance(listing, dict):
            listing = self.api.sanitize_for_serialization(listing)
        now = time.monotonic()
        for obj in listing.get("items") or []:
            self.deliver(now, "LISTED", obj)
        return str(listing["metadata"]["resourceVersion"])


class ModelMirror(KindWatch):
    """The bench namespace's ManagedModels as the watch last delivered them: the bench's
    probes read these instead of listing every model several times a second (which
    cost the apiserver more than the operator did)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace, *MM_RESOURCE, MM_PLURAL)
        self._objects: dict[str, dict[str, Any]] = {}

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._objects.pop(obj["metadata"]["name"], None)
        else:
            self._objects[obj["metadata"]["name"]] = obj

    def models(self) -> list[dict[str, Any]]:
        return list(self._objects.copy().values())


@dataclass
class OperatorProcess:
    process: Process
    metrics_port: int

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def scrape(self) -> dict[str, float]:
        """The operator's metrics: series (name and labels) -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        series = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                series[name] = float(value)
        return series

    def stop(self) -> None:
        self.process.stop(grace=30)


class World:
    def __init__(self, namespace: str = "bench") -> None:
        self.namespace = namespace
        self.plane = ControlPlane()
        self.standins: Process | None = None
        self.operator: OperatorProcess | None = None
        self.mirror: ModelMirror | None = None

    def __enter__(self) -> World:
        self.plane.start()
        self.api = api_client(str(self.plane.kubeconfig))
        self.kube = Kube(self.api)
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": self.namespace}})
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
            [sys.executable, "-m", "bench.standins", str(self.plane.kubeconfig)],
            self.plane.log_dir,
        )
        self.standins.start()
        self.mirror = ModelMirror(self.api, self.namespace).start()
        return self

    def models(self) -> list[dict[str, Any]]:
        """The bench namespace's ManagedModels, from the watch."""
        assert self.mirror is not None
        return self.mirror.models()

    def start_operator(self) -> OperatorProcess:
        metrics = free_port()
        command = [
            sys.executable,
            "-m",
            "modelpilot.cli",
            "run",
            "--kubeconfig",
            str(self.plane.kubeconfig),
            "--namespace",
            self.namespace,
            "--liveness-port",
            str(free_port()),
            "--metrics-port",
            str(metrics),
        ]
        process = Process("operator", command, self.plane.log_dir)
        process.start()
        self.operator = OperatorProcess(process, metrics)
        wait_for(
            "the operator's metrics port",
            lambda: http_ok(f"http://127.0.0.1:{metrics}/metrics"),
            timeout=60,
            processes=(process,),
        )
        return self.operator

    def __exit__(self, *_: Any) -> None:
        if self.mirror is not None:
            self.mirror.stop()
        if self.operator is not None:
            self.operator.stop()
        if self.standins is not None:
            self.standins.stop(grace=5)
        self.plane.stop()
