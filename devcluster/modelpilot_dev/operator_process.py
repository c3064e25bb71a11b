"""The operator as a process of its own (`modelpilot run`), so that its CPU, memory and
metrics are its own, and it can be killed like a pod."""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from modelpilot_dev.procs import Process, free_port, http_ok, wait_for

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


@dataclass
class OperatorProcess:
    process: Process
    metrics_port: int
    identity: str | None = None  # its --identity, when start_operator was given one

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

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

    def alive(self) -> bool:
        return self.process.alive()

    def kill(self) -> None:
        """kill -9: no shutdown at all (a leader does not release its Lease); returns
        once the process is gone."""
        if self.process.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.stop(grace=30)  # reaps it

    def stop(self) -> None:
        self.process.stop(grace=30)


def start_operator(
    kubeconfig: Path,
    log_dir: Path,
    namespace: str,
    *extra: str,
    identity: str | None = None,
    name: str = "operator",
) -> OperatorProcess:
    """`modelpilot run` against kubeconfig, for namespace; returns once it serves metrics.
    `identity` is passed as `--identity` (leader election's name for this replica);
    `name` names its log file, `<log_dir>/<name>.log` (appended to)."""
    metrics = free_port()
    command = [
        sys.executable,
        "-m",
        "modelpilot.cli",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
        "--liveness-port",
        str(free_port()),
        "--metrics-port",
        str(metrics),
        *(["--identity", identity] if identity else []),
        *extra,
    ]
    process = Process(name, command, log_dir)
    process.start()
    wait_for(
        "the operator's metrics port",
        lambda: http_ok(f"http://127.0.0.1:{metrics}/metrics"),
        timeout=60,
        processes=(process,),
    )
    return OperatorProcess(process, metrics, identity)
