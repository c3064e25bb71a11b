"""The Knative-mode stand-in (modelpilot_dev.knative) on the real control plane.

No Knative runs here, and no KServe: the stand-in plays KServe's Knative ("Serverless")
mode (a revision per change of the predictor's template, the canary split of
canaryTrafficPercent, scale to zero and back). Each revision's Deployment is real, so its
pods are scheduled and run by kwok; they serve nothing. Statuses are checked against the
InferenceService status schema of the kserve SDK, and traffic entries against Knative's
TrafficTarget, which the SDK leaves open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.kinds import DEPLOYMENT, INFERENCE_SERVICE, KSERVE_ISVC_LABEL
from modelpilot_dev.knative import MIN_SCALE, TEMPLATE_HASH
from modelpilot_dev.standins import KNATIVE_REVISION_LABEL, StandIns
from tests.cluster.helpers import eventually
from tests.cluster.test_modelmesh_standin import (
    ISVC,
    STATUS_SCHEMA,
    create,
    get_isvc,
    ready,
    schema_errors,
)

pytestmark = pytest.mark.cluster

# Knative's TrafficTarget (serving.knative.dev/v1): its fields, and the JSON type of each.
TRAFFIC_TARGET = {
    "tag": str,
    "revisionName": str,
    "configurationName": str,
    "latestRevision": bool,
    "percent": int,
    "url": str,
}

Traffic = list[tuple[str, int, bool, str | None]]


# --- objects ---------------------------------------------------------------------------


def knative_isvc(name: str, *, uri: str = "s3://m/v1", min_replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": f"{INFERENCE_SERVICE.group}/{INFERENCE_SERVICE.version}",
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {
            "name": name,
            "annotations": {"serving.kserve.io/deploymentMode": "Knative"},
        },
        "spec": {
            "predictor": {
                "minReplicas": min_replicas,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri},
            }
        },
    }


def patch_predictor(api: client.ApiClient, namespace: str, name: str, **fields: Any) -> None:
    """A user's merge patch of spec.predictor (None removes a field)."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], name, {"spec": {"predictor": fields}}
    )


def deployment(api: client.ApiClient, namespace: str, revision: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        DEPLOYMENT.group, DEPLOYMENT.version, namespace, DEPLOYMENT.plural, f"{revision}-deployment"
    )
    return found


def deployment_names(api: client.ApiClient, namespace: str) -> list[str]:
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        DEPLOYMENT.group, DEPLOYMENT.version, namespace, DEPLOYMENT.plural
    )
    return sorted(d["metadata"]["name"] for d in found["items"])


def replicas(api: client.ApiClient, namespace: str, revision: str) -> tuple[int, int]:
    """(spec.replicas, status.availableReplicas) of the revision's Deployment."""
    found = deployment(api, namespace, revision)
    return (
        int(found["spec"].get("replicas") or 0),
        int((found.get("status") or {}).get("availableReplicas") or 0),
    )


# --- reading a status ------------------------------------------------------------------


