"""The operator's memory of its children, so that a reconcile reads no child over HTTP.

What the watches last delivered, overlaid with what this process wrote since: a
reconcile that runs before the echo of its own apply arrives still sees what it wrote.
The operator watches every InferenceService, HPA and HTTPRoute in its scope (labelled
or not) and looks children up by name, so an object of another model or of a person
that holds a name we want is seen, and not taken over.

Objects are kept trimmed to what a reconcile reads (1,000 models fit in little memory),
and a change wakes a model only if the trimmed object changed: the HPA controller's
status, a Deployment's condition timestamps or the echo of our own apply change nothing
a reconcile would decide on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelpilot.api.kinds import (
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KSERVE_DEPLOYMENT_MODE,
    Kind,
)
from modelpilot.api.names import MODEL_LABEL
from modelpilot.k8s.readiness import KSERVE_CONTAINER

Key = tuple[str, str, str]  # namespace, kind, name
# What a reconcile reads of a child's metadata (the resourceVersion only to tell an echo).
METADATA = ("name", "namespace", "uid", "labels", "annotations", "ownerReferences", "generation")
DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "updatedReplicas", "availableReplicas")


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace")), str(obj.get("kind")), str(meta.get("name")))


def trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a reconcile reads of a child: its spec and the metadata above; of a
    Deployment only its replicas and model container; of the status, an
    InferenceService's URL and Ready condition (and ModelMesh's model states), a
    Deployment's replica counts, an HTTPRoute's parents, nothing of an HPA's."""
    meta = obj.get("metadata") or {}
    kind, spec, status = obj.get("kind"), obj.get("spec") or {}, obj.get("status") or {}
    trimmed: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": kind,
        "metadata": {k: meta[k] for k in (*METADATA, "resourceVersion") if k in meta},
        "spec": spec,
    }
    if kind == DEPLOYMENT.kind:
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        model = [
            {k: c[k] for k in ("name", "args", "resources") if k in c}
            for c in containers
            if c.get("name") == KSERVE_CONTAINER
        ]
        trimmed["spec"] = {
            "replicas": spec.get("replicas"),
            "template": {"spec": {"containers": model}},
        }
        trimmed["status"] = {k: status[k] for k in DEPLOYMENT_STATUS if k in status}
    elif kind == INFERENCE_SERVICE.kind:
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        trimmed["status"] = {"url": status.get("url"), "conditions": ready}
        # ModelMesh's report on the model it serves (KServe writes one in Standard mode
        # too, which modelpilot does not read: its changes wake nothing).
        mode = (meta.get("annotations") or {}).get(KSERVE_DEPLOYMENT_MODE)
        if mode == "ModelMesh":
            trimmed["status"]["modelStatus"] = _model_status(status.get("modelStatus") or {})
            trimmed["status"]["observedGeneration"] = status.get("observedGeneration")
        elif mode in ("Knative", "Serverless"):  # its revisions and their traffic
            predictor = (status.get("components") or {}).get("predictor") or {}
            trimmed["status"]["components"] = {
                "predictor": {
                    **{k: predictor[k] for k in KNATIVE_REVISIONS if k in predictor},
                    "traffic": [
                        {k: t[k] for k in ("revisionName", "percent") if k in t}
                        for t in predictor.get("traffic") or []
                    ],
                }
            }
            trimmed["status"]["observedGeneration"] = status.get("observedGeneration")
    elif kind == HTTP_ROUTE.kind:
        trimmed["status"] = {"parents": status.get("parents") or []}
    return trimmed


KNATIVE_REVISIONS = (
    "latestCreatedRevision",
    "latestReadyRevision",
    "latestRolledoutRevision",
    "previousRolledoutRevision",
)


def _model_status(found: Mapping[str, Any]) -> dict[str, Any]:
    failure = found.get("lastFailureInfo") or {}
    return {
        "transitionStatus": found.get("transitionStatus"),
        "states": found.get("states") or {},
        "copies": {"totalCopies": (found.get("copies") or {}).get("totalCopies")},
        "lastFailureInfo": {k: failure[k] for k in ("reason", "message") if k in failure},
    }


def revision(obj: Mapping[str, Any]) -> int | None:
    """resourceVersions are etcd revisions on every apiserver modelpilot runs against;
    None for one that is not a number (it cannot be ordered)."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def _older(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """a was stored before b; one that cannot be ordered counts as older (the write
    wins, as before this check)."""
    rv_a, rv_b = revision(a), revision(b)
    return rv_a is None or rv_b is None or rv_a < rv_b


def _seen_the_same(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Equal but for resourceVersion: nothing a reconcile reads has changed."""
    if a is None:
        return False

    def strip(o: Mapping[str, Any]) -> dict[str, Any]:
        return {**o, "metadata": {**o["metadata"], "resourceVersion": None}}

    return strip(a) == strip(b)


