"""The model cache: a reconcile reads its model without a GET, and never an older one
than it (or the watch) has seen."""

from __future__ import annotations

from typing import Any

from modelpilot.k8s.models import ModelCache


def body(rv: str, phase: str = "Stable", name: str = "iris") -> dict[str, Any]:
    return {
        "kind": "ManagedModel",
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": rv},
        "status": {"phase": phase},
    }


class Api:
    """Counts GETs; answers with whatever the test puts in `current`."""

    def __init__(self, current: dict[str, Any] | None) -> None:
        self.current, self.gets = current, 0

    def get(self) -> dict[str, Any] | None:
        self.gets += 1
        return self.current


def test_the_first_read_goes_to_the_api_then_the_watch_serves() -> None:
    cache, api = ModelCache(), Api(body("5"))
    cache.watched(body("4"))  # the initial listing may lag another replica's write
    assert cache.read("ns", "iris", api.get)["metadata"]["resourceVersion"] == "5"
    cache.watched(body("6", "Progressing"))
    assert cache.read("ns", "iris", api.get)["status"]["phase"] == "Progressing"
    assert api.gets == 1


def test_a_late_echo_does_not_hide_our_newer_write() -> None:
    cache, api = ModelCache(), Api(body("5"))
    cache.read("ns", "iris", api.get)
    cache.wrote(body("7", "Promoting"))
    cache.watched(body("6", "Progressing"))  # the watch is behind our write
    assert cache.read("ns", "iris", api.get)["status"]["phase"] == "Promoting"
    cache.watched(body("7", "Promoting"))
    cache.watched(body("8", "Stable"))
    assert cache.read("ns", "iris", api.get)["status"]["phase"] == "Stable"
    assert api.gets == 1


def test_a_change_of_leader_makes_the_next_read_fresh() -> None:
    cache, api = ModelCache(), Api(body("5"))
    cache.read("ns", "iris", api.get)
    cache.distrust()
    api.current = body("9", "Promoting")  # the other replica wrote; not watched yet
    assert cache.read("ns", "iris", api.get)["status"]["phase"] == "Promoting"
    assert api.gets == 2


def test_a_deleted_model_reads_as_the_api_says() -> None:
    cache, api = ModelCache(), Api(body("5"))
    cache.read("ns", "iris", api.get)
    cache.deleted("ns", "iris")
    api.current = None
    assert cache.read("ns", "iris", api.get) is None
    assert len(cache) == 0


def test_a_read_is_a_copy() -> None:
    cache, api = ModelCache(), Api(body("5"))
    first = cache.read("ns", "iris", api.get)
    assert first is not None
    first["status"]["phase"] = "changed by the caller"
    again = cache.read("ns", "iris", api.get)
    assert again is not None and again["status"]["phase"] == "Stable"


def test_an_unordered_resource_version_is_never_trusted() -> None:
    cache, api = ModelCache(), Api(body("not-a-number"))
    cache.read("ns", "iris", api.get)
    cache.read("ns", "iris", api.get)
    assert api.gets == 2


def test_managed_fields_are_not_kept_and_never_read() -> None:
    managed = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]

    def with_fields(rv: str, phase: str) -> dict[str, Any]:
        found = body(rv, phase)
        found["metadata"]["managedFields"] = managed
        return found

    cache, api = ModelCache(), Api(with_fields("5", "Stable"))
    fresh = cache.read("ns", "iris", api.get)
    cache.watched(with_fields("6", "Progressing"))
    watched = cache.read("ns", "iris", api.get)
    cache.wrote(with_fields("7", "Promoting"))
    written = cache.read("ns", "iris", api.get)
    assert fresh is not None and watched is not None and written is not None
    assert [r["status"]["phase"] for r in (fresh, watched, written)] == [
        "Stable", "Progressing", "Promoting",
    ]  # fmt: skip
    assert all("managedFields" not in r["metadata"] for r in (fresh, watched, written))
    assert written["metadata"]["resourceVersion"] == "7"
    assert api.current is not None and "managedFields" in api.current["metadata"]  # untouched