def predictor(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = ((obj.get("status") or {}).get("components") or {}).get(
        "predictor"
    ) or {}
    return found


def traffic(obj: dict[str, Any]) -> Traffic:
    """(revision number, percent, latestRevision, tag) per traffic entry."""
    return [
        (t["revisionName"].rsplit("-", 1)[-1], t["percent"], t["latestRevision"], t.get("tag"))
        for t in predictor(obj).get("traffic") or []
    ]


def summary(obj: dict[str, Any]) -> tuple[Any, ...]:
    """(latest created, latest ready, rolled out, previously rolled out, traffic, Ready)."""
    component = predictor(obj)
    return (
        component.get("latestCreatedRevision"),
        component.get("latestReadyRevision"),
        component.get("latestRolledoutRevision"),
        component.get("previousRolledoutRevision"),
        traffic(obj),
        ready(obj),
    )


def check(status: dict[str, Any]) -> None:
    """Every status the stand-in writes is KServe's, its traffic Knative's."""
    assert schema_errors(status, STATUS_SCHEMA) == []
    for target in predictor({"status": status}).get("traffic") or []:
        for key, value in target.items():
            assert key in TRAFFIC_TARGET, f"traffic.{key}: not in Knative's TrafficTarget"
            assert isinstance(value, TRAFFIC_TARGET[key]), f"traffic.{key}: {value!r}"


def wait_isvc(
    api: client.ApiClient,
    namespace: str,
    name: str,
    wanted: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = get_isvc(api, namespace, name)
        if found.get("status"):
            check(found["status"])
        return found if wanted(found) else None

    return eventually(
        probe,
        what=f"{name}: {what}",
        explain=lambda: summary(get_isvc(api, namespace, name)),
        timeout=timeout,
    )


def wait_traffic(
    api: client.ApiClient, namespace: str, name: str, wanted: Traffic, **kw: Any
) -> dict[str, Any]:
    return wait_isvc(
        api,
        namespace,
        name,
        lambda obj: traffic(obj) == wanted and ready(obj) == "True",
        f"Ready with traffic {wanted}",
        **kw,
    )


def watch_until(
    api: client.ApiClient, namespace: str, name: str, wanted: Traffic, timeout: float = 60
) -> list[tuple[Any, ...]]:
    """Every distinct status summary seen, polled every 20 ms, until traffic is wanted."""
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = get_isvc(api, namespace, name)
        check(found["status"])
        now = summary(found)
        if not seen or seen[-1] != now:
            seen.append(now)
        if now[4] == wanted and now[5] == "True":
            return seen
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {wanted}; seen {seen}")


def wait_replicas(
    api: client.ApiClient,
    namespace: str,
    revision: str,
    wanted: Callable[[int, int], bool],
    what: str,
) -> tuple[int, int]:
    return eventually(
        lambda: (lambda found: found if wanted(*found) else None)(
            replicas(api, namespace, revision)
        ),
        what=f"{revision}: {what}",
        explain=lambda: replicas(api, namespace, revision),
        timeout=60,
    )


def first_revision(api: client.ApiClient, namespace: str, name: str, **kw: Any) -> None:
    create(api, namespace, knative_isvc(name, **kw))
    wait_traffic(api, namespace, name, [("00001", 100, True, None)])


# --- the tests ------------------------------------------------------------------------


def test_a_first_revision_takes_all_traffic(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    create(api_client, namespace, knative_isvc("iris"))
    found = wait_traffic(api_client, namespace, "iris", [("00001", 100, True, None)])

    status = found["status"]
    revision = "iris-predictor-00001"
    component = status["components"]["predictor"]
    assert component["latestCreatedRevision"] == revision
    assert component["latestReadyRevision"] == revision
    assert component["latestRolledoutRevision"] == revision
    assert "previousRolledoutRevision" not in component
    assert component["traffic"] == [
        {"revisionName": revision, "percent": 100, "latestRevision": True}
    ]
    assert status["url"] == f"http://iris.{namespace}.example.com"
    assert status["address"] == {"url": f"http://iris.{namespace}.svc.cluster.local"}
    assert component["url"] == f"http://iris-predictor.{namespace}.example.com"
    assert component["address"] == {"url": f"http://iris-predictor.{namespace}.svc.cluster.local"}
    assert status["observedGeneration"] == found["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"PredictorReady", "Ready"}
    assert all(c["status"] == "True" and "reason" not in c for c in conditions.values())

    made = deployment(api_client, namespace, revision)
    labels = made["metadata"]["labels"]
    assert labels[KSERVE_ISVC_LABEL] == "iris"
    assert labels[KNATIVE_REVISION_LABEL] == revision
    assert labels["component"] == "predictor"
    assert made["metadata"]["annotations"][TEMPLATE_HASH]
    assert made["metadata"]["annotations"][MIN_SCALE] == "1"
    owner = made["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("InferenceService", "iris", True)
    assert owner["uid"] == found["metadata"]["uid"]
    container = made["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "kserve-container"

    core = client.CoreV1Api(api_client)

    def running() -> list[Any] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"{KNATIVE_REVISION_LABEL}={revision}"
        ).items
        return pods if pods and all(p.status.phase == "Running" for p in pods) else None

    assert len(eventually(running, what="the revision's pod Running")) == 1
    # The Standard-mode stand-in left it alone: no `iris-predictor` Deployment or Service.
    assert deployment_names(api_client, namespace) == [f"{revision}-deployment"]
    assert core.list_namespaced_service(namespace).items == []


def test_a_canary_splits_then_promotes(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    first_revision(api_client, namespace, "iris")

    patch_predictor(
        api_client,
        namespace,
        "iris",
        model={"storageUri": "s3://m/v2"},
        canaryTrafficPercent=20,
    )
    split = [("00002", 20, True, "latest"), ("00001", 80, False, "prev")]
    seen = watch_until(api_client, namespace, "iris", split)
    old, new = "iris-predictor-00001", "iris-predictor-00002"
    # While 00002 came up, Ready was False and the traffic stayed on 00001.
    waiting = (new, old, old, None, [("00001", 100, True, None)], "False")
    assert waiting in seen, seen
    assert all(s[4] == [("00001", 100, True, None)] for s in seen if s[1] != new), seen
    found = get_isvc(api_client, namespace, "iris")
    assert summary(found) == (new, new, old, None, split, "True")
    assert [t["url"] for t in predictor(found)["traffic"]] == [
        f"http://latest-iris-predictor.{namespace}.example.com",
        f"http://prev-iris-predictor.{namespace}.example.com",
    ]

    # Only the share changes: no new revision.
    patch_predictor(api_client, namespace, "iris", canaryTrafficPercent=50)
    wait_traffic(
        api_client,
        namespace,
        "iris",
        [("00002", 50, True, "latest"), ("00001", 50, False, "prev")],
    )
    assert deployment_names(api_client, namespace) == [
        f"{old}-deployment",
        f"{new}-deployment",
    ]

    # Promoted: all traffic on 00002, which is rolled out; 00001 goes idle.
    patch_predictor(api_client, namespace, "iris", canaryTrafficPercent=None)
    found = wait_traffic(api_client, namespace, "iris", [("00002", 100, True, None)])
    promoted = time.monotonic()
    assert summary(found)[:4] == (new, new, new, old)
    assert replicas(api_client, namespace, old) == (1, 1)  # not at once
    wait_replicas(api_client, namespace, old, lambda spec, _: spec == 0, "scaled to zero")
    assert time.monotonic() - promoted >= standins.knative.idle_seconds - 0.5
    assert replicas(api_client, namespace, new) == (1, 1)  # its floor: minReplicas 1
    assert ready(get_isvc(api_client, namespace, "iris")) == "True"


def test_a_canary_at_zero_percent_rolls_back(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    first_revision(api_client, namespace, "iris")
    patch_predictor(
        api_client, namespace, "iris", model={"storageUri": "s3://m/v2"}, canaryTrafficPercent=20
    )
    wait_traffic(
        api_client, namespace, "iris", [("00002", 20, True, "latest"), ("00001", 80, False, "prev")]
    )

    patch_predictor(api_client, namespace, "iris", canaryTrafficPercent=0)
    found = wait_traffic(
        api_client, namespace, "iris", [("00002", 0, True, "latest"), ("00001", 100, False, "prev")]
    )
    old, new = "iris-predictor-00001", "iris-predictor-00002"
    assert summary(found)[:4] == (new, new, old, None)
    # At 0% the canary is not routed: it goes idle; the old one keeps its floor.
    wait_replicas(api_client, namespace, new, lambda spec, _: spec == 0, "scaled to zero")
    assert replicas(api_client, namespace, old) == (1, 1)


def test_a_rollback_after_a_promotion_routes_to_the_previous_revision(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    first_revision(api_client, namespace, "iris")
    patch_predictor(api_client, namespace, "iris", model={"storageUri": "s3://m/v2"})
    wait_traffic(api_client, namespace, "iris", [("00002", 100, True, None)])
    old, new = "iris-predictor-00001", "iris-predictor-00002"
    wait_replicas(api_client, namespace, old, lambda spec, _: spec == 0, "scaled to zero")

    # KServe's rollback of a rolled-out revision: the split goes against the one before.
    patch_predictor(api_client, namespace, "iris", canaryTrafficPercent=0)
    found = wait_traffic(
        api_client, namespace, "iris", [("00002", 0, True, "latest"), ("00001", 100, False, "prev")]
    )
    # As KServe's status then says: the revision before is the rolled-out one again.
    assert summary(found)[:4] == (new, new, old, old)
    assert deployment_names(api_client, namespace) == [f"{old}-deployment", f"{new}-deployment"]
    # Routed again, 00001 is back at its floor.
    wait_replicas(api_client, namespace, old, lambda spec, up: spec == up == 1, "one pod up")


def test_a_revision_scales_to_zero_and_back_on_a_request(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    first_revision(api_client, namespace, "iris", min_replicas=0)
    revision = "iris-predictor-00001"
    assert deployment(api_client, namespace, revision)["metadata"]["annotations"][MIN_SCALE] == "0"

    wait_replicas(api_client, namespace, revision, lambda spec, _: spec == 0, "scaled to zero")
    wait_replicas(api_client, namespace, revision, lambda _, up: up == 0, "no pod left")
    found = get_isvc(api_client, namespace, "iris")
    assert ready(found) == "True"  # at zero, still ready: the activator holds requests
    assert traffic(found) == [("00001", 100, True, None)]

    assert standins.knative.request(namespace, "iris", timeout=30)
    spec, available = replicas(api_client, namespace, revision)
    assert spec == 1 and available >= 1, (spec, available)

    # No further request: idle again.
    wait_replicas(api_client, namespace, revision, lambda spec, _: spec == 0, "idle again")
    assert ready(get_isvc(api_client, namespace, "iris")) == "True"

    # And a request for nothing routed (no such InferenceService) gives up.
    assert not standins.knative.request(namespace, "absent", timeout=0.5)


def test_a_revision_that_cannot_schedule_stays_not_ready(
    api_client: client.ApiClient, namespace: str, standins: StandIns
) -> None:
    first_revision(api_client, namespace, "iris")
    gpus = {"nvidia.com/gpu": 64}  # more than any node has
    patch_predictor(
        api_client,
        namespace,
        "iris",
        model={"resources": {"requests": gpus, "limits": gpus}},
    )
    old, new = "iris-predictor-00001", "iris-predictor-00002"

    def unschedulable(obj: dict[str, Any]) -> bool:
        condition = next(
            (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
            {},
        )
        return condition.get("status") == "False" and "Insufficient nvidia.com/gpu" in (
            condition.get("message") or ""
        )

    found = wait_isvc(api_client, namespace, "iris", unschedulable, "Ready False, unschedulable")
    condition = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
    assert condition["reason"] == "RevisionMissing"
    assert new in condition["message"]
    assert summary(found) == (new, old, old, None, [("00001", 100, True, None)], "False")
    made = deployment(api_client, namespace, new)
    limits = made["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "64"}

    # It stays so: the old revision keeps all traffic and its pod.
    time.sleep(standins.knative.idle_seconds + 0.5)
    found = get_isvc(api_client, namespace, "iris")
    check(found["status"])
    assert summary(found) == (new, old, old, None, [("00001", 100, True, None)], "False")
    assert replicas(api_client, namespace, old) == (1, 1)
    assert replicas(api_client, namespace, new) == (1, 0)  # still trying: its pod Pending
