"""Time as status writes it: Go-style durations ("90s", "10m", "1h30m") as Kubernetes
users write them, and RFC 3339 stamps."""

from __future__ import annotations

import datetime as dt
import re

_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration; ValueError when the text is not one."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h30m")
    return sum(int(n) * _SECONDS[u] for n, u in parts)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def seconds_since(text: str | None, now: dt.datetime) -> float:
    """Seconds from a stamp to now; 0 without a stamp."""
    moment = parse_stamp(text)
    return (now - moment).total_seconds() if moment else 0.0
