"""The fault suite (issue #17): the operator killed, the apiserver killed, models churned,
while models keep rolling; then the whole record is checked.

Runs on a control plane of its own (an audit log, a user per operator replica, an
apiserver the suite may kill), the operator as processes (`modelpilot run`, two replicas
electing a leader on a Lease with short timings), and KServe's stand-in (pods scheduled
for real on kwok's nodes). MODELPILOT_FAULT_SCALE=full (`make fault`) runs the long form
(8 models, 10 kills of each kind, 4 minutes of churn); the default is a short form for
CI. MODELPILOT_FAULT_SEED replays the kill moments and churn of an earlier run;
MODELPILOT_FAULT_ARTIFACTS=DIR keeps the control plane's logs and its audit log there.

Each test checks, over everything recorded (see tests/cluster/faults.py):
- every model ends where its spec says: Stable on its target, all traffic on it;
- every weight set any route carried sums to 100;
- no version had weight (or a pin) while it could not serve;
- within one rollout the target's weight never went down, unless the operator's own
  readiness rule said the target was unready then (so a restart never moves traffic
  back to weights the rollout had left);
- every write of an operator replica landed while it held the Lease;
and prints figures (takeover times, counts). It asserts order and outcomes, never
durations.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.kinds import HTTP_ROUTE, MANAGED_MODEL
from modelpilot.k8s import client as k8s_client
from modelpilot.k8s.client import Kube
from modelpilot_dev import tools
from modelpilot_dev.audit import mutation_policy
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.standins import StandIns
from tests.cluster.conftest import _skip_without_go
from tests.cluster.faults import (
    USER,
    VERSIONS,
    Fleet,
    Kill,
    NamespaceWatch,
    Record,
    Replicas,
    RouteFindings,
    Scale,
    WriteFindings,
    check_routes,
    check_writes,
    leftovers,
    now,
    p50_max,
    rolling_model,
    seeded_random,
    split_weights,
    takeover_times,
    users_for,
    wait_leader,
    wait_settled,
)
from tests.cluster.helpers import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.fault]
SCALE = Scale.from_env()
NAMESPACES = ("fault-standby", "fault-single", "fault-apiserver", "fault-churn")


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    _skip_without_go()
    tools.ensure_all(log=lambda _line: None)
    with ControlPlane(
        audit_policy=mutation_policy(NAMESPACES), users=users_for(NAMESPACES)
    ) as started:
        try:
            yield started
        finally:
            keep = os.environ.get("MODELPILOT_FAULT_ARTIFACTS")
            if keep:  # the plane's directory goes away with it: logs and audit log
                shutil.copytree(started.log_dir, Path(keep) / "logs", dirs_exist_ok=True)
                shutil.copy(started.audit_log, Path(keep) / "audit.log")


@pytest.fixture(scope="module")
def api(plane: ControlPlane) -> Iterator[client.ApiClient]:
    with plane.api_client() as opened:
        yield opened


@pytest.fixture(scope="module")
def standins(plane: ControlPlane) -> Iterator[StandIns]:
    with StandIns(k8s_client.api_client(str(plane.kubeconfig))) as running:
        yield running


@dataclass
class World:
    plane: ControlPlane
    api: client.ApiClient
    kube: Kube
    namespace: str
    replicas: Replicas
    watch: NamespaceWatch
    figures: list[str] = field(default_factory=list)

    def record(self) -> Record:
        return Record.build(self.watch, self.plane.audit_log)

    def route_on(self, names: list[str], targets: dict[str, str]) -> None:
        """Until the recorded routes carry each model's target alone (status is written
        before the route)."""

        def done() -> bool:
            versions = self.watch.snapshot()
            for name in names:
                found = versions.get((HTTP_ROUTE.kind, name)) or {}
                last = found[max(found)] if found else None
                if last is None or split_weights(last, name) != {targets[name]: 100}:
                    return False
            return True

        eventually(done, timeout=60, what="the record to hold every final route")


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    plane: ControlPlane,
    api: client.ApiClient,
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[World]:
    namespace = request.param
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
    eventually(
        lambda: (
            core.list_namespaced_service_account(
                namespace, field_selector="metadata.name=default"
            ).items
        ),
        timeout=30,
        what="the default service account",
    )
    watch = NamespaceWatch(api, namespace).start()
    kube = Kube(k8s_client.api_client(str(plane.kubeconfig)))
    made = World(plane, api, kube, namespace, Replicas(plane, namespace), watch)
    try:
        yield made
    finally:
        made.replicas.stop_all()
        watch.stop()
        with capsys.disabled():
            print(f"\n[fault {SCALE.name}] {namespace}:")
            for line in made.figures:
                print(f"  {line}")
        request.node.add_report_section("call", "operator logs", made.replicas.log_tails())


def checked(world: World, kills: list[Kill]) -> tuple[RouteFindings, WriteFindings]:
    """The record's checks, the figures they give, then the assertions."""
    record = world.record()
    routes = check_routes(record)
    writes = check_writes(record, world.replicas.identities)
    times = takeover_times(record, kills)
    world.figures += [
        f"record: {sum(len(v) for v in record.versions.values())} object versions "
        f"({record.only_audit} from the audit log alone), watch relists "
        f"{world.watch.relists}, reconnects {world.watch.reconnects}, "
        f"unreadable audit lines {record.unreadable_audit_lines}",
        f"routes: {routes.route_writes} writes, {routes.weight_sets} weight sets, "
        f"{len(routes.explained_drops)} drops of an unready target, "
        f"{len(routes.after_delete)} written after their model's deletion",
        f"writes checked against the Lease: {writes.checked} (+{writes.no_ops} that changed "
        f"nothing, {writes.by_time} by time); by agent {dict(writes.by_agent)}; "
        f"Lease writes {writes.lease_writes}, holders in turn {len(writes.holders)}",
    ]
    if kills:
        taken, wrote = [t[0] for t in times], [t[1] for t in times]
        world.figures.append(
            f"kills {len(kills)}, takeovers measured {len(times)}: kill -> Lease taken "
            f"{p50_max(taken)}; kill -> first write {p50_max(wrote)}"
        )
    problems = {
        "weight sets not summing to 100": routes.bad_sums,
        "weight on a version that could not serve": routes.unready_weight,
        "weight moved backwards": routes.backwards,
        "a version stopped while weighted": routes.stopped_while_weighted,
        "writes outside the Lease": writes.violations,
    }
    found = [f"{what}: {line}" for what, lines in problems.items() for line in lines[:10]]
    if found:  # in full: pytest shortens a long assertion's repr
        pytest.fail("\n".join(found))
    return routes, writes


