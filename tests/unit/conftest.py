from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

BASE: dict[str, Any] = {
    "apiVersion": "modelpilot.io/v1alpha1",
    "kind": "ManagedModel",
    "metadata": {"name": "iris", "namespace": "ml"},
    "spec": {
        "modelFormat": {"name": "sklearn"},
        "versions": [
            {"name": "v1", "storageUri": "gs://bucket/iris/v1"},
            {"name": "v2", "storageUri": "gs://bucket/iris/v2"},
        ],
        "traffic": {"gatewayRef": {"name": "gw", "namespace": "gateways"}},
        "rollout": {"target": "v2"},
    },
}


@pytest.fixture
def doc() -> Callable[..., dict[str, Any]]:
    """A valid two-version ManagedModel document; keyword args override spec fields."""

    def make(**spec: Any) -> dict[str, Any]:
        out = copy.deepcopy(BASE)
        out["spec"].update(spec)
        return out

    return make
