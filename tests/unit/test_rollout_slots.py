"""--max-concurrent-rollouts: who may start a rollout, in what order, and what a model
waiting for a slot says; then two models sharing one slot through the real reconcile."""

from __future__ import annotations

import copy
from typing import Any

from modelpilot.api.spec import ManagedModelSpec
from modelpilot.api.status import ManagedModelStatus
from modelpilot.rollout.slots import RolloutSlots, wants_to_start
from tests.unit.test_manage import MODEL, World

A, B, C = ("ns", "a"), ("ns", "b"), ("ns", "c")


def spec(target: str) -> ManagedModelSpec:
    document = copy.deepcopy(MODEL["spec"])
    document["rollout"]["target"] = target
    return ManagedModelSpec.model_validate(document)


def status(**fields: Any) -> ManagedModelStatus:
    return ManagedModelStatus.model_validate(fields)


def test_who_wants_to_start_is_who_the_machine_would_start() -> None:
    assert wants_to_start(spec("v2"), status(phase="Stable", stableVersion="v1"))
    assert not wants_to_start(spec("v1"), status(phase="Stable", stableVersion="v1"))
    assert not wants_to_start(spec("v2"), status(phase="Pending"))  # nothing serves yet
    rolling = status(phase="Progressing", stableVersion="v1", canaryVersion="v2")
    assert not wants_to_start(spec("v3"), rolling)  # restarts in the slot it holds
    aborted = status(phase="Aborted", stableVersion="v1", canaryVersion="v2")
    assert not wants_to_start(spec("v2"), aborted)  # holds until the target moves
    assert wants_to_start(spec("v3"), aborted)


def test_waiting_models_start_in_the_order_they_first_waited() -> None:
    slots = RolloutSlots(1)
    slots.reseed({})
    assert slots.admit(A, rolling=False, wants=True, since="t1").may_start
    assert not slots.admit(C, rolling=False, wants=True, since="t2").may_start
    assert not slots.admit(B, rolling=False, wants=True, since="t3").may_start
    assert slots.settle(A, "Progressing") == []  # still rolling: keeps its slot
    assert slots.settle(A, "Stable") == [C]  # done: the first in line is woken
    assert not slots.admit(B, rolling=False, wants=True, since="t3").may_start  # not its turn
    assert slots.admit(C, rolling=False, wants=True, since="t2").may_start


def test_a_rollout_in_flight_keeps_its_slot_even_above_the_limit() -> None:
    slots = RolloutSlots(1)
    slots.reseed({A: status(phase="Progressing"), B: status(phase="Paused")})
    assert slots.admit(A, rolling=True, wants=False, since="t").may_start
    assert not slots.admit(C, rolling=False, wants=True, since="t").may_start
    assert slots.settle(A, "Stable") == []  # B still holds the only slot
    assert slots.settle(B, "Stable") == [C]


def test_no_rollout_starts_until_the_slots_are_counted() -> None:
    slots = RolloutSlots(2)
    assert not slots.admit(A, rolling=False, wants=True, since="t").may_start
    # Counted: A had waited since t, so it is woken with the free slots.
    assert slots.reseed({A: status(phase="Stable", queuedSince="t")}) == [A]
    assert slots.admit(A, rolling=False, wants=True, since="t").may_start
    slots.unseed()  # e.g. this replica lost the lead
    assert not slots.admit(B, rolling=False, wants=True, since="t").may_start


def test_a_model_that_no_longer_wants_to_start_leaves_the_line() -> None:
    slots = RolloutSlots(1)
    slots.reseed({})
    assert slots.admit(A, rolling=False, wants=True, since="t1").may_start
    assert not slots.admit(B, rolling=False, wants=True, since="t2").may_start
    slots.admit(B, rolling=False, wants=False, since="t2")  # its target was put back
    assert slots.settle(A, "Stable") == []
    assert slots.forget(C) == []


def test_without_a_limit_every_model_may_start() -> None:
    slots = RolloutSlots(None)
    assert all(slots.admit(k, rolling=False, wants=True, since="t").may_start for k in (A, B, C))


def test_a_model_waits_for_the_slot_another_holds_then_starts() -> None:
    """Its rollout waits, says why and since when, touches no traffic, keeps its place,
    and starts when the other model's rollout is done."""
    slots = RolloutSlots(1)
    slots.reseed({})
    other = ("ml", "fraud")
    assert slots.admit(other, rolling=True, wants=False, since="t").may_start
    world = World()
    world.converge()
    world.controllers.serve("v1", "v2")
    world.edit(lambda m: m["spec"]["rollout"].update(target="v2"))
    world.reconcile(slots=slots)
    waiting = world.status()
    assert waiting["phase"] == "Stable" and waiting["queuedSince"]
    assert world.route() == {"v1": 100}
    progressing = world.condition("Progressing")
    assert progressing["reason"] == "Queued"
    assert "waits for a slot: 1 of 1 rollouts in flight" in progressing["message"]
    assert world.writes_of(lambda: world.reconcile(slots=slots, after=5)) == []  # kept

    assert slots.settle(other, "Stable") == [("ml", "iris")]  # woken
    world.reconcile(slots=slots, after=1)
    started = world.status()
    assert started["phase"] == "Progressing" and "queuedSince" not in started
    assert started["canaryVersion"] == "v2"
    assert world.condition("Progressing")["reason"] == "Progressing"
