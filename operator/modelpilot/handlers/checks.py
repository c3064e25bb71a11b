"""Runs checks off the reconcile: the reconcile asks (`request`), a task on the
operator's event loop queries Prometheus and calls the gating webhooks within their
timeouts, judges, keeps the report and wakes the model, whose next reconcile reads it
(`latest`). A slow or dead Prometheus or webhook delays only the model that asked,
never the reconcile threads. Notification webhooks (`notify`) are fire and forget,
with a few retries."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from modelpilot.analysis.queries import (
    QueryError,
    Target,
    metric_query,
    requests_query,
    target_of,
)
from modelpilot.analysis.verdict import Measured, judge
from modelpilot.api import ManagedModel
from modelpilot.api.analysis import Analysis, Webhook
from modelpilot.api.status import MetricCheck
from modelpilot.probes import webhooks
from modelpilot.probes.prometheus import Prometheus, PrometheusError, auth_headers
from modelpilot.probes.webhooks import DEFAULT_WEBHOOK_ALLOW
from modelpilot.rollout import CheckReport, CheckRequest, stamp
from modelpilot.rollout.durations import parse_duration

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)


NOTIFY_ATTEMPTS = 3


class Checks(Protocol):
    """What the reconcile sees of the check runner."""

    def latest(self, key: Key) -> CheckReport | None: ...

    def request(
        self,
        key: Key,
        model: ManagedModel,
        check: CheckRequest,
        route: dict[str, Any] | None,
        revisions: dict[str, str] | None = None,
    ) -> None: ...

    def notify(self, model: ManagedModel, hook_type: str, payload: dict[str, Any]) -> None: ...


HookCaller = Callable[[Webhook, dict[str, Any]], Awaitable[tuple[bool, str]]]


def payload_of(model: ManagedModel, hook: Webhook, **state: Any) -> dict[str, Any]:
    """What every webhook receives (README documents it)."""
    return {
        "name": model.name,
        "namespace": model.namespace,
        "type": hook.type,
        "metadata": dict(hook.metadata),
        **state,
    }


async def call_hooks(
    model: ManagedModel, hook_type: str, state: dict[str, Any], caller: HookCaller | None
) -> list[MetricCheck]:
    """Each hook of a type, called at once; one entry per hook."""
    hooks = model.spec.rollout.hooks(hook_type)
    if not hooks:
        return []
    if caller is None:
        return [
            MetricCheck(name=f"webhook/{h.name}", result="Failed", message="no HTTP client")
            for h in hooks
        ]
    answers = await asyncio.gather(*(caller(h, payload_of(model, h, **state)) for h in hooks))
    return [
        MetricCheck(name=f"webhook/{h.name}", result="Passed" if ok else "Failed", message=msg)
        for h, (ok, msg) in zip(hooks, answers, strict=True)
    ]


class Numbers(Protocol):
    async def number(self, query: str, at: float) -> float | None: ...


@dataclass(frozen=True)
class Job:
    model: ManagedModel
    check: CheckRequest
    route: dict[str, Any] | None
    revisions: dict[str, str] | None = None  # Knative mode: revision -> version


def window_of(analysis: Analysis, rollout_interval: str, explicit: str | None) -> str:
    return explicit or analysis.interval or rollout_interval


async def run_check(
    job: Job,
    flavor: str,
    numbers: Numbers | None,
    now: float,
    hooks: HookCaller | None = None,
) -> CheckReport:
    """A gate's webhooks (pre-rollout, confirm-promotion), or an analysis check: every
    metric (and the stable version's value for a relative bound) queried at one moment
    and judged, with the rollout webhooks. Pure apart from `numbers` and `hooks`."""
    model, check = job.model, job.check
    at = stamp(dt.datetime.fromtimestamp(now, dt.UTC))
    phase = "WaitingPromotion" if check.kind == "confirm-promotion" else "Progressing"
    state: dict[str, Any] = {"phase": phase, "stable": check.stable, "canary": check.canary}
    state["weight"] = check.weight
    hook_type = "rollout" if check.kind == "analysis" else check.kind
    called = await call_hooks(model, hook_type, state, hooks)
    refused = [c.message for c in called if c.result == "Failed"]
    analysis = model.spec.rollout.analysis
    if check.kind != "analysis" or analysis is None:
        return CheckReport(
            canary=check.canary,
            weight=check.weight,
            at=at,
            result="Failed" if refused else "Passed",
            metrics=tuple(called),
            message="; ".join(refused or [c.message for c in called]),
            kind=check.kind,
        )

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

    def target(version: str, window: str) -> Target:
        # In a shadow only the candidate sees copies; stable serves as always.
        shadow = check.shadow and version == check.canary
        return target_of(model, version, window, job.route, shadow=shadow, revisions=job.revisions)

    def query_for(metric_index: int) -> Callable[[str], str]:
        metric = analysis.metrics[metric_index]
        window = window_of(analysis, model.spec.rollout.interval, metric.window)
        return lambda version: metric_query(metric, flavor, target(version, window))

    window = window_of(analysis, model.spec.rollout.interval, None)
    requests_for: Callable[[str], str] = lambda version: requests_query(  # noqa: E731
        flavor, target(version, window)
    )
    # An A/B test reports both variants side by side; a canary asks stable only for
    # the bounds relative to it.
    both = model.spec.rollout.strategy == "ABTest"
    results = await asyncio.gather(
        measure(requests_for, both),
        *(measure(query_for(i), m.relative or both) for i, m in enumerate(analysis.metrics)),
    )
    requests, measured = results[0], results[1:]
    verdict = judge(
        analysis, requests, {m.name: r for m, r in zip(analysis.metrics, measured, strict=True)}
    )
    return CheckReport(
        canary=check.canary,
        weight=check.weight,
        at=at,
        result="Failed" if refused else verdict.result,
        requests=requests.canary,
        stable_requests=requests.stable,
        metrics=(*verdict.metrics, *called),
        message="; ".join([*refused, verdict.message] if refused else [verdict.message]).strip(
            "; "
        ),
    )


class CheckRunner:
    """One check at a time per model; the last report per model kept in memory (status
    holds what counts, so a restart loses nothing but a check in flight)."""

    def __init__(
        self,
        flavor: str,
        prometheus_url: str | None,
        webhook_allow: tuple[str, ...] = DEFAULT_WEBHOOK_ALLOW,
        prometheus_auth: Path | None = None,
        timeout: float = 10.0,
    ):
        self.prometheus_auth = prometheus_auth
        self.flavor, self.prometheus_url, self.timeout = flavor, prometheus_url, timeout
        self.webhook_allow = webhook_allow
        self.notifications: Counter[str] = Counter()  # delivered / failed
        self.wake: Callable[[Key], None] = lambda key: None
        self.checks_total: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()
        self._reports: dict[Key, CheckReport] = {}
        self._running: dict[Key, CheckRequest] = {}
        self._pending: set[concurrent.futures.Future[None]] = set()

    async def start(self, wake: Callable[[Key], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession()
        self.wake = wake

    async def close(self) -> None:
        """Cancel checks and deliveries in flight (a restart asks again), then close."""
        with self._lock:
            pending, self._loop = list(self._pending), None
        for future in pending:
            future.cancel()
        if self._session is not None:
            await self._session.close()

    def _submit(self, coroutine: Coroutine[Any, Any, None]) -> None:
        with self._lock:
            if self._loop is None:
                coroutine.close()
                return
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def latest(self, key: Key) -> CheckReport | None:
        with self._lock:
            return self._reports.get(key)

    def request(
        self,
        key: Key,
        model: ManagedModel,
        check: CheckRequest,
        route: dict[str, Any] | None,
        revisions: dict[str, str] | None = None,
    ) -> None:
        """Called from a reconcile thread."""
        with self._lock:
            if key in self._running or self._loop is None:
                return
            self._running[key] = check
        self._submit(self._run(key, Job(model, check, route, revisions)))

    async def _call(self, hook: Webhook, payload: dict[str, Any]) -> tuple[bool, str]:
        assert self._session is not None
        return await webhooks.call(
            self._session,
            hook.name,
            hook.url,
            payload,
            parse_duration(hook.timeout),
            self.webhook_allow,
        )

    def notify(self, model: ManagedModel, hook_type: str, payload: dict[str, Any]) -> None:
        """Called from a reconcile thread; never waits for the hooks."""
        for hook in model.spec.rollout.hooks(hook_type):
            self._submit(self._deliver(hook, payload_of(model, hook, **payload)))

    async def _deliver(self, hook: Webhook, body: dict[str, Any]) -> None:
        message = ""
        for attempt in range(NOTIFY_ATTEMPTS):
            try:
                ok, message = await self._call(hook, body)
            except Exception as err:  # best effort: never let a notification hurt more
                ok, message = False, f"webhook {hook.name}: {err}"
            if ok:
                self.notifications["delivered"] += 1
                return
            if "refused:" in message:
                break  # not allowed: retrying changes nothing
            await asyncio.sleep(2**attempt)
        self.notifications["failed"] += 1
        log.warning("%s webhook not delivered: %s", hook.type, message)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._reports.pop(key, None)

    async def _run(self, key: Key, job: Job) -> None:
        try:
            analysis = job.model.spec.rollout.analysis
            address = (analysis.prometheus.address if analysis else None) or self.prometheus_url
            # The operator's credentials go to the operator's Prometheus only, never to
            # an address a model's author wrote.
            own = address == self.prometheus_url
            headers = auth_headers(self.prometheus_auth) if own else {}
            numbers = (
                Prometheus(address, self._session, self.timeout, headers)
                if address and self._session is not None
                else None
            )
            caller = self._call if self._session is not None else None
            report = await run_check(job, self.flavor, numbers, time.time(), caller)
        except Exception as err:  # a bug here must not stop other models' checks
            if not isinstance(err, PrometheusError):
                log.exception("check of %s/%s failed", *key)
            report = CheckReport(
                canary=job.check.canary,
                weight=job.check.weight,
                at=stamp(dt.datetime.now(dt.UTC)),
                result="Inconclusive",
                message=f"the check could not run: {err}",
                kind=job.check.kind,
            )
        with self._lock:
            self._reports[key] = report
            self._running.pop(key, None)
            self.checks_total[report.result] += 1
        self.wake(key)