class ChildCache:
    """Filled by the watches' threads (each kind and namespace its own keys), cleared
    of what a watch missed from the event loop, written to and read from reconcile
    threads: single dict and set operations only, which are atomic."""

    def __init__(self) -> None:
        self._watched: dict[Key, dict[str, Any]] = {}
        self._written: dict[Key, dict[str, Any]] = {}
        self._changed: set[Key] = set()
        # Keys by (namespace, model label): a model's children without scanning every
        # model's (a fleet-wide change scanned the whole cache once per model). A
        # reader checks each object's labels anyway (a label can change).
        self._by_model: dict[tuple[str, str], set[Key]] = {}
        # The revision each child was deleted at, until it is watched again: a reconcile
        # whose apply was answered before the deletion may record it after the watch
        # delivered the deletion (seen with a model deleted mid-reconcile and created
        # again: its first reconcile read the old InferenceService as ready).
        self._gone: dict[Key, int] = {}

    def _index(self, key: Key, obj: Mapping[str, Any]) -> None:
        model = (obj["metadata"].get("labels") or {}).get(MODEL_LABEL)
        if model is not None:
            self._by_model.setdefault((key[0], model), set()).add(key)

    def watched(self, obj: Mapping[str, Any], news: bool = True) -> None:
        """The watch delivered obj (added or modified); it supersedes what we wrote.
        news=False: no model is to look at it (the listing at start)."""
        key, new = key_of(obj), trim(obj)
        known = self._written.pop(key, None) or self._watched.get(key)
        self._watched[key] = new
        self._gone.pop(key, None)
        self._index(key, new)
        if news and not _seen_the_same(known, new):
            self._changed.add(key)

    def listed(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """A full listing at start, before any watch: news to no model."""
        for obj in objs:
            self.watched(obj, news=False)

    def changed(self, obj: Mapping[str, Any]) -> bool:
        """Whether the last delivery of obj changed what a reconcile reads (asked once
        per delivery: the answer is consumed)."""
        key = key_of(obj)
        if key in self._changed:
            self._changed.discard(key)
            return True
        return False

    def deleted(self, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        gone = revision(obj)
        if gone is not None:
            self._gone[key] = gone
        self._watched.pop(key, None)
        self._written.pop(key, None)
        self._changed.discard(key)
        self._unindex(key, obj)

    def _unindex(self, key: Key, obj: Mapping[str, Any]) -> None:
        # The model's set stays, emptied: a reconcile thread may be adding to it.
        model = ((obj.get("metadata") or {}).get("labels") or {}).get(MODEL_LABEL)
        if model is not None:
            self._by_model.get((key[0], model), set()).discard(key)

    def wrote(self, obj: Mapping[str, Any]) -> None:
        """This process wrote obj: read it back until the watch reports on it. Unless
        the watch already has: a fast controller (a gateway's status, say) can write
        again and be watched before the thread that wrote gets here; keeping the older
        write would hide the newer object until the next event, which may never come.
        Nor once the watch has delivered the object's deletion."""
        key = key_of(obj)
        watched = self._watched.get(key)
        if watched is not None and not _older(watched, obj):
            return
        gone, written = self._gone.get(key), revision(obj)
        if gone is not None and (written is None or written <= gone):
            return  # deleted since: the watch has said so already
        self._written[key] = trimmed = trim(obj)
        self._index(key, trimmed)

    def read(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        key = (namespace, kind.kind, name)
        found = self._written.get(key) or self._watched.get(key)
        return dict(found) if found is not None else None

    def children_of(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every known object in namespace that carries all of labels."""
        model = labels.get(MODEL_LABEL)
        if model is None:
            # dict.copy() is one step under the GIL: the event loop may add keys meanwhile.
            known = {**self._watched.copy(), **self._written.copy()}
        else:
            # list(set) and dict.get are single steps under the GIL as well.
            keys = list(self._by_model.get((namespace, model)) or ())
            known = {}
            for key in keys:
                found = self._written.get(key) or self._watched.get(key)
                if found is not None:
                    known[key] = found
        return [
            obj
            for (ns, _, _), obj in known.items()
            if ns == namespace
            and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    def of_kind(self, kind: str) -> dict[Key, dict[str, Any]]:
        """What is cached of one kind now: taken before a full listing of that kind."""
        return {key: obj for key, obj in self._watched.copy().items() if key[1] == kind}

    def forget_missing(
        self, before: Mapping[Key, dict[str, Any]], listed: Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """After a full listing of one kind: what was cached before the listing began,
        is not in it, and no watch event has touched since was deleted while no watch
        was looking (kopf re-lists after a watch expires but reports no deletions).
        Forget those and return them: their models need a look."""
        present = {key_of(obj) for obj in listed}
        gone = []
        for key, obj in before.items():
            if key not in present and self._watched.get(key) is obj:
                self._watched.pop(key, None)
                self._written.pop(key, None)
                self._unindex(key, obj)
                gone.append(obj)
        return gone

    def sizes(self) -> tuple[int, int]:
        """(objects watched, writes not yet reported back)."""
        return len(self._watched), len(self._written)
