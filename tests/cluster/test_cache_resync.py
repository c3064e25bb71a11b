"""The operator's children cache against the real apiserver: the periodic full listing
forgets a child whose deletion a watch gap hid, and wakes its model. (No stand-ins and
no operator run here: the resync loop is driven directly.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelpilot.api.kinds import AUTOSCALER
from modelpilot.handlers.wiring import OperatorState, _resync_children
from modelpilot.k8s.client import Kube, api_client

pytestmark = pytest.mark.cluster


def hpa(name: str, namespace: str, model: str) -> dict:
    return {
        "apiVersion": AUTOSCALER.api_version,
        "kind": AUTOSCALER.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"modelpilot.io/model": model},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 2,
        },
    }


def test_resync_forgets_a_child_deleted_unseen(kubeconfig: Path, namespace: str) -> None:
    kube = Kube(api_client(str(kubeconfig)))
    state = OperatorState(kube=kube, namespaces=(namespace,))
    live = kube.apply(hpa("live-v1", namespace, "live"), manager="test-user")
    state.children.watched(live)
    # Cached, then deleted while (as far as the cache knows) no watch was looking.
    ghost = kube.apply(hpa("ghost-v1", namespace, "ghost"), manager="test-user")
    state.children.watched(ghost)
    kube.delete(AUTOSCALER, "ghost-v1", namespace)

    async def one_period() -> None:
        state.poke(namespace, "ghost")  # create the model's event, as its loop would
        state.pokes[(namespace, "ghost")].clear()
        task = asyncio.create_task(_resync_children(state, every=0.05))
        await asyncio.wait_for(state.pokes[(namespace, "ghost")].wait(), timeout=30)
        task.cancel()

    asyncio.run(one_period())
    assert state.children.read(AUTOSCALER, "ghost-v1", namespace) is None
    assert state.children.read(AUTOSCALER, "live-v1", namespace) is not None
