"""The reconcile (`manage`) against the in-memory cluster: what it writes, in which
order, and what a crash between two writes leaves behind.

KServe, the Deployment controller and the gateway do not run here; `Controllers` plays
what they would report (an InferenceService Ready on a rolled-out Deployment, a route
Accepted for its generation) only when a test asks it to.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from modelpilot.api import names
from modelpilot.api.kinds import (
    AUTOSCALER,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    MANAGED_MODEL,
    TRAEFIK_SERVICE,
)
from modelpilot.handlers.checks import Checks
from modelpilot.handlers.manage import Outcome, Settings, manage
from modelpilot.handlers.renders import RenderMemo
from modelpilot.k8s.observe import route_weights
from modelpilot.k8s.runtime_index import RuntimeIndex
from modelpilot.render import manifests
from modelpilot.rollout import CheckReport, CheckRequest, stamp
from modelpilot.rollout.slots import RolloutSlots
from modelpilot.runtimes import default_cluster_serving_runtimes
from modelpilot_dev.memory_cluster import Crash, MemoryCluster, Write

NS, NAME = "ml", "iris"
T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)

MODEL: dict[str, Any] = {
    "apiVersion": MANAGED_MODEL.api_version,
    "kind": MANAGED_MODEL.kind,
    "metadata": {"name": NAME, "namespace": NS},
    "spec": {
        "modelFormat": {"name": "sklearn"},
        "versions": [
            {"name": "v1", "storageUri": "gs://bucket/iris/v1"},
            {"name": "v2", "storageUri": "gs://bucket/iris/v2"},
            {"name": "v3", "storageUri": "gs://bucket/iris/v3"},
        ],
        "traffic": {"gatewayRef": {"name": "gw", "namespace": "gateways"}},
        "rollout": {"target": "v1", "stepWeights": [25, 50], "interval": "30s"},
    },
}


def serving_runtimes() -> RuntimeIndex:
    index = RuntimeIndex()
    index.replace_all(default_cluster_serving_runtimes())
    return index


class Controllers:
    """What KServe, the Deployment controller and the gateway would report."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster

    def serve(self, *versions: str) -> None:
        """The versions' InferenceServices Ready on rolled-out, available Deployments."""
        for version in versions:
            isvc_name = names.inference_service_name(NAME, version)
            isvc = self.cluster.object(INFERENCE_SERVICE, isvc_name, NS)
            assert isvc is not None, f"{isvc_name} was never applied"
            ready = {"type": "Ready", "status": "True"}
            url = f"http://{isvc_name}.{NS}.example.com"
            self.cluster.set_status(
                INFERENCE_SERVICE, isvc_name, NS, {"url": url, "conditions": [ready]}
            )
            model = isvc["spec"]["predictor"]["model"]
            container = {"name": "kserve-container", "args": model.get("args", [])}
            if "resources" in model:
                container["resources"] = model["resources"]
            self.cluster.put(
                {
                    "apiVersion": DEPLOYMENT.api_version,
                    "kind": DEPLOYMENT.kind,
                    "metadata": {
                        "name": names.predictor_name(NAME, version),
                        "namespace": NS,
                        "labels": names.common_labels(NAME, version),
                    },
                    "spec": {"replicas": 1, "template": {"spec": {"containers": [container]}}},
                }
            )
            self.cluster.set_status(
                DEPLOYMENT,
                names.predictor_name(NAME, version),
                NS,
                {
                    "observedGeneration": 1,
                    "replicas": 1,
                    "updatedReplicas": 1,
                    "availableReplicas": 1,
                },
            )

    def accept_route(self) -> None:
        route = self.cluster.object(HTTP_ROUTE, names.route_name(NAME), NS)
        if route is None:
            return
        accepted = {
            "type": "Accepted",
            "status": "True",
            "observedGeneration": route["metadata"]["generation"],
        }
        parents = [{"parentRef": {"name": "gw"}, "conditions": [accepted]}]
        self.cluster.set_status(HTTP_ROUTE, route["metadata"]["name"], NS, {"parents": parents})


