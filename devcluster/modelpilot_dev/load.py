"""A bounded load generator: real prediction requests through the local gateway, and
what clients saw: which version answered (the Open Inference Protocol v2 answer names
its `model_version`; v1 answers carry none), non-2xx answers, connection errors and
latency.

Bounded three ways (rate, count, time) and loopback only: it refuses any other address.

    python -m modelpilot_dev load http://127.0.0.1:PORT --host iris.models.example.com \\
        --model iris --rate 100 --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

MAX_RATE = 2000.0  # requests per second
MAX_SECONDS = 900.0
MAX_REQUESTS = 500_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Three iris flowers, one per request in turn (a model may fail on some inputs only).
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when it was sent
    version: str | None  # who answered (None: no answer, or not a v2 answer)
    status: int  # HTTP status; 0 for a connection error
    seconds: float
    detail: str = ""  # for a failure: the start of the answer, or the error


@dataclass(frozen=True)
class Tally:
    requests: int
    by_version: dict[str, int]
    failed: int  # non-2xx answers
    errors: int  # no answer at all (connection refused, reset, timeout)
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)

    def share(self, version: str) -> float:
        """The version's share of the answered requests, in percent."""
        answered = sum(self.by_version.values())
        return 100.0 * self.by_version.get(version, 0) / answered if answered else 0.0

    def line(self) -> str:
        """e.g. `v1 452 (90.2%) v2 49 (9.8%)  errors 0`."""
        parts = [
            f"{version} {count} ({self.share(version):.1f}%)"
            for version, count in sorted(self.by_version.items())
        ]
        return f"{' '.join(parts) or 'no answers'}  errors {self.failed + self.errors}"


def tally(answers: list[Answer]) -> Tally:
    by_version: dict[str, int] = {}
    statuses: dict[int, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        if 200 <= answer.status < 300 and answer.version is not None:
            by_version[answer.version] = by_version.get(answer.version, 0) + 1
    latencies = sorted(a.seconds * 1000 for a in answers if a.status)
    return Tally(
        requests=len(answers),
        by_version=by_version,
        failed=sum(1 for a in answers if a.status and not 200 <= a.status < 300),
        errors=sum(1 for a in answers if a.status == 0),
        p50_ms=round(statistics.median(latencies), 1) if latencies else 0.0,
        p99_ms=round(latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else 0.0,
        statuses=statuses,
    )


class Load:
    """Requests at `rate` per second from a few workers, each on a kept-alive
    connection, until stopped or a bound is reached."""

    def __init__(
        self,
        url: str,
        *,
        host: str,
        model: str,
        rate: float = 100.0,
        seconds: float = 120.0,
        max_requests: int = 100_000,
        workers: int = 4,
        rows: list[list[float]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.hostname not in LOOPBACK or parsed.scheme != "http":
            raise ValueError(f"{url}: the load generator only targets http://127.0.0.1:PORT")
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate {rate}: must be in (0, {MAX_RATE:.0f}] requests per second")
        self.address = (parsed.hostname, parsed.port or 80)
        self.host, self.model = host, model
        self.headers = dict(headers or {})  # e.g. a client group's A/B header
        self.rate = rate
        self.seconds = min(seconds, MAX_SECONDS)
        self.max_requests = min(max_requests, MAX_REQUESTS)
        self.workers = workers
        self.bodies = [
            json.dumps(
                {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64",
                             "data": row}]}
            ).encode()
            for row in rows or IRIS_ROWS
        ]  # fmt: skip
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next = 0.0
        self._sent = 0
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def start(self) -> Load:
        self.started = self._next = time.monotonic()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.tally()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def tally(self, since: float = 0.0, until: float | None = None) -> Tally:
        """What clients saw for requests sent in [since, until)."""
        with self._lock:
            answers = [a for a in self.answers if a.at >= since and (until is None or a.at < until)]
        return tally(answers)

    def wait_answers(self, since: float, count: int, timeout: float = 120.0) -> Tally:
        """Until `count` requests sent after `since` have been answered (or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.tally(since)
            if found.requests >= count:
                return found
            if time.monotonic() > deadline or self._stop.is_set():
                raise TimeoutError(f"only {found.requests} of {count} requests in {timeout}s")
            time.sleep(0.1)

    def _slot(self) -> tuple[float, bytes] | None:
        """When this worker sends its next request, and what; None once a bound is
        reached."""
        with self._lock:
            if self._sent >= self.max_requests:
                return None
            slot = max(self._next, time.monotonic())
            if slot - self.started > self.seconds:
                return None
            self._next = slot + 1.0 / self.rate
            body = self.bodies[self._sent % len(self.bodies)]
            self._sent += 1
            return slot, body

    def _work(self) -> None:
        connection: http.client.HTTPConnection | None = None
        headers = {**self.headers, "Host": self.host, "Content-Type": "application/json"}
        path = f"/v2/models/{self.model}/infer"
        while not self._stop.is_set():
            planned = self._slot()
            if planned is None:
                return
            slot, body = planned
            delay = slot - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            sent = time.monotonic()
            version, status, detail = None, 0, ""
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(*self.address, timeout=10)
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                status = response.status
                if 200 <= status < 300:
                    version = json.loads(payload).get("model_version")
                else:
                    detail = payload[:200].decode(errors="replace")
            except (OSError, http.client.HTTPException, ValueError) as err:
                detail = repr(err)[:200]
                if connection is not None:
                    connection.close()
                connection = None
            answer = Answer(sent, version, status, time.monotonic() - sent, detail)
            with self._lock:
                self.answers.append(answer)
        if connection is not None:
            connection.close()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelpilot_dev load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="the gateway, http://127.0.0.1:PORT")
    parser.add_argument("--host", required=True, help="the route's hostname (Host header)")
    parser.add_argument("--model", required=True, help="the served model name")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long (30 s)")
    parser.add_argument("--every", type=float, default=5.0, help="print a line this often")
    args = parser.parse_args(argv)
    load = Load(args.url, host=args.host, model=args.model, rate=args.rate, seconds=args.seconds)
    load.start()
    mark = load.started
    try:
        while load.running():
            time.sleep(args.every)
            now = time.monotonic()
            print(f"{now - load.started:6.1f}s  {load.tally(mark, now).line()}", flush=True)
            mark = now
    except KeyboardInterrupt:
        pass
    total = load.stop()
    print(f"total  {total.line()}  p50 {total.p50_ms} ms  p99 {total.p99_ms} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
