"""Sharded operators on the real apiserver: two shards, each electing its own leader on
its own Lease, split the models by a stable hash of namespace/name. Every Event names
the replica that posted it: each model hears only from its shard, and a shard whose
leader stops is carried on by its standby."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from kubernetes import client

from modelpilot.api.names import shard_of
from modelpilot.handlers.manage import Settings
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import eventually, sample, wait_model
from tests.cluster.test_leader_election import LEASE, holder, replica

pytestmark = pytest.mark.cluster
FAST = {"interval": "1s", "stepWeights": [50], "promotion": "auto", "scaleDownDelay": "10m"}


def three_each(namespace: str) -> list[str]:
    """Six model names, three in each shard (the hash depends on the namespace)."""
    found: dict[int, list[str]] = {0: [], 1: []}
    for i in range(100):
        name = f"m{i}"
        shard = found[shard_of(namespace, name, 2)]
        if len(shard) < 3:
            shard.append(name)
    return sorted(found[0] + found[1])


def shard_replica(
    control_plane: ControlPlane, namespace: str, shard: int, identity: str
) -> OperatorThread:
    settings = replace(Settings(), shards=2, shard=shard)
    return replica(control_plane, namespace, identity, lease_of(shard), settings)


def lease_of(shard: int) -> str:
    return f"{LEASE}-shard-{shard}"


def posters(api_client: client.ApiClient, namespace: str) -> dict[str, set[str]]:
    """Model -> the replicas that posted Events about it."""
    found: dict[str, set[str]] = {}
    for event in client.CoreV1Api(api_client).list_namespaced_event(namespace).items:
        if event.involved_object.kind == "ManagedModel":
            found.setdefault(event.involved_object.name, set()).add(event.reporting_instance)
    return found


def heard_from(
    api: client.ApiClient, namespace: str, expected: dict[str, set[str]]
) -> dict[str, set[str]]:
    """Every model's Events posters, once each expected poster has been heard: Events
    are posted after the writes they tell of, so a status can be seen before them."""
    heard: dict[str, set[str]] = {}

    def all_heard() -> bool:
        heard.clear()
        heard.update(posters(api, namespace))
        return all(want <= heard.get(name, set()) for name, want in expected.items())

    eventually(all_heard, what="every model's Events from its shard")
    return heard


def test_two_shards_split_the_models_and_a_shard_hands_over_within_the_lease(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    kube: Kube,
    namespace: str,
    standins: StandIns,
) -> None:
    names = three_each(namespace)
    owner = {name: shard_of(namespace, name, 2) for name in names}
    zero = shard_replica(control_plane, namespace, 0, "shard-0-a").start()
    one = shard_replica(control_plane, namespace, 1, "shard-1-a").start()
    standby = shard_replica(control_plane, namespace, 1, "shard-1-b")
    try:
        eventually(
            lambda: holder(api_client, namespace, lease_of(1)) == "shard-1-a", what="1-a leads"
        )
        standby.start()
        documents = {}
        for name in names:
            document = sample("sklearn-iris", namespace, rollout={**FAST, "target": "v1"})
            document["metadata"]["name"] = name
            document["spec"]["traffic"]["hostnames"] = [f"{name}.example.com"]
            documents[name] = document
            kube.apply(document, manager="test-user")
        for name in names:
            wait_model(kube, namespace, lambda s: s.get("phase") == "Stable", "v1", name=name)
        first = {name: {"shard-0-a" if owner[name] == 0 else "shard-1-a"} for name in names}
        heard = heard_from(api_client, namespace, first)
        for name in names:
            assert heard[name] == first[name], name
        assert zero.state.loops.keys() == {(namespace, n) for n in names if owner[n] == 0}

        one.stop()  # releases shard 1's Lease: its standby takes over
        eventually(
            lambda: holder(api_client, namespace, lease_of(1)) == "shard-1-b", what="1-b leads"
        )
        for name in names:
            changed = copy.deepcopy(documents[name])
            changed["spec"]["rollout"]["target"] = "v2"
            kube.apply(changed, manager="test-user")
        for name in names:
            wait_model(kube, namespace, lambda s: s.get("stableVersion") == "v2", "v2", name=name)
        then = {
            name: {"shard-0-a"} if owner[name] == 0 else {"shard-1-a", "shard-1-b"}
            for name in names
        }
        heard = heard_from(api_client, namespace, then)
        for name in names:
            assert heard[name] == then[name], (name, heard[name])
    finally:
        for replica in (zero, one, standby):
            replica.stop()
