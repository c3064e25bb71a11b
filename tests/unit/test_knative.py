"""Knative mode: the rules, the render (one InferenceService, canaryTrafficPercent, no
HPA, no route), the reads (revisions to versions, KServe's traffic as weights,
readiness), and whole rollouts in the in-memory cluster with a twin that follows
KServe's own traffic rules:

- KServe's Knative Service: with canaryTrafficPercent c and a rolled-out revision R,
  c% to the latest ready revision and the rest to R; otherwise all to the latest.
- Its status: the latest ready revision at 100% becomes the rolled-out one (the one
  before it the previous); a rolled-out latest revision whose own traffic sums to 100
  but is split below 100 for the latest (canaryTrafficPercent 0 after a promotion) makes
  the previous rolled-out revision the rolled-out one again: the rollback.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from modelpilot.api import names, parse_managed_model
from modelpilot.api.kinds import (
    AUTOSCALER,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KNATIVE_REVISION_LABEL,
)
from modelpilot.k8s.knative import knative_view
from modelpilot.render import default_render_state, render_model
from modelpilot.rollout import CheckReport, stamp
from modelpilot.runtimes import default_runtimes
from modelpilot_dev.memory_cluster import MemoryCluster
from tests.unit.test_manage import MODEL, NAME, NS, ChecksTwin, World
from tests.unit.test_model_mesh import problems

KNATIVE: dict[str, Any] = copy.deepcopy(MODEL)
KNATIVE["spec"]["serving"] = {"deploymentMode": "Knative"}
del KNATIVE["spec"]["traffic"]


def knative(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(KNATIVE)
    doc["spec"].update(spec)
    return doc


# --- the rules ------------------------------------------------------------------------------


def test_scale_to_zero_and_knatives_autoscaler_fields_need_knative_mode() -> None:
    parse_managed_model(knative(autoscaling={"minReplicas": 0, "scaleMetric": "rps"}))
    standard = copy.deepcopy(MODEL)
    standard["spec"]["autoscaling"] = {"minReplicas": 0, "scaleTarget": 5}
    found = problems(standard)
    assert "needs deploymentMode Knative" in found["spec.autoscaling.minReplicas"]
    assert "Knative's autoscaler's" in found["spec.autoscaling.scaleTarget"]


def test_knative_mode_has_no_route_and_only_canary_steps() -> None:
    with_route = knative(traffic=MODEL["spec"]["traffic"])
    assert "remove it" in problems(with_route)["spec.traffic"]
    rollout = {**KNATIVE["spec"]["rollout"], "strategy": "ABTest", "match": [{"headers": [
        {"name": "x-group", "value": "beta"}]}]}  # fmt: skip
    assert "use Canary" in problems(knative(rollout=rollout))["spec.rollout.strategy"]
    no_route = copy.deepcopy(MODEL)
    del no_route["spec"]["traffic"]
    assert "required" in problems(no_route)["spec.traffic"]


def test_analysis_is_accepted_in_knative_mode_and_revision_only_there() -> None:
    metric = {"name": "ok", "query": "up{revision_name=~{{ revision }}}", "min": 1}
    rollout = {**KNATIVE["spec"]["rollout"], "analysis": {"metrics": [metric]}}
    accepted = parse_managed_model(knative(rollout=rollout)).spec.rollout.analysis
    assert accepted is not None and accepted.metrics[0].query == metric["query"]
    standard = copy.deepcopy(MODEL)
    standard["spec"]["rollout"]["analysis"] = {"metrics": [metric]}
    assert (
        "only in deploymentMode Knative"
        in (problems(standard)["spec.rollout.analysis.metrics[0].query"])
    )


def test_a_name_too_long_for_knatives_revision_names_is_refused() -> None:
    doc = knative()
    doc["metadata"]["name"] = "m" * 48
    assert "keep the name within 47" in problems(doc)["metadata.name"]


# --- the render ----------------------------------------------------------------------------


def test_one_inference_service_carries_the_canary_with_its_percent() -> None:
    model = parse_managed_model(knative(autoscaling={"minReplicas": 0, "maxReplicas": 4}))
    objects = render_model(
        model, default_render_state(model, {"v1": 75, "v2": 25}), default_runtimes()
    ).objects
    assert [o["kind"] for o in objects] == [INFERENCE_SERVICE.kind]
    isvc = objects[0]
    assert isvc["metadata"]["name"] == NAME
    assert isvc["metadata"]["labels"][names.SERVES_LABEL] == "v2"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 4)
    assert predictor["model"]["storageUri"] == "gs://bucket/iris/v2"
    at_rest = render_model(model, default_render_state(model), default_runtimes()).objects[0]
    assert "canaryTrafficPercent" not in at_rest["spec"]["predictor"]
    assert at_rest["metadata"]["labels"][names.SERVES_LABEL] == "v1"


def test_the_legacy_switch_writes_serverless() -> None:
    model = parse_managed_model(knative())
    state = default_render_state(model, legacy_raw_deployment=True)
    isvc = render_model(model, state, default_runtimes()).objects[0]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"


# --- the reads -------------------------------------------------------------------------------


def revision(name: str, version: str) -> dict[str, Any]:
    labels = {KNATIVE_REVISION_LABEL: name, names.SERVES_LABEL: version}
    return {"metadata": {"name": f"{name}-deployment", "labels": labels}}


def test_kserves_traffic_reads_as_weights_per_version() -> None:
    isvc = {
        "metadata": {"generation": 3, "labels": {names.SERVES_LABEL: "v2"}},
        "status": {
            "observedGeneration": 3,
            "url": "http://iris.ml.example.com",
            "components": {
                "predictor": {
                    "latestCreatedRevision": "iris-predictor-00002",
                    "latestReadyRevision": "iris-predictor-00002",
                    "traffic": [
                        {"revisionName": "iris-predictor-00002", "percent": 25},
                        {"revisionName": "iris-predictor-00001", "percent": 75},
                    ],
                }
            },
        },
    }
    deployments = [revision("iris-predictor-00001", "v1"), revision("iris-predictor-00002", "v2")]
    view = knative_view(isvc, deployments, ["v1", "v2", "v3"])
    assert view.weights == {"v1": 75, "v2": 25} and view.current
    assert view.readiness["v1"].ready and view.readiness["v2"].ready
    assert not view.readiness["v3"].ready
    # A revision whose Deployment is not seen yet: the split is unknown, not guessed.
    assert knative_view(isvc, deployments[:1], ["v1", "v2"]).weights is None
    # A spec KServe has not reconciled yet: the carried version's last verdict stands.
    isvc["metadata"]["generation"] = 4
    assert knative_view(isvc, deployments, ["v2"]).readiness["v2"].stale


# --- rollouts against a twin of KServe's Knative mode -----------------------------------------


class KnativeTwin:
    """KServe's Knative mode as its controller computes traffic and rolled-out revisions
    (see the module docstring); each revision is ready at once unless held."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster
        self.templates: list[str] = []  # revision n+1's template hash at index n
        self.held: set[str] = set()  # revisions not ready yet
        self.rolled: str | None = None
        self.previous: str | None = None

    def serve(self, *_versions: str) -> None:
        isvc = self.cluster.object(INFERENCE_SERVICE, NAME, NS)
        if isvc is None:
            return
        predictor = {
            k: v for k, v in isvc["spec"]["predictor"].items() if k != "canaryTrafficPercent"
        }
        template = hashlib.sha256(
            json.dumps([predictor, isvc["metadata"]["labels"]], sort_keys=True).encode()
        ).hexdigest()
        if not self.templates or self.templates[-1] != template:
            self.templates.append(template)
            name = f"{NAME}-predictor-{len(self.templates):05d}"
            labels = {**isvc["metadata"]["labels"], KNATIVE_REVISION_LABEL: name}
            self.cluster.put(
                {
                    "apiVersion": DEPLOYMENT.api_version,
                    "kind": DEPLOYMENT.kind,
                    "metadata": {"name": f"{name}-deployment", "namespace": NS, "labels": labels},
                    "spec": {"replicas": 1},
                }
            )
        created = f"{NAME}-predictor-{len(self.templates):05d}"
        ready = next(
            (
                f"{NAME}-predictor-{n:05d}"
                for n in range(len(self.templates), 0, -1)
                if f"{NAME}-predictor-{n:05d}" not in self.held
            ),
            None,
        )
        canary = isvc["spec"]["predictor"].get("canaryTrafficPercent")
        # KServe reconciles again on its Knative Service's new status: a rollback takes
        # two rounds (the status names the previous revision, then traffic follows).
        for _ in range(2):
            traffic = self._traffic(ready, canary)
            self._propagate(traffic, ready, created)
        self.cluster.set_status(
            INFERENCE_SERVICE,
            NAME,
            NS,
            {
                "observedGeneration": isvc["metadata"]["generation"],
                "url": f"http://{NAME}.{NS}.example.com",
                "conditions": [
                    {"type": "Ready", "status": "True" if ready == created else "False"}
                ],
                "components": {
                    "predictor": {
                        "latestCreatedRevision": created,
                        "latestReadyRevision": ready,
                        "latestRolledoutRevision": self.rolled,
                        "previousRolledoutRevision": self.previous,
                        "traffic": traffic,
                    }
                },
            },
        )

    def _traffic(self, ready: str | None, canary: int | None) -> list[dict[str, Any]]:
        if ready is None:
            return []
        if canary is None or not self.rolled:
            return [{"revisionName": ready, "percent": 100, "latestRevision": True}]
        traffic = [{"revisionName": ready, "percent": canary, "latestRevision": True}]
        if canary < 100:
            rest = 100 - canary
            traffic.append({"revisionName": self.rolled, "percent": rest, "latestRevision": False})
        return traffic

    def _propagate(self, traffic: list[dict[str, Any]], ready: str | None, created: str) -> None:
        per_revision: dict[str, int] = {}
        for entry in traffic:
            per_revision[entry["revisionName"]] = (
                per_revision.get(entry["revisionName"], 0) + entry["percent"]
            )
        for entry in traffic:
            if entry["revisionName"] != ready or not entry["latestRevision"]:
                continue
            if self.rolled != ready:
                if entry["percent"] == 100:
                    self.previous, self.rolled = self.rolled, ready
            elif ready == created and entry["percent"] < 100 and per_revision[ready] == 100:
                self.rolled = self.previous or self.rolled  # the rollback


