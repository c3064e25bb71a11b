"""Leader election's rules on an in-memory Lease with a hand-driven clock: at no moment
may two replicas write, a standby takes over only after the leader's fence closed, a
release hands over at once."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from modelpilot.k8s.leader import (
    LeaderElector,
    LeaseTiming,
    NotLeading,
    claimed,
    next_step,
)
from modelpilot_dev.memory_cluster import MemoryLeaseStore

TIMING = LeaseTiming(duration=15, renew_deadline=10, retry_period=2)
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(store: MemoryLeaseStore, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(store, identity, TIMING, clock=clock, wall_clock=lambda: NOW)


def lease(holder: str | None, duration: int = 15) -> dict[str, object]:
    spec: dict[str, object] = {"leaseDurationSeconds": duration}
    if holder:
        spec["holderIdentity"] = holder
    return {"metadata": {"resourceVersion": "7"}, "spec": spec}


@pytest.mark.parametrize(
    ("record", "unchanged_for", "step"),
    [
        (None, 0, "create"),
        (lease("a"), 100, "renew"),  # our own: renew, however old
        (lease(None), 0, "take"),  # released
        (lease("b"), 14.9, "wait"),
        (lease("b"), 15, "take"),  # not renewed for its duration, by our clock
    ],
)
def test_next_step(record: dict[str, object] | None, unchanged_for: float, step: str) -> None:
    assert next_step(record, "a", unchanged_for) == step  # type: ignore[arg-type]


def test_a_takeover_counts_a_transition_and_keeps_the_version_read() -> None:
    taken = claimed(lease("b"), "a", TIMING, NOW, name="m", namespace="ops")
    assert taken["spec"]["holderIdentity"] == "a"
    assert taken["spec"]["leaseTransitions"] == 1
    assert taken["spec"]["acquireTime"] == taken["spec"]["renewTime"]
    assert taken["metadata"]["resourceVersion"] == "7"
    renewed = claimed(taken, "a", TIMING, NOW + dt.timedelta(seconds=2), name="m", namespace="ops")
    assert renewed["spec"]["leaseTransitions"] == 1
    assert renewed["spec"]["acquireTime"] == taken["spec"]["acquireTime"]


def test_timing_must_leave_the_fence_inside_the_lease() -> None:
    with pytest.raises(ValueError, match="renew deadline < lease duration"):
        LeaseTiming(duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        LeaseTiming(duration=15, renew_deadline=10, retry_period=10)


def test_the_first_replica_leads_and_the_second_waits() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.attempt() and not b.attempt()
    with a.writing():
        pass
    with pytest.raises(NotLeading), b.writing():
        pass
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


def test_a_leader_that_stops_renewing_is_fenced_before_the_standby_takes_over() -> None:
    """Tick by tick from a leader's last renewal: the leader's fence closes at the
    renew deadline; the standby takes the Lease only once it has seen it unchanged for
    the lease duration; never both at once."""
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    a.attempt()
    b.attempt()  # b has seen a's record now
    fenced_at = took_at = None
    for _ in range(40):  # a is dead: only b tries
        clock.now += 0.5
        b_leads = b.attempt()
        assert not (a.may_write() and b.may_write())
        if fenced_at is None and not a.may_write():
            fenced_at = clock.now
        if took_at is None and b_leads:
            took_at = clock.now
    assert fenced_at == 110.0  # 100 + renew deadline
    assert took_at == 115.0  # 100 + lease duration, by b's clock
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1


def test_renewals_keep_a_leader_writing_and_the_standby_waiting() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    for _ in range(30):  # a minute of renewals every retry period
        assert a.attempt()
        assert not b.attempt()
        clock.now += TIMING.retry_period
    assert a.may_write() and not b.may_write()


def test_an_unreachable_apiserver_closes_the_fence_at_the_deadline() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a = elector(store, "a", clock)
    a.attempt()
    store.down = True
    clock.now += 9.9
    assert a.attempt() and a.may_write()  # still inside the renew deadline
    clock.now += 0.2
    assert not a.attempt()
    with pytest.raises(NotLeading), a.writing():
        pass
    store.down = False
    assert a.attempt()  # its own Lease, not yet taken: it leads again


def test_the_fence_closes_by_time_alone_while_a_renewal_hangs() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a = elector(store, "a", clock)
    a.attempt()
    clock.now += 10  # no attempt returned meanwhile
    assert not a.may_write()


def test_a_leader_that_finds_another_holder_stops_at_once() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a = elector(store, "a", clock)
    a.attempt()
    assert store.lease is not None
    store.lease["spec"]["holderIdentity"] = "b"  # e.g. a was paused past its lease
    assert not a.attempt() and not a.may_write()


def test_two_replicas_creating_at_once_elect_one() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    real_read = store.read
    store.read = lambda: None  # type: ignore[method-assign]  # both read "no Lease"
    assert a.attempt()
    assert not b.attempt()  # its create conflicts
    store.read = real_read  # type: ignore[method-assign]
    assert not (a.may_write() and b.may_write())


def test_a_release_waits_for_writes_in_flight_then_hands_over_at_once() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    a.attempt()
    b.attempt()

    async def release_during_a_write() -> list[str]:
        order: list[str] = []

        async def write() -> None:
            with a.writing():
                await asyncio.sleep(0.2)
                order.append("write done")

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        await a.release(drain=5)
        order.append("released")
        await writing
        return order

    assert asyncio.run(release_during_a_write()) == ["write done", "released"]
    assert not a.may_write()
    assert store.lease is not None and "holderIdentity" not in store.lease["spec"]
    assert b.attempt()  # no waiting for the lease duration


def test_a_releasing_replica_writes_nothing_more() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a = elector(store, "a", clock)
    a.attempt()
    asyncio.run(a.release())
    with pytest.raises(NotLeading), a.writing():
        pass
    assert not a.attempt()  # and does not take the Lease back
