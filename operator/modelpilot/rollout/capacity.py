"""Replica arithmetic for Shared capacity: the canary grows as the stable version
shrinks, so a rollout needs no spare GPUs (kserve#4748)."""

from __future__ import annotations

import math


def shared_replicas(base: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas at a canary weight, for a stable version that had `base`
    replicas when the rollout began. The stable version keeps at least one."""
    stable = max(1, math.ceil(base * (100 - weight) / 100))
    canary = max(1, math.ceil(base * weight / 100))
    return stable, canary
