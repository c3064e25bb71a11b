"""Prometheus for the local cluster: Debian's package from the tools cache, on loopback,
scraping every second the gateway (Traefik's per-service request counters) and the real
model servers (KServe's `request_predict_seconds`), labelled with namespace, model and
version. Targets come from a file Prometheus re-reads, so servers come and go.

A backend that never failed has no non-2xx series: queries need `or vector(0)`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from modelpilot_dev import tools
from modelpilot_dev.procs import ClusterError, Process, free_port, http_ok, wait_for

SCRAPE_INTERVAL = "1s"


class LocalPrometheus:
    def __init__(self, log_dir: Path, *, gateway_metrics: str | None = None) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="modelpilot-prometheus-"))
        self.targets_file = self.root / "model-servers.json"
        self.gateway_metrics = gateway_metrics  # http://127.0.0.1:PORT/metrics
        self.process: Process | None = None
        self._targets: dict[str, dict[str, str]] = {}  # address -> labels
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        jobs: list[dict[str, Any]] = [
            {
                "job_name": "model-servers",
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }
        ]
        if self.gateway_metrics:
            parsed = urllib.parse.urlsplit(self.gateway_metrics)
            jobs.append(
                {
                    "job_name": "gateway",
                    "metrics_path": parsed.path,
                    "static_configs": [{"targets": [parsed.netloc]}],
                }
            )
        return {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "scrape_configs": jobs,
        }

    def start(self, timeout: float = 60.0) -> LocalPrometheus:
        if tools.missing(["prometheus"]):
            raise ClusterError("prometheus is not fetched; run `make tools`")
        self._write_targets()
        config = self.root / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        argv = [
            str(tools.prometheus_binary()),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        self.process = Process("prometheus", argv, self.log_dir)
        self.process.start()
        wait_for(
            "prometheus ready",
            lambda: http_ok(f"{self.url}/-/ready"),
            timeout=timeout,
            processes=(self.process,),
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
            self.process = None
        with self._lock:
            self._stopped = True
            shutil.rmtree(self.root, ignore_errors=True)  # its data is thrown away

    def add_target(self, address: str, labels: dict[str, str]) -> None:
        """A model server to scrape (127.0.0.1:PORT), with the labels that name it."""
        with self._lock:
            self._targets[address] = dict(labels)
            self._write_targets()

    def remove_target(self, address: str) -> None:
        with self._lock:
            self._targets.pop(address, None)
            self._write_targets()

    def _write_targets(self) -> None:
        if self._stopped:
            return  # servers stopping after Prometheus did: nobody reads the file now
        groups = [{"targets": [a], "labels": labels} for a, labels in sorted(self._targets.items())]
        partial = self.targets_file.with_suffix(".tmp")
        partial.write_text(json.dumps(groups))
        partial.replace(self.targets_file)  # Prometheus never reads half a file

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ClusterError(f"prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def __enter__(self) -> LocalPrometheus:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
