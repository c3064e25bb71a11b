"""ABTest and BlueGreen in the phase machine and the route: the candidate is exposed
by match rules only, for `iterations` intervals, then takes all traffic at once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelpilot.api import InvalidManagedModel, parse_managed_model
from modelpilot.k8s.observe import route_weights
from modelpilot.render import RenderState, VersionState, render_model
from modelpilot.rollout import VersionObservation
from modelpilot.runtimes import default_runtimes
from tests.unit.conftest import BASE
from tests.unit.test_rollout_machine import Run, ready, spec, stable_on_v1

BETA = [{"headers": [{"name": "x-beta", "value": "yes"}]}]


def test_ab_test_exposes_the_candidate_by_match_for_its_iterations_then_promotes() -> None:
    run = stable_on_v1(spec(strategy="ABTest", match=BETA, iterations=2, promotion="auto"))
    plan = run.step()
    assert run.phase == "Progressing" and run.reasons() == ["RolloutStarted", "CandidateExposed"]
    assert (plan.weights, plan.matched) == ({"v1": 100}, "v2")
    assert run.status.matched_version == "v2" and run.status.canary_weight == 0
    plan = run.step(61)
    assert (plan.weights, plan.matched, run.status.step_index) == ({"v1": 100}, "v2", 1)
    plan = run.step(61)
    assert plan.weights == {"v2": 100} and plan.matched is None  # all at once
    run.step(1)
    assert (run.phase, run.status.stable_version) == ("Stable", "v2")


def test_ab_test_unready_candidate_gets_no_matched_traffic() -> None:
    run = stable_on_v1(spec(strategy="ABTest", match=BETA))
    plan = run.step(versions=ready("v1") | {"v2": VersionObservation(message="0/1 pods")})
    assert plan.matched is None and "waiting for canary v2" in plan.message
    plan = run.step(5)
    assert plan.matched == "v2"
    plan = run.step(1, versions=ready("v1") | {"v2": VersionObservation(message="crashed")})
    assert plan.matched is None and plan.weights == {"v1": 100}


def test_ab_test_abort_and_pause_resume_keep_the_iteration() -> None:
    run = stable_on_v1(spec(strategy="ABTest", match=BETA, iterations=3))
    run.step()
    run.step(61)
    assert run.status.step_index == 1
    run.step(1, commands={"modelpilot.io/pause": "v2"})
    plan = run.step(600)
    assert run.phase == "Paused" and plan.matched == "v2" and run.status.step_index == 1
    run.step(1, commands={"modelpilot.io/resume": "v2"})
    assert run.phase == "Progressing" and run.status.step_index == 1
    plan = run.step(1, commands={"modelpilot.io/abort": "v2"})
    assert run.phase == "Aborted" and plan.matched is None and plan.weights == {"v1": 100}


def test_blue_green_warms_the_candidate_to_stables_replicas_then_switches() -> None:
    run = stable_on_v1(spec(strategy="BlueGreen", iterations=1, promotion="auto"))
    plan = run.step(versions=ready("v1", replicas=3) | ready("v2", replicas=1))
    assert plan.floors == {"v2": 3} and plan.weights == {"v1": 100}
    assert plan.message == (
        "waiting for 3 v2 pods, the stable's count, before it is exposed (1 available)"
    )
    assert plan.matched is None  # no match rules: no preview
    plan = run.step(5, versions=ready("v1", "v2", replicas=3))
    assert run.reasons() == ["CandidateExposed"] and plan.weights == {"v1": 100}
    plan = run.step(61, versions=ready("v1", "v2", replicas=3))
    assert plan.weights == {"v2": 100}


def test_blue_green_never_warm_enough_fails_at_the_deadline() -> None:
    run = stable_on_v1(spec(strategy="BlueGreen", progressDeadline="2m"))
    run.step(versions=ready("v1", replicas=2) | ready("v2", replicas=1))
    run.step(121, versions=ready("v1", replicas=2) | ready("v2", replicas=1))
    assert run.phase == "Failed" and run.plan is not None and run.plan.weights == {"v1": 100}


def document(**rollout: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"]["rollout"] = {"target": "v2", **rollout}
    return doc


def test_admission_rules_for_strategies() -> None:
    with pytest.raises(InvalidManagedModel, match="strategy ABTest needs match"):
        parse_managed_model(document(strategy="ABTest"))
    with pytest.raises(InvalidManagedModel, match="needs capacity Surge"):
        parse_managed_model(document(strategy="BlueGreen", capacity="Shared"))
    bad = [{"headers": [{"name": "Cookie", "value": "beta=(", "type": "RegularExpression"}]}]
    with pytest.raises(InvalidManagedModel, match=r"match\[0\]\.headers\[0\]\.value"):
        parse_managed_model(document(strategy="ABTest", match=bad))
    with pytest.raises(InvalidManagedModel, match="at least one header or query parameter"):
        parse_managed_model(document(strategy="ABTest", match=[{}]))


def test_the_route_sends_matches_to_the_candidate_and_the_pin_wins() -> None:
    cookie = {"name": "Cookie", "value": ".*beta=1.*", "type": "RegularExpression"}
    match = [{"headers": [cookie]}, {"queryParams": [{"name": "variant", "value": "b"}]}]
    model = parse_managed_model(document(strategy="ABTest", match=match))
    state = RenderState(
        versions={"v1": VersionState(weight=100, pinned=True), "v2": VersionState(pinned=True)},
        matched="v2",
    )
    route = next(
        o
        for o in render_model(model, state, default_runtimes()).objects
        if o["kind"] == "HTTPRoute"
    )
    rules = route["spec"]["rules"]
    pin = {"type": "Exact", "name": "x-model-version", "value": "v1"}
    assert rules[0]["matches"] == [
        {"headers": [pin]},
        {"headers": [pin, {"type": "RegularExpression", "name": "Cookie", "value": ".*beta=1.*"}]},
        {"headers": [pin], "queryParams": [{"type": "Exact", "name": "variant", "value": "b"}]},
    ]
    ab = rules[2]
    assert ab["backendRefs"] == [{"name": "iris-v2-predictor", "port": 80}]
    assert ab["matches"] == [
        {"headers": [{"type": "RegularExpression", "name": "Cookie", "value": ".*beta=1.*"}]},
        {"queryParams": [{"type": "Exact", "name": "variant", "value": "b"}]},
    ]
    assert rules[3]["backendRefs"] == [{"name": "iris-v1-predictor", "port": 80, "weight": 100}]
    assert route_weights(route, "iris") == {"v1": 100}  # the A/B rule is not the split


def test_an_ab_test_resumes_its_iteration_after_a_restart() -> None:
    """Status is the only memory: a new operator reading it carries on where the old one
    was, with the same audience on the candidate."""
    model = spec(strategy="ABTest", match=BETA, iterations=3)
    run = stable_on_v1(model)
    run.step()
    run.step(61)
    assert run.status.step_index == 1
    restarted = Run(model, run.status)
    restarted.now = run.now
    plan = restarted.step(30)
    assert (plan.matched, plan.weights, restarted.status.step_index) == ("v2", {"v1": 100}, 1)
    assert restarted.reasons() == []  # nothing started again
    plan = restarted.step(31)
    assert restarted.status.step_index == 2 and plan.matched == "v2"
