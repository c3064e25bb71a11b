"""The reconcile's one door to the cluster: every read and write it makes, nothing else.

`KubeCluster` is the real one: children and models from the operator's watch caches,
pods fresh from the API, writes through the API client. The development package's
`MemoryCluster` is its in-memory twin, so the reconcile is unit-tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from modelpilot.api.events import Event
from modelpilot.api.kinds import MANAGED_MODEL, Kind
from modelpilot.k8s.cache import ChildCache
from modelpilot.k8s.client import ApiError, KindNotServed, Kube
from modelpilot.k8s.models import ModelCache

__all__ = ["ChildRejected", "Cluster", "KindNotServed", "KubeCluster"]
from modelpilot.k8s.events import post_event


class ChildRejected(Exception):
    """The apiserver refused a child as invalid (400, 422): the same spec will always
    be refused, so retrying is useless; the message goes to the model's condition."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(f"{kind} {name} was refused by the apiserver: {message}")
        self.kind, self.name, self.message = kind, name, message


class Cluster(Protocol):
    def get(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        """A fresh read from the API: the ManagedModel (its status is the rollout's
        memory), a Gateway, a shadow's TraefikService. Every call raises KindNotServed
        for a kind whose CRD is missing."""
        ...

    def list_objects(
        self, kind: Kind, namespace: str, labels: Mapping[str, str | None]
    ) -> list[dict[str, Any]]:
        """A fresh listing from the API: the pods of a version short of pods."""
        ...

    def cached(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        """A child as the watch cache knows it, overlaid with this process's writes."""
        ...

    def cached_children(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every cached object in namespace that carries all of labels."""
        ...

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of a child, forcing the fields modelpilot renders; raises
        ChildRejected when the apiserver refuses it as invalid."""
        ...

    def delete(self, kind: Kind, name: str, namespace: str) -> None: ...

    def patch_status(self, model: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        """A JSON merge patch of the ManagedModel's status subresource."""
        ...

    def patch_metadata(self, model: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        """A JSON merge patch of the ManagedModel's metadata (consumed commands)."""
        ...

    def post_event(self, model: Mapping[str, Any], event: Event) -> None:
        """An Event on the ManagedModel; failing to post is logged, never raised."""
        ...


class KubeCluster:
    def __init__(
        self,
        kube: Kube,
        children: ChildCache,
        identity: str | None = None,
        models: ModelCache | None = None,
    ) -> None:
        self.kube, self.children, self.identity = kube, children, identity
        self.models = models

    def get(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        if kind == MANAGED_MODEL and self.models is not None:
            return self.models.read(namespace, name, lambda: self.kube.get(kind, name, namespace))
        return self.kube.get(kind, name, namespace)

    def list_objects(
        self, kind: Kind, namespace: str, labels: Mapping[str, str | None]
    ) -> list[dict[str, Any]]:
        return self.kube.list(kind, namespace, labels)

    def cached(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        return self.children.read(kind, name, namespace)

    def cached_children(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return self.children.children_of(namespace, labels)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        try:
            written = self.kube.apply(obj)
        except ApiError as err:
            if err.status not in (400, 422):
                raise
            raise ChildRejected(obj["kind"], obj["metadata"]["name"], err.message) from None
        # Read back until the watch reports on it: a reconcile that runs before the
        # echo arrives still sees what it wrote.
        self.children.wrote(written)
        return written

    def delete(self, kind: Kind, name: str, namespace: str) -> None:
        self.kube.delete(kind, name, namespace)

    def patch_status(self, model: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        self._wrote_model(self.kube.patch_status(model, patch))

    def patch_metadata(self, model: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        self._wrote_model(self.kube.patch(model, {"metadata": dict(patch)}))

    def _wrote_model(self, written: Mapping[str, Any]) -> None:
        if self.models is not None and written.get("kind") == MANAGED_MODEL.kind:
            self.models.wrote(written)

    def post_event(self, model: Mapping[str, Any], event: Event) -> None:
        post_event(self.kube, model, event, self.identity)