def knative_world() -> tuple[World, KnativeTwin]:
    world = World(knative(rollout={"target": "v1", "stepWeights": [25, 50], "interval": "30s"}))
    twin = KnativeTwin(world.cluster)
    world.controllers.serve = twin.serve  # type: ignore[method-assign]
    world.converge()
    assert world.status()["phase"] == "Stable" and live(world) == {"v1": 100}
    return world, twin


def live(world: World) -> dict[str, int]:
    """Where the twin sends requests, per version."""
    isvc = world.cluster.object(INFERENCE_SERVICE, NAME, NS)
    deployments = world.cluster.of_kind(DEPLOYMENT)
    return knative_view(isvc, deployments, ["v1", "v2", "v3"]).weights or {}


def step(world: World) -> None:
    world.reconcile(after=31)
    world.converge()


def test_a_canary_walks_kserves_percent_and_promotes() -> None:
    world, _ = knative_world()
    assert not world.cluster.of_kind(AUTOSCALER) and not world.cluster.of_kind(HTTP_ROUTE)
    world.set_target("v2")
    world.converge()
    assert world.status()["weights"] == {"v1": 75, "v2": 25} and live(world) == {"v1": 75, "v2": 25}
    step(world)
    assert live(world) == {"v1": 50, "v2": 50}
    world.annotate("modelpilot.io/promote", "v2")
    world.converge()
    step(world)
    assert world.status()["phase"] == "Stable" and live(world) == {"v2": 100}
    isvc = world.cluster.object(INFERENCE_SERVICE, NAME, NS)
    assert isvc is not None and "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert world.status()["url"] == f"http://{NAME}.{NS}.example.com"


