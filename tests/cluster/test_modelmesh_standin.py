"""The ModelMesh stand-in (modelpilot_dev.modelmesh) on the real control plane.

No ModelMesh runs here: the stand-in plays KServe's modelmesh-serving controller (shared
runtime pods of a multi-model ServingRuntime, model states in the InferenceService's
status, load before switch). Its runtime Deployment is real, so its pods are scheduled
and run by kwok; they serve nothing. Statuses are checked against the InferenceService
status schema of the kserve SDK: the CRD leaves status open, KServe's API does not.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.kinds import DEPLOYMENT, INFERENCE_SERVICE, SERVING_RUNTIME
from modelpilot_dev import kserve_crds
from modelpilot_dev.modelmesh import (
    DEPLOYMENT_PREFIX,
    GRPC_PORT,
    REST_PORT,
    SERVICE_LABEL,
    SERVICE_NAME,
    multi_model_runtime,
)
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import eventually

pytestmark = pytest.mark.cluster

RUNTIME = "mlserver"
ISVC = (INFERENCE_SERVICE.group, INFERENCE_SERVICE.version, INFERENCE_SERVICE.plural)


# --- objects ---------------------------------------------------------------------------


def isvc(name: str, *, runtime: str = RUNTIME, uri: str = "s3://models/iris/v1") -> dict[str, Any]:
    return {
        "apiVersion": f"{INFERENCE_SERVICE.group}/{INFERENCE_SERVICE.version}",
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {
            "name": name,
            "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
        },
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "runtime": runtime, "storageUri": uri}
            }
        },
    }


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    group, version = body["apiVersion"].split("/")
    plural = {INFERENCE_SERVICE.kind: ISVC[2], SERVING_RUNTIME.kind: SERVING_RUNTIME.plural}
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        group, version, namespace, plural[body["kind"]], body
    )
    return created


def get_isvc(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], name
    )
    return found


def set_storage(api: client.ApiClient, namespace: str, name: str, uri: str) -> int:
    """A user's edit of the model's storageUri; the generation it makes."""
    patched = client.CustomObjectsApi(api).patch_namespaced_custom_object(
        *ISVC[:2],
        namespace,
        ISVC[2],
        name,
        {"spec": {"predictor": {"model": {"storageUri": uri}}}},
    )
    return int(patched["metadata"]["generation"])


# --- reading a status ------------------------------------------------------------------


def ready(obj: dict[str, Any]) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status"))
    return None


def summary(obj: dict[str, Any]) -> tuple[Any, ...]:
    """(generation described, active, target, transition, Ready, failure reason)."""
    status = obj.get("status") or {}
    model = status.get("modelStatus") or {}
    states = model.get("states") or {}
    return (
        status.get("observedGeneration"),
        states.get("activeModelState"),
        states.get("targetModelState"),
        model.get("transitionStatus"),
        ready(obj),
        (model.get("lastFailureInfo") or {}).get("reason"),
    )


def wait_summary(
    api: client.ApiClient, namespace: str, name: str, wanted: tuple[Any, ...], **kw: Any
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = get_isvc(api, namespace, name)
        return found if summary(found) == wanted else None

    return eventually(
        probe,
        what=f"{name} at {wanted}",
        explain=lambda: summary(get_isvc(api, namespace, name)),
        **kw,
    )


def watch_switch(
    api: client.ApiClient, namespace: str, name: str, until: tuple[Any, ...], timeout: float = 30
) -> list[tuple[Any, ...]]:
    """Every distinct status summary seen, polled every 20 ms, until `until` is seen."""
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = summary(get_isvc(api, namespace, name))
        if not seen or seen[-1] != now:
            seen.append(now)
        if now == until:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {until}; seen {seen}")


# --- KServe's status schema, from its SDK ----------------------------------------------


def _find_class(name: str) -> type | None:
    import kserve.models as kserve_models
    import kubernetes.client.models as k8s_models
    from kserve.models.knative_addressable import KnativeAddressable
    from kserve.models.knative_condition import KnativeCondition

    # The SDK does not export Knative's classes (the CRD generator leaves them open);
    # KnativeURL and KnativeVolatileTime stay open here too: Go writes them as strings.
    knative: dict[str, type] = {
        "KnativeAddressable": KnativeAddressable,
        "KnativeCondition": KnativeCondition,
    }
    if name in knative:
        return knative[name]
    for module in (kserve_models, k8s_models):
        cls = getattr(module, name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return cls  # type: ignore[no-any-return]
    return None


STATUS_SCHEMA = kserve_crds.SchemaBuilder(_find_class).for_type("V1beta1InferenceServiceStatus")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Where value strays from schema: undeclared fields and wrong types."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        if "properties" in schema:
            props = schema["properties"]
            return [
                error
                for key, item in value.items()
                for error in (
                    schema_errors(item, props[key], f"{path}.{key}")
                    if key in props
                    else [f"{path}.{key}: not in KServe's schema"]
                )
            ]
        values = schema.get("additionalProperties") or {}
        return [e for k, v in value.items() for e in schema_errors(v, values, f"{path}.{k}")]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [e for i, v in enumerate(value) for e in schema_errors(v, schema["items"], path)]
    if isinstance(value, bool) and kind != "boolean":
        return [f"{path}: {value!r} is not {kind}"]
    if not isinstance(value, _TYPES.get(str(kind), (object,))):
        return [f"{path}: {value!r} is not {kind}"]
    return []


def test_schema_check_catches_an_invented_field() -> None:
    status = {"modelStatus": {"states": {"activeModelState": "Loaded", "loadedAt": 1}}}
    assert schema_errors(status, STATUS_SCHEMA) == [
        "status.modelStatus.states.loadedAt: not in KServe's schema"
    ]
    assert schema_errors({"conditions": [{"type": "Ready", "state": "True"}]}, STATUS_SCHEMA)
    assert schema_errors({"observedGeneration": "1"}, STATUS_SCHEMA)


# --- the tests ------------------------------------------------------------------------


def test_models_share_the_runtime_pods(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    create(api_client, namespace, multi_model_runtime(RUNTIME, namespace))
    names = [f"model-{i}" for i in range(10)]
    for name in names:
        create(api_client, namespace, isvc(name))
    loaded = (1, "Loaded", None, "UpToDate", "True", None)
    statuses = [wait_summary(api_client, namespace, name, loaded)["status"] for name in names]

    for status in statuses:
        assert schema_errors(status, STATUS_SCHEMA) == []
        grpc = f"grpc://{SERVICE_NAME}.{namespace}:{GRPC_PORT}"
        assert status["url"] == grpc
        assert status["components"]["predictor"] == {
            "url": grpc,
            "restUrl": f"http://{SERVICE_NAME}.{namespace}:{REST_PORT}",
            "grpcUrl": grpc,
        }
        assert status["modelStatus"]["copies"] == {"totalCopies": 1, "failedCopies": 0}
        assert {c["type"] for c in status["conditions"]} == {"PredictorReady", "Ready"}

    core = client.CoreV1Api(api_client)

    def runtime_pods() -> list[Any] | None:
        pods = core.list_namespaced_pod(namespace, label_selector=SERVICE_LABEL).items
        running = [p for p in pods if p.status.phase == "Running"]
        return pods if len(pods) == len(running) == 2 else None

    pods = eventually(runtime_pods, what="2 runtime pods Running")
    assert {p.metadata.labels["name"] for p in pods} == {f"{DEPLOYMENT_PREFIX}{RUNTIME}"}
    assert all(p.spec.containers[0].name == "mm" for p in pods)

    apps = client.CustomObjectsApi(api_client)
    deployments = apps.list_namespaced_custom_object(
        DEPLOYMENT.group, DEPLOYMENT.version, namespace, DEPLOYMENT.plural
    )["items"]
    # One Deployment for all ten models; none of KServe's `<isvc>-predictor` ones.
    assert [d["metadata"]["name"] for d in deployments] == [f"{DEPLOYMENT_PREFIX}{RUNTIME}"]
    owner = deployments[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ServingRuntime", RUNTIME)

    services = core.list_namespaced_service(namespace).items
    assert [s.metadata.name for s in services] == [SERVICE_NAME]
    ports = {(p.name, p.port) for p in services[0].spec.ports}
    assert ports == {("http", REST_PORT), ("grpc", GRPC_PORT)}
    # With real servers (a model store, as here) it points at them, not at the pods.
    real = standins.modelmesh.servers.model_store is not None
    assert services[0].spec.selector == (None if real else {SERVICE_LABEL: SERVICE_NAME})
    assert len(core.list_namespaced_pod(namespace).items) == 2  # and no other pods


def test_a_new_model_loads_before_the_switch(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    create(api_client, namespace, multi_model_runtime(RUNTIME, namespace))
    create(api_client, namespace, isvc("iris"))
    wait_summary(api_client, namespace, "iris", (1, "Loaded", None, "UpToDate", "True", None))

    generation = set_storage(api_client, namespace, "iris", "s3://models/iris/v2")
    done = (generation, "Loaded", None, "UpToDate", "True", None)
    seen = watch_switch(api_client, namespace, "iris", until=done)

    switching = (generation, "Loaded", "Loading", "InProgress", "True", None)
    assert switching in seen, seen
    # The old model served throughout: Ready never left True.
    assert all(s[4] == "True" for s in seen), seen
    status = get_isvc(api_client, namespace, "iris")["status"]
    assert schema_errors(status, STATUS_SCHEMA) == []
    assert "targetModelState" not in status["modelStatus"]["states"]


def test_a_failed_load_leaves_the_old_model_serving(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    create(api_client, namespace, multi_model_runtime(RUNTIME, namespace))
    create(api_client, namespace, isvc("iris"))
    wait_summary(api_client, namespace, "iris", (1, "Loaded", None, "UpToDate", "True", None))

    generation = set_storage(api_client, namespace, "iris", "s3://models/iris/broken")
    blocked = (
        generation,
        "Loaded",
        "FailedToLoad",
        "BlockedByFailedLoad",
        "True",
        "ModelLoadFailed",
    )
    seen = watch_switch(api_client, namespace, "iris", until=blocked)
    assert all(s[4] == "True" for s in seen), seen
    status = get_isvc(api_client, namespace, "iris")["status"]
    assert schema_errors(status, STATUS_SCHEMA) == []
    assert status["modelStatus"]["copies"] == {"totalCopies": 1, "failedCopies": 1}
    assert status["modelStatus"]["lastFailureInfo"]["modelRevisionName"].startswith("iris__isvc-")

    # Back to a good model: loaded, and the failure is no longer reported.
    generation = set_storage(api_client, namespace, "iris", "s3://models/iris/v3")
    wait_summary(
        api_client, namespace, "iris", (generation, "Loaded", None, "UpToDate", "True", None)
    )

    # With no model to fall back on, a failed first load is not Ready.
    create(api_client, namespace, isvc("never", uri="s3://models/iris/broken"))
    failed = (1, "FailedToLoad", None, "UpToDate", "False", "ModelLoadFailed")
    found = wait_summary(api_client, namespace, "never", failed)
    assert schema_errors(found["status"], STATUS_SCHEMA) == []


def test_a_runtime_that_is_not_multi_model_is_not_recognized(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    single = copy.deepcopy(multi_model_runtime("single", namespace))
    single["spec"]["multiModel"] = False
    create(api_client, namespace, single)
    create(api_client, namespace, isvc("iris", runtime="single"))

    invalid = (1, "FailedToLoad", None, "InvalidSpec", "False", "RuntimeNotRecognized")
    found = wait_summary(api_client, namespace, "iris", invalid)
    assert schema_errors(found["status"], STATUS_SCHEMA) == []
    assert "multi-model" in found["status"]["modelStatus"]["lastFailureInfo"]["message"]
    ready_condition = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["reason"] == "RuntimeNotRecognized"
    deployments = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        DEPLOYMENT.group, DEPLOYMENT.version, namespace, DEPLOYMENT.plural
    )["items"]
    assert deployments == []  # neither ModelMesh's nor KServe's


def test_a_model_waiting_for_its_runtime_loads_once_it_appears(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    create(api_client, namespace, isvc("iris", runtime="later"))
    missing = (1, "FailedToLoad", None, "InvalidSpec", "False", "RuntimeNotRecognized")
    wait_summary(api_client, namespace, "iris", missing)

    create(api_client, namespace, multi_model_runtime("later", namespace))
    wait_summary(api_client, namespace, "iris", (1, "Loaded", None, "UpToDate", "True", None))
