"""An in-memory twin of `modelpilot.k8s.cluster.Cluster`, for unit tests of the reconcile.

It keeps objects the way the apiserver would for what a reconcile can tell: a
resourceVersion per write, a generation that moves only with the spec, merge patches of
status and metadata. Server-side apply is simplified to "what the operator sends
replaces what it sent" (it is the only applier of its children here). Its cache is
always current (a watch with no lag), trimmed the way
the operator's is. It records every write in order and can die before any one of them
(`crash_before`), which is how a test kills the operator between two writes.

What it does not play: KServe, the Deployment controller, the gateway. Tests set what
those would report with `set_status` and `put`.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpilot.api.events import Event
from modelpilot.api.kinds import KINDS_BY_NAME, Kind
from modelpilot.k8s.cache import trim
from modelpilot.k8s.cluster import ChildRejected, KindNotServed

Key = tuple[str, str, str]  # namespace, kind, name


class Crash(BaseException):
    """The operator died before this write (a BaseException: nothing in the reconcile
    may catch it, as nothing catches a kill -9)."""


@dataclass(frozen=True)
class Write:
    verb: str  # apply, delete, status, metadata, event
    kind: str
    name: str
    body: Any  # what was sent: the object, the patch, the Event; None for a delete


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: null removes a key, a mapping merges, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return (str(meta.get("namespace") or ""), str(obj["kind"]), str(meta["name"]))


def _labelled(obj: Mapping[str, Any], labels: Mapping[str, str | None]) -> bool:
    have = obj["metadata"].get("labels") or {}
    return all(k in have and (v is None or have[k] == v) for k, v in labels.items())


class MemoryCluster:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes: list[Write] = []
        self.crash_before: int | None = None  # die before the write with this index
        self.reject: dict[str, str] = {}  # kind -> the apiserver's message refusing it
        self.unserved: set[str] = set()  # kinds whose CRD is missing
        self._versions = itertools.count(1)

    # --- what tests do as users and controllers ----------------------------------------

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object as someone other than the operator would."""
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        old = self.objects.get(_key(stored))
        meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()))
        old_generation = (old or {}).get("metadata", {}).get("generation", 0)
        spec_moved = old is None or old.get("spec") != stored.get("spec")
        meta["generation"] = old_generation + 1 if spec_moved else old_generation
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[_key(stored)] = stored
        return copy.deepcopy(stored)

    def set_status(self, kind: Kind, name: str, namespace: str, status: dict[str, Any]) -> None:
        obj = self.objects[(namespace, kind.kind, name)]
        obj["status"] = copy.deepcopy(status)
        obj["metadata"]["resourceVersion"] = str(next(self._versions))

    def object(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.objects.get((namespace, kind.kind, name))
        return copy.deepcopy(found) if found is not None else None

    def of_kind(self, kind: Kind) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (_, k, _), o in sorted(self.objects.items()) if k == kind.kind]

    # --- the Cluster interface -------------------------------------------------------

    def get(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        self._served(kind.api_version, kind.kind)
        return self.object(kind, name, namespace)

    def list_objects(
        self, kind: Kind, namespace: str, labels: Mapping[str, str | None]
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (ns, k, _), obj in sorted(self.objects.items())
            if ns == namespace and k == kind.kind and _labelled(obj, labels)
        ]

    def cached(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.objects.get((namespace, kind.kind, name))
        return trim(found) if found is not None else None

    def cached_children(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return [
            trim(obj)
            for (ns, _, _), obj in sorted(self.objects.items())
            if ns == namespace and _labelled(obj, labels)
        ]

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._served(obj["apiVersion"], obj["kind"])
        if obj["kind"] in self.reject:  # the apiserver's validation, where a test wants it
            raise ChildRejected(obj["kind"], obj["metadata"]["name"], self.reject[obj["kind"]])
        self._write("apply", obj["kind"], obj["metadata"]["name"], copy.deepcopy(dict(obj)))
        old = self.objects.get(_key(obj))
        applied = copy.deepcopy(dict(obj))
        # The operator is the only applier of its children here: what it sends replaces
        # what it sent before; the status others write stays.
        applied.pop("status", None)
        if old is not None and "status" in old:
            applied["status"] = copy.deepcopy(old["status"])
        applied["metadata"].pop("generation", None)
        applied["metadata"].pop("resourceVersion", None)
        return self.put(applied)

    def delete(self, kind: Kind, name: str, namespace: str) -> None:
        self._served(kind.api_version, kind.kind)
        self._write("delete", kind.kind, name, None)
        self.objects.pop((namespace, kind.kind, name), None)

    def _served(self, api_version: str, kind: str) -> None:
        if kind in self.unserved:
            raise KindNotServed(api_version, kind)

    def patch_status(self, model: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        self._write("status", model["kind"], model["metadata"]["name"], copy.deepcopy(patch))
        stored = self.objects[_key(model)]
        stored["status"] = merge_patch(stored.get("status") or {}, patch)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))

    def patch_metadata(self, model: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        self._write("metadata", model["kind"], model["metadata"]["name"], copy.deepcopy(patch))
        stored = self.objects[_key(model)]
        stored["metadata"] = merge_patch(stored["metadata"], patch)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))

    def post_event(self, model: Mapping[str, Any], event: Event) -> None:
        self._write("event", model["kind"], model["metadata"]["name"], event)

    # --- what a test reads back --------------------------------------------------------

    def events(self) -> list[Event]:
        return [w.body for w in self.writes if w.verb == "event"]

    def child_writes(self) -> list[Write]:
        return [w for w in self.writes if w.verb in ("apply", "delete")]

    def _write(self, verb: str, kind: str, name: str, body: Any) -> None:
        if self.crash_before is not None and len(self.writes) >= self.crash_before:
            raise Crash(f"killed before {verb} of {kind} {name}")
        if verb != "event" and kind not in KINDS_BY_NAME:
            raise ValueError(f"{verb} of an unknown kind {kind}")
        self.writes.append(Write(verb, kind, name, body))


class MemoryLeaseStore:
    """An in-memory twin of `modelpilot.k8s.leader.KubeLeaseStore`: one Lease, with the
    apiserver's optimistic concurrency (a write naming a stale resourceVersion, or a
    create of an existing Lease, is a conflict). `down` makes every call fail, as an
    unreachable apiserver would."""

    def __init__(self, name: str = "modelpilot", namespace: str = "ops") -> None:
        self.name, self.namespace = name, namespace
        self.lease: dict[str, Any] | None = None
        self.down = False
        self._versions = itertools.count(1)

    def _reachable(self) -> None:
        if self.down:
            raise ConnectionError("apiserver unreachable")

    def read(self) -> dict[str, Any] | None:
        self._reachable()
        return copy.deepcopy(self.lease)

    def create(self, lease: dict[str, Any]) -> dict[str, Any]:
        from modelpilot.k8s.leader import LeaseConflict

        self._reachable()
        if self.lease is not None:
            raise LeaseConflict("already exists")
        return self._store(lease)

    def replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        from modelpilot.k8s.leader import LeaseConflict

        self._reachable()
        stored = (self.lease or {}).get("metadata", {}).get("resourceVersion")
        if self.lease is None or lease["metadata"].get("resourceVersion") != stored:
            raise LeaseConflict("the object has been modified")
        return self._store(lease)

    def _store(self, lease: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.lease = stored
        return copy.deepcopy(stored)
