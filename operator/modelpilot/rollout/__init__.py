"""The canary phase machine, pure: spec, status, observations and the time in; the next
status, the route weights, replica pins and stopped versions out."""

from modelpilot.api.events import Event
from modelpilot.rollout.commands import Command, parse_commands
from modelpilot.rollout.durations import stamp
from modelpilot.rollout.machine import decide
from modelpilot.rollout.types import (
    CheckReport,
    CheckRequest,
    Observations,
    Plan,
    VersionObservation,
)

__all__ = [
    "CheckReport",
    "CheckRequest",
    "Command",
    "Event",
    "Observations",
    "Plan",
    "VersionObservation",
    "decide",
    "parse_commands",
    "stamp",
]
