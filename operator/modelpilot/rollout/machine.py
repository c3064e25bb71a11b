"""The rollout phase machine: (spec, status, observations, now) -> plan. No I/O.

Phases: Pending (no version has served yet) -> Stable -> Progressing (steps) ->
WaitingPromotion (manual) -> Promoting -> Stable; Paused; Aborted; Failed. Progress lives
only in status, so the same inputs after a restart give the same plan.

Invariants, whatever the inputs: weights sum to 100 or are empty; a canary that is not
ready has weight 0; the stable version is never stopped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from modelpilot.api.events import Event, EventType
from modelpilot.api.spec import ManagedModelSpec
from modelpilot.api.status import (
    AnalysisStatus,
    HistoryEntry,
    LastCommand,
    ManagedModelStatus,
    Phase,
)
from modelpilot.rollout.analysis import fold_report, next_check_in, passed_at_weight
from modelpilot.rollout.capacity import shared_replicas
from modelpilot.rollout.commands import Command
from modelpilot.rollout.durations import parse_duration, seconds_since, stamp
from modelpilot.rollout.types import CheckRequest, Observations, Plan

ROLLING: frozenset[str] = frozenset({"Progressing", "WaitingPromotion", "Paused", "Promoting"})
HALTED: frozenset[str] = frozenset({"Aborted", "Failed"})
# The candidate is shown to its audience (match rules, a mirror) in these phases.
EXPOSING: frozenset[str] = frozenset({"Progressing", "WaitingPromotion", "Paused"})
HISTORY_LIMIT = 10


@dataclass
class Working:
    """The mutable copy of status the machine works on during one decision."""

    spec: ManagedModelSpec
    obs: Observations
    now: dt.datetime
    phase: Phase | None
    stable: str | None
    canary: str | None
    weight: int
    step: int
    rollout_started: str | None
    step_started: str | None
    base: int | None
    promoted_at: str | None
    previous: str | None
    revision: str | None
    last_command: LastCommand | None
    history: list[HistoryEntry]
    stopped: set[str]
    analysis: AnalysisStatus | None = None
    shadow_passed: str | None = None  # Shadow then Canary: the canary steps have begun
    queued_since: str | None = None  # waiting for a rollout slot since
    queued: bool = False  # waits for one in this decision
    events: list[Event] = field(default_factory=list)
    message: str = ""
    wake: list[float] = field(default_factory=list)
    check: CheckRequest | None = None

    @property
    def steps(self) -> list[int]:
        return self.spec.rollout.step_weights

    @property
    def shared(self) -> bool:
        return self.spec.rollout.capacity == "Shared"

    @property
    def iterating(self) -> bool:
        """ABTest and BlueGreen expose the candidate by match rules, Shadow by a copy of
        the requests: iterations of an interval, not weight steps."""
        strategy = self.spec.rollout.strategy
        return strategy in ("ABTest", "BlueGreen") or (
            strategy == "Shadow" and self.shadow_passed is None
        )

    @property
    def shadowing(self) -> bool:
        """The candidate gets a copy of the stable's requests (and no weight)."""
        return (
            self.spec.rollout.strategy == "Shadow"
            and self.shadow_passed is None
            and self.phase in EXPOSING
            and self.step_started is not None
            and self.obs.ready(self.canary)
        )

    def seconds_since(self, text: str | None) -> float:
        return seconds_since(text, self.now)

    def event(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def finish(self, result: str) -> None:
        if self.canary is None:
            return
        entry = HistoryEntry(
            version=self.canary,
            result=result,
            start=self.rollout_started or "",
            end=stamp(self.now),
            analysis=(
                "Overridden"
                if self.analysis and self.analysis.overridden and result == "Promoted"
                else None
            ),
        )
        self.history = [*self.history, entry][-HISTORY_LIMIT:]


def decide(
    spec: ManagedModelSpec, status: ManagedModelStatus, obs: Observations, now: dt.datetime
) -> Plan:
    w = Working(
        spec=spec,
        obs=obs,
        now=now,
        phase=status.phase,
        stable=status.stable_version,
        canary=status.canary_version,
        weight=status.canary_weight or 0,
        step=status.step_index or 0,
        rollout_started=status.rollout_started_at,
        step_started=status.step_started_at,
        base=status.shared_base_replicas,
        promoted_at=status.promoted_at,
        previous=status.previous_stable_version,
        revision=status.revision,
        last_command=status.last_command,
        history=list(status.history),
        stopped={v.name for v in status.versions if v.stopped},
        analysis=status.analysis,
        shadow_passed=status.shadow_passed_at,
        queued_since=status.queued_since,
    )
    if w.stable is None:
        _bootstrap(w)
    else:
        if w.phase in (None, "Pending"):
            w.phase = "Stable" if w.canary is None else "Progressing"
        for command in obs.commands:
            _command(w, command)
        _follow_target(w)
        _advance(w)
        _scale_down(w)
    return _plan(w, status)


def _bootstrap(w: Working) -> None:
    """A brand-new model: no route until the target is ready, then 100% on it."""
    target = w.spec.target
    for command in w.obs.commands:
        _record(w, command, "refused: no version serves yet")
    if w.obs.ready(target):
        w.phase, w.stable, w.canary, w.weight = "Stable", target, None, 0
        w.event("Normal", "Serving", f"{target} is ready and takes all traffic")
        w.message = f"{target} serves all traffic"
    else:
        w.phase = "Pending"
        why = w.obs.of(target).message or "not ready yet"
        # The progress deadline holds for a first version too: it keeps being waited
        # for (nothing else could serve), but the model says it is late.
        w.rollout_started = w.rollout_started or stamp(w.now)
        deadline = parse_duration(w.spec.rollout.progress_deadline)
        left = deadline - w.seconds_since(w.rollout_started)
        if left <= 0:
            w.message = f"{target} was not ready within {w.spec.rollout.progress_deadline}: {why}"
        else:
            w.message = f"waiting for {target} to become ready: {why}"
            w.wake.append(left)
        # Nothing else to wake for: the target's readiness arrives as its children's
        # events (the reconcile looks again where it cannot, see handlers.manage).


def _start(w: Working, candidate: str) -> None:
    w.queued_since = None
    w.phase, w.canary, w.weight, w.step = "Progressing", candidate, 0, 0
    w.rollout_started = w.step_started = stamp(w.now)
    w.revision = w.obs.revisions.get(candidate)
    w.stopped.discard(candidate)  # started again before it gets weight
    w.shadow_passed = None
    judged = w.spec.rollout.analysis or w.spec.rollout.webhooks
    w.analysis = AnalysisStatus() if judged else None
    if w.shared or w.spec.rollout.strategy == "BlueGreen":
        stable_obs = w.obs.of(w.stable or "")
        w.base = max(1, stable_obs.replicas or w.spec.autoscaling.min_replicas)
    if w.iterating:
        w.step_started = None  # set when the candidate is first exposed
    w.event(
        "Normal",
        "RolloutStarted",
        f"{w.spec.rollout.strategy} of {candidate} from stable {w.stable}"
        if w.iterating
        else f"canary {candidate} from stable {w.stable}",
    )


def _queued(w: Working, target: str) -> bool:
    """Whether the rollout to target must wait for a slot (--max-concurrent-rollouts):
    the model stays as it is, in line from the first time it waited."""
    if w.obs.may_start:
        return False
    w.queued, w.queued_since = True, w.queued_since or stamp(w.now)
    in_flight, limit = w.obs.queue or (0, 0)
    w.message = (
        f"the rollout to {target} waits for a slot: {in_flight} of {limit} rollouts in "
        f"flight (the operator's --max-concurrent-rollouts); queued since {w.queued_since}, "
        "earlier ones start first"
    )
    return True


def _follow_target(w: Working) -> None:
    """The spec says where to go: a changed target starts, restarts or ends a rollout."""
    target = w.spec.target
    if w.phase == "Stable":
        if target != w.stable and not _queued(w, target):
            _start(w, target)
        return
    if w.phase in ROLLING and target != w.canary:
        w.finish("Superseded")
        if target == w.stable:
            w.event(
                "Normal", "RolloutCancelled", f"target is {target} again: all traffic back on it"
            )
            _settle(w)
        else:
            w.event(
                "Normal",
                "RolloutRestarted",
                f"target changed to {target}: traffic back on {w.stable} first",
            )
            _start(w, target)
        return
    if w.phase in HALTED:
        if target == w.stable:
            _settle(w)
        elif target != w.canary and not _queued(w, target):
            _start(w, target)
        return
    if (
        w.phase in ROLLING
        and w.revision
        and w.obs.revisions.get(target, w.revision) != (w.revision)
    ):
        w.finish("Superseded")
        w.event(
            "Warning",
            "CanaryChanged",
            f"{target} changed during its rollout: starting over from step 0",
        )
        _start(w, target)


def _settle(w: Working) -> None:
    w.phase, w.canary, w.weight, w.step = "Stable", None, 0, 0
    w.rollout_started = w.step_started = w.shadow_passed = None
    w.base = w.revision = None


def _fail(w: Working, reason: str, message: str) -> None:
    w.finish("Failed")
    w.phase, w.weight = "Failed", 0
    w.event(
        "Warning", reason, f"rollout of {w.canary} failed: {message}; all traffic on {w.stable}"
    )
    w.message = message


def _advance(w: Working) -> None:
    if w.phase == "Stable":
        if not w.queued:
            w.message = f"{w.stable} serves all traffic"
    elif w.phase in HALTED:
        w.message = w.message or (
            f"{w.phase.lower()} rollout of {w.canary}; all traffic on {w.stable}. Retry with "
            f"modelpilot.io/retry: {w.canary}, or set spec.rollout.target to {w.stable}"
        )
    elif w.phase == "Paused":
        _hold_unready_at_zero(w)
        w.message = f"paused with {w.canary} at {w.weight}%"
    elif w.phase == "Progressing":
        _progress(w)
    elif w.phase == "WaitingPromotion":
        if _hold_unready_at_zero(w):
            w.phase = "Progressing"
            _progress(w)
            return
        if w.spec.rollout.promotion == "auto":
            _confirm(w)
            return
        w.message = (
            f"{w.canary} at {w.weight}%: waiting for modelpilot.io/promote: {w.canary} "
            "(or `modelpilot promote`)"
        )
    elif w.phase == "Promoting":
        _promote(w)


def _hold_unready_at_zero(w: Working) -> bool:
    """A canary that stops being ready loses its weight at once."""
    if w.obs.ready(w.canary) or w.weight == 0:
        return False
    why = w.obs.of(w.canary or "").message or "not ready"
    w.event(
        "Warning",
        "CanaryNotReady",
        f"{w.canary} stopped being ready ({why}): its weight drops to 0",
    )
    w.weight = 0
    w.step_started = stamp(w.now)
    return True


def _ready_or_waiting(w: Working, deadline: float) -> bool:
    """The canary is ready; else say why it is waited for, and fail at the deadline."""
    canary = w.canary or ""
    if w.obs.ready(canary):
        return True
    waited = w.seconds_since(w.step_started or w.rollout_started)
    why = w.obs.of(canary).message or "not ready"
    if waited >= deadline:
        _fail(
            w,
            "CanaryNotReady",
            f"{canary} was not ready within {w.spec.rollout.progress_deadline}: {why}",
        )
        return False
    w.message = f"waiting for canary {canary} to become ready: {why}"
    if "Insufficient" in why and not w.shared:
        w.message += (
            "; under capacity Surge the canary needs spare capacity beside the stable "
            "version: spec.rollout.capacity: Shared shrinks the stable version instead"
        )
    w.wake.append(deadline - waited)
    return False


def _has_pods(w: Working, needed: int, deadline: float, what: str) -> bool:
    """The canary has `needed` available pods; else say so, and fail at the deadline."""
    canary = w.canary or ""
    have = w.obs.of(canary).available_replicas
    if have >= needed:
        return True
    waited = w.seconds_since(w.step_started or w.rollout_started)
    if waited >= deadline:
        _fail(
            w,
            "CanaryNotReady",
            f"{canary} did not get {needed} available pods within "
            f"{w.spec.rollout.progress_deadline}",
        )
        return False
    w.message = f"waiting for {needed} {what} ({have} available)"
    w.wake.append(min(5.0, deadline - waited))
    return False


def _progress(w: Working) -> None:
    if w.iterating:
        _iterate(w)
        return
    rollout = w.spec.rollout
    deadline = parse_duration(rollout.progress_deadline)
    canary = w.canary or ""
    _hold_unready_at_zero(w)
    wanted = _current_step_weight(w)
    if not _ready_or_waiting(w, deadline):
        return
    if w.shared and w.weight < wanted:
        _, needed = shared_replicas(w.base or 1, wanted)
        if not _has_pods(w, needed, deadline, f"canary pods before {wanted}%"):
            return
    if w.weight == 0 and not _pre_rollout_passed(w):
        return
    if w.weight != wanted:
        w.weight = wanted
        w.step_started = stamp(w.now)
        w.event("Normal", "StepWeight", f"{canary} at {wanted}% (step {w.step + 1}/{len(w.steps)})")
        w.message = f"{canary} at {wanted}%"
        w.wake.append(parse_duration(rollout.interval))
        return
    if not _route_settled(w, deadline):
        return
    interval = parse_duration(rollout.interval)
    held = w.seconds_since(w.step_started)
    if rollout.judged and not _analysis_passed(w):
        return
    if held < interval:
        w.message = (
            f"{canary} at {w.weight}% (step {w.step + 1}/{len(w.steps)}); the next step "
            f"comes {rollout.interval} after this one began"
        )
        w.wake.append(interval - held)
        return
    if w.step + 1 < len(w.steps):
        w.step += 1
        _progress(w)
    else:
        _last_step_done(w, f"{canary} passed every step at {w.weight}%")


def _current_step_weight(w: Working) -> int:
    """The weight of the step the canary is on. A resume already lines the step up with
    the weight, so a weight above its step means stepWeights were edited mid-rollout.
    Traffic never moves back to the stable version within a rollout unless a person or
    the analysis says so: the canary holds its weight as the step before the first
    higher one (or as the last step), and its interval there runs out as usual."""
    w.step = min(w.step, len(w.steps) - 1)
    if w.weight <= w.steps[w.step]:
        return w.steps[w.step]
    higher = [i for i, s in enumerate(w.steps) if s >= w.weight]
    if higher and w.steps[higher[0]] == w.weight:
        w.step = higher[0]
    else:
        w.step = (higher[0] if higher else len(w.steps)) - 1
    return w.weight


def _last_step_done(w: Working, summary: str) -> None:
    rollout, canary = w.spec.rollout, w.canary or ""
    if rollout.promotion == "auto" and not rollout.hooks("confirm-promotion"):
        w.phase = "Promoting"
        _promote(w)
    elif rollout.promotion == "auto":
        w.phase = "WaitingPromotion"
        _confirm(w)
    else:
        w.phase = "WaitingPromotion"
        w.event(
            "Normal",
            "WaitingPromotion",
            f"{summary}: annotate modelpilot.io/promote: {canary} to promote it",
        )
        w.message = f"{summary}: waiting for modelpilot.io/promote: {canary}"


def _iterate(w: Working) -> None:
    """ABTest and BlueGreen: the candidate gets the requests matching spec.rollout.match
    (none in the weighted split) for `iterations` intervals, each closed by a passed
    check when analysis is on; promotion then moves all traffic at once. BlueGreen first
    warms the candidate to the stable's replicas. Shadow: the candidate gets a copy of
    the stable's requests instead, and may go on as a canary."""
    rollout = w.spec.rollout
    deadline = parse_duration(rollout.progress_deadline)
    canary = w.canary or ""
    w.step = min(w.step, rollout.iterations - 1)
    if not _ready_or_waiting(w, deadline):
        return
    if rollout.strategy == "BlueGreen" and not _has_pods(
        w, w.base or 1, deadline, f"{canary} pods, the stable's count, before it is exposed"
    ):
        return
    if w.step_started is None:
        if not _pre_rollout_passed(w):
            return
        w.step_started = stamp(w.now)
        if rollout.strategy == "Shadow":
            exposed = (
                f"gets a copy of {rollout.mirror_percent}% of {w.stable}'s requests "
                "(its answers are discarded)"
            )
        elif rollout.match:
            exposed = "takes the requests matching spec.rollout.match"
        else:
            exposed = "is warm"
        w.event(
            "Normal", "CandidateExposed", f"{canary} {exposed} (iteration 1/{rollout.iterations})"
        )
    if not _route_settled(w, deadline):
        return
    if rollout.judged and not _analysis_passed(w):
        return
    interval = parse_duration(rollout.interval)
    held = w.seconds_since(w.step_started)
    if held < interval:
        w.message = f"{rollout.strategy}: {canary} in iteration {w.step + 1}/{rollout.iterations}"
        w.wake.append(interval - held)
        return
    if w.step + 1 < rollout.iterations:
        w.step += 1
        w.step_started = stamp(w.now)
        w.message = f"{rollout.strategy}: {canary} in iteration {w.step + 1}/{rollout.iterations}"
        w.wake.append(interval)
        return
    if rollout.strategy == "Shadow" and rollout.then == "Canary":
        w.shadow_passed = w.step_started = stamp(w.now)
        w.step, w.weight = 0, 0
        w.event(
            "Normal",
            "ShadowPassed",
            f"{canary} passed {rollout.iterations} shadow iterations: the canary steps follow",
        )
        _progress(w)
        return
    _last_step_done(w, f"{canary} passed {rollout.iterations} iterations")


def _check_interval(w: Working) -> float:
    analysis = w.spec.rollout.analysis
    return parse_duration((analysis.interval if analysis else None) or w.spec.rollout.interval)


def _ask(w: Working, kind: str, due_in: float) -> None:
    """Ask for a check when it is due; the runner wakes the model when it is done."""
    if due_in <= 0:
        w.check = CheckRequest(
            canary=w.canary or "",
            stable=w.stable or "",
            weight=w.weight,
            kind=kind,
            shadow=w.shadowing,
        )
        w.wake.append(_check_interval(w))  # a fallback, should the runner never answer
    else:
        w.wake.append(due_in)


def _pre_rollout_passed(w: Working) -> bool:
    """Every pre-rollout webhook answered 2xx before the canary gets any weight; each
    refusal is a failed check."""
    rollout = w.spec.rollout
    if not rollout.hooks("pre-rollout") or w.analysis is None or w.analysis.pre_rollout_passed:
        return True
    folded = fold_report(w.analysis, w.obs.check, w.canary or "", 0, w.step_started, "pre-rollout")
    if folded is not None:
        w.analysis, report = folded
        if report.result == "Passed":
            return True
        if w.analysis.failed_checks >= rollout.threshold:
            _fail(w, "AnalysisFailed", f"pre-rollout: {report.message}")
            return False
        w.event("Warning", "AnalysisCheckFailed", f"pre-rollout: {report.message}")
    since = w.analysis.last_check_at
    _ask(w, "pre-rollout", _check_interval(w) - w.seconds_since(since) if since else 0.0)
    w.message = f"waiting for the pre-rollout webhooks before {w.canary} gets traffic" + (
        f" (last: {w.analysis.metrics[0].message})" if w.analysis.metrics else ""
    )
    return False


def _confirm(w: Working) -> None:
    """An automatic promotion waits for every confirm-promotion webhook to answer 2xx."""
    assert w.analysis is not None
    folded = fold_report(
        w.analysis, w.obs.check, w.canary or "", w.weight, w.step_started, "confirm-promotion"
    )
    if folded is not None:
        w.analysis, report = folded
        if report.result == "Passed":
            w.event("Normal", "PromotionConfirmed", f"{w.canary}: {report.message}")
            w.phase = "Promoting"
            _promote(w)
            return
    last = w.analysis.last_check_at if w.analysis.confirmation else None
    _ask(w, "confirm-promotion", _check_interval(w) - w.seconds_since(last) if last else 0.0)
    w.message = f"{w.canary} at {w.weight}%: waiting for the confirm-promotion webhooks" + (
        f" (last: {w.analysis.confirmation})" if w.analysis.confirmation else ""
    )


def _analysis_passed(w: Working) -> bool:
    """Fold the latest check in, ask for the next one when due, and say whether the
    canary passed a check at this weight. Failed checks up to the threshold roll the
    canary back; inconclusive ones in a row pause it for a human."""
    rollout = w.spec.rollout
    assert w.canary is not None and w.stable is not None
    limit = rollout.analysis.inconclusive_limit if rollout.analysis else 3
    interval = _check_interval(w)
    w.analysis = w.analysis or AnalysisStatus()
    folded = fold_report(w.analysis, w.obs.check, w.canary, w.weight, w.step_started)
    if folded is not None:
        w.analysis, report = folded
        if report.result == "Failed":
            if w.analysis.failed_checks >= rollout.threshold:
                _fail(
                    w,
                    "AnalysisFailed",
                    f"{w.analysis.failed_checks} failed checks at up to {w.weight}%: "
                    f"{report.message}",
                )
                return False
            w.event(
                "Warning",
                "AnalysisCheckFailed",
                f"{w.canary} at {w.weight}%: {report.message} "
                f"({w.analysis.failed_checks}/{rollout.threshold} before rollback)",
            )
        elif report.result == "Inconclusive" and w.analysis.inconclusive_checks >= limit:
            w.phase = "Paused"
            w.event(
                "Warning",
                "AnalysisInconclusive",
                f"{w.analysis.inconclusive_checks} inconclusive checks in a row "
                f"({report.message}): paused with {w.canary} at {w.weight}%; resume "
                f"with modelpilot.io/resume: {w.canary}",
            )
            w.message = (
                f"paused with {w.canary} at {w.weight}%: the analysis is inconclusive "
                f"({report.message})"
            )
            return False
    passed = passed_at_weight(w.analysis, w.weight, w.step_started)
    _ask(w, "analysis", next_check_in(w.analysis, w.step_started, w.now, interval))
    if not passed:
        last = w.analysis.last_result
        w.message = f"{w.canary} at {w.weight}%: waiting for a passed analysis check" + (
            f" (last: {last})" if last else ""
        )
    return passed


def _route_settled(w: Working, deadline: float) -> bool:
    """The gateway accepted the route that carries the current weights (the route gate)."""
    if not w.obs.route_gate or w.obs.route_accepted:
        return True
    waited = w.seconds_since(w.step_started)
    if waited >= deadline:
        _fail(
            w,
            "RouteNotAccepted",
            f"the gateway did not accept the HTTPRoute within {w.spec.rollout.progress_deadline}",
        )
        return False
    w.message = "waiting for the gateway to accept the HTTPRoute"
    w.wake.append(min(5.0, deadline - waited))
    return False


def _promote(w: Working) -> None:
    canary = w.canary or ""
    if not w.obs.ready(canary):
        w.phase = "Progressing"
        _progress(w)
        return
    if w.weight != 100:
        w.weight = 100
        w.step_started = stamp(w.now)
        w.message = f"promoting {canary}: all traffic on it"
        w.wake.append(1.0)
        return
    if not _route_settled(w, parse_duration(w.spec.rollout.progress_deadline)):
        return
    w.finish("Promoted")
    w.previous, w.stable = w.stable, canary
    w.promoted_at = stamp(w.now)
    base = w.base
    w.event(
        "Normal",
        "Promoted",
        f"{canary} is stable; {w.previous} stays warm for "
        f"{w.spec.rollout.scale_down_delay} (modelpilot.io/rollback: {w.previous})",
    )
    _settle(w)
    # Under Shared the replaced version stays warm at its last step's size, not its
    # full size, until it is stopped: the GPUs went to the new stable version.
    w.base = base if w.shared else None
    w.message = f"{canary} serves all traffic"


def _scale_down(w: Working) -> None:
    """Stop the replaced version after the rollback window; keep needed ones running."""
    delay = parse_duration(w.spec.rollout.scale_down_delay)
    previous = w.previous
    if previous and w.promoted_at and previous not in w.stopped:
        left = delay - w.seconds_since(w.promoted_at)
        if previous in (w.stable, w.canary, w.spec.target):
            pass
        elif left <= 0:
            w.stopped.add(previous)
            message = (
                f"{previous} stopped after its {w.spec.rollout.scale_down_delay} rollback "
                "window: its pods and GPUs are freed"
            )
            w.events.append(Event("Normal", "ScaledDown", message, stops=previous))
        else:
            w.wake.append(left)
    if w.phase in HALTED and w.shared and w.canary:
        w.stopped.add(w.canary)  # the stable version gets its GPUs back
    keep = {w.stable} | (set() if w.phase in HALTED else {w.spec.target})
    keep |= {w.canary} if w.phase in ROLLING else set()
    w.stopped -= keep
    known = {v.name for v in w.spec.versions}
    w.stopped &= known


def _command(w: Working, command: Command) -> None:
    if command.error:
        _record(w, command, f"refused: {command.error}")
        return
    if command.name == "rollback":
        _rollback(w, command)
        return
    if w.canary is None:
        _refuse(w, command, "no rollout in progress")
        return
    if command.version != w.canary:
        _refuse(w, command, f"meant for {command.version}, but the canary is {w.canary}")
        return
    allowed = {
        "promote": ROLLING - {"Promoting"},
        "abort": ROLLING,
        "pause": {"Progressing", "WaitingPromotion"},
        "resume": {"Paused"},
        "retry": HALTED,
        "set-weight": ROLLING - {"Promoting"},
    }[command.name]
    if w.phase not in allowed:
        _refuse(w, command, f"not possible while {w.phase}")
        return
    needs_ready = command.name == "promote" or (
        command.name == "set-weight" and (command.weight or 0) > 0
    )
    if needs_ready and not w.obs.ready(w.canary):
        _record(w, command, f"refused: {w.canary} is not ready")
        return
    if command.name == "promote":
        w.phase = "Promoting"
        if w.analysis is not None and not (
            w.step == len(w.steps) - 1 and passed_at_weight(w.analysis, w.weight, w.step_started)
        ):
            w.analysis = w.analysis.model_copy(update={"overridden": True})
    elif command.name == "abort":
        w.finish("Aborted")
        w.phase, w.weight = "Aborted", 0
        w.event("Warning", "Aborted", f"rollout of {w.canary} aborted: all traffic on {w.stable}")
    elif command.name == "pause":
        w.phase = "Paused"
    elif command.name == "resume":
        w.phase = "Progressing"
        if w.analysis is not None:
            w.analysis = w.analysis.model_copy(update={"inconclusive_checks": 0})
        if w.iterating:
            w.step_started = stamp(w.now) if w.step_started else None
            w.weight = 0
            _record(w, command, "applied")
            return
        higher = [i for i, s in enumerate(w.steps) if s >= w.weight]
        w.step = higher[0] if higher else len(w.steps) - 1
        if w.weight > w.steps[w.step]:
            w.weight = w.steps[w.step]
        w.step_started = stamp(w.now)
    elif command.name == "retry":
        _start(w, w.canary)
    elif command.name == "set-weight":
        w.phase, w.weight = "Paused", command.weight or 0
        w.step_started = stamp(w.now)
    _record(w, command, "applied")


def _rollback(w: Working, command: Command) -> None:
    delay = parse_duration(w.spec.rollout.scale_down_delay)
    if w.phase != "Stable" or not w.previous or not w.promoted_at:
        _refuse(w, command, "no promotion to roll back")
        return
    if command.version != w.previous:
        _record(
            w,
            command,
            f"refused: meant for {command.version}, but the previous stable "
            f"version is {w.previous}",
        )
        return
    if w.previous in w.stopped or w.seconds_since(w.promoted_at) > delay:
        _record(
            w,
            command,
            f"refused: the rollback window ({w.spec.rollout.scale_down_delay}) "
            f"has passed; set spec.rollout.target to {w.previous} instead",
        )
        return
    if not w.obs.ready(w.previous):
        _record(w, command, f"refused: {w.previous} is not ready")
        return
    rolled_back = w.stable
    w.stable, w.canary = w.previous, rolled_back
    w.rollout_started = w.promoted_at
    w.finish("RolledBack")
    w.phase, w.weight, w.previous, w.promoted_at = "Aborted", 0, None, None
    w.event(
        "Warning",
        "RolledBack",
        f"all traffic back on {w.stable}; {rolled_back} is treated as aborted",
    )
    _record(w, command, "applied")


def _refuse(w: Working, command: Command, why: str) -> None:
    """Refuse a command, unless it is the last one applied seen again: the operator
    writes status before it removes the annotation, so a crash between the two shows it
    a command it already carried out. Carried out, it moved the phase out of the
    command's reach, so a replay is always refused; it is consumed without a word."""
    last = w.last_command
    if (
        last
        and last.outcome == "applied"
        and (last.name, last.version) == (command.name, command.version)
    ):
        return
    _record(w, command, f"refused: {why}")


def _record(w: Working, command: Command, outcome: str) -> None:
    w.last_command = LastCommand(
        name=command.name, version=command.version, outcome=outcome, at=stamp(w.now)
    )
    kind: EventType = "Normal" if outcome == "applied" else "Warning"
    w.event(
        kind,
        f"Command{command.name.title().replace('-', '')}",
        f"{command.annotation}: {command.version or '(empty)'}: {outcome}",
    )


def _plan(w: Working, status: ManagedModelStatus) -> Plan:
    weights: dict[str, int] = {}
    replicas: dict[str, int] = {}
    if w.stable is not None:
        canary_weight = w.weight if (w.phase in ROLLING and w.obs.ready(w.canary)) else 0
        weights = {w.stable: 100 - canary_weight}
        if w.canary and canary_weight:
            weights[w.canary] = canary_weight
        weights = {v: p for v, p in weights.items() if p > 0}
        w.weight = canary_weight if w.phase in ROLLING else 0
    warm = w.previous if w.previous and w.previous not in w.stopped else None
    if w.shared and w.phase == "Stable" and w.base and warm:
        replicas[warm] = shared_replicas(w.base, w.steps[-1])[0]
    if w.shared and w.phase in ROLLING and w.base and w.stable and w.canary:
        if w.phase == "Promoting":
            replicas[w.stable] = shared_replicas(w.base, w.steps[-1])[0]
        else:
            # An A/B test's or a shadow's iterations may outnumber the steps.
            step = w.steps[min(w.step, len(w.steps) - 1)]
            basis = w.weight if w.phase == "Paused" else max(w.weight, step)
            replicas[w.stable], replicas[w.canary] = shared_replicas(w.base, basis)
    matched = None
    if w.iterating and w.spec.rollout.match and w.phase in EXPOSING and w.step_started:
        matched = w.canary if w.obs.ready(w.canary) else None
    mirrored = w.canary if w.shadowing else None
    floors: dict[str, int] = {}
    if w.spec.rollout.strategy == "BlueGreen" and w.phase in ROLLING and w.canary and w.base:
        floors[w.canary] = w.base  # warm: as many pods as stable had
    rolling = w.phase in ROLLING or w.phase in HALTED
    next_status = status.model_copy(
        update={
            "phase": w.phase,
            "stable_version": w.stable,
            "canary_version": w.canary if rolling else None,
            "canary_weight": w.weight if rolling else None,
            "step_index": w.step if w.phase in ROLLING else None,
            "weights": weights,
            "rollout_started_at": (w.rollout_started if rolling or w.phase == "Pending" else None),
            "step_started_at": w.step_started if w.phase in ROLLING else None,
            "shared_base_replicas": w.base if (rolling or replicas) else None,
            "promoted_at": w.promoted_at,
            "previous_stable_version": w.previous,
            "revision": w.revision if rolling else None,
            "last_command": w.last_command,
            "history": w.history,
            "analysis": w.analysis,
            "matched_version": matched,
            "mirrored_version": mirrored,
            "mirror_percent": w.spec.rollout.mirror_percent if mirrored else None,
            "shadow_passed_at": w.shadow_passed if w.phase in ROLLING else None,
            "queued_since": w.queued_since if w.queued else None,
        }
    )
    wake = [s for s in w.wake if s is not None]
    return Plan(
        status=next_status,
        weights=weights,
        replicas=replicas,
        stopped=frozenset(w.stopped),
        events=w.events,
        consumed=[c.annotation for c in w.obs.commands],
        message=w.message,
        requeue_after=max(0.5, min(wake)) if wake else None,
        check=w.check if w.phase in ("Progressing", "WaitingPromotion") else None,
        reason=_standing_reason(w),
        matched=matched,
        mirrored=mirrored,
        floors=floors,
    )


def _standing_reason(w: Working) -> str | None:
    """Why a halted or paused rollout stays so, read back from status."""
    if w.queued:
        return "Queued"
    analysis, rollout = w.analysis, w.spec.rollout
    deadline = parse_duration(rollout.progress_deadline)
    if w.phase == "Pending" and w.seconds_since(w.rollout_started) >= deadline:
        return "ProgressDeadlineExceeded"
    if analysis is None:
        return None
    limit = rollout.analysis.inconclusive_limit if rollout.analysis else 3
    if w.phase == "Failed" and analysis.failed_checks >= rollout.threshold:
        return "AnalysisFailed"
    if w.phase == "Paused" and analysis.inconclusive_checks >= limit:
        return "AnalysisInconclusive"
    return None