class World:
    """One model in the in-memory cluster, reconciled at chosen moments."""

    def __init__(
        self, document: dict[str, Any] | None = None, renders: RenderMemo | None = None
    ) -> None:
        self.renders = renders  # None: each reconcile renders afresh
        self.cluster = MemoryCluster()
        self.controllers = Controllers(self.cluster)
        self.runtimes = serving_runtimes()
        self.now = T0
        self.settings = Settings()
        self.checks: Checks | None = None
        self.cluster.put(copy.deepcopy(document or MODEL))

    def reconcile(self, *, after: float = 0.0, slots: RolloutSlots | None = None) -> Outcome:
        self.now += dt.timedelta(seconds=after)
        return manage(
            self.cluster, NS, NAME, self.runtimes, self.settings, now=self.now,
            checks=self.checks, slots=slots, renders=self.renders,
        )  # fmt: skip

    def writes_of(self, step: Callable[[], object]) -> list[Write]:
        before = len(self.cluster.writes)
        step()
        return self.cluster.writes[before:]

    def converge(self, *, limit: int = 10) -> None:
        """Reconcile, letting the controllers report, until a reconcile writes nothing."""
        for _ in range(limit):
            self.controllers.serve(*self.applied_versions())
            self.controllers.accept_route()
            if not self.writes_of(self.reconcile):
                return
        raise AssertionError(f"no quiet reconcile in {limit}: {self.cluster.writes[-5:]}")

    def applied_versions(self) -> list[str]:
        return [
            o["metadata"]["labels"][names.VERSION_LABEL]
            for o in self.cluster.of_kind(INFERENCE_SERVICE)
            if o["metadata"]["labels"].get(names.MODEL_LABEL) == NAME
            and names.VERSION_LABEL in o["metadata"]["labels"]
        ]

    def model(self) -> dict[str, Any]:
        found = self.cluster.object(MANAGED_MODEL, NAME, NS)
        assert found is not None
        return found

    def status(self) -> dict[str, Any]:
        return self.model().get("status") or {}

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        """A user's edit of the ManagedModel (spec or annotations)."""
        model = self.model()
        change(model)
        self.cluster.put(model)

    def annotate(self, key: str, value: str) -> None:
        self.edit(lambda m: m["metadata"].setdefault("annotations", {}).update({key: value}))

    def set_target(self, version: str) -> None:
        self.edit(lambda m: m["spec"]["rollout"].update({"target": version}))

    def route(self) -> dict[str, int]:
        return route_weights(self.cluster.object(HTTP_ROUTE, names.route_name(NAME), NS), NAME)

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status().get("conditions", []) if c["type"] == kind)


def applied(writes: list[Write]) -> list[tuple[str, str]]:
    return [(w.kind, w.name) for w in writes if w.verb == "apply"]


def reasons(writes: list[Write]) -> list[str]:
    return [w.body.reason for w in writes if w.verb == "event"]


@pytest.fixture
def world() -> World:
    return World()


def stable_on_v1() -> World:
    world = World()
    world.converge()
    assert world.status()["phase"] == "Stable" and world.route() == {"v1": 100}
    return world


def test_a_model_created_again_never_routes_to_the_children_of_the_one_deleted() -> None:
    """Deleted and created again under its name before the garbage collector removed
    the old children (seen in the churn fault suite): the old InferenceService is Ready,
    but it is the deleted model's and about to go; the new model gives it no weight."""
    world = stable_on_v1()
    world.cluster.delete(MANAGED_MODEL, NAME, NS)
    world.cluster.put(copy.deepcopy(MODEL))  # a new uid; the old children all still there
    writes = world.writes_of(world.reconcile)
    assert ("HTTPRoute", names.route_name(NAME)) not in applied(writes)
    assert not world.status().get("weights")
    v1 = next(v for v in world.status()["versions"] if v["name"] == "v1")
    assert not v1["ready"] and "not this model's" in v1["message"]


