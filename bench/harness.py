"""The bench's world: the simulated cluster with KServe's stand-in in instant mode (Ready
at once, no pods) and the gateway stand-in, and the operator as its own process so that
its CPU and memory are its own."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from modelpilot.k8s.client import Kube, api_client
from modelpilot.sim.cluster import ControlPlane
from modelpilot.sim.procs import Process, free_port, http_ok, wait_for
from modelpilot.sim.standins import StandIns

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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

    def api_requests(self) -> dict[str, int]:
        """The operator's own count of its requests to the apiserver, per HTTP method."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        counts = {}
        for line in text.splitlines():
            if line.startswith('modelpilot_api_requests_total{method="'):
                labels, _, value = line.rpartition(" ")
                counts[labels.split('"')[1]] = int(float(value))
        return counts

    def stop(self) -> None:
        self.process.stop(grace=30)


class World:
    def __init__(self, namespace: str = "bench") -> None:
        self.namespace = namespace
        self.plane = ControlPlane()
        self.standins: StandIns | None = None
        self.operator: OperatorProcess | None = None

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
        self.standins = StandIns(api_client(str(self.plane.kubeconfig)), instant=True).start()
        return self

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
        if self.operator is not None:
            self.operator.stop()
        if self.standins is not None:
            self.standins.stop()
        self.plane.stop()
