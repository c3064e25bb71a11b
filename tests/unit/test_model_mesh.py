"""ModelMesh mode: the rules that refuse what it cannot honour, the runtime choice, the
render (no HPA, the stable name, a route through modelmesh-serving that rewrites the
served name), readiness from ModelMesh's model states, and a whole rollout in the
in-memory cluster with a twin that reports as ModelMesh does (load before switch)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelpilot.analysis.queries import fill, target_of
from modelpilot.api import InvalidManagedModel, names, parse_managed_model
from modelpilot.api.kinds import AUTOSCALER, HTTP_ROUTE, INFERENCE_SERVICE
from modelpilot.k8s.cache import trim
from modelpilot.k8s.observe import route_pinned, route_weights
from modelpilot.k8s.readiness import model_copies, model_mesh_readiness
from modelpilot.render import default_render_state, render_model
from modelpilot.runtimes import default_runtimes, resolve_runtime
from modelpilot_dev.memory_cluster import MemoryCluster
from tests.unit.test_manage import MODEL, NAME, NS, World

MESH: dict[str, Any] = copy.deepcopy(MODEL)
MESH["spec"]["serving"] = {"deploymentMode": "ModelMesh"}


def mesh(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MESH)
    doc["spec"].update(spec)
    return doc


def problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidManagedModel) as refused:
        parse_managed_model(doc)
    return {p.path: p.message for p in refused.value.problems}


# --- what the mode refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"gpu": {"count": 1}}, "spec.gpu", "ServingRuntime"),
        ({"autoscaling": {"maxReplicas": 3}}, "spec.autoscaling", "copies itself"),
        ({"resources": {"requests": {"cpu": "1"}}}, "spec.resources", "shared pods"),
        ({"protocolVersion": "v1"}, "spec.protocolVersion", "v2 protocol only"),
        ({"servedModelName": "Iris.v2"}, "spec.servedModelName", "DNS-1123 label"),
    ],
)
def test_what_model_mesh_cannot_honour_is_refused_on_its_field(
    change: dict[str, Any], path: str, words: str
) -> None:
    found = problems(mesh(**change))
    assert words in found[path], found
    # The same spec in Standard mode is fine.
    standard = mesh(**change)
    standard["spec"]["serving"]["deploymentMode"] = "Standard"
    if path != "spec.servedModelName":
        parse_managed_model(standard)


def test_analysis_templates_are_refused_and_queries_name_the_inference_service() -> None:
    bounded = {"name": "ok", "template": "success-rate", "min": 0.99}
    rollout = {**MESH["spec"]["rollout"], "analysis": {"metrics": [bounded]}}
    found = problems(mesh(rollout=rollout))
    assert "write a query" in found["spec.rollout.analysis.metrics[0].template"]
    query = {"name": "ok", "query": "up{model_id={{ inference_service }}}", "min": 1}
    rollout["analysis"] = {"metrics": [query]}
    model = parse_managed_model(mesh(rollout=rollout))
    target = target_of(model, "v2", "1m", None)
    assert fill(query["query"], target) == 'up{model_id="iris-v2"}'


def test_the_stable_name_may_not_be_a_versions_name() -> None:
    found = problems(mesh(servedModelName="iris-v1"))
    assert "needs one of its own" in found["spec.servedModelName"]


def test_shared_capacity_and_shadow_are_refused_in_model_mesh_mode() -> None:
    rollout = {**MESH["spec"]["rollout"], "capacity": "Shared"}
    assert "use Surge" in problems(mesh(rollout=rollout))["spec.rollout.capacity"]
    rollout = {**MESH["spec"]["rollout"], "strategy": "Shadow"}
    assert "modelmesh-serving" in problems(mesh(rollout=rollout))["spec.rollout.strategy"]


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("RawDeployment", "write Standard"),
        ("Serverless", "write Knative"),
        ("Triton", "'Standard', 'ModelMesh' or 'Knative'"),
    ],
)
def test_other_mode_names_say_what_to_write(mode: str, words: str) -> None:
    found = problems(mesh(serving={"deploymentMode": mode}))
    assert words in found["spec.serving.deploymentMode"], found


# --- the runtime ----------------------------------------------------------------------------


def test_model_mesh_chooses_among_multi_model_runtimes_only() -> None:
    runtimes = default_runtimes()
    chosen = resolve_runtime(
        runtimes,
        model_format="sklearn",
        model_format_version=None,
        protocol=None,
        runtime_name=None,
        multi_model=True,
    )
    assert chosen.runtime is not None and chosen.runtime.name == "mlserver-1.x"
    standard = resolve_runtime(
        runtimes, model_format="sklearn", model_format_version=None, protocol=None,
        runtime_name=None,
    )  # fmt: skip
    assert standard.runtime is not None and not standard.runtime.multi_model
    single = resolve_runtime(
        runtimes, model_format="sklearn", model_format_version=None, protocol=None,
        runtime_name="kserve-sklearnserver", multi_model=True,
    )  # fmt: skip
    assert single.runtime is None and "single-model" in single.error
    multi = resolve_runtime(
        runtimes, model_format="sklearn", model_format_version=None, protocol=None,
        runtime_name="mlserver-1.x",
    )  # fmt: skip
    assert multi.runtime is None and "deploymentMode ModelMesh" in multi.error


# --- the render ---------------------------------------------------------------------------


def rendered(weights: dict[str, int], **spec: Any) -> list[dict[str, Any]]:
    model = parse_managed_model(mesh(**spec))
    state = default_render_state(model, weights)
    return render_model(model, state, default_runtimes()).objects


def test_each_version_is_a_model_mesh_inference_service_without_pods_of_its_own() -> None:
    objects = rendered({"v1": 100})
    isvcs = [o for o in objects if o["kind"] == INFERENCE_SERVICE.kind]
    assert not [o for o in objects if o["kind"] == AUTOSCALER.kind]
    assert [o["metadata"]["name"] for o in isvcs] == ["iris-v1", "iris-v2", "iris-v3", "iris"]
    for isvc in isvcs:
        assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "ModelMesh"}
        # Replicas, scheduling and the model's name belong to the shared runtime pods.
        assert list(isvc["spec"]["predictor"]) == ["model"]
        assert isvc["spec"]["predictor"]["model"]["runtime"] == "mlserver-1.x"
        assert "args" not in isvc["spec"]["predictor"]["model"]


def test_the_stable_name_serves_the_stable_version() -> None:
    objects = rendered({"v1": 75, "v2": 25})
    stable = next(o for o in objects if o["metadata"]["name"] == "iris")
    v1 = next(o for o in objects if o["metadata"]["name"] == "iris-v1")
    assert stable["spec"] == v1["spec"]
    assert stable["metadata"]["labels"][names.STABLE_NAME_LABEL] == "v1"
    assert names.VERSION_LABEL not in stable["metadata"]["labels"]
    named = rendered({"v1": 100}, servedModelName="flowers")
    assert "flowers" in [o["metadata"]["name"] for o in named]


def test_the_route_calls_modelmesh_and_rewrites_the_served_name_per_version() -> None:
    objects = rendered({"v1": 75, "v2": 25})
    route = next(o for o in objects if o["kind"] == HTTP_ROUTE.kind)
    split = route["spec"]["rules"][-1]
    assert split["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/iris"}}]
    assert [(b["name"], b["port"], b["weight"]) for b in split["backendRefs"]] == [
        ("modelmesh-serving", 8008, 75),
        ("modelmesh-serving", 8008, 25),
    ]
    rewrites = [
        b["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"] for b in split["backendRefs"]
    ]
    assert rewrites == ["/v2/models/iris-v1", "/v2/models/iris-v2"]
    pin = route["spec"]["rules"][0]
    assert pin["matches"][0]["path"]["value"] == "/v2/models/iris"
    assert pin["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"] == "/v2/models/iris-v1"
    # What the operator reads back from a live route: the versions, not the Service.
    assert route_weights(route, NAME) == {"v1": 75, "v2": 25}
    assert route_pinned(route, NAME) == {"v1", "v2", "v3"}


# --- readiness ------------------------------------------------------------------------------


def isvc_with(generation: int = 1, **model_status: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True"}],
        "modelStatus": model_status,
    }
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("model_status", "ready", "words"),
    [
        ({"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded"}}, True, ""),
        ({"transitionStatus": "UpToDate", "states": {"activeModelState": "Standby"}}, True, ""),
        (
            {
                "transitionStatus": "InProgress",
                "states": {"activeModelState": "Loaded", "targetModelState": "Loading"},
            },
            False,
            "loading the new model (Loading)",
        ),
        (
            {
                "transitionStatus": "BlockedByFailedLoad",
                "states": {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no such file"},
            },
            False,
            "BlockedByFailedLoad; ModelLoadFailed: no such file",
        ),
        (
            {"transitionStatus": "UpToDate", "states": {"activeModelState": "FailedToLoad"}},
            False,
            "FailedToLoad",
        ),
        ({}, False, "not reported"),
    ],
)
def test_a_version_is_ready_when_modelmesh_serves_its_current_spec(
    model_status: dict[str, Any], ready: bool, words: str
) -> None:
    found = model_mesh_readiness(isvc_with(**model_status))
    assert found.ready is ready and words in found.message


def test_the_cache_keeps_modelmeshs_report_and_copes_before_there_is_one() -> None:
    isvc = rendered({"v1": 100})[0]
    assert trim(isvc)["status"]["modelStatus"]["states"] == {}  # nothing reported yet
    assert not model_mesh_readiness(trim(isvc)).ready
    isvc["metadata"]["generation"] = 1
    isvc["status"] = isvc_with(
        transitionStatus="UpToDate",
        states={"activeModelState": "Loaded"},
        copies={"totalCopies": 2, "failedCopies": 0},
    )["status"]
    kept = trim(isvc)
    assert model_mesh_readiness(kept).ready and model_copies(kept) == 2


def test_a_status_older_than_the_spec_is_stale() -> None:
    loaded = {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded"}}
    found = model_mesh_readiness(isvc_with(generation=2, **loaded))
    assert not found.ready and found.stale


# --- a rollout in the in-memory cluster ---------------------------------------------------------


class ModelMeshTwin:
    """Reports as ModelMesh would on every ModelMesh InferenceService: the model of its
    current spec Loaded, one copy, for the generation it saw."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster

    def serve(self, *_versions: str) -> None:
        for isvc in self.cluster.of_kind(INFERENCE_SERVICE):
            meta = isvc["metadata"]
            self.cluster.set_status(
                INFERENCE_SERVICE,
                meta["name"],
                NS,
                {
                    "observedGeneration": meta["generation"],
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "modelStatus": {
                        "transitionStatus": "UpToDate",
                        "states": {"activeModelState": "Loaded"},
                        "copies": {"totalCopies": 1, "failedCopies": 0},
                    },
                },
            )


