"""What a decision tells people: one Kubernetes Event on the ManagedModel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str
    stops: str | None = None  # the version whose stop it announces (posted when it happens)
