"""The ingress and activator of the Knative stand-in (modelpilot_dev.knative): real
requests for an InferenceService in Knative mode, on a loopback port.

Upstream, KServe's ingress (Istio or Kourier behind Knative's route) sends a request for
`<isvc>.<ns>.example.com` to a revision by the route's percentages, and Knative's
activator holds a request for a revision at zero until the autoscaler has brought up a
pod, then forwards it. Here one small HTTP server plays both:

- the Host names the InferenceService (`status.url`'s host); another host gets 404;
- a revision is picked at random, weighted by the percentages the stand-in last wrote
  to status.components.predictor.traffic (a 0% entry never);
- the request (method, path, body, headers less hop-by-hop ones) goes to that revision's
  model server and its answer comes back as it is;
- a revision with no ready server (scaled to zero, or loading) is woken through the
  stand-in's `request()`, and the request is held until the server answers ready, at
  most `hold_seconds` (then 503, as the activator times out);
- every request marks its revision active, so a revision under load is not scaled to
  zero;
- each forwarded request is counted and timed as Knative's queue-proxy does in front of
  the revision's pods (`revision_request_count`, `revision_request_latencies` in ms,
  labelled namespace_name, configuration_name, service_name, revision_name,
  response_code, response_code_class; Knative's serving docs, "Service metrics"),
  exposed at `/metrics` for a Host that is not an InferenceService's. A request held
  until the activator gives up never reached a queue-proxy and is not counted.

Concurrency-based scaling above the floor, retries after a request was sent and HTTP/2
are not played; one exposition stands in for every revision pod's own.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from modelpilot_dev.knative import DOMAIN, KnativeStandIn
from modelpilot_dev.procs import free_port

HOLD_SECONDS = 60.0  # how long a request waits for a revision to come up
# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the request's; the length
# is set again for the body that is sent; Date and Server are written by the ingress.
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
_NOT_RETURNED = _NOT_FORWARDED | {"date", "server"}

Answer = tuple[int, list[tuple[str, str]], bytes]


def _text(status: int, message: str) -> Answer:
    return status, [("Content-Type", "text/plain; charset=utf-8")], f"{message}\n".encode()


def service_of(host: str) -> tuple[str, str] | None:
    """(namespace, isvc) of `<isvc>.<ns>.example.com[:port]`; None for another host."""
    name = host.split(":", 1)[0].lower().rstrip(".")
    if not name.endswith(f".{DOMAIN}"):
        return None
    parts = name[: -len(DOMAIN) - 1].split(".")
    return (parts[1], parts[0]) if len(parts) == 2 and all(parts) else None


def pick(weights: dict[str, int]) -> str | None:
    """A revision at random by its percent; None when none has any."""
    routed = {revision: percent for revision, percent in weights.items() if percent > 0}
    if not routed:
        return None
    return random.choices(list(routed), weights=list(routed.values()))[0]


# Milliseconds; the upper bounds of revision_request_latencies' buckets.
LATENCY_BUCKETS = (5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 400, 500, 1000, 2000, 5000)
Series = tuple[str, str, str, str]  # namespace, isvc, revision, response code


class QueueProxyMetrics:
    """Per revision request counts and latencies, in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Series, int] = {}
        self._buckets: dict[Series, list[int]] = {}
        self._sums: dict[Series, float] = {}

    def observe(self, namespace: str, isvc: str, revision: str, code: int, ms: float) -> None:
        series = (namespace, isvc, revision, str(code))
        with self._lock:
            self._counts[series] = self._counts.get(series, 0) + 1
            buckets = self._buckets.setdefault(series, [0] * len(LATENCY_BUCKETS))
            for index, bound in enumerate(LATENCY_BUCKETS):
                if ms <= bound:
                    buckets[index] += 1
            self._sums[series] = self._sums.get(series, 0.0) + ms

    def exposition(self) -> str:
        with self._lock:
            counts, buckets, sums = dict(self._counts), dict(self._buckets), dict(self._sums)
        lines = ["# TYPE revision_request_count counter"]
        for series, count in sorted(counts.items()):
            lines.append(f"revision_request_count{{{_labels(series)}}} {count}")
        lines.append("# TYPE revision_request_latencies histogram")
        for series, cumulative in sorted(buckets.items()):
            labels = _labels(series)
            for bound, count in zip(LATENCY_BUCKETS, cumulative, strict=True):
                lines.append(f'revision_request_latencies_bucket{{{labels},le="{bound}"}} {count}')
            lines.append(
                f'revision_request_latencies_bucket{{{labels},le="+Inf"}} {counts[series]}'
            )
            lines.append(f"revision_request_latencies_sum{{{labels}}} {sums[series]}")
            lines.append(f"revision_request_latencies_count{{{labels}}} {counts[series]}")
        return "\n".join(lines) + "\n"


def _labels(series: Series) -> str:
    namespace, isvc, revision, code = series
    # Names are DNS labels and codes digits: nothing to escape.
    configuration = f"{isvc}-predictor"
    return (
        f'namespace_name="{namespace}",configuration_name="{configuration}",'
        f'service_name="{configuration}",revision_name="{revision}",'
        f'response_code="{code}",response_code_class="{code[0]}xx"'
    )


class KnativeIngress:
    def __init__(self, standin: KnativeStandIn, *, hold_seconds: float = HOLD_SECONDS) -> None:
        self.standin = standin
        self.hold_seconds = hold_seconds
        self.metrics = QueueProxyMetrics()
        self.port = free_port()
        self._http = _Server(("127.0.0.1", self.port), _Handler)
        self._http.ingress = self
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="knative-ingress", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """What Prometheus scrapes (`/metrics`)."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> KnativeIngress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    def serve(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """The answer to one request, as the client gets it."""
        host = next((value for key, value in headers if key.lower() == "host"), "")
        found = service_of(host)
        weights = self.standin.routes(*found) if found is not None else None
        if found is None and path == "/metrics":
            exposition = self.metrics.exposition().encode()
            return 200, [("Content-Type", "text/plain; version=0.0.4")], exposition
        if found is None or weights is None:
            return _text(404, f"no InferenceService in Knative mode for host {host!r}")
        namespace, isvc = found
        deadline = time.monotonic() + self.hold_seconds
        while True:
            revision = pick(self.standin.routes(namespace, isvc) or {})
            if revision is not None:
                self.standin.touch(namespace, isvc, revision)
                server = self.standin.server(namespace, revision)
                if server is not None:
                    started = time.monotonic()
                    try:
                        answer = self._forward(server.port, method, path, headers, body)
                    except ConnectionRefusedError:
                        pass  # not sent: the server just went; hold it as for one at zero
                    else:
                        ms = (time.monotonic() - started) * 1000
                        self.metrics.observe(namespace, isvc, revision, answer[0], ms)
                        return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _text(503, f"no revision of {namespace}/{isvc} came up in time")
            # The activator: wake the revision and wait for its server. False when the
            # revision is no longer routed: pick again (after a breath, not in a spin).
            if revision is None or not self.standin.request(
                namespace, isvc, timeout=remaining, revision=revision
            ):
                time.sleep(0.05)

    def _forward(
        self, port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            sent = {key: value for key, value in headers if key.lower() not in _NOT_FORWARDED}
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _NOT_RETURNED]
            return response.status, kept, payload
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a held request must not keep the process from exiting
    request_queue_size = 128  # a burst of load waits in the backlog, not refused
    ingress: KnativeIngress


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator's clients expect

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ingress = cast(_Server, self.server).ingress
        status, headers, payload = ingress.serve(
            self.command, self.path, list(self.headers.items()), body
        )
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would flood the test output
