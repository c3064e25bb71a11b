"""The operator's memory of its children: trimming, the write overlay, echo detection."""

from __future__ import annotations

from typing import Any

from modelpilot.api.kinds import DEPLOYMENT, INFERENCE_SERVICE
from modelpilot.k8s.cache import ChildCache, trim
from modelpilot.k8s.readiness import version_readiness


def isvc(rv: str, uri: str = "s3://m/v1") -> dict[str, Any]:
    return {
        "apiVersion": INFERENCE_SERVICE.api_version,
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {
            "name": "m-v1",
            "namespace": "ns",
            "resourceVersion": rv,
            "managedFields": [{"manager": "modelpilot", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"predictor": {"model": {"storageUri": uri}}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": {"name": "m-v1-predictor", "namespace": "ns", "generation": 2},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "m-v1"}},
            "template": {
                "metadata": {"labels": {"app": "m-v1"}},
                "spec": {
                    "containers": [
                        {
                            "name": "kserve-container",
                            "image": "kserve/sklearnserver",
                            "args": ["--model_name=m"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                            "env": [{"name": "A", "value": "1"}],
                        },
                        {"name": "queue-proxy", "image": "q"},
                    ],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                },
            },
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        },
    }


def test_trim_keeps_what_a_reconcile_reads() -> None:
    trimmed = trim(isvc("5"))
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["spec"] == isvc("5")["spec"]
    assert trimmed["status"] == {
        "url": None,
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "m-v1", "namespace": "ns"},
        "spec": {"maxReplicas": 3},
        "status": {"currentReplicas": 1},
    }
    assert "status" not in trim(hpa)


def test_trimmed_deployment_keeps_what_readiness_reads() -> None:
    full = deployment()
    trimmed = trim(full)
    containers = trimmed["spec"]["template"]["spec"]["containers"]
    assert containers == [
        {
            "name": "kserve-container",
            "args": ["--model_name=m"],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }
    ]
    assert trimmed["spec"]["replicas"] == 2 and trimmed["status"] == full["status"]
    model = {"predictor": {"model": {"args": ["--model_name=m"], "resources": {}}}}
    live = {**isvc("1"), "spec": model}
    assert version_readiness(live, trimmed) == version_readiness(live, full)


def test_a_write_is_read_back_until_the_watch_reports_on_it() -> None:
    cache = ChildCache()
    cache.watched(isvc("4"))
    assert cache.changed(isvc("4")) is True  # first seen
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns")["metadata"]["resourceVersion"] == "4"
    cache.wrote(isvc("5", uri="s3://m/v1-new"))
    # Read before the echo arrives: what we wrote, not the older watched object.
    seen = cache.read(INFERENCE_SERVICE, "m-v1", "ns")
    assert seen["spec"]["predictor"]["model"]["storageUri"] == "s3://m/v1-new"
    assert "managedFields" not in seen["metadata"]
    cache.watched(isvc("5", uri="s3://m/v1-new"))
    assert cache.changed(isvc("5")) is False  # our own echo wakes no one
    assert cache.sizes() == (1, 0)
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns")["metadata"]["resourceVersion"] == "5"


def test_a_write_the_watch_has_already_overtaken_is_not_read_back() -> None:
    # Seen under load with a real gateway: we apply a route (rv 5), the gateway writes
    # its status (rv 6) and the watch delivers that before our thread records rv 5.
    cache = ChildCache()
    cache.watched(isvc("6", uri="s3://m/v1-new"))
    cache.wrote(isvc("5", uri="s3://m/v1-old"))
    seen = cache.read(INFERENCE_SERVICE, "m-v1", "ns")
    assert seen["metadata"]["resourceVersion"] == "6"
    assert cache.sizes() == (1, 0)
    # Our own newer write still reads back before its echo.
    cache.wrote(isvc("7", uri="s3://m/v1-newest"))
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns")["metadata"]["resourceVersion"] == "7"


def test_only_a_change_a_reconcile_reads_counts() -> None:
    cache = ChildCache()
    cache.watched(isvc("1"))
    cache.changed(isvc("1"))
    busy = isvc("2")
    busy["status"]["modelStatus"] = {"states": {"activeModelState": "Loaded"}}
    cache.watched(busy)
    assert cache.changed(busy) is False  # KServe's other status fields: not read
    unready = isvc("3")
    unready["status"]["conditions"][0]["status"] = "False"
    cache.watched(unready)
    assert cache.changed(unready) is True
    assert cache.changed(unready) is False  # consumed


def test_a_change_by_someone_else_after_our_write_counts() -> None:
    cache = ChildCache()
    cache.watched(isvc("7"))
    cache.wrote(isvc("8"))
    edited = isvc("9", uri="s3://someone/else")
    cache.watched(edited)
    assert cache.changed(edited) is True
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns")["metadata"]["resourceVersion"] == "9"


def test_a_deleted_child_is_forgotten_with_what_we_wrote() -> None:
    cache = ChildCache()
    cache.watched(isvc("3"))
    cache.wrote(isvc("4"))
    cache.deleted(isvc("4"))
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns") is None
    assert cache.sizes() == (0, 0)
    assert cache.changed(isvc("4")) is False


def test_a_write_recorded_after_the_watch_saw_its_deletion_is_not_read_back() -> None:
    # Seen in the churn fault suite: a reconcile's apply is answered (rv 4), the model
    # is deleted, the garbage collector deletes the child (rv 9) and its watch delivers
    # that before the reconcile's thread records rv 4. A model created again under the
    # name then read the old InferenceService as ready and routed to it.
    cache = ChildCache()
    cache.watched(isvc("3"))
    cache.deleted(isvc("9"))
    cache.wrote(isvc("4"))
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns") is None
    # The child made again after the deletion is ours to read back before its echo.
    cache.wrote(isvc("12", uri="s3://m/v1-again"))
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns")["metadata"]["resourceVersion"] == "12"
    cache.watched(isvc("12", uri="s3://m/v1-again"))
    cache.wrote(isvc("13"))  # once watched again, the deletion no longer counts
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns")["metadata"]["resourceVersion"] == "13"


def test_children_are_read_by_kind_name_and_namespace() -> None:
    cache = ChildCache()
    cache.watched(isvc("1"))
    cache.watched(deployment())
    assert cache.read(DEPLOYMENT, "m-v1", "ns") is None
    assert cache.read(INFERENCE_SERVICE, "m-v1", "other") is None
    assert cache.read(DEPLOYMENT, "m-v1-predictor", "ns") is not None


def test_children_of_a_model_include_what_we_just_wrote() -> None:
    cache = ChildCache()
    labelled = isvc("1")
    labelled["metadata"]["labels"] = {"modelpilot.io/model": "m"}
    other = deployment()
    other["metadata"]["labels"] = {"modelpilot.io/model": "n"}
    cache.watched(labelled)
    cache.watched(other)
    fresh = {**isvc("2"), "metadata": {**isvc("2")["metadata"], "name": "m-v2"}}
    fresh["metadata"]["labels"] = {"modelpilot.io/model": "m"}
    cache.wrote(fresh)
    found = cache.children_of("ns", {"modelpilot.io/model": "m"})
    assert sorted(o["metadata"]["name"] for o in found) == ["m-v1", "m-v2"]
    assert cache.children_of("other", {"modelpilot.io/model": "m"}) == []


def test_a_full_listing_forgets_only_what_vanished_untouched() -> None:
    cache = ChildCache()
    kept, ghost, renewed = isvc("1"), isvc("2"), isvc("3")
    ghost["metadata"]["name"], renewed["metadata"]["name"] = "ghost", "renewed"
    for obj in (kept, ghost, renewed):
        cache.watched(obj)
    before = cache.of_kind("InferenceService")
    # While the listing runs, a watch event recreates "renewed": it must stay.
    cache.watched({**renewed, "metadata": {**renewed["metadata"], "resourceVersion": "9"}})
    gone = cache.forget_missing(before, [kept])
    assert [obj["metadata"]["name"] for obj in gone] == ["ghost"]
    assert cache.read(INFERENCE_SERVICE, "ghost", "ns") is None
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns") is not None
    assert cache.read(INFERENCE_SERVICE, "renewed", "ns") is not None


def test_children_of_a_model_are_found_through_its_label_and_follow_deletes_and_relabels() -> None:
    cache = ChildCache()

    def child(name: str, model: str) -> dict[str, Any]:
        obj = isvc("1")
        obj["metadata"] = {
            **obj["metadata"],
            "name": name,
            "labels": {"modelpilot.io/model": model},
        }
        return obj

    for i in range(50):
        cache.watched(child(f"x{i}-v1", f"x{i}"))
    cache.watched(child("m-v1", "m"))
    cache.watched(child("m-v2", "m"))

    def names() -> list[str]:
        found = cache.children_of("ns", {"modelpilot.io/model": "m"})
        return sorted(o["metadata"]["name"] for o in found)

    assert names() == ["m-v1", "m-v2"]
    cache.deleted(child("m-v1", "m"))
    assert names() == ["m-v2"]
    cache.watched(child("m-v2", "someone-else"))  # relabelled: no longer m's
    assert names() == []
    cache.watched(child("m-v3", "m"))
    listed = [child(f"x{i}-v1", f"x{i}") for i in range(50)] + [child("m-v2", "someone-else")]
    assert cache.forget_missing(cache.of_kind(INFERENCE_SERVICE.kind), listed) != []
    assert names() == []  # m-v3 vanished from the listing untouched: forgotten
    # Without the model label, every object is still scanned.
    assert len(cache.children_of("ns", {})) == 51


def test_the_listing_at_start_is_news_to_no_model_but_what_changed_after_is() -> None:
    cache = ChildCache()
    cache.listed([isvc("5")])
    assert cache.read(INFERENCE_SERVICE, "m-v1", "ns") is not None
    cache.watched(isvc("5"))  # kopf's own initial listing, a moment later
    assert cache.changed(isvc("5")) is False
    unready = isvc("6")
    unready["status"]["conditions"][0]["status"] = "False"
    cache.watched(unready)
    assert cache.changed(unready) is True
