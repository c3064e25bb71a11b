"""Records every HTTPRoute and predictor Deployment version written in a namespace, to
check, after the fact, what traffic went where and what was ready at that moment.

Both come from one etcd, so resourceVersions order them: the Deployment state in force
when a route was written is the one with the highest resourceVersion below the route's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

PREDICTOR_SUFFIX = "-predictor"


@dataclass
class Record:
    rv: int
    kind: str
    name: str
    obj: dict[str, Any]


@dataclass
class Recorder:
    api: client.ApiClient
    namespace: str
    model: str
    records: list[Record] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Recorder:
        custom, apps = client.CustomObjectsApi(self.api), client.AppsV1Api(self.api)

        def routes(**kw: Any) -> Any:
            return custom.list_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", **kw
            )

        def deployments(**kw: Any) -> Any:
            return apps.list_namespaced_deployment(self.namespace, **kw)

        def models(**kw: Any) -> Any:
            return custom.list_namespaced_custom_object(
                "modelpilot.io", "v1alpha1", self.namespace, "managedmodels", **kw
            )

        for lister in (routes, deployments, models):
            thread = threading.Thread(target=self._watch, args=(lister,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _watch(self, lister: Callable[..., Any]) -> None:
        version: str | None = None
        while not self._stop.is_set():
            stream = watch.Watch().stream(lister, timeout_seconds=2, resource_version=version)
            for event in stream:
                obj = event["object"]
                if not isinstance(obj, dict):
                    obj = self.api.sanitize_for_serialization(obj)
                meta = obj["metadata"]
                version = meta["resourceVersion"]
                with self._lock:
                    self.records.append(
                        Record(
                            int(version),
                            obj.get("kind", "Deployment"),
                            meta["name"],
                            obj,
                        )
                    )

    def route_weights(self) -> list[tuple[int, dict[str, int]]]:
        """Each distinct weight set the route carried, in order: (rv, {version: weight})."""
        found: list[tuple[int, dict[str, int]]] = []
        for record in sorted(self.snapshot(), key=lambda r: r.rv):
            if record.kind != "HTTPRoute":
                continue
            weights = self._weights(record.obj)
            if not found or found[-1][1] != weights:
                found.append((record.rv, weights))
        return found

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def _weights(self, route: dict[str, Any]) -> dict[str, int]:
        weights: dict[str, int] = {}
        prefix = f"{self.model}-"
        for rule in route["spec"].get("rules") or []:
            if any(m.get("headers") for m in rule.get("matches") or []):
                continue
            for backend in rule.get("backendRefs") or []:
                name = backend["name"][len(prefix) : -len(PREDICTOR_SUFFIX)]
                weights[name] = int(backend.get("weight", 1))
        return weights

    def annotated_rv(self, key: str) -> int:
        """The first write of the model that carried the annotation."""
        return next(
            r.rv
            for r in sorted(self.snapshot(), key=lambda r: r.rv)
            if r.kind == "ManagedModel"
            and r.name == self.model
            and key in (r.obj["metadata"].get("annotations") or {})
        )

    def consumed_rv(self, key: str) -> int:
        """The first write of the model without the annotation, after it carried it."""
        since = self.annotated_rv(key)
        return next(
            r.rv
            for r in sorted(self.snapshot(), key=lambda r: r.rv)
            if r.kind == "ManagedModel"
            and r.name == self.model
            and r.rv > since
            and key not in (r.obj["metadata"].get("annotations") or {})
        )

    def first_route_rv(self, weights: dict[str, int], after: int) -> int:
        return next(rv for rv, found in self.route_weights() if rv > after and found == weights)

    def available_at(self, rv: int, version: str) -> int:
        """Available predictor pods of a version when the object at rv was written."""
        name = f"{self.model}-{version}{PREDICTOR_SUFFIX}"
        state = 0
        for record in sorted(self.snapshot(), key=lambda r: r.rv):
            if record.rv >= rv:
                break
            if record.kind == "Deployment" and record.name == name:
                state = int((record.obj.get("status") or {}).get("availableReplicas") or 0)
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