def canary_at(weight: int) -> World:
    """v1 stable, v2 a ready canary at weight (a step of [25, 50])."""
    world = stable_on_v1()
    world.set_target("v2")
    world.converge()
    for _ in range(4):
        if world.status().get("canaryWeight") == weight:
            return world
        world.reconcile(after=31)
        world.converge()
    raise AssertionError(f"the canary never reached {weight}%: {world.status()}")


# --- create, converge, change ---------------------------------------------------------


def test_a_new_model_gets_its_children_and_a_route_only_once_its_target_is_ready(
    world: World,
) -> None:
    first = world.writes_of(world.reconcile)
    assert applied(first) == [
        (kind, f"iris-{v}")
        for v in ("v1", "v2", "v3")
        for kind in ("InferenceService", "HorizontalPodAutoscaler")
    ]
    assert world.route() == {}  # no route to nothing
    assert world.status()["phase"] == "Pending"
    assert world.condition("Ready")["status"] == "False"
    # Status, the decision, goes out before the children that carry it out.
    assert first[0].verb == "status"

    world.controllers.serve("v1")
    second = world.writes_of(world.reconcile)
    assert applied(second) == [("HTTPRoute", "iris")]
    assert world.route() == {"v1": 100}
    assert world.status()["phase"] == "Stable"
    assert "Serving" in reasons(second)
    hpa = world.cluster.object(AUTOSCALER, "iris-v1", NS)
    assert hpa is not None and hpa["metadata"]["ownerReferences"][0]["name"] == NAME


def test_a_converged_model_costs_no_write() -> None:
    world = stable_on_v1()
    assert world.writes_of(world.reconcile) == []
    assert world.writes_of(lambda: world.reconcile(after=3600)) == []


def test_a_model_deleted_mid_reconcile_gets_no_child_written_after() -> None:
    """The loop learns of the deletion from the watch while a reconcile runs in a
    thread: what that reconcile had not written yet stays unwritten (no route created
    for a model the user already deleted)."""
    world = World()
    world.reconcile()
    world.controllers.serve("v1")
    before = len(world.cluster.writes)

    def alive() -> bool:  # the deletion is seen right after the status write
        return not any(w.verb == "status" for w in world.cluster.writes[before:])

    writes = world.writes_of(
        lambda: manage(world.cluster, NS, NAME, world.runtimes, world.settings,
                       now=world.now, alive=alive)
    )  # fmt: skip
    assert writes[0].verb == "status"
    assert applied(writes) == []
    assert world.route() == {}
    # The same reconcile with the model alive creates the route.
    world.reconcile()
    assert world.route() == {"v1": 100}


def test_a_version_removed_from_the_spec_is_pruned() -> None:
    world = stable_on_v1()
    world.edit(lambda m: m["spec"]["versions"].pop())  # v3: never carried traffic
    writes = world.writes_of(world.reconcile)
    deleted = sorted((w.kind, w.name) for w in writes if w.verb == "delete")
    assert deleted == [("HorizontalPodAutoscaler", "iris-v3"), ("InferenceService", "iris-v3")]
    assert reasons(writes).count("Removed") == 2
    # The route only loses v3's pin rule; v1 and v2 are as they were.
    assert applied(writes) == [("HTTPRoute", "iris")]
    assert world.route() == {"v1": 100}
    assert world.cluster.object(INFERENCE_SERVICE, "iris-v1", NS) is not None
    assert world.writes_of(world.reconcile) == []  # and the prune is not repeated


def test_a_version_that_carries_traffic_cannot_be_removed() -> None:
    world = stable_on_v1()

    def drop_v1(model: dict[str, Any]) -> None:
        model["spec"]["versions"].pop(0)  # v1, the one serving
        model["spec"]["rollout"]["target"] = "v2"

    world.edit(drop_v1)
    writes = world.writes_of(world.reconcile)
    assert [w for w in writes if w.verb in ("apply", "delete")] == []
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "VersionInUse")
    assert "v1 still carries traffic" in degraded["message"]
    assert reasons(writes) == ["VersionInUse"]
    assert world.route() == {"v1": 100}
    assert world.writes_of(world.reconcile) == []  # said once


