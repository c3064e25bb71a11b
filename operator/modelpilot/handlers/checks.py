"""Runs analysis checks off the reconcile: the reconcile asks (`request`), a task on the
operator's event loop queries Prometheus within its timeout, judges the numbers, keeps
the report and wakes the model, whose next reconcile reads it (`latest`). A slow or
dead Prometheus delays only the model that asked, never the reconcile threads."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from modelpilot.analysis.queries import QueryError, metric_query, requests_query, target_of
from modelpilot.analysis.verdict import Measured, judge
from modelpilot.api import ManagedModel
from modelpilot.api.analysis import Analysis
from modelpilot.probes.prometheus import Prometheus, PrometheusError
from modelpilot.rollout import CheckReport, CheckRequest, stamp

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)


class Checks(Protocol):
    """What the reconcile sees of the check runner."""

    def latest(self, key: Key) -> CheckReport | None: ...

    def request(
        self, key: Key, model: ManagedModel, check: CheckRequest, route: dict[str, Any] | None
    ) -> None: ...


class Numbers(Protocol):
    async def number(self, query: str, at: float) -> float | None: ...


@dataclass(frozen=True)
class Job:
    model: ManagedModel
    check: CheckRequest
    route: dict[str, Any] | None


def window_of(analysis: Analysis, rollout_interval: str, explicit: str | None) -> str:
    return explicit or analysis.interval or rollout_interval


async def run_check(job: Job, flavor: str, numbers: Numbers | None, now: float) -> CheckReport:
    """Query every metric (and the stable version's value for a relative bound) at one
    moment, then judge. Pure apart from `numbers`."""
    model, check = job.model, job.check
    analysis = model.spec.rollout.analysis
    assert analysis is not None
    at = stamp(dt.datetime.fromtimestamp(now, dt.UTC))

    async def measure(query: Callable[[str], str], relative: bool) -> Measured:
        try:
            canary_query = query(check.canary)
            stable_query = query(check.stable) if relative else None
        except QueryError as err:
            return Measured(error=str(err))
        if numbers is None:
            return Measured(
                error="no Prometheus: set spec.rollout.analysis.prometheus.address "
                "or run the operator with --prometheus-url"
            )
        try:
            canary = await numbers.number(canary_query, now)
            stable = await numbers.number(stable_query, now) if stable_query else None
        except PrometheusError as err:
            return Measured(error=str(err))
        return Measured(canary=canary, stable=stable)

    def query_for(metric_index: int) -> Callable[[str], str]:
        metric = analysis.metrics[metric_index]
        window = window_of(analysis, model.spec.rollout.interval, metric.window)
        return lambda version: metric_query(
            metric, flavor, target_of(model, version, window, job.route)
        )

    window = window_of(analysis, model.spec.rollout.interval, None)
    requests_for: Callable[[str], str] = lambda version: requests_query(  # noqa: E731
        flavor, target_of(model, version, window, job.route)
    )
    results = await asyncio.gather(
        measure(requests_for, False),
        *(measure(query_for(i), m.relative) for i, m in enumerate(analysis.metrics)),
    )
    requests, measured = results[0], results[1:]
    verdict = judge(
        analysis, requests, {m.name: r for m, r in zip(analysis.metrics, measured, strict=True)}
    )
    return CheckReport(
        canary=check.canary,
        weight=check.weight,
        at=at,
        result=verdict.result,
        requests=requests.canary,
        metrics=verdict.metrics,
        message=verdict.message,
    )


class CheckRunner:
    """One check at a time per model; the last report per model kept in memory (status
    holds what counts, so a restart loses nothing but a check in flight)."""

    def __init__(self, flavor: str, prometheus_url: str | None, timeout: float = 10.0):
        self.flavor, self.prometheus_url, self.timeout = flavor, prometheus_url, timeout
        self.wake: Callable[[Key], None] = lambda key: None
        self.checks_total: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()
        self._reports: dict[Key, CheckReport] = {}
        self._running: dict[Key, CheckRequest] = {}

    async def start(self, wake: Callable[[Key], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession()
        self.wake = wake

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def latest(self, key: Key) -> CheckReport | None:
        with self._lock:
            return self._reports.get(key)

    def request(
        self, key: Key, model: ManagedModel, check: CheckRequest, route: dict[str, Any] | None
    ) -> None:
        """Called from a reconcile thread."""
        with self._lock:
            if key in self._running or self._loop is None:
                return
            self._running[key] = check
        job = Job(model, check, route)
        asyncio.run_coroutine_threadsafe(self._run(key, job), self._loop)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._reports.pop(key, None)

    async def _run(self, key: Key, job: Job) -> None:
        try:
            analysis = job.model.spec.rollout.analysis
            address = (analysis.prometheus.address if analysis else None) or self.prometheus_url
            numbers = (
                Prometheus(address, self._session, self.timeout)
                if address and self._session is not None
                else None
            )
            report = await run_check(job, self.flavor, numbers, time.time())
        except Exception as err:  # a bug here must not stop other models' checks
            log.exception("check of %s/%s failed", *key)
            report = CheckReport(
                canary=job.check.canary,
                weight=job.check.weight,
                at=stamp(dt.datetime.now(dt.UTC)),
                result="Inconclusive",
                message=f"the check could not run: {err}",
            )
        with self._lock:
            self._reports[key] = report
            self._running.pop(key, None)
            self.checks_total[report.result] += 1
        self.wake(key)
