"""The phase machine with canary analysis: checks asked for on time, counted, and
acted on (advance only after a pass, roll back at the threshold, pause when
inconclusive). The checks' numbers are judged elsewhere (test_analysis.py)."""

from __future__ import annotations

from typing import Any

from modelpilot.api.spec import ManagedModelSpec
from modelpilot.api.status import CheckResult, MetricCheck
from modelpilot.rollout import CheckReport, CheckRequest, stamp
from tests.unit.test_rollout_machine import Run, spec, stable_on_v1

SUCCESS = {"name": "success-rate", "template": "success-rate", "min": 95}


def analysed(**analysis: Any) -> ManagedModelSpec:
    return spec(
        stepWeights=[10, 50],
        promotion="auto",
        analysis={"metrics": [SUCCESS], "interval": "30s", **analysis},
    )


def report(run: Run, result: CheckResult, weight: int, message: str = "") -> CheckReport:
    metric = MetricCheck(name="success-rate", result=result, canary=99.0, message=message)
    return CheckReport(
        canary="v2", weight=weight, at=stamp(run.now), result=result, requests=500.0,
        metrics=(metric,), message=message,
    )  # fmt: skip


def check_asked(run: Run) -> CheckRequest | None:
    assert run.plan is not None
    return run.plan.check


def test_steps_advance_only_after_a_passed_check_and_promote_automatically() -> None:
    run = stable_on_v1(analysed())
    run.step()
    assert run.plan is not None and run.plan.weights == {"v1": 90, "v2": 10}
    run.step(10)
    assert check_asked(run) is None  # the window must hold traffic at this weight first
    assert run.plan.requeue_after == 20.0
    run.step(20)
    assert check_asked(run) == CheckRequest(canary="v2", stable="v1", weight=10)
    run.step(31)  # the rollout interval (60 s) has passed, but no check has passed yet
    assert run.plan.weights == {"v1": 90, "v2": 10}
    assert "waiting for a passed analysis check" in run.plan.message
    run.step(0, check=report(run, "Passed", 10))
    assert run.plan.weights == {"v1": 50, "v2": 50}
    assert run.status.analysis is not None and run.status.analysis.last_result == "Passed"
    run.step(30)
    assert check_asked(run) == CheckRequest(canary="v2", stable="v1", weight=50)
    run.step(31, check=report(run, "Passed", 50))
    assert run.plan.weights == {"v2": 100}
    run.step(1)
    assert (run.phase, run.status.stable_version) == ("Stable", "v2")
    assert [(h.result, h.analysis) for h in run.status.history] == [("Promoted", None)]


def test_a_check_from_before_the_weight_changed_does_not_count() -> None:
    run = stable_on_v1(analysed())
    run.step()
    old = report(run, "Passed", 10)  # taken at the moment the step began: counts
    run.step(61, check=old)
    assert run.plan is not None and run.plan.weights == {"v1": 50, "v2": 50}
    run.step(61, check=old)  # same report seen again at 50%: another weight
    assert run.plan.weights == {"v1": 50, "v2": 50}
    stale = report(run, "Passed", 10)  # a check at 10% that finished late
    run.step(1, check=stale)
    assert run.plan.weights == {"v1": 50, "v2": 50}


def test_threshold_failed_checks_roll_back_in_one_reconcile() -> None:
    run = stable_on_v1(analysed(threshold=2))
    run.step()
    run.step(30, check=report(run, "Failed", 10, "success-rate 68.2 < min 95"))
    assert run.phase == "Progressing" and run.reasons() == ["AnalysisCheckFailed"]
    assert run.plan is not None and run.plan.weights == {"v1": 90, "v2": 10}
    run.step(30, check=report(run, "Failed", 10, "success-rate 70.1 < min 95"))
    assert run.phase == "Failed" and run.plan.weights == {"v1": 100}
    assert run.plan.reason == "AnalysisFailed"
    assert run.reasons() == ["AnalysisFailed"]
    assert "success-rate 70.1 < min 95" in run.plan.events[0].message
    assert [h.result for h in run.status.history] == ["Failed"]
    run.step(60)  # stays failed, and says why
    assert (run.phase, run.plan.reason, run.plan.weights) == (
        "Failed",
        "AnalysisFailed",
        {"v1": 100},
    )
    run.step(1, commands={"modelpilot.io/retry": "v2"})
    assert run.phase == "Progressing"
    assert run.status.analysis is not None and run.status.analysis.failed_checks == 0


