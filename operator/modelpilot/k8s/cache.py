"""The operator's memory of its children, so that a reconcile reads no child over HTTP.

What the watches last delivered, overlaid with what this process wrote since: a
reconcile that runs before the echo of its own apply arrives still sees what it wrote.
The operator watches every InferenceService, HPA and HTTPRoute in its scope (labelled
or not) and looks children up by name, so an object of another model or of a person
that holds a name we want is seen, and not taken over. Objects are kept trimmed to what
a reconcile reads, so 1,000 models fit in little memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelpilot.k8s.readiness import KSERVE_CONTAINER

# (apiVersion, kind), name, namespace -> the object or None
ChildReader = Callable[[tuple[str, str], str, str], dict[str, Any] | None]
Key = tuple[str, str, str]  # namespace, kind, name


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace")), str(obj.get("kind")), str(meta.get("name")))


def trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without what no reconcile reads: managedFields everywhere, and of a
    Deployment all but its replicas, its model container and its status."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    trimmed = {**obj, "metadata": meta}
    if obj.get("kind") == "Deployment":
        spec = obj.get("spec") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        model = [
            {k: c.get(k) for k in ("name", "args", "resources") if k in c}
            for c in containers
            if c.get("name") == KSERVE_CONTAINER
        ]
        trimmed["spec"] = {
            "replicas": spec.get("replicas"),
            "template": {"spec": {"containers": model}},
        }
    return trimmed


class ChildCache:
    """Filled and cleared from the operator's event loop, read from reconcile threads:
    single dict operations only, which are atomic."""

    def __init__(self) -> None:
        self._watched: dict[Key, dict[str, Any]] = {}
        self._written: dict[Key, dict[str, Any]] = {}

    def watched(self, obj: Mapping[str, Any]) -> None:
        """The watch delivered obj (added or modified)."""
        self._watched[key_of(obj)] = trim(obj)

    def deleted(self, obj: Mapping[str, Any]) -> None:
        self._watched.pop(key_of(obj), None)
        self._written.pop(key_of(obj), None)

    def wrote(self, obj: Mapping[str, Any]) -> None:
        """This process wrote obj: read it back until the watch reports on it."""
        self._written[key_of(obj)] = trim(obj)

    def reported(self, obj: Mapping[str, Any]) -> bool:
        """The watch reported obj, which supersedes what we wrote. True when this is the
        echo of our own write (nothing new for the model to see)."""
        written = self._written.pop(key_of(obj), None)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        return written is not None and written["metadata"].get("resourceVersion") == version

    def read(self, kind: tuple[str, str], name: str, namespace: str) -> dict[str, Any] | None:
        key = (namespace, kind[1], name)
        found = self._written.get(key) or self._watched.get(key)
        return dict(found) if found is not None else None

    def children_of(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every known object in namespace that carries all of labels."""
        # dict.copy() is one step under the GIL: the event loop may add keys meanwhile.
        known = {**self._watched.copy(), **self._written.copy()}
        return [
            obj
            for (ns, _, _), obj in known.items()
            if ns == namespace
            and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    def sizes(self) -> tuple[int, int]:
        """(objects watched, writes not yet reported back)."""
        return len(self._watched), len(self._written)
