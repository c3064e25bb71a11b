"""Status conditions in the Kubernetes shape, so `kubectl wait --for=condition=Ready`
works; a condition's lastTransitionTime moves only when its status does."""

from __future__ import annotations

from typing import Literal

from modelpilot.api.status import Condition


def set_condition(
    conditions: list[Condition],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[Condition]:
    value: Literal["True", "False"] = "True" if status else "False"
    previous = next((c for c in conditions if c.type == kind), None)
    moved = previous is None or previous.status != value
    updated = Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        # `previous is None` implies moved: spelled out for the type checker.
        last_transition_time=now if moved or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != kind] + [updated]


def condition_of(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)
