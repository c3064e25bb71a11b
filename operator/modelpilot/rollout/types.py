"""What the phase machine reads (observations) and returns (a plan)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelpilot.api.events import Event
from modelpilot.api.status import CheckResult, ManagedModelStatus, MetricCheck
from modelpilot.rollout.commands import Command


@dataclass(frozen=True)
class VersionObservation:
    ready: bool = False
    message: str = ""  # why not ready, e.g. the scheduler's reason
    available_replicas: int = 0
    replicas: int = 0  # the predictor Deployment's spec.replicas (what the HPA chose)


@dataclass(frozen=True)
class CheckRequest:
    """A check the machine wants run now: the canary at this weight, against stable."""

    canary: str
    stable: str
    weight: int
    # analysis: metrics and rollout webhooks; pre-rollout or confirm-promotion: those
    # webhooks only.
    kind: str = "analysis"
    shadow: bool = False  # the canary sees copies of requests only (Shadow)


@dataclass(frozen=True)
class CheckReport:
    """A check that ran (outside the reconcile) and was judged."""

    canary: str
    weight: int
    at: str  # when the queries ran (RFC 3339): the end of their window
    result: CheckResult
    requests: float | None = None
    stable_requests: float | None = None  # A/B tests compare both variants
    metrics: tuple[MetricCheck, ...] = ()
    message: str = ""  # the failing bounds, or why inconclusive
    kind: str = "analysis"


@dataclass(frozen=True)
class Observations:
    versions: Mapping[str, VersionObservation] = field(default_factory=dict)
    # The HTTPRoute carries status.weights and its gateway Accepted that generation;
    # None when there is no route yet.
    route_accepted: bool | None = None
    commands: Sequence[Command] = ()
    revisions: Mapping[str, str] = field(default_factory=dict)  # version -> spec hash
    route_gate: bool = True
    check: CheckReport | None = None  # the latest finished check for this model
    # --max-concurrent-rollouts: whether this model may start a rollout now, else the
    # rollouts in flight and the limit (for the message).
    may_start: bool = True
    queue: tuple[int, int] | None = None  # (in flight, limit)

    def ready(self, version: str | None) -> bool:
        return version is not None and self.versions.get(version, VersionObservation()).ready

    def of(self, version: str) -> VersionObservation:
        return self.versions.get(version, VersionObservation())


@dataclass(frozen=True)
class Plan:
    status: ManagedModelStatus  # the rollout's part of the next status
    weights: dict[str, int]  # empty: no route yet
    replicas: dict[str, int]  # Shared capacity: pinned replicas per version
    stopped: frozenset[str]
    events: list[Event]
    consumed: list[str]  # annotation keys to remove
    message: str  # what the rollout is doing or waiting for
    requeue_after: float | None  # seconds until a deadline or interval; None: idle
    check: CheckRequest | None = None  # a check to run now
    reason: str | None = None  # why the rollout failed or paused, one CamelCase word
    matched: str | None = None  # gets the requests matching spec.rollout.match
    mirrored: str | None = None  # gets a copy of the stable's requests (Shadow)
    floors: dict[str, int] = field(default_factory=dict)  # least replicas (BlueGreen)
