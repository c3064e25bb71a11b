"""Prometheus metrics for the operator, exposed in the text format (no extra
dependency: the exposition format is small, and kopf already brings aiohttp)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping

from aiohttp import web

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reconciles = 0
        self.errors = 0
        self.child_writes = 0
        # Reconcile run time by what woke the model, so a person's command is seen apart
        # from the routine ones it runs beside (their threads share the GIL).
        self._durations = _ByCause()
        self.reconcile_cpu = 0.0  # seconds of CPU the reconciles' threads spent in them
        self._phases: dict[tuple[str, str], str] = {}
        self._canary_weights: dict[tuple[str, str], int] = {}
        self._analysis: dict[tuple[str, str], tuple[str, int]] = {}  # last result, failed
        self.checks_total: Mapping[str, int] = {}  # analysis checks per result
        # The API client's live request counts per HTTP method, when it keeps them.
        self.api_requests: Mapping[str, int] = {}
        self.leader_identity: str | None = None
        self.leading: Callable[[], bool] = lambda: True  # no leader election: always
        self.shard: tuple[int, int] = (0, 1)  # (index, count)
        # Wake -> reconcile started, by what woke the model (a person's change or else).
        self._waits = _ByCause()
        self._wakes: Counter[tuple[str, str]] = Counter()  # (source, cause)

    def observe(self, seconds: float, writes: int, error: bool, cause: str = "other") -> None:
        with self._lock:
            self.reconciles += 1
            self.errors += int(error)
            self.child_writes += writes
            self._durations.observe(cause, seconds)

    def observe_cpu(self, seconds: float) -> None:
        with self._lock:
            self.reconcile_cpu += seconds

    def observe_wait(self, cause: str, seconds: float) -> None:
        with self._lock:
            self._waits.observe(cause, seconds)

    def woke(self, source: str, cause: str) -> None:
        with self._lock:
            self._wakes[(source, cause)] += 1

    def set_phase(
        self, namespace: str, name: str, phase: str | None, canary_weight: int | None = None
    ) -> None:
        with self._lock:
            key = (namespace, name)
            if phase is None:
                self._phases.pop(key, None)
            else:
                self._phases[key] = phase
            if canary_weight is None:
                self._canary_weights.pop(key, None)
            else:
                self._canary_weights[key] = canary_weight

    def set_analysis(
        self, namespace: str, name: str, result: str | None, failed_checks: int = 0
    ) -> None:
        with self._lock:
            if result is None:
                self._analysis.pop((namespace, name), None)
            else:
                self._analysis[(namespace, name)] = (result, failed_checks)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP modelpilot_reconciles_total Reconciles run.",
                "# TYPE modelpilot_reconciles_total counter",
                f"modelpilot_reconciles_total {self.reconciles}",
                "# HELP modelpilot_reconcile_errors_total Reconciles that raised.",
                "# TYPE modelpilot_reconcile_errors_total counter",
                f"modelpilot_reconcile_errors_total {self.errors}",
                "# HELP modelpilot_child_writes_total Children applied or deleted.",
                "# TYPE modelpilot_child_writes_total counter",
                f"modelpilot_child_writes_total {self.child_writes}",
                "# HELP modelpilot_reconcile_cpu_seconds_total CPU time spent in reconciles"
                " (their threads' own; the rest of the process's is watches and the event"
                " loop).",
                "# TYPE modelpilot_reconcile_cpu_seconds_total counter",
                f"modelpilot_reconcile_cpu_seconds_total {self.reconcile_cpu:.6f}",
                "# HELP modelpilot_reconcile_duration_seconds Time per reconcile, by what"
                " woke it (command, change, other: a child, a timer).",
                "# TYPE modelpilot_reconcile_duration_seconds histogram",
            ]
            lines += self._durations.render("modelpilot_reconcile_duration_seconds")
            lines += [
                "# HELP modelpilot_reconcile_wait_seconds From a model's wake to its reconcile"
                " starting, by cause (command, change: a new generation, other).",
                "# TYPE modelpilot_reconcile_wait_seconds histogram",
            ]
            lines += self._waits.render("modelpilot_reconcile_wait_seconds")
            lines += [
                "# HELP modelpilot_wakes_total Wakes of a model's loop by what changed (a"
                " child's kind, the model, a slot...) and cause; several may end in one"
                " reconcile.",
                "# TYPE modelpilot_wakes_total counter",
            ]
            for (source, cause), count in sorted(self._wakes.items()):
                lines.append(f'modelpilot_wakes_total{{source="{source}",cause="{cause}"}} {count}')
            lines += [
                "# HELP modelpilot_models Managed models per rollout phase.",
                "# TYPE modelpilot_models gauge",
            ]
            for phase, count in sorted(Counter(self._phases.values()).items()):
                lines.append(f'modelpilot_models{{phase="{phase}"}} {count}')
            lines += [
                "# HELP modelpilot_canary_weight Percent of a model's traffic on its canary.",
                "# TYPE modelpilot_canary_weight gauge",
            ]
            for (namespace, name), weight in sorted(self._canary_weights.items()):
                lines.append(
                    f'modelpilot_canary_weight{{namespace="{namespace}",name="{name}"}} {weight}'
                )
            lines += [
                "# HELP modelpilot_analysis_last_result The model's last analysis check (1).",
                "# TYPE modelpilot_analysis_last_result gauge",
            ]
            for (namespace, name), (result, _) in sorted(self._analysis.items()):
                lines.append(
                    f'modelpilot_analysis_last_result{{namespace="{namespace}",name="{name}",'
                    f'result="{result}"}} 1'
                )
            lines += [
                "# HELP modelpilot_analysis_failed_checks Failed checks in the model's rollout.",
                "# TYPE modelpilot_analysis_failed_checks gauge",
            ]
            for (namespace, name), (_, failed) in sorted(self._analysis.items()):
                lines.append(
                    f'modelpilot_analysis_failed_checks{{namespace="{namespace}",name="{name}"}} '
                    f"{failed}"
                )
        lines += [
            "# HELP modelpilot_analysis_checks_total Canary analysis checks by result.",
            "# TYPE modelpilot_analysis_checks_total counter",
        ]
        for result in ("Passed", "Failed", "Inconclusive"):
            count = dict(self.checks_total).get(result, 0)
            lines.append(f'modelpilot_analysis_checks_total{{result="{result}"}} {count}')
        lines += [
            "# HELP modelpilot_api_requests_total Requests to the apiserver (besides kopf's).",
            "# TYPE modelpilot_api_requests_total counter",
        ]
        for method, count in sorted(dict(self.api_requests).items()):
            lines.append(f'modelpilot_api_requests_total{{method="{method}"}} {count}')
        lines += [
            "# HELP modelpilot_leader Whether this replica holds the Lease and may write (1).",
            "# TYPE modelpilot_leader gauge",
            f'modelpilot_leader{{identity="{self.leader_identity or ""}"}} {int(self.leading())}',
            "# HELP modelpilot_shard The shard this replica serves (index of count).",
            "# TYPE modelpilot_shard gauge",
            f'modelpilot_shard{{index="{self.shard[0]}",count="{self.shard[1]}"}} 1',
        ]
        return "\n".join(lines) + "\n"


class _ByCause:
    """One histogram per cause (command, change, other); the caller holds the lock."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, cause: str, seconds: float) -> None:
        self._sums[cause] = self._sums.get(cause, 0.0) + seconds
        buckets = self._buckets.setdefault(cause, [0] * len(BUCKETS))
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                buckets[index] += 1

    def render(self, name: str) -> list[str]:
        lines: list[str] = []
        for cause, buckets in sorted(self._buckets.items()):
            lines += _histogram(name, f'cause="{cause}"', buckets, self._sums[cause])
        return lines


def _histogram(name: str, labels: str, buckets: list[int], total: float) -> list[str]:
    """A histogram's series in the text format; labels: 'k="v"' pairs or empty."""
    lines = []
    for bound, count in zip(BUCKETS, buckets, strict=True):
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{{labels + "," if labels else ""}le="{le}"}} {count}')
    braced = f"{{{labels}}}" if labels else ""
    return [*lines, f"{name}_sum{braced} {total:.6f}", f"{name}_count{braced} {buckets[-1]}"]


async def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
