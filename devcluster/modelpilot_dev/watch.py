"""A watch on one kind in one namespace that never misses a baseline: the bench's probes
and recorders build on it."""

from __future__ import annotations

import threading
import time
from typing import Any, Self

import urllib3
from kubernetes import client, watch

from modelpilot.api.kinds import AUTOSCALER, Kind
from modelpilot.k8s.observe import route_weights


class KindWatch:
    """One kind in one namespace: listed first, then watched from the listing's
    resourceVersion (the version of the last object seen can be older than the
    apiserver's watch window: 410 Gone). Subclasses say what to keep of each event; the
    listing arrives as LISTED events, a baseline rather than writes."""

    def __init__(self, api: client.ApiClient, namespace: str, kind: Kind) -> None:
        self.api, self.namespace, self.kind = api, namespace, kind
        self.gaps: list[float] = []  # when a watch expired and the kind was listed again
        self._stop = threading.Event()

    def start(self) -> Self:
        threading.Thread(target=self._run, name=f"watch-{self.kind.plural}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()  # a daemon thread: no need to wait out its watch

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def _lister(self, **kw: Any) -> Any:
        if self.kind == AUTOSCALER:
            hpas = client.AutoscalingV2Api(self.api)
            return hpas.list_namespaced_horizontal_pod_autoscaler(self.namespace, **kw)
        custom = client.CustomObjectsApi(self.api)
        return custom.list_namespaced_custom_object(
            self.kind.group, self.kind.version, self.namespace, self.kind.plural, **kw
        )

    def _run(self) -> None:
        resource_version = self._list()
        while not self._stop.is_set():
            try:
                # kubernetes' Watch and ApiClient.sanitize_for_serialization carry no annotations.
                for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._lister,
                    timeout_seconds=30,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                ):
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.deliver(time.monotonic(), event["type"], obj)
                    if self._stop.is_set():
                        return
            except client.ApiException as err:
                if err.status != 410:
                    raise
                self.gaps.append(time.monotonic())  # events were missed
                resource_version = self._list()
            except (urllib3.exceptions.HTTPError, OSError):
                # The apiserver closes a watch whose reader falls behind (a busy bench
                # on 2 cores): list again, the gap recorded, unless stopping.
                if self._stop.is_set():
                    return
                self.gaps.append(time.monotonic())
                time.sleep(0.2)
                resource_version = self._list()

    def _list(self) -> str:
        listing = self._lister()
        if not isinstance(listing, dict):
            # kubernetes' ApiClient.sanitize_for_serialization carries no annotations.
            listing = self.api.sanitize_for_serialization(listing)  # type: ignore[no-untyped-call]
        now = time.monotonic()
        for obj in listing.get("items") or []:
            self.deliver(now, "LISTED", obj)
        return str(listing["metadata"]["resourceVersion"])


class Timeline(KindWatch):
    """When each write of a kind in the namespace was seen (monotonic time)."""

    def __init__(self, api: client.ApiClient, namespace: str, kind: Kind) -> None:
        super().__init__(api, namespace, kind)
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self.seen.append((moment, obj))

    def snapshot(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.seen)


def route_changes(timeline: Timeline, model: str) -> list[tuple[float, dict[str, int]]]:
    """(when seen, weights) for each distinct weight set a model's route carried."""
    changes: list[tuple[float, dict[str, int]]] = []
    for moment, route in timeline.snapshot():
        weights = route_weights(route, model)
        if not changes or changes[-1][1] != weights:
            changes.append((moment, weights))
    return changes
