"""Real model servers for the ModelMesh stand-in: like a runtime pod of ModelMesh's, one
KServe model server process per namespace holds every model of the namespace that is in
the model store (`storageUri: pvc://model-store/<model>/<version>`), each under its
InferenceService's name (`modelpilot store serve-repository`). Loading a model links its
name to the stored version and asks the server to load it; loading a name again (a
changed model) swaps it only once the new one is loaded, so the old one answers until
then: ModelMesh's load before switch, for real. The namespace's `modelmesh-serving`
Service (created without a selector) points at the process through an EndpointSlice of
addressType FQDN holding 127.0.0.1, as the Standard-mode servers do (store_servers).
Upstream, ModelMesh routes a request among the runtime pods itself; here one process
serves all runtimes' models of a namespace.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from modelpilot_dev.procs import Process, free_port
from modelpilot_dev.store_servers import STORE_URI, point_at_loopback

log = logging.getLogger(__name__)
START_TIMEOUT = 60.0  # seconds for a server to answer live (it imports kserve)


class MeshServer:
    """One namespace's multi-model server process and its directory of links."""

    def __init__(self, namespace: str) -> None:
        self.port = free_port()
        self.models = Path(tempfile.mkdtemp(prefix=f"modelpilot-mesh-{namespace}-"))
        argv = [sys.executable, "-m", "modelpilot.cli", "store", "serve-repository"]
        argv += [str(self.models), "--port", str(self.port)]
        self._process = Process(f"mesh-{namespace}", argv, self.models)
        self._process.start()

    def wait_live(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while self._request("GET", "/v2/health/live")[0] != 200:
            if not self._process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start:\n{self._process.log_tail()}")
            time.sleep(0.2)

    def load(self, name: str, version_dir: Path) -> str | None:
        """Load `version_dir` as `name` (swapping out what it served once loaded); None,
        or why it failed."""
        link = self.models / name
        fresh = self.models / f".{name}.new"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(version_dir)
        os.replace(fresh, link)  # atomic: the name points at one version or the other
        status, body = self._request("POST", f"/v2/repository/models/{name}/load")
        return None if status == 200 else f"load answered {status}: {body}"

    def unload(self, name: str) -> None:
        self._request("POST", f"/v2/repository/models/{name}/unload")
        (self.models / name).unlink(missing_ok=True)

    def alive(self) -> bool:
        return self._process.alive()

    def close(self) -> None:
        self._process.stop()
        shutil.rmtree(self.models, ignore_errors=True)

    def _request(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            return 0, str(err)


class MeshServers:
    """The namespaces' servers, started on their first stored model."""

    def __init__(self, custom: client.CustomObjectsApi, model_store: Path | None) -> None:
        self.custom = custom
        self.model_store = model_store
        self._servers: dict[str, MeshServer] = {}
        self._lock = threading.Lock()

    def stored(self, model: dict[str, Any]) -> Path | None:
        """The stored version a predictor's model names, when it is in the store."""
        found = STORE_URI.match(str(model.get("storageUri") or ""))
        if self.model_store is None or found is None:
            return None
        directory = self.model_store / found["model"] / found["version"]
        return directory if directory.is_dir() else None

    def load(self, namespace: str, name: str, version_dir: Path, service: str) -> str | None:
        """Load into the namespace's server (started, and pointed at by `service`, on
        first use); None, or why the load failed."""
        try:
            server = self._server(namespace, service)
        except RuntimeError as err:
            return str(err)
        failed = server.load(name, version_dir)
        if failed:
            log.warning("loading %s/%s from %s: %s", namespace, name, version_dir, failed)
        return failed

    def unload(self, namespace: str, name: str) -> None:
        with self._lock:
            server = self._servers.get(namespace)
        if server is not None and server.alive():
            server.unload(name)

    def stop_all(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()

    def _server(self, namespace: str, service: str) -> MeshServer:
        with self._lock:
            server = self._servers.get(namespace)
            if server is None or not server.alive():
                if server is not None:
                    server.close()
                server = self._servers[namespace] = MeshServer(namespace)
        server.wait_live()
        point_at_loopback(
            self.custom,
            namespace,
            service,
            "http",
            server.port,
            managed_by="modelpilot-dev.modelmesh-standin",
        )
        return server