def start_rolling(world: World, count: int) -> Fleet:
    fleet = Fleet(world.kube, world.namespace, [f"m{i}" for i in range(count)])
    fleet.create()
    fleet.start()
    eventually(lambda: fleet.rollouts >= count, timeout=120, what="every model rolling")
    return fleet


def finish(world: World, fleet: Fleet) -> None:
    """Stop starting rollouts; every model must then settle where its spec says."""
    fleet.stop()
    wait_settled(world.kube, world.namespace, fleet.names)
    targets = {n: fleet.documents[n]["spec"]["rollout"]["target"] for n in fleet.names}
    world.route_on(fleet.names, targets)
    world.figures.append(f"rollouts started {fleet.rollouts}; none stuck")


# --- (a) kill -9 the leader, a standby running -------------------------------------------


@pytest.mark.parametrize("world", ["fault-standby"], indirect=True)
def test_kill_leader_with_standby(world: World) -> None:
    rng, seed = seeded_random()
    world.figures.append(f"seed {seed} (MODELPILOT_FAULT_SEED)")
    replicas = world.replicas
    replicas.start()
    replicas.start()
    wait_leader(world.api, world.namespace, replicas.running)
    fleet = start_rolling(world, SCALE.models)
    kills: list[Kill] = []
    by_replacement = 0
    for _ in range(SCALE.kills):
        time.sleep(rng.uniform(0.5, 6.0))
        leader = wait_leader(world.api, world.namespace, replicas.running)
        at = replicas.kill(leader)
        replacement = replicas.start()  # a new pod: it races the standby for the Lease
        successor = wait_leader(world.api, world.namespace, replicas.running)
        by_replacement += successor == replacement.identity
        kills.append(Kill(at, leader, successor))
    finish(world, fleet)
    replicas.stop_all()
    world.figures.append(
        f"Lease taken by the standby {len(kills) - by_replacement}, by the new replica "
        f"{by_replacement}"
    )
    checked(world, kills)


