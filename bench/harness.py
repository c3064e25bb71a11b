"""The bench's world: the simulated cluster with KServe's stand-in in instant mode (Ready
at once, no pods) and the gateway stand-in, and the operator as its own process so that
its CPU and memory are its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from modelpilot.k8s.client import Kube, api_client
from modelpilot.sim.cluster import ControlPlane
from modelpilot.sim.standins import StandIns

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


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
        log = self.plane.log_dir / "operator.log"
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
        with log.open("ab") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        self.operator = OperatorProcess(process, metrics, log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", metrics), timeout=1):
                    return self.operator
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"operator exited; see {log}") from None
                time.sleep(0.2)
        raise TimeoutError("operator did not open its metrics port")

    def __exit__(self, *_: Any) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.standins is not None:
            self.standins.stop()
        self.plane.stop()
