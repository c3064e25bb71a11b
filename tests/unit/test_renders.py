"""The render memo: a reconcile that reuses the last render writes exactly what one that
renders afresh writes, and any changed input renders again."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from modelpilot.api import parse_managed_model
from modelpilot.handlers.renders import RenderMemo
from modelpilot.render import RenderState, VersionState, default_render_state
from modelpilot.runtimes import default_runtimes
from modelpilot_dev.memory_cluster import Write
from tests.unit.test_manage import MODEL, World

OWNER_UID = "0000-1"


def rollout_with_a_mid_rollout_edit(world: World) -> list[Write]:
    """v1 becomes stable; v2 rolls out step by step; its storageUri is edited at the
    first step; a person promotes it."""
    world.converge()
    world.set_target("v2")
    world.converge()

    def edit_v2(m: dict[str, Any]) -> None:
        m["spec"]["versions"][1]["storageUri"] = "gs://bucket/iris/v2-fixed"

    world.edit(edit_v2)
    world.converge()
    world.reconcile(after=31)
    world.converge()
    world.annotate("modelpilot.io/promote", "v2")
    world.converge()
    world.reconcile(after=31)
    world.converge()
    return world.cluster.writes


def test_a_rollout_writes_the_same_with_the_memo_as_without() -> None:
    memo = RenderMemo()
    # One uid for both: the owner references in the writes compare equal.
    plain = rollout_with_a_mid_rollout_edit(World(model_doc()))
    memoized = rollout_with_a_mid_rollout_edit(World(model_doc(), renders=memo))
    assert memoized == plain
    assert [w.verb for w in plain].count("apply") >= 8  # the scenario moved traffic
    # Most reconciles rendered nothing new: the memo served them.
    assert memo.hits > memo.misses > 0


def model_doc(change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(MODEL)
    doc["metadata"]["uid"] = OWNER_UID
    if change is not None:
        change(doc)
    return doc


def test_equal_inputs_get_the_same_children_and_a_changed_one_renders_again() -> None:
    memo, runtimes = RenderMemo(), default_runtimes()
    model = parse_managed_model(model_doc())
    state = default_render_state(model)
    serving = memo.serving(model, runtimes, True)
    rendered = memo.render(model, state, serving)

    # The next reconcile parses the model again: equal, not the same object.
    again = parse_managed_model(model_doc())
    assert memo.serving(again, runtimes, True) is serving
    assert memo.render(again, default_render_state(again), serving) is rendered

    moved = RenderState(
        versions={
            **state.versions,
            "v1": VersionState(weight=90, pinned=True),
            "v2": VersionState(weight=10, pinned=True),
        }
    )
    assert memo.render(again, moved, serving) is not rendered

    def new_uri(m: dict[str, Any]) -> None:
        m["spec"]["versions"][0]["storageUri"] = "gs://bucket/iris/v1-fixed"

    edited = parse_managed_model(model_doc(new_uri))
    planned = memo.serving(edited, runtimes, True)
    assert planned is not serving
    assert "v1-fixed" in str(memo.render(edited, state, planned).objects)
    assert memo.serving(edited, runtimes[::-1], True) is not planned
    assert memo.serving(edited, runtimes[::-1], False) is not planned


def test_children_are_owned_again_by_a_model_created_again_under_its_name() -> None:
    memo, runtimes = RenderMemo(), default_runtimes()
    model = parse_managed_model(model_doc())
    serving = memo.serving(model, runtimes, True)
    rendered = memo.render(model, default_render_state(model), serving)
    owner = {**model_doc(), "metadata": {**model_doc()["metadata"]}}
    first = memo.owned(model, rendered, owner)
    assert memo.owned(model, rendered, owner) is first
    owner["metadata"]["uid"] = "0000-2"
    second = memo.owned(model, rendered, owner)
    assert {ref["uid"] for o in second for ref in o["metadata"]["ownerReferences"]} == {"0000-2"}


def test_only_the_most_recently_reconciled_models_are_kept() -> None:
    memo, runtimes = RenderMemo(models_kept=2), default_runtimes()
    plans = {}
    for name in ("a", "b", "c"):
        doc = model_doc()
        doc["metadata"]["name"] = name
        model = parse_managed_model(doc)
        plans[name] = (model, memo.serving(model, runtimes, True))
    a, a_plan = plans["a"]
    c, c_plan = plans["c"]
    assert memo.serving(c, runtimes, True) is c_plan
    assert memo.serving(a, runtimes, True) is not a_plan  # the oldest went first


def test_a_model_at_rest_gives_its_entry_up() -> None:
    memo, runtimes = RenderMemo(), default_runtimes()
    model = parse_managed_model(model_doc())
    serving = memo.serving(model, runtimes, True)
    assert len(memo) == 1
    memo.forget(model.namespace, model.name)
    assert len(memo) == 0
    assert memo.serving(model, runtimes, True) is not serving
