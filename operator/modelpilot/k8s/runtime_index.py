"""The cluster's ServingRuntimes and ClusterServingRuntimes, kept current by watch events
(not listed on every reconcile)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from modelpilot.runtimes import ServingRuntimeInfo, parse_serving_runtime


class RuntimeIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: dict[tuple[str | None, str], ServingRuntimeInfo] = {}
        # Whether every runtime in scope was listed: only then is a runtime a model
        # names and the index lacks surely missing (RBAC or a missing CRD can hide some).
        self.complete = False

    def replace_all(self, objects: Iterable[Mapping[str, Any]], *, complete: bool = True) -> None:
        fresh = {self._key(obj): parse_serving_runtime(obj) for obj in objects}
        with self._lock:
            self._runtimes = fresh
            self.complete = complete

    def upsert(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            self._runtimes[self._key(obj)] = parse_serving_runtime(obj)

    def remove(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            self._runtimes.pop(self._key(obj), None)

    def for_namespace(self, namespace: str) -> list[ServingRuntimeInfo]:
        """The namespace's own runtimes and every cluster runtime, in a stable order."""
        with self._lock:
            items = sorted(self._runtimes.items(), key=lambda item: (item[0][0] or "", item[0][1]))
        return [info for (ns, _), info in items if ns in (None, namespace)]

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str | None, str]:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "ClusterServingRuntime":
            return None, str(meta.get("name"))
        return str(meta.get("namespace")), str(meta.get("name"))
