"""Two operator replicas on one Lease, against the real apiserver: only the holder
writes (counted on each replica's own client, and named in the Events it posts), a
stopping leader hands over at once, the new leader carries the rollout on, and no
replica puts kopf's finalizer on a model. Killed replicas (no release) are the fault
suite's business: a thread cannot be killed -9."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.kinds import MANAGED_MODEL
from modelpilot.handlers.manage import Settings
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s import client as k8s_client
from modelpilot.k8s.client import Kube
from modelpilot.k8s.leader import Election, LeaseTiming
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import eventually, sample, wait_model

pytestmark = pytest.mark.cluster
USER = "test-user"
FAST = {"interval": "1s", "progressDeadline": "90s", "scaleDownDelay": "10m"}
LEASE = "modelpilot-test"
TIMING = LeaseTiming(duration=4, renew_deadline=3, retry_period=0.5)
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def replica(
    control_plane: ControlPlane,
    namespace: str,
    identity: str,
    lease: str = LEASE,
    settings: Settings | None = None,
) -> OperatorThread:
    """An in-process replica with its own API client (its requests are its own)."""
    api = k8s_client.api_client(str(control_plane.kubeconfig), user_agent=f"test ({identity})")
    election = Election(identity, lease, namespace, TIMING)
    return OperatorThread(
        Kube(api), settings or Settings(), namespaces=[namespace], election=election
    )


def writes(operator: OperatorThread) -> int:
    counted: Any = operator.kube.api
    return sum(counted.requests[method] for method in WRITES)


def holder(api_client: client.ApiClient, namespace: str, lease: str = LEASE) -> str | None:
    """The Lease's holder; None before the first replica created it (on busy cores the
    test asks first)."""
    try:
        found = client.CoordinationV1Api(api_client).read_namespaced_lease(lease, namespace)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    return found.spec.holder_identity


def event_hosts(api_client: client.ApiClient, namespace: str) -> dict[str, set[str]]:
    found = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=iris"
    )
    hosts: dict[str, set[str]] = {}
    for event in found.items:
        hosts.setdefault(event.reporting_instance, set()).add(event.reason)
        assert event.source.host == event.reporting_instance
    return hosts


def test_only_the_lease_holder_writes_and_a_stopping_leader_hands_over(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    kube: Kube,
    namespace: str,
    standins: StandIns,
) -> None:
    first = replica(control_plane, namespace, "replica-a").start()
    second: OperatorThread | None = None
    try:
        eventually(lambda: holder(api_client, namespace) == "replica-a", what="a leads")
        second = replica(control_plane, namespace, "replica-b").start()
        document = sample("sklearn-iris", namespace)
        document["spec"]["rollout"] = {**FAST, "target": "v1", "promotion": "auto"}
        kube.apply(document, manager=USER)
        wait_model(kube, namespace, lambda s: s.get("phase") == "Stable", "v1 stable")
        # The standby watched all along (its cache holds the children) and wrote nothing.
        assert second.state.children.sizes()[0] > 0
        assert writes(second) == 0
        assert second.state.metrics.reconciles == 0
        assert "modelpilot_leader" in first.state.metrics.render()
        assert 'identity="replica-a"} 1' in first.state.metrics.render()
        assert 'identity="replica-b"} 0' in second.state.metrics.render()
        # Events follow the writes they tell of: wait for the first.
        hosts = eventually(lambda: event_hosts(api_client, namespace), what="an Event")
        assert set(hosts) == {"replica-a"}

        stopped_at = time.monotonic()
        first.stop()
        eventually(lambda: second.state.elector.may_write(), what="b leads")  # type: ignore[union-attr]
        print(f"\nhandover after a release: {time.monotonic() - stopped_at:.2f} s")
        assert holder(api_client, namespace) == "replica-b"
        writes_of_a = writes(first)

        document["spec"]["rollout"]["target"] = "v2"
        kube.apply(document, manager=USER)
        final = wait_model(
            kube,
            namespace,
            lambda s: s.get("phase") == "Stable" and s.get("stableVersion") == "v2",
            "v2 promoted by the new leader",
        )
        assert final["weights"] == {"v2": 100}
        assert writes(first) == writes_of_a  # a stopped replica stays silent
        eventually(
            lambda: event_hosts(api_client, namespace).get("replica-b", set()) >= {"Promoted"},
            what="the new leader's Promoted Event",
        )
        found = kube.get(MANAGED_MODEL, "iris", namespace)
        assert found is not None
        assert "kopf.modelpilot.io/finalizer" not in (found["metadata"].get("finalizers") or [])
    finally:
        if second is not None:
            second.stop()
        if first._thread.is_alive():
            first.stop()


def test_a_model_with_the_finalizer_older_operators_put_can_still_be_deleted(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    document = sample("sklearn-iris", namespace)
    document["metadata"]["finalizers"] = ["kopf.modelpilot.io/finalizer"]
    kube.apply(document, manager=USER)
    wait_model(kube, namespace, lambda s: s.get("phase") == "Stable", "stable")
    eventually(
        lambda: (
            not (kube.get(MANAGED_MODEL, "iris", namespace) or {})["metadata"].get("finalizers")
        ),
        what="the old finalizer removed",
    )
    kube.delete(MANAGED_MODEL, "iris", namespace)
    eventually(lambda: kube.get(MANAGED_MODEL, "iris", namespace) is None, what="deleted")
