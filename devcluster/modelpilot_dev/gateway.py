"""Traefik as the local cluster's Gateway API data plane: a real gateway that routes real
requests by the HTTPRoutes the operator writes, and reports on them in their status.

It runs out of cluster against the local apiserver (its Kubernetes Gateway provider
reads $KUBECONFIG), with its web entrypoint on loopback. A Gateway's listener port must
equal the entrypoint's port, so each LocalGateway makes its own Gateway object on its
own port; routes attach to it by `spec.traffic.gatewayRef`. Facts from trying v3.6.12
here: weights, path, header and query matches work; a RequestMirror filter is accepted
and then fails every request on its rule with 500. Traefik mirrors through its own
TraefikService instead (its kubernetescrd provider, on here, with its CRDs installed),
which a route may name as a backend.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self, cast

from kubernetes import client

from modelpilot.api.kinds import GATEWAY, Kind
from modelpilot.handlers.manage import Settings
from modelpilot_dev import crds, tools
from modelpilot_dev.procs import ClusterError, Process, free_port, http_ok, wait_for

GATEWAY_CLASS = "traefik"
# The operator's settings for routes through this gateway (--gateway-flavor traefik).
TRAEFIK_SETTINGS = Settings(gateway_flavor="traefik")
CONTROLLER = "traefik.io/gateway-controller"
IDLE_CONN_TIMEOUT = "3s"
GATEWAY_CLASS_KIND = Kind("gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses")


class LocalGateway:
    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        *,
        name: str = "inference-gateway",
        namespace: str = "gateways",
    ) -> None:
        self.kubeconfig, self.log_dir = kubeconfig, log_dir
        self.name, self.namespace = name, namespace
        self.port = free_port()  # the web entrypoint: model traffic
        self.admin_port = free_port()  # ping and Prometheus metrics
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/metrics"

    def argv(self) -> list[str]:
        return [
            str(tools.binary_path("traefik")),
            # It must never call out: no version check, no usage report.
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            f"--entryPoints.web.address=127.0.0.1:{self.port}",
            f"--entryPoints.traefik.address=127.0.0.1:{self.admin_port}",
            "--ping=true",
            # Its API (loopback, admin port) tells what it applied: see applied_weights.
            "--api.insecure=true",
            "--api.dashboard=false",  # its web UI is not in a build from the Go module
            "--metrics.prometheus=true",
            "--metrics.prometheus.addServicesLabels=true",
            # Traefik's default buckets (0.1, 0.3, 1.2, 5 s) put every model answer in
            # the first: a latency-p99 would read ~99 ms for any of them.
            "--metrics.prometheus.buckets=0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5",
            "--providers.kubernetesgateway=true",
            # The default (2 s) merges back-to-back route changes into one.
            "--providers.providersThrottleDuration=100ms",
            "--providers.kubernetesgateway.throttleDuration=0s",
            "--providers.kubernetesgateway.statusAddress.ip=127.0.0.1",
            # TraefikService: how a shadow is mirrored (--gateway-flavor traefik).
            "--providers.kubernetescrd=true",
            "--providers.kubernetescrd.throttleDuration=0s",
            # Shorter than the model server's keep-alive (uvicorn: 5 s), or a backend
            # that was idle for a while (a canary after an abort, the old version after
            # a promotion) closes a pooled connection just as the gateway reuses it: 502.
            f"--serversTransport.forwardingTimeouts.idleConnTimeout={IDLE_CONN_TIMEOUT}",
            "--log.level=INFO",
            "--log.nocolor=true",
            # Failed requests only, with who answered (OriginStatus 0: the gateway itself).
            "--accesslog=true",
            "--accesslog.format=json",
            "--accesslog.filters.statuscodes=400-599",
        ]

    def start(self, api: client.ApiClient, timeout: float = 60.0) -> LocalGateway:
        missing = tools.missing(["traefik", "traefik-crds"])
        if missing:
            raise ClusterError(f"{', '.join(missing)} not built; run `make tools`")
        crds.install_crds(api, crds.traefik_crds())
        self.ensure_objects(api)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.process = Process(f"traefik-{self.name}", self.argv(), self.log_dir, env=env)
        self.process.start()
        wait_for(
            "traefik to answer its ping",
            lambda: http_ok(f"http://127.0.0.1:{self.admin_port}/ping"),
            timeout=timeout,
            processes=(self.process,),
        )
        wait_for(
            f"Gateway {self.namespace}/{self.name} programmed",
            lambda: self.programmed(api),
            timeout=timeout,
            processes=(self.process,),
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
            self.process = None

    def log_tail(self, lines: int = 60) -> str:
        """Its last warnings and errors (its info lines are start-up chatter)."""
        if self.process is None:
            return "(not started)"
        notable = [
            line
            for line in self.process.log_tail(100_000).splitlines()
            if " ERR " in line or " WRN " in line or '"DownstreamStatus"' in line
        ]
        return "\n".join(notable[-lines:]) or "(no warnings or errors)"

    def ensure_objects(self, api: client.ApiClient) -> None:
        """The GatewayClass Traefik claims, and a Gateway listening on our port that
        takes routes from every namespace."""
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        gateway_class = {
            "apiVersion": GATEWAY_CLASS_KIND.api_version,
            "kind": GATEWAY_CLASS_KIND.kind,
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": CONTROLLER},
        }
        _create(lambda: custom.create_cluster_custom_object(
            GATEWAY_CLASS_KIND.group, GATEWAY_CLASS_KIND.version, GATEWAY_CLASS_KIND.plural,
            gateway_class,
        ))  # fmt: skip
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        # kubernetes' types want a V1Namespace; the client sends a dict as is.
        _create(lambda: core.create_namespace(namespace))  # type: ignore[arg-type]
        listener = {
            "name": "web",
            "port": self.port,
            "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }
        gateway = {
            "apiVersion": GATEWAY.api_version,
            "kind": GATEWAY.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [listener]},
        }
        _create(lambda: custom.create_namespaced_custom_object(
            GATEWAY.group, GATEWAY.version, self.namespace, GATEWAY.plural, gateway
        ))  # fmt: skip

    def programmed(self, api: client.ApiClient) -> bool:
        # kubernetes types a custom object as `object`; it is a dict.
        found = cast(
            dict[str, Any],
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                GATEWAY.group, GATEWAY.version, self.namespace, GATEWAY.plural, self.name
            ),
        )
        conditions = (found.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Programmed" and c.get("status") == "True" for c in conditions)

    def applied_weights(self, host: str) -> dict[str, int]:
        """The weights Traefik routes `host`'s catch-all by right now, per backend
        (`<namespace>-<service>-<port name>-<port>`), weight 0 left out; {} when it routes
        nothing for the host. Read from its API, which is rebuilt with the routers on
        every configuration switch: what it says is what requests get from then on."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.admin_port}/api/rawdata", timeout=5
        ) as response:
            applied = json.load(response)
        routers = [
            router
            for name, router in (applied.get("routers") or {}).items()
            if name.endswith("@kubernetesgateway") and f'Host("{host}")' in router.get("rule", "")
        ]
        if not routers:
            return {}
        # Priorities follow rule length: the least specific rule (no header or query
        # match) is the one Traefik tries last, the host's default split.
        catch_all = min(routers, key=lambda router: int(router.get("priority", 0)))
        service = (applied.get("services") or {}).get(f"{catch_all['service']}@kubernetesgateway")
        backends = ((service or {}).get("weighted") or {}).get("services") or []
        return {b["name"]: int(b.get("weight", 1)) for b in backends if b.get("weight", 1)}

    def request(
        self, path: str, body: bytes | None = None, host: str | None = None, timeout: float = 10
    ) -> tuple[int, bytes]:
        """One request through the gateway (loopback only)."""
        headers = {"Content-Type": "application/json"}
        if host:
            headers["Host"] = host
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def __enter__(self) -> LocalGateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Applied:
    """A split the gateway routed by: from `since` at the latest (a sample showing it had
    been answered) to `until` at least (a later sample showing it was sent)."""

    since: float
    until: float
    weights: dict[str, int]


