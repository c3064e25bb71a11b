"""Records every HTTPRoute and predictor Deployment version written in a namespace, to
check, after the fact, what traffic went where and what was ready at that moment.

Both come from one etcd, so resourceVersions order them: the Deployment state in force
when a route was written is the one with the highest resourceVersion below the route's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

from modelpilot.api.kinds import DEPLOYMENT, HTTP_ROUTE, INFERENCE_SERVICE, MANAGED_MODEL, Kind
from tests.cluster.helpers import PREDICTOR_SUFFIX, split_weights


@dataclass
class Record:
    rv: int
    kind: str
    name: str
    obj: dict[str, Any]
    listed: bool = False  # from the listing before the block: the state when it began


@dataclass
class Recorder:
    api: client.ApiClient
    namespace: str
    model: str
    records: list[Record] = field(default_factory=list)
    model_mesh: bool = False  # also record InferenceServices: what ModelMesh had loaded
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Recorder:
        custom, apps = client.CustomObjectsApi(self.api), client.AppsV1Api(self.api)

        def custom_lister(kind: Kind) -> Callable[..., Any]:
            def lister(**kw: Any) -> Any:
                return custom.list_namespaced_custom_object(
                    kind.group, kind.version, self.namespace, kind.plural, **kw
                )

            return lister

        def deployments(**kw: Any) -> Any:
            return apps.list_namespaced_deployment(self.namespace, **kw)

        # Each kind is listed before the block runs (what a test does next cannot happen
        # before the recording starts), then watched from the listing's version.
        listers = [custom_lister(HTTP_ROUTE), deployments, custom_lister(MANAGED_MODEL)]
        if self.model_mesh:
            listers.append(custom_lister(INFERENCE_SERVICE))
        for lister in listers:
            version = self._list(lister)
            thread = threading.Thread(target=self._watch, args=(lister, version), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def wait_for(self, check: Callable[[Recorder], bool], what: str, timeout: float = 30.0) -> None:
        """Until the records show what a test is about to assert on: a status the test
        saw is written before the route that carries it, and the recording stops when
        the block ends."""
        deadline = time.monotonic() + timeout
        while not check(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the recorder never saw {what}")
            time.sleep(0.1)

    def route_is(self, weights: dict[str, int]) -> bool:
        found = self.route_weights()
        return bool(found) and found[-1][1] == weights

    def _list(self, lister: Callable[..., Any]) -> str:
        listing = lister()
        if not isinstance(listing, dict):
            listing = self.api.sanitize_for_serialization(listing)
        for obj in listing.get("items") or []:
            self._record(obj, listed=True)
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, lister: Callable[..., Any], version: str) -> None:
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(lister, timeout_seconds=2, resource_version=version)
                for event in stream:
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    version = obj["metadata"]["resourceVersion"]
                    self._record(obj)
            except client.ApiException as err:
                if err.status != 410:
                    raise
                version = self._list(lister)  # too old to resume: list again

    def _record(self, obj: dict[str, Any], *, listed: bool = False) -> None:
        meta = obj["metadata"]
        kind = obj.get("kind") or DEPLOYMENT.kind  # typed lists drop the items' kind
        record = Record(int(meta["resourceVersion"]), kind, meta["name"], obj, listed)
        with self._lock:
            self.records.append(record)

    def route_weights(self) -> list[tuple[int, dict[str, int]]]:
        """Each distinct weight set the route carried, in order: (rv, {version: weight})."""
        found: list[tuple[int, dict[str, int]]] = []
        for record in sorted(self.snapshot(), key=lambda r: r.rv):
            if record.kind != HTTP_ROUTE.kind:
                continue
            weights = self._weights(record.obj)
            if not found or found[-1][1] != weights:
                found.append((record.rv, weights))
        return found

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def _weights(self, route: dict[str, Any]) -> dict[str, int]:
        return split_weights(route, self.model)

    def annotated_rv(self, key: str) -> int:
        """The first write of the model that carried the annotation."""
        return next(
            r.rv
            for r in sorted(self.snapshot(), key=lambda r: r.rv)
            if r.kind == MANAGED_MODEL.kind
            and r.name == self.model
            and key in (r.obj["metadata"].get("annotations") or {})
        )

    def consumed_rv(self, key: str) -> int:
        """The first write of the model without the annotation, after it carried it."""
        since = self.annotated_rv(key)
        return next(
            r.rv
            for r in sorted(self.snapshot(), key=lambda r: r.rv)
            if r.kind == MANAGED_MODEL.kind
            and r.name == self.model
            and r.rv > since
            and key not in (r.obj["metadata"].get("annotations") or {})
        )

    def consumed(self, key: str) -> bool:
        try:
            self.consumed_rv(key)
        except StopIteration:
            return False
        return True

    def decided_rv(self, phase: str, after: int) -> int:
        """The first write of the model after rv `after` whose status is in phase."""
        return next(
            r.rv
            for r in sorted(self.snapshot(), key=lambda r: r.rv)
            if r.kind == MANAGED_MODEL.kind
            and r.name == self.model
            and r.rv > after
            and (r.obj.get("status") or {}).get("phase") == phase
        )

    def route_writes_between(self, after: int, before: int) -> list[dict[str, int]]:
        return [w for rv, w in self.route_weights() if after < rv < before]

    def first_route_rv(self, weights: dict[str, int], after: int) -> int:
        return next(rv for rv, found in self.route_weights() if rv > after and found == weights)

    def available_at(self, rv: int, version: str) -> int:
        """Available predictor pods of a version when the object at rv was written (in
        ModelMesh mode: 1 while its InferenceService's current model is loaded, else 0)."""
        if self.model_mesh:
            name = f"{self.model}-{version}"
            kind, count = INFERENCE_SERVICE.kind, _loaded
        else:
            name = f"{self.model}-{version}{PREDICTOR_SUFFIX}"
            kind, count = DEPLOYMENT.kind, _available
        ours = [r for r in self.snapshot() if r.kind == kind and r.name == name]
        # A listed Deployment is what was in force when recording began, even when its
        # resourceVersion is newer than a route written before then: the start state.
        state = next((count(r) for r in ours if r.listed), 0)
        for record in sorted((r for r in ours if not r.listed), key=lambda r: r.rv):
            if record.rv >= rv:
                break
            state = count(record)
        return state

    def assert_safe(self) -> list[dict[str, int]]:
        """Every weight set sums to 100 and none gave weight to a version with no
        available pod at that moment. Returns the weight sets, in order."""
        sets = self.route_weights()
        for rv, weights in sets:
            assert sum(weights.values()) == 100, f"route at rv {rv}: {weights}"
            for version, weight in weights.items():
                if weight > 0:
                    assert self.available_at(rv, version) >= 1, (
                        f"route at rv {rv} gave {weight}% to {version} with no available pod"
                    )
        return [weights for _, weights in sets]


def _loaded(record: Record) -> int:
    """ModelMesh serves the model of the InferenceService's current spec."""
    status = record.obj.get("status") or {}
    model = status.get("modelStatus") or {}
    active = (model.get("states") or {}).get("activeModelState")
    current = status.get("observedGeneration") == record.obj["metadata"].get("generation")
    up_to_date = model.get("transitionStatus") == "UpToDate" and active in ("Loaded", "Standby")
    return int(current and up_to_date)


def _available(record: Record) -> int:
    return int((record.obj.get("status") or {}).get("availableReplicas") or 0)
