"""A limit on rollouts in flight at once (`--max-concurrent-rollouts`), so a fleet-wide
change cannot take every GPU for candidates at the same moment. Models that want to
start a rollout while the slots are taken queue in order (when each first waited, then
namespace/name) and start as slots free up. A model already rolling always holds its
slot, so a restart never stops a rollout in flight, even above a lowered limit.

Shared by every model's loop in one operator process (reconciles run in threads), hence
the lock; seeded from the models' statuses whenever the replica starts to lead (another
replica may have started rollouts meanwhile), and no rollout starts until it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from modelpilot.api.spec import ManagedModelSpec
from modelpilot.api.status import ManagedModelStatus
from modelpilot.rollout.machine import HALTED, ROLLING

Key = tuple[str, str]  # namespace, name


def wants_to_start(spec: ManagedModelSpec, status: ManagedModelStatus) -> bool:
    """Whether the phase machine would start a rollout now (as _follow_target does): a
    serving model whose target is neither its stable version nor a halted candidate."""
    target, stable = spec.target, status.stable_version
    if stable is None or target == stable:
        return False
    if status.phase in ROLLING:
        return False  # a target change mid-rollout restarts it in the slot it holds
    if status.phase in HALTED:
        return target != status.canary_version
    return True


@dataclass(frozen=True)
class Admission:
    may_start: bool
    in_flight: int = 0


class RolloutSlots:
    def __init__(self, limit: int | None) -> None:
        self.limit = limit  # None: no limit
        self._holders: set[Key] = set()
        self._waiting: dict[Key, str] = {}  # key -> since when (RFC 3339)
        self._lock = threading.Lock()
        self.seeded = limit is None

    def unseed(self) -> None:
        """Counts may be stale (this replica did not lead): no start until reseed."""
        with self._lock:
            self.seeded = self.limit is None

    def reseed(self, statuses: dict[Key, ManagedModelStatus]) -> list[Key]:
        """What every model's status says: rolling, or waiting since when. Returns the
        waiting models, in order, to wake."""
        with self._lock:
            self._holders = {k for k, s in statuses.items() if s.phase in ROLLING}
            self._waiting = {
                k: s.queued_since
                for k, s in statuses.items()
                if s.queued_since and s.phase not in ROLLING
            }
            self.seeded = True
            return self._next_in_line()

    def admit(self, key: Key, rolling: bool, wants: bool, since: str) -> Admission:
        """rolling: the model's status says a rollout is in flight; wants: it would
        start one now; since: when it first waited (its status, else now)."""
        with self._lock:
            if self.limit is None or rolling:
                self._waiting.pop(key, None)
                if rolling:
                    self._holders.add(key)
                return Admission(True, in_flight=len(self._holders))
            if not wants:
                self._waiting.pop(key, None)
                self._holders.discard(key)
                return Admission(False, in_flight=len(self._holders))
            if not self.seeded:
                return Admission(False, in_flight=len(self._holders))
            if key in self._holders:
                return Admission(True, in_flight=len(self._holders))
            self._waiting.setdefault(key, since)
            line = sorted(self._waiting, key=lambda k: (self._waiting[k], k))
            position = line.index(key) + 1
            if len(self._holders) + position <= self.limit:
                self._waiting.pop(key)
                self._holders.add(key)
                return Admission(True, in_flight=len(self._holders))
            return Admission(False, in_flight=len(self._holders))

    def settle(self, key: Key, phase: str | None) -> list[Key]:
        """After a reconcile: a model no longer rolling frees its slot. Returns the
        waiting models to wake when a slot came free: as many as there are free slots,
        first in line first (a fleet-wide change queues thousands)."""
        with self._lock:
            if phase in ROLLING or key not in self._holders:
                return []
            self._holders.discard(key)
            return self._next_in_line()

    def forget(self, key: Key) -> list[Key]:
        """A deleted model: its slot and its place in the queue go."""
        with self._lock:
            self._waiting.pop(key, None)
            if key not in self._holders:
                return []
            self._holders.discard(key)
            return self._next_in_line()

    def _next_in_line(self) -> list[Key]:
        free = max(0, (self.limit or 0) - len(self._holders))
        return sorted(self._waiting, key=lambda k: (self._waiting[k], k))[:free]
