"""The operator's memory of its ManagedModels, so that a reconcile reads its model
without a GET (one per reconcile was a tenth of the operator's CPU in a fleet's
convergence).

What the model's watch last delivered, or what this process's own write returned,
whichever is newer. A model's status is the rollout's memory and only the leading
replica writes it, but a replica that has just taken the lead may not yet have watched
the last status its predecessor wrote: until a model has been read fresh once since
this process started or its leadership changed, a read goes to the API.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from modelpilot.k8s.cache import revision

Key = tuple[str, str]  # namespace, name


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace")), str(meta.get("name")))


def _without_managed_fields(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The model as a reconcile reads it. Server-side apply's managedFields name every
    field path once per manager (the user's spec, our status): 40% of a Stable model's
    size in memory, kept for each of 10,000 models, and read by no reconcile."""
    meta = obj.get("metadata") or {}
    if "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


class ModelCache:
    """Filled from the operator's event loop (watch events) and from reconcile threads
    (their writes); single dict and set operations only, which are atomic under the GIL.
    A model's writes come from one reconcile at a time (one loop per model)."""

    def __init__(self) -> None:
        self._known: dict[Key, Mapping[str, Any]] = {}
        self._trusted: set[Key] = set()

    def _keep(self, obj: Mapping[str, Any]) -> bool:
        key, rv = _key(obj), revision(obj)
        known = self._known.get(key)
        if rv is None:
            self._known.pop(key, None)
            self._trusted.discard(key)
            return False
        if known is not None and (revision(known) or 0) > rv:
            return False  # a late echo of an older write: ours is newer
        self._known[key] = _without_managed_fields(obj)
        return True

    def watched(self, obj: Mapping[str, Any]) -> None:
        """The watch delivered obj (added or modified)."""
        self._keep(obj)

    def wrote(self, obj: Mapping[str, Any]) -> None:
        """This process wrote the model and the API answered with obj: newer than any
        watched copy, and fresh."""
        if self._keep(obj):
            self._trusted.add(_key(obj))

    def deleted(self, namespace: str, name: str) -> None:
        self._known.pop((namespace, name), None)
        self._trusted.discard((namespace, name))

    def distrust(self) -> None:
        """Leadership changed hands: another replica may have written since."""
        self._trusted.clear()

    def read(
        self, namespace: str, name: str, fresh: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """The model as last known, or fresh() (a GET) when the cache is not trusted for
        it yet. A copy: the caller may change it."""
        key = (namespace, name)
        known = self._known.get(key)
        if known is not None and key in self._trusted:
            return copy.deepcopy(dict(known))
        found = fresh()
        if found is None:
            self.deleted(namespace, name)
            return None
        found = dict(_without_managed_fields(found))
        if self._keep(copy.deepcopy(found)):
            self._trusted.add(key)
        return found

    def __len__(self) -> int:
        return len(self._known)