def test_a_name_someone_else_holds_is_not_taken(world: World) -> None:
    squatter = {
        "apiVersion": INFERENCE_SERVICE.api_version,
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {
            "name": "iris-v2",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "other",
                    "uid": "x",
                    "controller": True,
                }
            ],
        },
        "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}}}},
    }
    world.cluster.put(squatter)
    writes = world.writes_of(world.reconcile)
    assert ("InferenceService", "iris-v2") not in applied(writes)
    assert ("InferenceService", "iris-v1") in applied(writes)
    held = world.cluster.object(INFERENCE_SERVICE, "iris-v2", NS)
    assert held is not None and held["spec"] == squatter["spec"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NameConflict")
    assert "InferenceService iris-v2 is held by ConfigMap/other" in degraded["message"]
    assert reasons(writes).count("NameConflict") == 1


def test_an_invalid_spec_touches_no_child() -> None:
    world = stable_on_v1()
    world.edit(lambda m: m["spec"]["rollout"].update({"stepWeights": [50, 10]}))
    writes = world.writes_of(world.reconcile)
    assert [w.verb for w in writes] == ["status", "event"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "spec.rollout.stepWeights" in degraded["message"]
    assert world.writes_of(world.reconcile) == []  # no retry storm, no second Event
    assert world.route() == {"v1": 100}


def test_a_runtime_that_does_not_exist_degrades_with_traffic_unchanged() -> None:
    world = stable_on_v1()
    world.edit(lambda m: m["spec"].update({"runtime": "no-such-runtime"}))
    writes = world.writes_of(world.reconcile)
    assert [w.verb for w in writes] == ["status", "event"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NoRuntime")
    assert "spec.runtime" in degraded["message"] and "no-such-runtime" in degraded["message"]
    assert world.route() == {"v1": 100}


def test_a_runtime_the_operator_could_not_list_is_only_a_warning() -> None:
    """Without every runtime in view (RBAC, KServe's CRDs missing at start), a name the
    index lacks may well exist: rendered, with a warning, as before."""
    world = World()
    world.runtimes.replace_all(default_cluster_serving_runtimes(), complete=False)
    world.edit(lambda m: m["spec"].update({"runtime": "kserve-sklearnserver-custom"}))
    world.converge()
    assert world.route() == {"v1": 100}
    assert world.condition("Degraded")["status"] == "False"


# --- commands -------------------------------------------------------------------------


def test_a_command_is_carried_out_and_consumed() -> None:
    world = canary_at(50)
    world.reconcile(after=31)
    assert world.status()["phase"] == "WaitingPromotion"
    world.annotate("modelpilot.io/promote", "v2")
    writes = world.writes_of(world.reconcile)
    verbs = [w.verb for w in writes]
    # The decision, then the route that carries it, then the command consumed: two
    # writes from a person's promote to the route.
    assert verbs.index("status") < verbs.index("apply") < verbs.index("metadata")
    assert verbs.index("metadata") < verbs.index("event")
    consumed = next(w.body for w in writes if w.verb == "metadata")
    assert consumed == {"annotations": {"modelpilot.io/promote": None}}
    assert "modelpilot.io/promote" not in world.model()["metadata"].get("annotations", {})
    last = world.status()["lastCommand"]
    assert (last["name"], last["version"], last["outcome"]) == ("promote", "v2", "applied")
    assert world.route() == {"v2": 100}
    world.converge()
    assert world.status()["phase"] == "Stable" and world.status()["stableVersion"] == "v2"


def test_a_stale_command_is_refused_and_consumed() -> None:
    world = canary_at(25)
    world.annotate("modelpilot.io/promote", "v3")  # meant for another candidate
    writes = world.writes_of(world.reconcile)
    last = world.status()["lastCommand"]
    assert last["outcome"] == "refused: meant for v3, but the canary is v2"
    assert "CommandPromote" in reasons(writes)
    warning = next(
        w.body for w in writes if w.verb == "event" and w.body.reason == "CommandPromote"
    )
    assert warning.type == "Warning"
    assert "modelpilot.io/promote" not in world.model()["metadata"].get("annotations", {})
    assert world.route() == {"v1": 75, "v2": 25}  # traffic unchanged
    assert world.status()["phase"] == "Progressing"


# --- rendering ------------------------------------------------------------------------


def test_each_inference_service_is_rendered_once_per_reconcile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: dict[str, int] = {}
    for name in ("render_template", "render_fragment"):
        original = getattr(manifests, name)

        def counted(template: str, /, _original: Any = original, **context: Any) -> Any:
            counts[template] = counts.get(template, 0) + 1
            return _original(template, **context)

        monkeypatch.setattr(manifests, name, counted)
    world.reconcile()
    assert counts["inference_service.yaml.j2"] == 3
    assert counts["served_model.yaml.j2"] == 3


# --- crashes between writes -----------------------------------------------------------

# Each scenario: a world about to move traffic forward, and what makes the next reconcile
# move it.


def interval_passes(world: World) -> None:
    world.now += dt.timedelta(seconds=31)


def promote_requested(world: World) -> None:
    world.reconcile(after=31)  # the last step held: WaitingPromotion
    world.annotate("modelpilot.io/promote", "v2")


def target_turns_ready(world: World) -> None:
    world.reconcile()
    world.controllers.serve("v1")


SCENARIOS: dict[str, tuple[Callable[[], World], Callable[[World], None]]] = {
    "step 25 -> 50": (lambda: canary_at(25), interval_passes),
    "promote 50 -> 100": (lambda: canary_at(50), promote_requested),
    "first route": (World, target_turns_ready),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_crash_between_any_two_writes_never_moves_traffic_back(scenario: str) -> None:
    """Kill the operator before each write of the reconcile that moves traffic forward;
    the restarted operator (the same store; its cache rebuilt from its watches) must
    carry the move out, and never write the weights the rollout had already left."""
    make, move = SCENARIOS[scenario]
    probe = make()
    move(probe)
    left = probe.route()
    moving = probe.writes_of(probe.reconcile)
    moved_to = probe.route()
    assert moved_to != left, "the reconcile under test moves traffic"
    for crash_point, write in enumerate(moving):
        world = make()
        move(world)
        world.cluster.crash_before = len(world.cluster.writes) + crash_point
        with pytest.raises(Crash):
            world.reconcile()
        world.cluster.crash_before = None
        routes: list[dict[str, int]] = []
        for _ in range(5):  # the restarted operator, the gateway reporting in between
            world.controllers.accept_route()
            routes += [
                route_weights(w.body, NAME)
                for w in world.writes_of(world.reconcile)
                if w.verb == "apply" and w.kind == HTTP_ROUTE.kind
            ]
        at = f"killed before write {crash_point} ({write.verb} {write.kind})"
        assert left not in routes, f"{at}: traffic went back to {left}: {routes}"
        assert world.route() == moved_to, f"{at}: the move was lost"


def test_the_twin_dies_where_it_is_told() -> None:
    # The crash test above is only as good as the twin's crash: it must stop the writes.
    world = World()
    world.cluster.crash_before = 1
    with pytest.raises(Crash):
        world.reconcile()
    assert [w.verb for w in world.cluster.writes] == ["status"]


@pytest.mark.parametrize("written", [1, 2], ids=["after-status", "after-status-and-route"])
def test_a_command_seen_again_after_a_crash_is_consumed_without_a_refusal(written: int) -> None:
    world = canary_at(50)
    promote_requested(world)
    world.cluster.crash_before = len(world.cluster.writes) + written  # before consuming
    with pytest.raises(Crash):
        world.reconcile()
    world.cluster.crash_before = None
    assert "modelpilot.io/promote" in world.model()["metadata"]["annotations"]
    writes = world.writes_of(world.reconcile)
    assert "modelpilot.io/promote" not in world.model()["metadata"].get("annotations", {})
    assert world.status()["lastCommand"]["outcome"] == "applied"
    assert "CommandPromote" not in reasons(writes)


# --- analysis -------------------------------------------------------------------------


class ChecksTwin:
    """The check runner's in-memory twin: records what the reconcile asks and tells,
    answers with the report a test sets."""

    def __init__(self) -> None:
        self.asked: list[tuple[CheckRequest, dict[str, Any] | None]] = []
        self.revisions: list[dict[str, str] | None] = []  # Knative mode's, per request
        self.told: list[tuple[str, dict[str, Any]]] = []
        self.report: CheckReport | None = None

    def latest(self, key: tuple[str, str]) -> CheckReport | None:
        return self.report

    def request(
        self,
        key: tuple[str, str],
        model: Any,
        check: CheckRequest,
        route: dict[str, Any] | None,
        revisions: dict[str, str] | None = None,
    ) -> None:
        self.asked.append((check, route))
        self.revisions.append(revisions)

    def notify(self, model: Any, hook_type: str, payload: dict[str, Any]) -> None:
        self.told.append((hook_type, payload))


def test_failed_checks_reported_by_the_runner_roll_the_canary_back_and_notify() -> None:
    document = copy.deepcopy(MODEL)
    document["spec"]["rollout"]["analysis"] = {
        "metrics": [{"name": "ok", "template": "success-rate", "min": 95}]
    }
    document["spec"]["rollout"]["webhooks"] = [
        {"name": "pager", "type": "rollback", "url": "http://pager.ops.svc/"},
        {"name": "outside", "type": "event", "url": "http://example.com/hook"},
    ]
    world = World(document)
    twin = world.checks = ChecksTwin()
    world.converge()
    assert (
        "spec.rollout.webhooks[1] (outside): example.com is not allowed"
        in (world.condition("Degraded")["message"])
    )
    world.set_target("v2")
    world.converge()
    assert world.route() == {"v1": 75, "v2": 25} and twin.asked == []
    world.reconcile(after=30)
    check, route = twin.asked[-1]
    assert (check.canary, check.stable, check.weight, check.kind) == ("v2", "v1", 25, "analysis")
    assert route is not None and route["metadata"]["name"] == NAME  # for Envoy's indices
    for _ in range(2):
        twin.report = CheckReport(
            canary="v2", weight=25, at=stamp(world.now), result="Failed",
            message="ok 60 < min 95",
        )  # fmt: skip
        world.reconcile(after=1)
    assert world.route() == {"v1": 100}
    assert world.status()["phase"] == "Failed"
    assert world.condition("Degraded")["reason"] == "AnalysisFailed"
    assert [kind for kind, _ in twin.told].count("rollback") == 1
    rollback = next(payload for kind, payload in twin.told if kind == "rollback")
    assert rollback == {"phase": "Failed", "stable": "v1", "canary": "v2", "weight": 0}


def test_a_version_is_stopped_only_once_the_gateway_accepted_a_route_without_it() -> None:
    """After a promotion the old version's pin rule goes first; its server stops only
    when the gateway has accepted the route without it, or a client pinned to it would
    get 502s in between (seen under load, even with the route written first)."""
    world = canary_at(50)
    world.annotate("modelpilot.io/promote", "v2")
    world.converge()
    assert world.status()["stableVersion"] == "v2"
    first = applied(world.writes_of(lambda: world.reconcile(after=601)))  # window over
    assert first == [("HTTPRoute", "iris")]
    assert "iris-v1-predictor" not in str(world.cluster.object(HTTP_ROUTE, "iris", NS))
    assert not any(v["stopped"] for v in world.status()["versions"] if v["name"] == "v1")
    assert applied(world.writes_of(world.reconcile)) == []  # not accepted yet: still waits
    world.controllers.accept_route()
    # Accepted is not yet switched: the gateway's data plane follows its status, so the
    # pods stay the drain delay longer, counted from the first sight of it.
    outcome = world.reconcile()
    assert world.writes_of(world.reconcile) == []  # nothing, the ScaledDown Event neither
    assert outcome.requeue_after == world.settings.drain_delay == 5.0
    v1 = next(v for v in world.status()["versions"] if v["name"] == "v1")
    assert not v1["stopped"] and v1["unroutedAt"] == stamp(world.now)
    assert applied(world.writes_of(lambda: world.reconcile(after=4))) == []
    second = world.writes_of(lambda: world.reconcile(after=1))
    assert ("InferenceService", "iris-v1") in applied(second)
    assert reasons(second).count("ScaledDown") == 1  # told once, when it happens
    stopped = world.cluster.object(INFERENCE_SERVICE, "iris-v1", NS)
    assert stopped is not None
    assert stopped["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
    assert any(v["stopped"] for v in world.status()["versions"] if v["name"] == "v1")


def test_a_misspelt_command_is_named_in_the_degraded_message_not_ignored_in_silence() -> None:
    world = stable_on_v1()
    world.annotate("modelpilot.io/promte", "v2")
    world.reconcile()
    degraded = world.condition("Degraded")
    assert degraded["status"] == "False"
    assert degraded["message"] == (
        "annotation modelpilot.io/promte is not a command and is ignored (did you mean "
        "modelpilot.io/promote? commands: abort, pause, rollback, retry, resume, set-weight, "
        "promote); remove it"
    )
    assert world.route() == {"v1": 100}  # nothing else changes


def test_a_child_the_apiserver_refuses_is_reported_once_and_not_retried() -> None:
    world = World()
    message = 'HorizontalPodAutoscaler "iris-v1" is invalid: spec.behavior: Unsupported value'
    world.cluster.reject["HorizontalPodAutoscaler"] = message
    outcome = world.reconcile()  # must not raise: no traceback, no backoff loop
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildRejected")
    assert message in degraded["message"] and "fix the spec" in degraded["message"]
    assert outcome.requeue_after is None
    assert reasons(world.cluster.writes).count("ChildRejected") == 1
    # The same spec again: nothing written, nothing posted.
    assert world.writes_of(world.reconcile) == []
    assert world.writes_of(lambda: world.reconcile(after=3600)) == []
    # A spec change (the fix) is tried again; accepted now, the condition clears.
    del world.cluster.reject["HorizontalPodAutoscaler"]
    world.edit(lambda m: m["spec"].update({"autoscaling": {"maxReplicas": 2}}))
    world.controllers.serve("v1")
    world.converge()
    assert world.condition("Degraded")["status"] == "False"
    assert world.status()["phase"] == "Stable"


def test_a_first_version_past_its_deadline_degrades_once_and_recovers() -> None:
    world = World()
    world.reconcile()
    world.reconcile(after=601)  # the default progressDeadline is 10m
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert "v1 was not ready within 10m" in degraded["message"]
    world.reconcile(after=30)
    assert reasons(world.cluster.writes).count("ProgressDeadlineExceeded") == 1
    world.converge()
    assert world.status()["phase"] == "Stable"
    assert world.condition("Degraded")["status"] == "False"


def test_a_waiting_model_looks_again_only_while_short_of_pods() -> None:
    """Readiness arrives as watched children's events, except the scheduler's reason,
    read from pods: only a version short of pods is looked at again on a timer."""
    world = World()
    outcome = world.reconcile()  # nothing reported yet: the progress deadline's wake
    assert world.status()["phase"] == "Pending" and outcome.requeue_after == 600
    world.controllers.serve("v1")
    deployment = names.predictor_name(NAME, "v1")
    world.cluster.set_status(
        DEPLOYMENT, deployment, NS, {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    )
    outcome = world.reconcile(after=10)
    assert world.status()["phase"] == "Pending"
    assert outcome.requeue_after == 30  # its pods' reason can change with no event


# --- shadows ---------------------------------------------------------------------------


def shadow_world(flavor: str) -> World:
    document = copy.deepcopy(MODEL)
    document["spec"]["rollout"].update({"strategy": "Shadow", "mirrorPercent": 20})
    world = World(document)
    world.settings = Settings(gateway_flavor=flavor)  # type: ignore[arg-type]
    return world


def test_a_shadow_on_traefik_settles_its_traefik_service_before_and_after_routing() -> None:
    """Traefik loads routes and TraefikServices through two providers, each on its own
    delay: the route names the TraefikService only once it has stood for
    mirror_settle, which is deleted only mirror_settle after a route without it."""
    world = shadow_world("traefik")
    world.converge()
    world.set_target("v2")
    mirror = ("TraefikService", "iris-v1-mirror")
    writes = applied(world.writes_of(world.reconcile))
    assert mirror in writes
    assert "TraefikService" not in str(world.cluster.object(HTTP_ROUTE, "iris", NS))
    status = world.status()
    assert (status["mirroredVersion"], status["mirrorPercent"]) == ("v2", 20)
    assert [e["name"] for e in status["mirrorObjects"]] == ["iris-v1-mirror"]
    world.converge()  # nothing moves before the settle time
    assert "TraefikService" not in str(world.cluster.object(HTTP_ROUTE, "iris", NS))
    outcome = world.reconcile(after=3)
    assert outcome.requeue_after is not None
    assert "iris-v1-mirror" in str(world.cluster.object(HTTP_ROUTE, "iris", NS))
    assert world.route() == {"v1": 100}  # the reads see stable behind it
    world.converge()
    assert mirror not in applied(world.writes_of(world.reconcile))  # read fresh, not rewritten
    live = world.cluster.object(TRAEFIK_SERVICE, "iris-v1-mirror", NS)
    assert live is not None and live["metadata"]["ownerReferences"][0]["name"] == NAME
    world.annotate("modelpilot.io/abort", "v2")
    assert applied(world.writes_of(world.reconcile)) == [("HTTPRoute", "iris")]
    assert "TraefikService" not in str(world.cluster.object(HTTP_ROUTE, "iris", NS))
    # Not accepted yet, then accepted but not settled: it stays.
    assert world.writes_of(world.reconcile) == []
    world.controllers.accept_route()
    world.reconcile()
    assert world.status()["mirrorObjects"][0]["releasedAt"]
    assert [
        w for w in world.writes_of(lambda: world.reconcile(after=2)) if w.verb == "delete"
    ] == []
    deleted = [w for w in world.writes_of(lambda: world.reconcile(after=1)) if w.verb == "delete"]
    assert [(w.kind, w.name) for w in deleted] == [mirror]
    assert world.status()["mirrorObjects"] == [] and "mirroredVersion" not in world.status()
    assert world.writes_of(world.reconcile) == []


def test_a_shadow_on_a_gateway_without_a_mirror_is_refused_and_traffic_unchanged() -> None:
    world = shadow_world("generic")
    world.edit(lambda m: m["spec"]["rollout"].update({"strategy": "Canary"}))
    world.converge()
    world.edit(lambda m: m["spec"]["rollout"].update({"strategy": "Shadow", "target": "v2"}))
    writes = world.writes_of(world.reconcile)
    assert [w.verb for w in writes] == ["status", "event"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "MirrorUnsupported")
    assert "--gateway-flavor generic" in degraded["message"]
    assert "--gateway-flavor traefik, envoy-gateway or istio" in degraded["message"]
    assert world.route() == {"v1": 100} and world.status()["phase"] == "Stable"


def test_a_shadow_on_traefik_without_its_crds_is_reported_not_crashed() -> None:
    world = shadow_world("traefik")
    world.converge()
    world.cluster.unserved.add("TraefikService")
    world.set_target("v2")
    world.reconcile()
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "MirrorUnavailable")
    assert "TraefikService" in degraded["message"] and "kubernetescrd" in degraded["message"]
    assert world.route() == {"v1": 100}
