"""Commands given by annotation on the ManagedModel, e.g. `modelpilot.io/promote: v2`.

A command names the version it is meant for, so a stale approval cannot act on a newer
candidate. Each is consumed once: the operator removes the annotation after acting.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "modelpilot.io/"
# The order commands are applied in when several arrive together: stopping wins over
# moving on, so "abort" and "promote" given at once abort.
NAMES = ("abort", "pause", "rollback", "retry", "resume", "set-weight", "promote")


@dataclass(frozen=True)
class Command:
    name: str
    version: str
    weight: int | None = None  # set-weight only
    error: str = ""  # a malformed value: refused with this reason

    @property
    def annotation(self) -> str:
        return PREFIX + self.name


def parse_commands(annotations: Mapping[str, str] | None) -> list[Command]:
    found: list[Command] = []
    for name in NAMES:
        value = (annotations or {}).get(PREFIX + name)
        if value is None:
            continue
        value = value.strip()
        if name != "set-weight":
            found.append(Command(name, value, error="" if value else "names no version"))
            continue
        version, sep, weight = value.partition("=")
        if not sep or not weight.strip().isdigit() or not 0 <= int(weight) <= 100:
            found.append(
                Command(name, version.strip(), error=f"{value!r} is not VERSION=PERCENT (0-100)")
            )
        else:
            found.append(Command(name, version.strip(), weight=int(weight)))
    return found


def unknown_commands(annotations: Mapping[str, str] | None) -> list[str]:
    """What to say of annotations under modelpilot.io/ that are no command (a typo
    would otherwise be ignored in silence, and stay)."""
    said = []
    for key in sorted(annotations or {}):
        if not key.startswith(PREFIX) or key[len(PREFIX) :] in NAMES:
            continue
        close = difflib.get_close_matches(key[len(PREFIX) :], NAMES, n=1)
        hint = f"did you mean {PREFIX}{close[0]}? " if close else ""
        said.append(
            f"annotation {key} is not a command and is ignored ({hint}commands: "
            f"{', '.join(NAMES)}); remove it"
        )
    return said