def test_a_canary_walks_through_modelmesh_and_the_stable_name_follows_the_promotion() -> None:
    world = World(MESH)
    twin = ModelMeshTwin(world.cluster)
    world.controllers.serve = twin.serve  # type: ignore[method-assign]
    world.converge()
    assert world.status()["phase"] == "Stable" and world.route() == {"v1": 100}
    assert not world.cluster.of_kind(AUTOSCALER)
    stable = world.cluster.object(INFERENCE_SERVICE, "iris", NS)
    assert stable is not None and stable["metadata"]["labels"][names.STABLE_NAME_LABEL] == "v1"

    world.set_target("v2")
    world.converge()
    assert world.status()["canaryWeight"] == 25 and world.route() == {"v1": 75, "v2": 25}
    world.reconcile(after=31)
    world.converge()
    assert world.route() == {"v1": 50, "v2": 50}
    world.annotate("modelpilot.io/promote", "v2")
    world.converge()
    world.reconcile(after=31)
    world.converge()
    assert world.status()["phase"] == "Stable" and world.route() == {"v2": 100}
    stable = world.cluster.object(INFERENCE_SERVICE, "iris", NS)
    v2 = world.cluster.object(INFERENCE_SERVICE, "iris-v2", NS)
    assert stable is not None and v2 is not None
    assert stable["metadata"]["labels"][names.STABLE_NAME_LABEL] == "v2"
    assert stable["spec"]["predictor"]["model"] == v2["spec"]["predictor"]["model"]


def test_a_version_still_loading_gets_no_weight() -> None:
    world = World(MESH)
    twin = ModelMeshTwin(world.cluster)
    world.controllers.serve = twin.serve  # type: ignore[method-assign]
    world.converge()
    world.set_target("v2")
    world.reconcile()
    loading = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False"}],
        "modelStatus": {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loading"}},
    }
    world.cluster.set_status(INFERENCE_SERVICE, "iris-v2", NS, loading)
    for _ in range(3):
        world.reconcile(after=31)
    assert world.route() == {"v1": 100}
    v2 = next(v for v in world.status()["versions"] if v["name"] == "v2")
    assert not v2["ready"] and "Loading" in v2["message"]
    assert "Loading" in world.condition("Progressing")["message"]
