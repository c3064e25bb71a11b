"""--max-concurrent-rollouts on the real apiserver: a fleet-wide target change on three
models with one slot. Every ManagedModel write is watched: at no moment are two of them
rolling, the ones waiting say so (Progressing reason Queued, queuedSince), they start in
the order they first waited, and all end on the new target."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kubernetes import client

from modelpilot.api.kinds import MANAGED_MODEL
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot.rollout.machine import ROLLING
from modelpilot_dev.gateway import TRAEFIK_SETTINGS
from modelpilot_dev.standins import StandIns
from modelpilot_dev.watch import Timeline
from tests.cluster.helpers import condition, eventually, sample, wait_model

pytestmark = pytest.mark.cluster
NAMES = ("iris-a", "iris-b", "iris-c")
FAST = {"target": "v1", "stepWeights": [50], "interval": "2s", "promotion": "auto"}


def test_one_slot_rolls_the_fleet_one_model_at_a_time_in_line_order(
    kube: Kube, namespace: str, standins: StandIns, api_client: client.ApiClient
) -> None:
    settings = replace(TRAEFIK_SETTINGS, max_concurrent_rollouts=1)
    documents = []
    for name in NAMES:
        document = sample("sklearn-iris", namespace, rollout=dict(FAST))
        document["metadata"]["name"] = name
        document["spec"]["traffic"]["hostnames"] = [f"{name}.models.example.com"]
        documents.append(document)
    models = Timeline(api_client, namespace, MANAGED_MODEL).start()
    with OperatorThread(kube, settings, namespaces=[namespace]):
        for document in documents:
            kube.apply(document, manager="test-user")
        for name in NAMES:
            wait_model(kube, namespace, lambda s: s.get("stableVersion") == "v1", "v1", name=name)
        for document in documents:  # the fleet-wide change
            document["spec"]["rollout"]["target"] = "v2"
            kube.apply(document, manager="test-user")
        eventually(
            lambda: any(
                (condition(m, "Progressing") or {}).get("reason") == "Queued"
                for _, m in models.snapshot()
            ),
            what="a model waiting in line",
        )
        for name in NAMES:
            wait_model(
                kube,
                namespace,
                lambda s: s.get("phase") == "Stable" and s.get("stableVersion") == "v2",
                "promoted",
                name=name,
                timeout=180,
            )
    models.stop()

    phases: dict[str, str | None] = {}
    most_rolling, started, queued_since = 0, [], {}
    for _, model in sorted(
        models.snapshot(), key=lambda e: int(e[1]["metadata"]["resourceVersion"])
    ):
        name, status = model["metadata"]["name"], model.get("status") or {}
        if status.get("queuedSince"):
            queued_since.setdefault(name, status["queuedSince"])
        if status.get("phase") in ROLLING and phases.get(name) not in ROLLING:
            started.append(name)
        phases[name] = status.get("phase")
        most_rolling = max(most_rolling, sum(1 for p in phases.values() if p in ROLLING))
    print(f"\nrollouts started in order {started}; queued since {queued_since}")
    assert most_rolling == 1
    assert sorted(started) == sorted(NAMES) and len(queued_since) == 2
    waited = sorted(queued_since, key=lambda n: (queued_since[n], n))
    assert started[1:] == waited  # the line's order
    for name in NAMES:
        final = (kube.get(MANAGED_MODEL, name, namespace) or {}).get("status") or {}
        assert "queuedSince" not in final and final["weights"] == {"v2": 100}
