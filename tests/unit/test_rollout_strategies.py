"""ABTest, Shadow and BlueGreen in the phase machine and the route: the candidate is
exposed by match rules or a copy of the requests, for `iterations` intervals, then takes
all traffic at once (or, a shadow with then: Canary, walks the canary steps)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelpilot.api import InvalidManagedModel, parse_managed_model
from modelpilot.k8s.observe import route_mirror, route_weights
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


# --- Shadow ----------------------------------------------------------------------------


def test_shadow_mirrors_for_its_iterations_then_waits_for_promotion() -> None:
    run = stable_on_v1(spec(strategy="Shadow", mirrorPercent=40, iterations=2))
    plan = run.step()
    assert run.reasons() == ["RolloutStarted", "CandidateExposed"]
    assert "gets a copy of 40% of v1's requests" in run.events()[-1]
    assert (plan.weights, plan.mirrored, plan.matched) == ({"v1": 100}, "v2", None)
    assert (run.status.mirrored_version, run.status.mirror_percent) == ("v2", 40)
    plan = run.step(61)
    assert (plan.mirrored, run.status.step_index) == ("v2", 1)
    plan = run.step(61)
    assert run.phase == "WaitingPromotion" and plan.weights == {"v1": 100}
    assert plan.mirrored == "v2"  # still watched until a human decides
    plan = run.step(1, commands={"modelpilot.io/promote": "v2"})
    plan = run.step(1)
    assert (run.phase, run.status.stable_version, plan.mirrored) == ("Stable", "v2", None)
    assert run.status.mirrored_version is None and run.status.mirror_percent is None


def test_shadow_then_canary_walks_the_steps_without_the_mirror() -> None:
    run = stable_on_v1(spec(strategy="Shadow", then="Canary", iterations=1, stepWeights=[20]))
    run.step()
    plan = run.step(61)
    assert run.reasons()[-2:] == ["ShadowPassed", "StepWeight"]
    assert (plan.weights, plan.mirrored) == ({"v1": 80, "v2": 20}, None)
    assert run.status.shadow_passed_at is not None and run.status.step_index == 0
    # A restart resumes the canary, not the shadow.
    restarted = Run(run.spec, run.status)
    restarted.now = run.now
    plan = restarted.step(1)
    assert (plan.weights, plan.mirrored, restarted.reasons()) == ({"v1": 80, "v2": 20}, None, [])


def test_shadow_of_an_unready_or_aborted_candidate_mirrors_nothing() -> None:
    run = stable_on_v1(spec(strategy="Shadow"))
    plan = run.step(versions=ready("v1") | {"v2": VersionObservation(message="0/1 pods")})
    assert plan.mirrored is None and "waiting for canary v2" in plan.message
    plan = run.step(5)
    assert plan.mirrored == "v2"
    plan = run.step(1, versions=ready("v1") | {"v2": VersionObservation(message="crashed")})
    assert plan.mirrored is None and plan.weights == {"v1": 100}
    plan = run.step(1, commands={"modelpilot.io/abort": "v2"})
    assert run.phase == "Aborted" and plan.mirrored is None


def test_shadow_under_shared_capacity_with_more_iterations_than_steps() -> None:
    run = stable_on_v1(spec(strategy="Shadow", capacity="Shared", iterations=4, stepWeights=[50]))
    run.step(versions=ready("v1", "v2", replicas=4))
    for _ in range(3):
        plan = run.step(61, versions=ready("v1", "v2", replicas=4))
    assert run.status.step_index == 3 and plan.replicas == {"v1": 2, "v2": 2}


def test_then_is_only_for_shadow() -> None:
    with pytest.raises(InvalidManagedModel, match=r"spec\.rollout\.then.*strategy Shadow"):
        parse_managed_model(document(strategy="Canary", then="Canary"))
    with pytest.raises(InvalidManagedModel, match="mirrorPercent"):
        parse_managed_model(document(strategy="Shadow", mirrorPercent=0))


def shadow_render(flavor: str, percent: int = 30) -> dict[tuple[str, str], dict[str, Any]]:
    model = parse_managed_model(document(strategy="Shadow", mirrorPercent=percent))
    state = RenderState(
        versions={"v1": VersionState(weight=100, pinned=True), "v2": VersionState(pinned=True)},
        mirrored="v2",
        gateway_flavor=flavor,  # type: ignore[arg-type]
    )
    rendered = render_model(model, state, default_runtimes()).objects
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered}


@pytest.mark.parametrize("flavor", ["envoy-gateway", "istio"])
def test_a_shadow_is_a_request_mirror_on_the_split_where_the_gateway_has_one(
    flavor: str,
) -> None:
    objects = shadow_render(flavor)
    assert [kind for kind, _ in objects] == [
        "InferenceService", "HorizontalPodAutoscaler",
        "InferenceService", "HorizontalPodAutoscaler", "HTTPRoute",
    ]  # fmt: skip
    rules = objects[("HTTPRoute", "iris")]["spec"]["rules"]
    assert all("filters" not in rule for rule in rules[:-1])  # pinned requests: no copy
    assert rules[-1]["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": "iris-v2-predictor", "port": 80},
                "percent": 30,
            },
        }
    ]
    full = shadow_render(flavor, percent=100)[("HTTPRoute", "iris")]["spec"]["rules"][-1]
    assert full["filters"][0]["requestMirror"] == {
        "backendRef": {"name": "iris-v2-predictor", "port": 80}
    }


def test_a_shadow_on_traefik_routes_through_a_mirroring_traefik_service() -> None:
    objects = shadow_render("traefik")
    mirror = objects[("TraefikService", "iris-v1-mirror")]
    assert mirror["apiVersion"] == "traefik.io/v1alpha1"
    assert mirror["spec"] == {
        "mirroring": {
            "name": "iris-v1-predictor",
            "port": 80,
            "mirrors": [{"name": "iris-v2-predictor", "port": 80, "percent": 30}],
        }
    }
    keys = list(objects)
    assert keys.index(("TraefikService", "iris-v1-mirror")) < keys.index(("HTTPRoute", "iris"))
    route = objects[("HTTPRoute", "iris")]
    split = route["spec"]["rules"][-1]
    assert "filters" not in split
    assert split["backendRefs"] == [
        {"group": "traefik.io", "kind": "TraefikService", "name": "iris-v1-mirror", "weight": 100}
    ]
    # The reads see the stable version behind the TraefikService.
    assert route_weights(route, "iris") == {"v1": 100}
    assert route_mirror(route) == "iris-v1-mirror"


def test_no_mirror_on_a_generic_gateway_or_once_the_candidate_has_weight() -> None:
    assert ("TraefikService", "iris-v1-mirror") not in shadow_render("generic")
    rules = shadow_render("generic")[("HTTPRoute", "iris")]["spec"]["rules"]
    assert all("filters" not in rule for rule in rules)
    model = parse_managed_model(document(strategy="Shadow"))
    split = RenderState(
        versions={"v1": VersionState(weight=80), "v2": VersionState(weight=20)},
        mirrored="v2",
        gateway_flavor="traefik",
    )
    kinds = [o["kind"] for o in render_model(model, split, default_runtimes()).objects]
    assert "TraefikService" not in kinds