# --- (a') kill -9 a single replica, restarted ------------------------------------------------


@pytest.mark.parametrize("world", ["fault-single"], indirect=True)
def test_kill_single_replica_restarted(world: World) -> None:
    """Alternately restarted in the same pod (same identity: it finds its own Lease) and
    as a new pod (a new identity: it waits for the dead one's Lease to expire)."""
    rng, seed = seeded_random()
    world.figures.append(f"seed {seed} (MODELPILOT_FAULT_SEED)")
    replicas = world.replicas
    identity = replicas.start().identity
    assert identity is not None
    wait_leader(world.api, world.namespace, [identity])
    fleet = start_rolling(world, SCALE.models)
    kills: list[Kill] = []
    for index in range(SCALE.restarts):
        time.sleep(rng.uniform(0.5, 6.0))
        at = replicas.kill(identity)
        same_pod = index % 2 == 0
        successor = replicas.start(identity if same_pod else None).identity
        assert successor is not None
        wait_leader(world.api, world.namespace, [successor])
        kills.append(
            Kill(at, identity, successor, replicas.started[successor] if same_pod else None)
        )
        identity = successor
    finish(world, fleet)
    replicas.stop_all()
    checked(world, kills)


# --- (b) kill -9 the apiserver ----------------------------------------------------------------


@pytest.mark.parametrize("world", ["fault-apiserver"], indirect=True)
def test_apiserver_killed_and_restarted(world: World) -> None:
    replicas = world.replicas
    replicas.start()
    replicas.start()
    before = wait_leader(world.api, world.namespace, replicas.running)
    pids = {identity: p.pid for identity, p in replicas.running.items()}
    fleet = start_rolling(world, SCALE.models)

    def rolling() -> bool:
        phases = Counter(
            ((world.kube.get(MANAGED_MODEL, n, world.namespace) or {}).get("status") or {}).get(
                "phase"
            )
            for n in fleet.names
        )
        return phases["Progressing"] > 0

    eventually(rolling, timeout=60, what="a rollout in progress")
    started = fleet.rollouts
    killed = now()
    down = world.plane.restart_apiserver(5.0)
    back = now()
    # The rollouts go on: each model starts another one after the restart.
    eventually(
        lambda: fleet.rollouts >= started + SCALE.models,
        timeout=180,
        interval=1,
        what="rollouts after the restart",
    )
    finish(world, fleet)
    assert {i: p.pid for i, p in replicas.running.items()} == pids
    assert all(p.alive() for p in replicas.running.values()), "an operator exited"
    after = wait_leader(world.api, world.namespace, replicas.running)
    replicas.stop_all()
    checked(world, [])
    record = world.record()
    first_after = min(
        (
            e.completed
            for e in record.audit
            if e.user in replicas.identities and e.resource != "leases" and e.received > back
        ),
        default=None,
    )
    world.figures += [
        f"apiserver down (kill -> ready) {down:.1f}s; leader before {before}, after {after}; "
        f"operators kept their pids {sorted(pids.values())}",
        "apiserver ready -> first operator write "
        + (f"{(first_after - back).total_seconds():.1f}s" if first_after else "n/a"),
        f"kill at {killed.isoformat(timespec='seconds')}",
    ]


