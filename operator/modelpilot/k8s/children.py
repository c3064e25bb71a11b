"""Decisions about a child object, apart from the I/O that reads and writes it.

A write that would change nothing is not sent: the desired object carries a hash of
itself in an annotation, and a child is left alone when the live object still carries
that hash and every field we render still has the value we rendered (so a hand edit of
one of our fields is reverted, while fields others set are never our business).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelpilot.k8s.quantity import same_quantity

APPLIED_HASH = "modelpilot.io/applied-hash"


def with_owner(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """The child, owned (controller=true) by the ManagedModel, with its own hash."""
    metadata = owner["metadata"]
    child: dict[str, Any] = json.loads(json.dumps(obj))  # a deep copy that is plain JSON
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": metadata["name"],
            "uid": metadata["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    annotations = child["metadata"].setdefault("annotations", {})
    annotations.pop(APPLIED_HASH, None)
    annotations[APPLIED_HASH] = content_hash(child)
    return child


def content_hash(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def controller_uid(live: Mapping[str, Any]) -> str | None:
    for ref in live.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def foreign_controller(live: Mapping[str, Any], owner_uid: str) -> str | None:
    """Who else holds this child's name: 'Kind/name', 'nobody' for an unowned object of
    the same name, or None when it is ours."""
    uid = controller_uid(live)
    if uid == owner_uid:
        return None
    for ref in live.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return "an object no controller owns"


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    if live is None:
        return True
    want = desired.get("metadata", {}).get("annotations", {}).get(APPLIED_HASH)
    have = (live.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH)
    return want != have or not contains(live, desired)


def contains(live: Any, desired: Any) -> bool:
    """Every field in desired has the same value in live (live may hold more)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return _same_scalar(live, desired)


def _same_scalar(live: Any, desired: Any) -> bool:
    if live == desired:
        return True
    # Quantities: sent as 1 or "0.5", stored as "1" or "500m" by the apiserver.
    return (
        isinstance(live, int | str)
        and isinstance(desired, int | str)
        and (str(live) == str(desired) or same_quantity(live, desired))
    )


def same(a: Any, b: Any) -> bool:
    """Equal, up to how quantities are spelled."""
    return contains(a, b) and contains(b, a)
