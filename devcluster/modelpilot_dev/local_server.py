"""`modelpilot store serve` as a child process: start, wait until ready, ask, stop.

For the demo and the tests. Only the standard library here; the child imports kserve.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from modelpilot.store.card import StoreError
from modelpilot_dev.procs import Process, free_port


class LocalServer:
    def __init__(
        self,
        model: str,
        version: str,
        *,
        root: Path | str | None = None,
        port: int | None = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.root = root
        self.port = port or free_port()
        self.name = name or model
        argv = [sys.executable, "-m", "modelpilot.cli", "store", "serve", model, version]
        argv += ["--port", str(self.port), "--name", self.name]
        if root is not None:
            argv += ["--root", str(root)]
        self._log_dir = Path(tempfile.mkdtemp(prefix=f"modelpilot-serve-{model}-{version}-"))
        self._process = Process(f"{model}-{version}", argv, self._log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    def start(self) -> LocalServer:
        self._process.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> LocalServer:
        deadline = time.monotonic() + timeout
        while True:
            if not self._process.alive():
                raise StoreError(f"the model server exited:\n{self.log_tail()}")
            try:
                if self.get(f"/v2/models/{self.name}/ready")[0] == 200:
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise StoreError(
                    f"the model server was not ready in {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def is_ready(self) -> bool:
        """Answers ready now (one quick probe, no waiting)."""
        try:
            return self.alive() and self.get(f"/v2/models/{self.name}/ready")[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def alive(self) -> bool:
        return self._process.alive()

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting for it."""
        self._process.terminate()

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        return self._process.stop(grace)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return self._process.log_tail(lines)

    # --- requests -----------------------------------------------------------------

    def get(self, path: str) -> tuple[int, Any]:
        return self._request(urllib.request.Request(self.url + path))

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        return self._request(request)

    def predict(self, rows: list[list[float]]) -> list[int]:
        """Class indices for `rows`, over the v1 protocol."""
        status, body = self.post(f"/v1/models/{self.name}:predict", {"instances": rows})
        if status != 200:
            raise StoreError(f"predict answered {status}: {body}")
        return [int(p) for p in body["predictions"]]

    def _request(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as err:
            return err.code, _json(err.read())

    def __enter__(self) -> LocalServer:
        return self.start().wait_ready()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
