"""`modelpilot store serve` as a child process: start, wait until ready, ask, stop.

For the demo and the tests. Only the standard library here; the child imports kserve.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from modelpilot.sim.procs import free_port
from modelpilot.store.card import StoreError


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
        descriptor, log_path = tempfile.mkstemp(prefix=f"modelpilot-serve-{model}-{version}-")
        os.close(descriptor)
        self.log_path = Path(log_path)
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> LocalServer:
        argv = [sys.executable, "-m", "modelpilot.cli", "store", "serve", self.model]
        argv += [self.version, "--port", str(self.port), "--name", self.name]
        if self.root is not None:
            argv += ["--root", str(self.root)]
        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> LocalServer:
        deadline = time.monotonic() + timeout
        while True:
            if self._popen is None or self._popen.poll() is not None:
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

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting for it."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.terminate()
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        return self._popen.returncode

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

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
