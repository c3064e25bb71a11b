"""A check's verdict on its numbers: Passed, Failed or Inconclusive, never a guess.

Inconclusive is its own outcome: too few requests in the window, an empty or NaN
result, or a query that could not run. A failed bound beats inconclusive metrics (a
canary failing one metric is failing), and a pass needs every metric to pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelpilot.api.analysis import Analysis, AnalysisMetric
from modelpilot.api.status import CheckResult, MetricCheck


@dataclass(frozen=True)
class Measured:
    """What the queries returned for one metric: a number, nothing, or an error."""

    canary: float | None = None
    stable: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    result: CheckResult
    metrics: tuple[MetricCheck, ...]
    message: str


def _number(value: float | None) -> float | None:
    """A finite value, rounded for status (histogram interpolation leaves 1e-13 dust)."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 4)


def judge_metric(metric: AnalysisMetric, measured: Measured) -> MetricCheck:
    canary, stable = _number(measured.canary), _number(measured.stable)

    def check(result: CheckResult, message: str) -> MetricCheck:
        return MetricCheck(
            name=metric.name, result=result, canary=canary, stable=stable, message=message
        )

    if measured.error:
        return check("Inconclusive", measured.error)
    if canary is None:
        return check("Inconclusive", f"{metric.name}: no value for the canary")
    if metric.min is not None and canary < metric.min:
        return check("Failed", f"{metric.name} {canary:.4g} < min {metric.min:g}")
    if metric.max is not None and canary > metric.max:
        return check("Failed", f"{metric.name} {canary:.4g} > max {metric.max:g}")
    if metric.relative:
        if stable is None:
            return check("Inconclusive", f"{metric.name}: no value for the stable version")
        if stable == 0:
            return check("Inconclusive", f"{metric.name}: the stable version's value is 0")
        ratio = canary / stable
        low, high = metric.min_ratio_to_stable, metric.max_ratio_to_stable
        if low is not None and ratio < low:
            return check(
                "Failed",
                f"{metric.name} {canary:.4g} is {ratio:.3g}x the stable's {stable:.4g} "
                f"< minRatioToStable {low:g}",
            )
        if high is not None and ratio > high:
            return check(
                "Failed",
                f"{metric.name} {canary:.4g} is {ratio:.3g}x the stable's {stable:.4g} "
                f"> maxRatioToStable {high:g}",
            )
    return check("Passed", "")


def judge(
    analysis: Analysis,
    requests: Measured,
    measured: dict[str, Measured],
) -> Verdict:
    """The check's verdict. Too few canary requests makes every metric inconclusive:
    a success rate over three requests says nothing."""
    served = _number(requests.canary)
    if requests.error or served is None:
        return _inconclusive(analysis, requests.error or "no request count for the canary")
    if served < analysis.min_requests:
        return _inconclusive(
            analysis,
            f"the canary served {served:.0f} requests in the window, fewer than "
            f"minRequests {analysis.min_requests}",
        )
    checks = tuple(judge_metric(m, measured.get(m.name, Measured())) for m in analysis.metrics)
    failed = [c.message for c in checks if c.result == "Failed"]
    if failed:
        return Verdict("Failed", checks, "; ".join(failed))
    unsure = [c.message for c in checks if c.result == "Inconclusive"]
    if unsure:
        return Verdict("Inconclusive", checks, "; ".join(unsure))
    return Verdict("Passed", checks, "")


def _inconclusive(analysis: Analysis, why: str) -> Verdict:
    """Every metric inconclusive for one reason (no numbers worth judging)."""
    checks = tuple(
        MetricCheck(name=m.name, result="Inconclusive", message=why) for m in analysis.metrics
    )
    return Verdict("Inconclusive", checks, why)
