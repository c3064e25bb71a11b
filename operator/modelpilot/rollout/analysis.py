"""The analysis' memory in status: which check counts, what it adds up to, when the
next one is due. Judging a check's numbers happens where the check ran
(`modelpilot.analysis.verdict`); here only its outcome is counted."""

from __future__ import annotations

import datetime as dt

from modelpilot.api.status import AnalysisStatus
from modelpilot.rollout.durations import parse_stamp
from modelpilot.rollout.types import CheckReport


def _taken_at_step(at: str | None, step_started: str | None) -> bool:
    """A check counts for a step only if it ran after the step's weight was applied."""
    taken, started = parse_stamp(at), parse_stamp(step_started)
    return taken is not None and (started is None or taken >= started)


def fold_report(
    analysis: AnalysisStatus,
    report: CheckReport | None,
    canary: str,
    weight: int,
    step_started: str | None,
    kind: str = "analysis",
) -> tuple[AnalysisStatus, CheckReport] | None:
    """The status after a new report, or None when the report is old, or about another
    canary, weight or kind of check (one that was running when the weight changed)."""
    if report is None or (report.canary, report.weight, report.kind) != (canary, weight, kind):
        return None
    if not _taken_at_step(report.at, step_started):
        return None
    last = parse_stamp(analysis.last_check_at)
    taken = parse_stamp(report.at)
    if last is not None and taken is not None and taken <= last:
        return None
    if kind == "confirm-promotion":  # waiting for an approval is not failing
        confirmation = report.message or report.result
        return analysis.model_copy(
            update={"last_check_at": report.at, "confirmation": confirmation}
        ), report
    failed = analysis.failed_checks + (report.result == "Failed")
    inconclusive = analysis.inconclusive_checks + 1 if report.result == "Inconclusive" else 0
    if kind == "pre-rollout":
        passed = report.result == "Passed"
        return analysis.model_copy(
            update={
                "last_check_at": report.at,
                "last_result": report.result,
                "failed_checks": failed,
                "pre_rollout_passed": passed,
                "metrics": list(report.metrics),
            }
        ), report
    updated = analysis.model_copy(
        update={
            "last_check_at": report.at,
            "last_result": report.result,
            "weight": report.weight,
            "requests": report.requests,
            "stable_requests": report.stable_requests,
            "failed_checks": failed,
            "inconclusive_checks": inconclusive,
            "metrics": list(report.metrics),
        }
    )
    return updated, report


def passed_at_weight(analysis: AnalysisStatus, weight: int, step_started: str | None) -> bool:
    return (
        analysis.last_result == "Passed"
        and analysis.weight == weight
        and _taken_at_step(analysis.last_check_at, step_started)
    )


def next_check_in(
    analysis: AnalysisStatus,
    step_started: str | None,
    now: dt.datetime,
    interval: float,
) -> float:
    """Seconds until the next check: one interval after the step began, then one after
    each check. Its window then covers only this weight's traffic."""
    since = step_started
    if _taken_at_step(analysis.last_check_at, step_started):
        since = analysis.last_check_at
    moment = parse_stamp(since)
    if moment is None:
        return 0.0
    return interval - (now - moment).total_seconds()