class AppliedWeights:
    """The data plane's own timeline for one host, beside the route writes the apiserver
    saw: the gateway's API sampled every `every` seconds from a thread, one Applied per
    split in the order applied. A request sent after a split's `since` is routed by it
    (or a later one), however long the gateway took to apply it."""

    def __init__(self, gateway: LocalGateway, host: str, every: float = 0.05) -> None:
        self.gateway, self.host, self.every = gateway, host, every
        self._spans: list[Applied] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> Self:
        threading.Thread(target=self._run, name=f"applied-{self.host}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def spans(self) -> list[Applied]:
        with self._lock:
            return list(self._spans)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                weights = self.gateway.applied_weights(self.host)
            except (OSError, ValueError):
                weights = None  # mid-restart or a torn answer: the next sample tells
            if weights is not None:
                self._record(sent, time.monotonic(), weights)
            self._stop.wait(self.every)

    def _record(self, sent: float, answered: float, weights: dict[str, int]) -> None:
        with self._lock:
            if self._spans and self._spans[-1].weights == weights:
                self._spans[-1] = replace(self._spans[-1], until=sent)
            else:
                self._spans.append(Applied(since=answered, until=answered, weights=weights))


def _create(call: Any) -> None:
    try:
        call()
    except client.ApiException as err:
        if err.status != 409:  # already there: the same object from an earlier start
            raise
