"""The operator's children cache against the real apiserver: the periodic full listing
forgets a child whose deletion a watch gap hid, and wakes its model. (No stand-ins and
no operator run here: the resync loop is driven directly.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelpilot.handlers.wiring import Runtime, _resync_children
from modelpilot.k8s.client import Kube, api_client
from tests.cluster.helpers import HPA

pytestmark = pytest.mark.cluster


def hpa(name: str, namespace: str, model: str) -> dict:
    return {
        "apiVersion": HPA[0],
        "kind": HPA[1],
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
    runtime = Runtime(kube=kube, namespaces=(namespace,))
    live = kube.apply(hpa("live-v1", namespace, "live"), manager="test-user")
    runtime.children.watched(live)
    # Cached, then deleted while (as far as the cache knows) no watch was looking.
    ghost = kube.apply(hpa("ghost-v1", namespace, "ghost"), manager="test-user")
    runtime.children.watched(ghost)
    kube.delete(*HPA, "ghost-v1", namespace)

    async def one_period() -> None:
        runtime.poke(namespace, "ghost")  # create the model's event, as its loop would
        runtime.pokes[(namespace, "ghost")].clear()
        task = asyncio.create_task(_resync_children(runtime, every=0.05))
        await asyncio.wait_for(runtime.pokes[(namespace, "ghost")].wait(), timeout=30)
        task.cancel()

    asyncio.run(one_period())
    assert runtime.children.read(HPA, "ghost-v1", namespace) is None
    assert runtime.children.read(HPA, "live-v1", namespace) is not None
