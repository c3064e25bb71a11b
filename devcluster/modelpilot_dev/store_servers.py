"""Real model servers for the KServe stand-in: an InferenceService whose model is in the
model store (`storageUri: pvc://model-store/<model>/<version>`, as the samples) is served
by KServe's Python model server (`modelpilot store serve`), one process per
InferenceService on a loopback port, and its predictor Service (created without a
selector) points at it through an EndpointSlice of addressType FQDN holding 127.0.0.1:
the apiserver refuses loopback IPs in an IPv4 slice, and kwok's pods answer nothing.
Upstream KServe's Service selects the predictor pods instead.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelpilot.api.names import MODEL_LABEL, VERSION_LABEL
from modelpilot_dev.local_server import LocalServer
from modelpilot_dev.prometheus import LocalPrometheus

log = logging.getLogger(__name__)

STORE_URI = re.compile(r"^pvc://model-store/(?P<model>[^/]+)/(?P<version>[^/]+)/?$")
MODEL_NAME_ARG = re.compile(r"^--model_name=(?P<name>.+)$")
SERVICE_PORT = {"name": "http", "port": 80, "targetPort": 8080}
ENDPOINT_SLICES = ("discovery.k8s.io", "v1", "endpointslices")
LIVENESS_PERIOD = 0.5  # seconds


def _address(server: LocalServer) -> str:
    return f"127.0.0.1:{server.port}"


def ignore_missing(call: Callable[[], Any]) -> Any:
    """The call's result, or None when its object is gone (404) or already there (409)."""
    try:
        return call()
    except ApiException as err:
        if err.status in (404, 409):
            return None
        raise


class StoreServers:
    def __init__(self, custom: client.CustomObjectsApi, model_store: Path | None) -> None:
        self.custom = custom
        self.model_store = model_store
        self._servers: dict[tuple[str, str], LocalServer] = {}
        self._lock = threading.Lock()
        self.prometheus: LocalPrometheus | None = None  # told of every server, when set
        self._labels: dict[tuple[str, str], dict[str, str]] = {}
        self._stopped = threading.Event()

    def watch_liveness(self, on_death: Callable[[tuple[str, str]], None]) -> None:
        """Like a kubelet: look at every server twice a second and report one that died
        (its InferenceService then goes unready, and the server is started again)."""

        def poll() -> None:
            while not self._stopped.wait(LIVENESS_PERIOD):
                for key, server in self.running().items():
                    if not server.alive():
                        on_death(key)

        threading.Thread(target=poll, name="store-servers-liveness", daemon=True).start()

    def report_to(self, prometheus: LocalPrometheus) -> None:
        """Have Prometheus scrape every server, those running and those to come."""
        with self._lock:
            self.prometheus = prometheus
            for key, server in self._servers.items():
                prometheus.add_target(_address(server), self._labels[key])

    def store_model(self, isvc: dict[str, Any]) -> tuple[str, str, str] | None:
        """(model, version, served name) when the predictor's model is in the store."""
        if self.model_store is None:
            return None
        model = (isvc["spec"].get("predictor") or {}).get("model") or {}
        found = STORE_URI.match(str(model.get("storageUri") or ""))
        if found is None or not (self.model_store / found["model"] / found["version"]).is_dir():
            return None
        names = [m["name"] for a in model.get("args") or [] if (m := MODEL_NAME_ARG.match(a))]
        return found["model"], found["version"], names[-1] if names else found["model"]

    def ensure(self, isvc: dict[str, Any], owner: list[dict[str, Any]]) -> LocalServer | None:
        """The InferenceService's server, started (or restarted on a new model) when its
        model is in the store, with the EndpointSlice that points its Service at it."""
        server = self._server(isvc)
        if server is not None:
            self._ensure_endpoints(isvc, server, owner)
        return server

    def _server(self, isvc: dict[str, Any]) -> LocalServer | None:
        wanted = self.store_model(isvc)
        key = (isvc["metadata"]["namespace"], isvc["metadata"]["name"])
        with self._lock:
            running = self._servers.get(key)
            same = running is not None and (running.model, running.version, running.name) == wanted
            if running is not None and same and running.alive():
                return running
            if running is not None:
                self._close(self._servers.pop(key))
            if wanted is None:
                return None
            model, version, served = wanted
            server = LocalServer(model, version, root=self.model_store, name=served).start()
            self._servers[key] = server
            labels = isvc["metadata"].get("labels") or {}
            self._labels[key] = {
                "namespace": key[0],
                "inferenceservice": key[1],
                "model": labels.get(MODEL_LABEL, model),
                "version": labels.get(VERSION_LABEL, version),
            }
            if self.prometheus is not None:
                self.prometheus.add_target(_address(server), self._labels[key])
            log.info("serving %s/%s for %s/%s on %s", model, version, *key, server.url)
            return server

    def stop(self, key: tuple[str, str]) -> None:
        with self._lock:
            server = self._servers.pop(key, None)
        if server is not None:
            self._close(server)

    def stop_all(self) -> None:
        self._stopped.set()
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            self._close(server)

    def _close(self, server: LocalServer) -> None:
        if self.prometheus is not None:
            self.prometheus.remove_target(_address(server))
        server.close()

    def running(self) -> dict[tuple[str, str], LocalServer]:
        with self._lock:
            return dict(self._servers)

    def _ensure_endpoints(
        self, isvc: dict[str, Any], server: LocalServer, owner: list[dict[str, Any]]
    ) -> None:
        """The selectorless predictor Service's EndpointSlice: the server's port."""
        meta = isvc["metadata"]
        point_at_loopback(
            self.custom,
            meta["namespace"],
            f"{meta['name']}-predictor",
            str(SERVICE_PORT["name"]),
            server.port,
            managed_by="modelpilot-dev.kserve-standin",
            owner=owner,
        )


def point_at_loopback(
    custom: client.CustomObjectsApi,
    namespace: str,
    service: str,
    port_name: str,
    port: int,
    *,
    managed_by: str,
    owner: list[dict[str, Any]] | None = None,
) -> None:
    """A selectorless Service's EndpointSlice `<service>-local`: a port on 127.0.0.1 (as
    an FQDN: an IPv4 slice may not hold a loopback address). The port name must be the
    Service port's: that is how a gateway pairs them."""
    name = f"{service}-local"
    group, version, plural = ENDPOINT_SLICES
    current = ignore_missing(
        lambda: custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    )
    ports = [{"name": port_name, "port": port, "protocol": "TCP"}]
    if current is not None and current.get("ports") == ports:
        return
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "kubernetes.io/service-name": service,
            "endpointslice.kubernetes.io/managed-by": managed_by,
        },
    }
    if owner:
        metadata["ownerReferences"] = owner
    endpoint_slice = {
        "apiVersion": f"{group}/{version}",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "FQDN",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        "ports": ports,
    }
    if current is None:
        ignore_missing(
            lambda: custom.create_namespaced_custom_object(
                group, version, namespace, plural, endpoint_slice
            )
        )
    else:
        ignore_missing(
            lambda: custom.patch_namespaced_custom_object(
                group, version, namespace, plural, name, {"ports": ports}
            )
        )
