"""The children's watch: what each line of a watch stream becomes."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.api.kinds import DEPLOYMENT, INFERENCE_SERVICE
from modelpilot.k8s.watch import Gone, Lister, Scope


def test_scopes_name_their_paths() -> None:
    assert Scope(INFERENCE_SERVICE, "ns", None).path() == (
        "/apis/serving.kserve.io/v1beta1/namespaces/ns/inferenceservices"
    )
    assert Scope(DEPLOYMENT, None, "modelpilot.io/model").path() == "/apis/apps/v1/deployments"
    assert Scope(DEPLOYMENT, None, None).holds("any")
    assert not Scope(DEPLOYMENT, "a", None).holds("b")


def test_events_carry_their_kind_and_bookmarks_only_move_the_resource_version() -> None:
    scope = Scope(INFERENCE_SERVICE, "ns", None)
    delivered: list[tuple[str, dict[str, Any]]] = []

    def deliver(kind: str, obj: dict[str, Any]) -> None:
        delivered.append((kind, obj))

    added = {"type": "ADDED", "object": {"metadata": {"name": "m-v1", "resourceVersion": "7"}}}
    assert Lister._event(scope, added, deliver) == "7"
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    assert Lister._event(scope, bookmark, deliver) == "9"
    assert [(k, o["kind"], o["apiVersion"]) for k, o in delivered] == [
        ("ADDED", "InferenceService", INFERENCE_SERVICE.api_version)
    ]


def test_a_resource_version_too_old_asks_for_a_new_listing() -> None:
    gone = {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}
    with pytest.raises(Gone):
        Lister._event(Scope(INFERENCE_SERVICE, None, None), gone, lambda k, o: None)
    other = {"type": "ERROR", "object": {"code": 500, "message": "etcd"}}
    with pytest.raises(RuntimeError, match="etcd"):
        Lister._event(Scope(INFERENCE_SERVICE, None, None), other, lambda k, o: None)


def test_a_watch_whose_receiver_is_gone_ends() -> None:
    class Failing:
        calls = 0

        def list(self, scope: Scope) -> tuple[list[dict[str, Any]], str]:
            Failing.calls += 1
            raise RuntimeError("Event loop is closed")

    from modelpilot.k8s.watch import KindWatch

    watch = KindWatch(
        Failing(),  # type: ignore[arg-type]
        Scope(INFERENCE_SERVICE, None, None),
        on_event=lambda k, o: None,
        on_listed=lambda s, o: None,
        alive=lambda: False,
    )
    watch.start()
    watch._thread.join(timeout=5)
    assert not watch._thread.is_alive() and Failing.calls == 1
