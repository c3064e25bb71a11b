"""Owner references, the no-op write rule and name-conflict detection."""

from __future__ import annotations

import copy
from typing import Any

from modelpilot.k8s.children import (
    APPLIED_HASH,
    contains,
    foreign_controller,
    needs_apply,
    with_owner,
)

OWNER: dict[str, Any] = {
    "apiVersion": "modelpilot.io/v1alpha1",
    "kind": "ManagedModel",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1"},
}
HPA: dict[str, Any] = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "iris-v1", "namespace": "ml", "labels": {"a": "b"}},
    "spec": {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "q"},
                    "target": {"type": "AverageValue", "averageValue": "8"},
                },
            }
        ],
    },
}


def live_from(desired: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns: our fields plus its own."""
    live = copy.deepcopy(desired)
    live["metadata"].update(uid="child", resourceVersion="7", managedFields=[{}])
    live["spec"]["behavior"] = {"scaleUp": {"stabilizationWindowSeconds": 0}}
    live["status"] = {"currentReplicas": 2}
    return live


def test_owner_reference_is_controller() -> None:
    child = with_owner(HPA, OWNER)
    assert child["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "modelpilot.io/v1alpha1",
            "kind": "ManagedModel",
            "name": "iris",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "ownerReferences" not in HPA["metadata"]  # input untouched


def test_unchanged_child_is_not_written() -> None:
    desired = with_owner(HPA, OWNER)
    assert needs_apply(desired, None)
    assert not needs_apply(desired, live_from(desired))


def test_hand_edit_of_our_field_is_reverted() -> None:
    desired = with_owner(HPA, OWNER)
    live = live_from(desired)
    live["spec"]["maxReplicas"] = 10
    assert needs_apply(desired, live)


def test_removed_field_is_written() -> None:
    # A field we stop rendering is still in the live object: the hash tells.
    old = with_owner({**HPA, "spec": {**HPA["spec"], "behavior": {"x": 1}}}, OWNER)
    new = with_owner(HPA, OWNER)
    assert (
        new["metadata"]["annotations"][APPLIED_HASH] != old["metadata"]["annotations"][APPLIED_HASH]
    )
    assert needs_apply(new, live_from(old))


def test_same_input_same_hash() -> None:
    assert with_owner(HPA, OWNER) == with_owner(copy.deepcopy(HPA), OWNER)


def test_quantities_compare_as_strings() -> None:
    assert contains({"cpu": "1"}, {"cpu": 1})
    assert not contains({"cpu": "2"}, {"cpu": 1})
    assert not contains([1, 2], [1])


def test_foreign_controller() -> None:
    ours = with_owner(HPA, OWNER)
    assert foreign_controller(ours, "uid-1") is None
    theirs = with_owner(HPA, {**OWNER, "metadata": {"name": "iris-x", "uid": "uid-2"}})
    assert foreign_controller(theirs, "uid-1") == "ManagedModel/iris-x"
    assert foreign_controller(HPA, "uid-1") == "an object no controller owns"