# --- (c) churn --------------------------------------------------------------------------------


@dataclass
class Churn:
    """Models created, changed and deleted at random while the fleet rolls."""

    world: World
    names: list[str]
    rng: Any
    counts: Counter[str] = field(default_factory=Counter)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)  # names whose last action was a delete

    def step(self) -> None:
        name = self.rng.choice(self.names)
        kube, ns = self.world.kube, self.world.namespace
        live = kube.get(MANAGED_MODEL, name, ns)
        if live is not None and live["metadata"].get("deletionTimestamp"):
            return  # still going: no action on it until it is gone
        if name not in self.documents or live is None:
            if live is None:
                self.documents[name] = rolling_model(ns, name, self.rng.choice(VERSIONS))
                kube.apply(self.documents[name], manager=USER)
                self.deleted.discard(name)
                self.counts["created"] += 1
            return
        if self.rng.random() < 0.25:
            kube.delete(MANAGED_MODEL, name, ns)
            del self.documents[name]
            self.deleted.add(name)
            self.counts["deleted"] += 1
            return
        document = self.documents[name]
        spec = document["spec"]
        change = self.rng.choice(["target", "target", "steps", "resources", "versions"])
        if change == "target":
            spec["rollout"]["target"] = self.rng.choice(
                [v for v in VERSIONS if v != spec["rollout"]["target"]]
            )
        elif change == "steps":
            spec["rollout"]["stepWeights"] = sorted(
                self.rng.sample(range(5, 100, 5), self.rng.randint(1, 3))
            )
        elif change == "resources":
            cpu = spec["resources"]["requests"]["cpu"]
            spec["resources"]["requests"]["cpu"] = "150m" if cpu == "100m" else "100m"
        else:  # a version that is never a target comes and goes
            names = [v["name"] for v in spec["versions"]]
            if "v9" in names:
                spec["versions"] = [v for v in spec["versions"] if v["name"] != "v9"]
            else:
                spec["versions"].append({"name": "v9", "storageUri": "gs://example/v9"})
        kube.apply(document, manager=USER)
        self.counts[f"changed: {change}"] += 1


@pytest.mark.parametrize("world", ["fault-churn"], indirect=True)
def test_churn(world: World) -> None:
    rng, seed = seeded_random()
    world.figures.append(f"seed {seed} (MODELPILOT_FAULT_SEED)")
    replicas = world.replicas
    replicas.start()
    replicas.start()
    wait_leader(world.api, world.namespace, replicas.running)
    fleet = start_rolling(world, SCALE.models)
    churn = Churn(world, [f"c{i}" for i in range(SCALE.churn_models)], rng)
    began = time.monotonic()
    while time.monotonic() - began < SCALE.churn_seconds:
        churn.step()
        time.sleep(rng.uniform(0.2, 1.0))
    finish(world, fleet)
    present = sorted(churn.documents)
    wait_settled(world.kube, world.namespace, present)
    world.route_on(present, {n: churn.documents[n]["spec"]["rollout"]["target"] for n in present})
    eventually(
        lambda: not leftovers(world.api, world.namespace, churn.deleted),
        timeout=60,
        what="no child of a deleted model left",
        explain=lambda: leftovers(world.api, world.namespace, churn.deleted),
    )
    rss = {i: round(p.rss_mb()) for i, p in replicas.running.items()}
    leader = wait_leader(world.api, world.namespace, replicas.running)
    world.figures += [
        f"churn {SCALE.churn_seconds:.0f}s over {SCALE.churn_models} names: {dict(churn.counts)}; "
        f"at the end {len(present)} present, {len(churn.deleted)} deleted (no child left)",
        f"RSS after churn: leader {rss[leader]} MB, standby "
        f"{[mb for i, mb in rss.items() if i != leader]} MB",
    ]
    replicas.stop_all()
    checked(world, [])