def test_inconclusive_holds_the_weight_then_pauses_and_never_promotes() -> None:
    run = stable_on_v1(analysed(inconclusiveLimit=3))
    run.step()
    for _ in range(2):
        run.step(30, check=report(run, "Inconclusive", 10, "the canary served 3 requests"))
        assert run.phase == "Progressing"
        assert run.plan is not None and run.plan.weights == {"v1": 90, "v2": 10}
    run.step(30, check=report(run, "Inconclusive", 10, "the canary served 0 requests"))
    assert run.phase == "Paused" and run.plan is not None
    assert run.plan.reason == "AnalysisInconclusive" and run.reasons() == ["AnalysisInconclusive"]
    run.step(600)
    assert (run.phase, run.plan.weights) == ("Paused", {"v1": 90, "v2": 10})
    assert run.plan.reason == "AnalysisInconclusive" and run.plan.check is None
    run.step(1, commands={"modelpilot.io/resume": "v2"})
    assert run.phase == "Progressing"
    assert run.status.analysis is not None and run.status.analysis.inconclusive_checks == 0


def test_a_pass_resets_the_inconclusive_run() -> None:
    run = stable_on_v1(analysed(inconclusiveLimit=2))
    run.step()
    run.step(30, check=report(run, "Inconclusive", 10))
    run.step(30, check=report(run, "Passed", 10))
    assert run.status.analysis is not None and run.status.analysis.inconclusive_checks == 0
    assert run.phase == "Progressing"


def test_manual_promotion_overrides_the_analysis_and_history_says_so() -> None:
    run = stable_on_v1(analysed())
    run.step()
    run.step(5, commands={"modelpilot.io/promote": "v2"})
    run.step(1)
    assert (run.phase, run.status.stable_version) == ("Stable", "v2")
    assert [(h.result, h.analysis) for h in run.status.history] == [("Promoted", "Overridden")]


def test_without_analysis_nothing_is_asked() -> None:
    run = stable_on_v1(spec(stepWeights=[10, 50]))
    run.step()
    run.step(61)
    assert run.plan is not None and run.plan.check is None
    assert run.plan.weights == {"v1": 50, "v2": 50} and run.status.analysis is None


def hooked(*types: str, **rollout: Any) -> ManagedModelSpec:
    hooks = [{"name": t, "type": t, "url": f"http://hooks.ops.svc/{t}"} for t in types]
    return spec(stepWeights=[10, 50], promotion="auto", interval="30s", webhooks=hooks, **rollout)


def hook_report(run: Run, kind: str, ok: bool, weight: int = 0) -> CheckReport:
    return CheckReport(
        canary="v2", weight=weight, at=stamp(run.now), result="Passed" if ok else "Failed",
        message=f"webhook {kind} answered {200 if ok else 403}", kind=kind,
    )  # fmt: skip


def test_pre_rollout_webhooks_gate_the_first_weight_and_a_refusal_is_a_failed_check() -> None:
    run = stable_on_v1(hooked("pre-rollout"))
    run.step()
    assert check_asked(run) == CheckRequest("v2", "v1", 0, kind="pre-rollout")
    assert run.plan is not None and run.plan.weights == {"v1": 100}
    run.step(1, check=hook_report(run, "pre-rollout", False))
    assert run.plan.weights == {"v1": 100} and run.reasons() == ["AnalysisCheckFailed"]
    assert check_asked(run) is None  # asked again one interval later
    run.step(30)
    assert check_asked(run) == CheckRequest("v2", "v1", 0, kind="pre-rollout")
    run.step(1, check=hook_report(run, "pre-rollout", True))
    assert run.plan.weights == {"v1": 90, "v2": 10}
    assert run.status.analysis is not None and run.status.analysis.pre_rollout_passed


def test_pre_rollout_refused_threshold_times_fails_the_rollout() -> None:
    run = stable_on_v1(hooked("pre-rollout"))
    run.step()
    run.step(1, check=hook_report(run, "pre-rollout", False))
    run.step(30, check=hook_report(run, "pre-rollout", False))
    assert run.phase == "Failed" and run.plan is not None
    assert run.plan.reason == "AnalysisFailed" and run.plan.weights == {"v1": 100}


def test_confirm_promotion_holds_until_the_hook_answers_2xx() -> None:
    run = stable_on_v1(hooked("confirm-promotion"))
    run.step()
    run.step(31)
    run.step(31)
    assert run.phase == "WaitingPromotion"
    assert check_asked(run) == CheckRequest("v2", "v1", 50, kind="confirm-promotion")
    run.step(1, check=hook_report(run, "confirm-promotion", False, 50))
    assert run.phase == "WaitingPromotion" and run.plan is not None
    assert "(last: webhook confirm-promotion answered 403)" in run.plan.message
    assert run.status.analysis is not None and run.status.analysis.failed_checks == 0
    run.step(30)
    assert check_asked(run) is not None
    run.step(1, check=hook_report(run, "confirm-promotion", True, 50))
    assert run.plan.weights == {"v2": 100} and "PromotionConfirmed" in run.reasons()
    run.step(1)
    assert run.status.stable_version == "v2"