def test_abort_keeps_the_candidate_at_zero_and_a_later_canary_splits_against_the_stable() -> None:
    world, _ = knative_world()
    world.set_target("v2")
    world.converge()
    world.annotate("modelpilot.io/abort", "v2")
    world.converge()
    assert world.status()["phase"] == "Aborted" and live(world) == {"v1": 100}
    isvc = world.cluster.object(INFERENCE_SERVICE, NAME, NS)
    assert isvc is not None and isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
    # Settled back on v1: the candidate stays carried at 0%, no new revision of v1.
    world.set_target("v1")
    world.converge()
    assert world.status()["phase"] == "Stable" and live(world) == {"v1": 100}
    world.set_target("v3")
    world.converge()
    assert live(world) == {"v1": 75, "v3": 25}


def test_rollback_after_a_promotion_is_kserves_percent_zero() -> None:
    world, twin = knative_world()
    world.edit(lambda m: m["spec"]["rollout"].update(promotion="auto", stepWeights=[50]))
    world.set_target("v2")
    world.converge()
    step(world)
    step(world)
    assert world.status()["phase"] == "Stable" and live(world) == {"v2": 100}
    world.annotate("modelpilot.io/rollback", "v1")
    world.converge()
    assert world.status()["phase"] == "Aborted" and live(world) == {"v1": 100}
    assert twin.rolled == f"{NAME}-predictor-00001"
    # The next canary splits against v1, the rolled-out revision again.
    world.set_target("v3")
    world.converge()
    assert live(world) == {"v1": 50, "v3": 50}


def test_failed_analysis_of_a_revision_sets_kserves_percent_to_zero() -> None:
    world, _ = knative_world()
    world.edit(
        lambda m: m["spec"]["rollout"].update(
            analysis={"metrics": [{"name": "ok", "template": "success-rate", "min": 95}]}
        )
    )
    checks = world.checks = ChecksTwin()
    world.set_target("v2")
    world.converge()
    world.reconcile(after=30)
    check, route = checks.asked[-1]
    assert (check.canary, check.weight, route) == ("v2", 25, None)
    # The runner is told which revision runs which version: its queries select by them.
    assert checks.revisions[-1] == {
        f"{NAME}-predictor-00001": "v1",
        f"{NAME}-predictor-00002": "v2",
    }
    for _ in range(2):
        checks.report = CheckReport(
            canary="v2", weight=25, at=stamp(world.now), result="Failed", message="ok 60 < min 95"
        )
        world.reconcile(after=1)
    world.converge()
    assert world.status()["phase"] == "Failed" and live(world) == {"v1": 100}
    isvc = world.cluster.object(INFERENCE_SERVICE, NAME, NS)
    assert isvc is not None and isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_a_canary_revision_not_ready_gets_nothing() -> None:
    world, twin = knative_world()
    twin.held.add(f"{NAME}-predictor-00002")
    world.set_target("v2")
    for _ in range(3):
        world.reconcile(after=31)
        twin.serve()
    assert live(world) == {"v1": 100}
    v2 = next(v for v in world.status()["versions"] if v["name"] == "v2")
    assert not v2["ready"] and "not ready" in v2["message"]
