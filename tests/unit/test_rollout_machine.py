"""Every transition of the rollout phase machine."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from modelpilot.api import parse_managed_model
from modelpilot.api.spec import ManagedModelSpec
from modelpilot.api.status import ManagedModelStatus, VersionStatus
from modelpilot.rollout import (
    CheckReport,
    Observations,
    Plan,
    VersionObservation,
    decide,
    parse_commands,
)
from tests.unit.conftest import BASE

T0 = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)


def spec(**rollout: Any) -> ManagedModelSpec:
    document = copy.deepcopy(BASE)
    document["spec"]["rollout"] = {
        "target": "v2",
        "interval": "60s",
        "progressDeadline": "10m",
        "scaleDownDelay": "10m",
        **rollout,
    }
    document["spec"]["versions"].append({"name": "v3", "storageUri": "s3://b/v3"})
    return parse_managed_model(document).spec


def ready(*versions: str, replicas: int = 1) -> dict[str, VersionObservation]:
    return {
        v: VersionObservation(ready=True, available_replicas=replicas, replicas=replicas)
        for v in versions
    }


class Run:
    """Feeds a model through decide() the way the operator does: status in, status out."""

    def __init__(self, model: ManagedModelSpec, status: ManagedModelStatus | None = None) -> None:
        self.spec = model
        self.status = status or ManagedModelStatus()
        self.now = T0
        self.plan: Plan | None = None

    def step(
        self,
        seconds: float = 0,
        *,
        versions: dict[str, VersionObservation] | None = None,
        route: bool | None = True,
        commands: dict[str, str] | None = None,
        gate: bool = True,
        revisions: dict[str, str] | None = None,
        check: CheckReport | None = None,
    ) -> Plan:
        self.now += dt.timedelta(seconds=seconds)
        obs = Observations(
            versions=versions if versions is not None else ready("v1", "v2", "v3"),
            route_accepted=route,
            commands=parse_commands(commands),
            route_gate=gate,
            revisions=revisions or {},
            check=check,
        )
        self.plan = decide(self.spec, self.status, obs, self.now)
        stopped = self.plan.stopped
        self.status = self.plan.status.model_copy(
            update={
                "versions": [
                    VersionStatus(name=v.name, stopped=v.name in stopped)
                    for v in self.spec.versions
                ]
            }
        )
        assert not self.plan.weights or sum(self.plan.weights.values()) == 100
        for version, weight in self.plan.weights.items():
            if weight and version != self.status.stable_version:
                assert obs.ready(version), f"weight {weight} on unready {version}"
        return self.plan

    @property
    def phase(self) -> str | None:
        return self.status.phase

    def reasons(self) -> list[str]:
        return [e.reason for e in (self.plan.events if self.plan else [])]

    def events(self) -> list[str]:
        return [e.message for e in (self.plan.events if self.plan else [])]


def stable_on_v1(model: ManagedModelSpec | None = None) -> Run:
    return Run(
        model or spec(),
        ManagedModelStatus(phase="Stable", stable_version="v1", weights={"v1": 100}),
    )


# --- a new model -----------------------------------------------------------------------


def test_new_model_waits_for_target_without_route() -> None:
    run = Run(spec())
    plan = run.step(versions={"v2": VersionObservation(message="0/1 pods available")})
    assert (run.phase, plan.weights) == ("Pending", {})
    assert plan.message == "waiting for v2 to become ready: 0/1 pods available"
    # Its children's events wake it; the machine's own wake is the progress deadline.
    assert plan.requeue_after == 600.0


def test_new_model_serves_target_once_ready() -> None:
    run = Run(spec())
    plan = run.step()
    assert (run.phase, run.status.stable_version, plan.weights) == ("Stable", "v2", {"v2": 100})
    assert run.reasons() == ["Serving"] and plan.requeue_after is None


def test_commands_before_anything_serves_are_refused() -> None:
    run = Run(spec())
    run.step(versions={}, commands={"modelpilot.io/promote": "v2"})
    assert run.status.last_command is not None
    assert run.status.last_command.outcome == "refused: no version serves yet"
    assert run.plan is not None and run.plan.consumed == ["modelpilot.io/promote"]


# --- a full rollout --------------------------------------------------------------------


def test_full_rollout_auto_promotion() -> None:
    run = stable_on_v1(spec(promotion="auto"))
    seen = []
    for _ in range(12):
        plan = run.step(61)
        seen.append(plan.weights.get("v2", 0))
        if run.phase == "Stable" and run.status.stable_version == "v2":
            break
    assert seen[:4] == [10, 25, 50, 100]
    assert run.status.stable_version == "v2"
    assert run.status.previous_stable_version == "v1"
    assert [h.result for h in run.status.history] == ["Promoted"]


def test_rollout_starts_at_step_zero_and_holds_for_interval() -> None:
    run = stable_on_v1()
    plan = run.step()
    assert (run.phase, plan.weights) == ("Progressing", {"v1": 90, "v2": 10})
    assert "RolloutStarted" in run.reasons() and "StepWeight" in run.reasons()
    plan = run.step(30)
    assert plan.weights == {"v1": 90, "v2": 10} and plan.requeue_after == pytest.approx(30)
    plan = run.step(31)
    assert plan.weights == {"v1": 75, "v2": 25} and run.status.step_index == 1


def test_manual_promotion_waits_then_promotes() -> None:
    run = stable_on_v1()
    for _ in range(4):
        run.step(61)
    assert run.phase == "WaitingPromotion" and run.plan is not None
    assert run.plan.weights == {"v1": 50, "v2": 50}
    run.step(3600)
    assert run.phase == "WaitingPromotion"  # waits as long as it takes (an A/B test)
    run.step(1, commands={"modelpilot.io/promote": "v2"})
    assert run.phase == "Promoting" and run.plan.weights == {"v2": 100}
    run.step(1)
    assert (run.phase, run.status.stable_version) == ("Stable", "v2")
    assert "Promoted" in run.reasons()


def test_canary_not_ready_gets_no_weight_then_fails_at_deadline() -> None:
    run = stable_on_v1()
    unready = {
        **ready("v1"),
        "v2": VersionObservation(
            message="0/1 pods available; pod x unschedulable: Insufficient nvidia.com/gpu"
        ),
    }
    plan = run.step(versions=unready)
    assert plan.weights == {"v1": 100} and run.phase == "Progressing"
    assert "spec.rollout.capacity: Shared" in plan.message
    plan = run.step(599, versions=unready)
    assert run.phase == "Progressing" and plan.requeue_after == pytest.approx(1)
    plan = run.step(1, versions=unready)
    assert run.phase == "Failed" and plan.weights == {"v1": 100}
    assert "RolloutFailed" not in run.reasons() and "CanaryNotReady" in run.reasons()
    assert run.status.history[-1].result == "Failed"


def test_canary_losing_readiness_drops_to_zero_at_once() -> None:
    run = stable_on_v1()
    run.step()
    run.step(61)
    assert run.plan is not None and run.plan.weights == {"v1": 75, "v2": 25}
    plan = run.step(1, versions={**ready("v1"), "v2": VersionObservation()})
    assert plan.weights == {"v1": 100} and run.status.canary_weight == 0
    assert "CanaryNotReady" in run.reasons()
    plan = run.step(1)
    assert plan.weights == {"v1": 75, "v2": 25}  # back at its step once ready again


def test_route_gate_holds_steps_and_fails_at_deadline() -> None:
    run = stable_on_v1()
    run.step()
    plan = run.step(120, route=False)
    assert plan.weights == {"v1": 90, "v2": 10}
    assert plan.message == "waiting for the gateway to accept the HTTPRoute"
    plan = run.step(600, route=False)
    assert run.phase == "Failed" and plan.weights == {"v1": 100}
    assert "RouteNotAccepted" in run.reasons()


def test_route_gate_off() -> None:
    run = stable_on_v1()
    run.step(gate=False, route=None)
    plan = run.step(61, gate=False, route=None)
    assert plan.weights == {"v1": 75, "v2": 25}


# --- commands --------------------------------------------------------------------------


def test_abort_puts_all_traffic_on_stable_and_stays() -> None:
    run = stable_on_v1()
    run.step()
    run.step(61)
    plan = run.step(1, commands={"modelpilot.io/abort": "v2"})
    assert (run.phase, plan.weights) == ("Aborted", {"v1": 100})
    assert "v2" not in plan.stopped  # kept for inspection under Surge
    run.step(3600)
    assert run.phase == "Aborted"
    run.step(1, commands={"modelpilot.io/retry": "v2"})
    assert run.phase == "Progressing" and run.plan is not None
    assert run.plan.weights == {"v1": 90, "v2": 10}


def test_aborted_ends_when_target_set_back_to_stable() -> None:
    run = stable_on_v1()
    run.step()
    run.step(1, commands={"modelpilot.io/abort": "v2"})
    run.spec = run.spec.model_copy(
        update={"rollout": run.spec.rollout.model_copy(update={"target": "v1"})}
    )
    plan = run.step(1)
    assert (run.phase, run.status.canary_version, plan.weights) == ("Stable", None, {"v1": 100})


def test_command_for_other_version_is_refused() -> None:
    run = stable_on_v1(spec(target="v3"))
    run.step()
    plan = run.step(1, commands={"modelpilot.io/promote": "v2"})
    assert run.phase == "Progressing" and plan.weights == {"v1": 90, "v3": 10}
    assert run.status.last_command is not None
    assert run.status.last_command.outcome == "refused: meant for v2, but the canary is v3"
    assert "CommandPromote" in run.reasons()
    assert plan.consumed == ["modelpilot.io/promote"]


def test_pause_holds_past_interval_and_resume_continues() -> None:
    run = stable_on_v1()
    run.step()
    run.step(1, commands={"modelpilot.io/pause": "v2"})
    plan = run.step(600)
    assert run.phase == "Paused" and plan.weights == {"v1": 90, "v2": 10}
    run.step(1, commands={"modelpilot.io/resume": "v2"})
    assert run.phase == "Progressing"
    plan = run.step(61)
    assert plan.weights == {"v1": 75, "v2": 25}


def test_set_weight_holds_until_next_command() -> None:
    run = stable_on_v1()
    run.step()
    plan = run.step(1, commands={"modelpilot.io/set-weight": "v2=30"})
    assert (run.phase, plan.weights) == ("Paused", {"v1": 70, "v2": 30})
    plan = run.step(3600)
    assert plan.weights == {"v1": 70, "v2": 30}
    run.step(1, commands={"modelpilot.io/resume": "v2"})
    plan = run.step(61)
    assert plan.weights == {"v1": 50, "v2": 50}  # the first step above 30%


def test_step_weights_edited_mid_rollout_never_lower_the_canary() -> None:
    run = stable_on_v1()
    run.step()
    run.step(61)
    plan = run.step(61)
    assert plan.weights == {"v1": 50, "v2": 50} and run.status.step_index == 2
    # The edit puts 40 at the current index: the canary holds 50 for its interval,
    # then goes on to the first step above it.
    run.spec = spec(stepWeights=[10, 20, 40, 60, 80])
    plan = run.step(1)
    assert plan.weights == {"v1": 50, "v2": 50} and run.status.step_index == 2
    plan = run.step(61)
    assert plan.weights == {"v1": 40, "v2": 60} and run.status.step_index == 3
    # Every step now below the canary: it holds as its last step, then promotion waits.
    run.spec = spec(stepWeights=[10, 20])
    plan = run.step(1)
    assert plan.weights == {"v1": 40, "v2": 60} and run.status.step_index == 1
    plan = run.step(61)
    assert plan.weights == {"v1": 40, "v2": 60} and run.phase == "WaitingPromotion"


def test_step_weights_edit_to_the_current_weight_keeps_its_interval() -> None:
    run = stable_on_v1()
    run.step()
    plan = run.step(61)
    assert plan.weights == {"v1": 75, "v2": 25}
    run.spec = spec(stepWeights=[5, 25, 70])
    plan = run.step(30)
    assert plan.weights == {"v1": 75, "v2": 25} and run.status.step_index == 1
    plan = run.step(31)
    assert plan.weights == {"v1": 30, "v2": 70} and run.status.step_index == 2


def test_malformed_set_weight_refused() -> None:
    run = stable_on_v1()
    run.step()
    run.step(1, commands={"modelpilot.io/set-weight": "v2:30"})
    assert run.status.last_command is not None
    assert run.status.last_command.outcome == "refused: 'v2:30' is not VERSION=PERCENT (0-100)"


def test_promote_refused_when_canary_not_ready() -> None:
    run = stable_on_v1()
    unready = {**ready("v1"), "v2": VersionObservation()}
    run.step(versions=unready)
    run.step(1, versions=unready, commands={"modelpilot.io/promote": "v2"})
    assert run.phase == "Progressing"
    assert run.status.last_command is not None
    assert run.status.last_command.outcome == "refused: v2 is not ready"


def test_promote_in_stable_refused() -> None:
    run = Run(spec(target="v1"), ManagedModelStatus(phase="Stable", stable_version="v1"))
    run.step(commands={"modelpilot.io/promote": "v1"})
    assert run.status.last_command is not None
    assert run.status.last_command.outcome == "refused: no rollout in progress"


def test_abort_wins_over_promote_given_together() -> None:
    run = stable_on_v1()
    run.step()
    run.step(1, commands={"modelpilot.io/promote": "v2", "modelpilot.io/abort": "v2"})
    assert run.phase == "Aborted"


# --- target changes --------------------------------------------------------------------


def test_new_target_mid_rollout_restarts_on_stable_first() -> None:
    run = stable_on_v1()
    run.step()
    run.step(61)
    run.spec = spec(target="v3")
    plan = run.step(1, versions={**ready("v1", "v2"), "v3": VersionObservation()})
    assert (run.status.canary_version, plan.weights) == ("v3", {"v1": 100})
    assert run.status.history[-1].result == "Superseded"
    plan = run.step(1)
    assert plan.weights == {"v1": 90, "v3": 10}


def test_target_back_to_stable_cancels() -> None:
    run = stable_on_v1()
    run.step()
    run.spec = spec(target="v1")
    plan = run.step(1)
    assert (run.phase, plan.weights) == ("Stable", {"v1": 100})
    assert "RolloutCancelled" in run.reasons()


def test_canary_changed_in_place_restarts() -> None:
    run = stable_on_v1()
    run.step(revisions={"v2": "a"})
    run.step(61, revisions={"v2": "a"})
    plan = run.step(1, revisions={"v2": "b"})
    assert "CanaryChanged" in run.reasons() and plan.weights == {"v1": 90, "v2": 10}
    assert run.status.step_index == 0


# --- after promotion -------------------------------------------------------------------


def promoted() -> Run:
    run = stable_on_v1(spec(promotion="auto", stepWeights=[50]))
    while run.status.stable_version != "v2":
        run.step(61)
    return run


def test_previous_version_stopped_after_scale_down_delay() -> None:
    run = promoted()
    plan = run.step(1)
    assert "v1" not in plan.stopped and plan.requeue_after is not None
    plan = run.step(600)
    assert plan.stopped == {"v1"} and "ScaledDown" in run.reasons()
    plan = run.step(600)
    assert plan.stopped == {"v1"} and plan.requeue_after is None  # idle


def test_rollback_within_window() -> None:
    run = promoted()
    plan = run.step(60, commands={"modelpilot.io/rollback": "v1"})
    assert (run.phase, run.status.stable_version, plan.weights) == ("Aborted", "v1", {"v1": 100})
    assert run.status.canary_version == "v2"
    assert run.status.history[-1].result == "RolledBack"
    plan = run.step(3600)
    assert plan.weights == {"v1": 100} and run.phase == "Aborted"  # no new rollout to v2


def test_rollback_after_window_refused() -> None:
    run = promoted()
    run.step(601)
    run.step(1, commands={"modelpilot.io/rollback": "v1"})
    assert run.status.last_command is not None
    assert run.status.last_command.outcome.startswith("refused: the rollback window (10m)")


def test_rollback_wrong_version_refused() -> None:
    run = promoted()
    run.step(1, commands={"modelpilot.io/rollback": "v3"})
    assert run.status.last_command is not None
    assert run.status.last_command.outcome == (
        "refused: meant for v3, but the previous stable version is v1"
    )


def test_stopped_version_started_again_when_target() -> None:
    run = promoted()
    run.step(601)
    assert run.plan is not None and run.plan.stopped == {"v1"}
    run.spec = spec(target="v1", promotion="auto", stepWeights=[50])
    plan = run.step(1, versions={**ready("v2"), "v1": VersionObservation()})
    assert "v1" not in plan.stopped and plan.weights == {"v2": 100}


# --- Shared capacity -------------------------------------------------------------------


def test_shared_capacity_replicas_per_step() -> None:
    run = Run(
        spec(capacity="Shared", stepWeights=[25, 50, 75], promotion="auto"),
        ManagedModelStatus(phase="Stable", stable_version="v1", weights={"v1": 100}),
    )
    stable4 = {"v1": VersionObservation(ready=True, available_replicas=4, replicas=4)}
    plan = run.step(versions={**stable4, "v2": VersionObservation()})
    assert run.status.shared_base_replicas == 4
    assert plan.replicas == {"v1": 3, "v2": 1} and plan.weights == {"v1": 100}
    seen = []
    for canary_pods in (1, 2, 3):
        obs = {**stable4, "v2": VersionObservation(ready=True, available_replicas=canary_pods)}
        plan = run.step(1, versions=obs)
        seen.append((dict(plan.replicas), dict(plan.weights)))
        plan = run.step(61, versions=obs)  # the interval passes: prepare the next step
    assert seen == [
        ({"v1": 3, "v2": 1}, {"v1": 75, "v2": 25}),
        ({"v1": 2, "v2": 2}, {"v1": 50, "v2": 50}),
        ({"v1": 1, "v2": 3}, {"v1": 25, "v2": 75}),
    ]


def test_shared_weight_waits_for_canary_pods() -> None:
    run = Run(
        spec(capacity="Shared", stepWeights=[25, 50]),
        ManagedModelStatus(phase="Stable", stable_version="v1", weights={"v1": 100}),
    )
    stable4 = {"v1": VersionObservation(ready=True, available_replicas=4, replicas=4)}
    run.step(versions={**stable4, "v2": VersionObservation(ready=True, available_replicas=1)})
    plan = run.step(
        61, versions={**stable4, "v2": VersionObservation(ready=True, available_replicas=1)}
    )
    assert plan.weights == {"v1": 75, "v2": 25} and plan.replicas == {"v1": 2, "v2": 2}
    assert plan.message == "waiting for 2 canary pods before 50% (1 available)"


def test_shared_abort_restores_stable_and_stops_canary() -> None:
    run = Run(
        spec(capacity="Shared"),
        ManagedModelStatus(phase="Stable", stable_version="v1", weights={"v1": 100}),
    )
    run.step()
    plan = run.step(1, commands={"modelpilot.io/abort": "v2"})
    assert plan.replicas == {} and plan.stopped == {"v2"} and plan.weights == {"v1": 100}


def test_restart_resumes_from_status() -> None:
    # The machine keeps nothing between calls: a fresh Run on the same status continues.
    run = stable_on_v1()
    run.step()
    run.step(61)
    resumed = Run(run.spec, run.status)
    resumed.now = run.now
    plan = resumed.step(61)
    assert plan.weights == {"v1": 50, "v2": 50}


def test_shared_promotion_keeps_previous_warm_at_last_step_size() -> None:
    run = Run(
        spec(capacity="Shared", stepWeights=[25, 50, 75], promotion="auto", scaleDownDelay="30s"),
        ManagedModelStatus(phase="Stable", stable_version="v1", weights={"v1": 100}),
    )
    stable4 = {"v1": VersionObservation(ready=True, available_replicas=4, replicas=4)}
    for _ in range(12):
        obs = {**stable4, "v2": VersionObservation(ready=True, available_replicas=3)}
        plan = run.step(61 if run.phase != "Promoting" else 1, versions=obs)
        if run.phase == "Stable" and run.status.stable_version == "v2":
            break
    assert run.status.stable_version == "v2"
    assert plan.replicas == {"v1": 1}  # warm for rollback, but only at 1 of 4
    plan = run.step(31, versions=obs)
    assert plan.stopped == {"v1"} and plan.replicas == {}
    assert run.status.shared_base_replicas is None


def test_a_first_version_past_its_progress_deadline_is_reported_late_and_still_awaited() -> None:
    run = Run(spec(progressDeadline="2m"))
    stuck = {"v2": VersionObservation(message="InferenceService not Ready: no runtime")}
    plan = run.step(versions=stuck)
    assert (run.phase, plan.reason, plan.requeue_after) == ("Pending", None, 120.0)
    plan = run.step(121, versions=stuck)
    assert (run.phase, plan.reason) == ("Pending", "ProgressDeadlineExceeded")
    assert plan.message == "v2 was not ready within 2m: InferenceService not Ready: no runtime"
    plan = run.step(5)  # it became ready after all
    assert (run.phase, plan.reason, plan.weights) == ("Stable", None, {"v2": 100})
    assert run.status.rollout_started_at is None
