"""A real MLflow tracking server for the registry tests: `mlflow server` from the test
extra's `mlflow` package, on loopback, with a sqlite backend and its own artifact store
in a temporary directory. The helpers below use MLflow's own Python client, as a data
scientist would (the operator never imports mlflow: it speaks the REST API)."""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from modelpilot_dev.procs import Process, free_port, http_ok, wait_for

WEBHOOK_CACHE_TTL = 1  # seconds


class MlflowServer:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="modelpilot-mlflow-"))
        self.process: Process | None = None
        self.start_seconds = 0.0
        # Webhooks to loopback over plain http (the operator's receiver; MLflow allows
        # only https to public addresses by default), listed afresh at every event, and
        # one key for the secrets MLflow stores encrypted, kept across restarts.
        self.env = {
            **os.environ,
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_CACHE_TTL": str(WEBHOOK_CACHE_TTL),
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(
                os.urandom(32)
            ).decode(),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        """Starts it (again, on the same port and database, after stop)."""
        argv = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            # Served artifacts (MLflow's default): logged models get mlflow-artifacts:/
            # URIs, which KServe cannot download; the operator must refuse those.
            "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        self.process = Process("mlflow", argv, self.log_dir, env=self.env)
        started = time.monotonic()
        self.process.start()
        wait_for(
            "the MLflow server",
            lambda: http_ok(f"{self.url}/health"),
            timeout=120,
            processes=(self.process,),
        )
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def register(self, model: str, source: str) -> int:
        """A version of model whose artifacts live at source (an external location, e.g.
        s3://models/iris/1: registered, not uploaded)."""
        client = self._client()
        if not client.search_registered_models(filter_string=f"name = '{model}'"):
            client.create_registered_model(model)
        return int(client.create_model_version(model, source).version)

    def set_alias(self, model: str, alias: str, version: int) -> None:
        self._client().set_registered_model_alias(model, alias, str(version))

    def delete_alias(self, model: str, alias: str) -> None:
        self._client().delete_registered_model_alias(model, alias)

    def add_alias_webhook(self, name: str, url: str, secret: str) -> str:
        """MLflow calls url, signed with secret, whenever an alias is set; its id."""
        hook = self._client().create_webhook(
            name, url, events=["model_version_alias.created"], secret=secret
        )
        # MLflow caches each event's webhook list (MLFLOW_WEBHOOK_CACHE_TTL, 1 s here):
        # an alias set sooner may still be delivered to the list as it was before.
        time.sleep(WEBHOOK_CACHE_TTL + 0.5)
        return str(hook.webhook_id)

    def delete_webhook(self, webhook_id: str) -> None:
        self._client().delete_webhook(webhook_id)
        time.sleep(WEBHOOK_CACHE_TTL + 0.5)

    def log_sklearn(self, model: str) -> int:
        """Trains a tiny classifier, logs it to the server's artifact store and registers
        it, as a data scientist's notebook would; returns its version."""
        import mlflow
        from sklearn.linear_model import LogisticRegression

        mlflow.set_tracking_uri(self.url)
        estimator = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(estimator, name="model", registered_model_name=model)
        return int(info.registered_model_version)
