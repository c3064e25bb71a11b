"""The fault suite's machinery (tests/cluster/test_faults.py): operator replicas as
processes that can be killed, models that keep rolling, a record of every write, and the
checks run over that record afterwards.

The record. Every version of every HTTPRoute, InferenceService, predictor Deployment and
ManagedModel in a namespace comes from two sources, merged by resourceVersion: a watch
(which resumes across an apiserver restart, lists again when its version is too old)
and the apiserver's audit log (each write's response object), which also holds what a
watch can miss while the apiserver is down. The audit log alone says who wrote: each
operator replica runs as a user of its own whose name is its `--identity` (and its own
client's User-Agent says `modelpilot/<version> (<identity>)`; kopf's does not, which is
why the user is the key), and the Lease's writes say who held it at which
resourceVersion.

resourceVersions: Kubernetes documents them as opaque strings. Here every object lives
in one etcd, whose revision is one integer counter for the whole store, and
kube-apiserver hands it out as the resourceVersion of each write (and of a deletion), so
they compare as integers across kinds. The suite relies on that; it holds for
kube-apiserver on etcd3, not for other storage.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from modelpilot.api.kinds import (
    AUTOSCALER,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    MANAGED_MODEL,
    Kind,
)
from modelpilot.k8s.client import Kube
from modelpilot.k8s.readiness import version_readiness
from modelpilot_dev.audit import AuditEvent, AuditLog
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.operator_process import OperatorProcess, start_operator
from tests.cluster.helpers import (
    PREDICTOR_SUFFIX,
    pinned_versions,
    sample,
    split_weights,
)

log = logging.getLogger(__name__)

USER = "test-user"  # the field manager of the test's own writes
LEASE = "modelpilot"
# Short enough that ten takeovers fit in a couple of minutes; the ratios are the
# defaults' (15 / 10 / 2).
LEASE_FLAGS = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5")
STOP = "serving.kserve.io/stop"
VERSIONS = ("v1", "v2", "v3")
ROLLOUT = {
    "stepWeights": [25, 50, 75],
    "interval": "2s",
    "promotion": "auto",
    "progressDeadline": "180s",
    # Short: a version stopped after a promotion is soon a rollout's target again, so
    # its pods start from nothing while the suite watches its weight.
    "scaleDownDelay": "3s",
}
RECORDED = (HTTP_ROUTE, INFERENCE_SERVICE, DEPLOYMENT, MANAGED_MODEL)
KIND_OF_RESOURCE = {k.plural: k.kind for k in RECORDED}


# --- scale -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big a run is: MODELPILOT_FAULT_SCALE=full (`make fault`) or short (CI)."""

    name: str
    models: int  # rolling all the time
    kills: int  # kill -9 of the leader, standby running
    restarts: int  # kill -9 of a single replica, restarted
    churn_seconds: float
    churn_models: int  # names the churn creates, changes and deletes

    @staticmethod
    def from_env() -> Scale:
        if os.environ.get("MODELPILOT_FAULT_SCALE", "short").lower() == "full":
            return Scale("full", models=8, kills=10, restarts=10, churn_seconds=240, churn_models=8)
        return Scale("short", models=3, kills=3, restarts=2, churn_seconds=60, churn_models=4)


def seeded_random() -> tuple[random.Random, int]:
    seed = int(os.environ.get("MODELPILOT_FAULT_SEED") or random.SystemRandom().randrange(10**6))
    return random.Random(seed), seed


def now() -> dt.datetime:
    """Wall-clock time, comparable with the audit log's timestamps (one machine)."""
    return dt.datetime.now(dt.UTC)


# --- the operator's replicas ------------------------------------------------------------


@dataclass
class Replicas:
    """Operator processes, each a user of its own (its name is its identity)."""

    plane: ControlPlane
    namespace: str
    extra: tuple[str, ...] = LEASE_FLAGS
    running: dict[str, OperatorProcess] = field(default_factory=dict)
    started: dict[str, dt.datetime] = field(default_factory=dict)  # identity -> last start
    identities: list[str] = field(default_factory=list)  # every one used, in order
    _free: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._free = [u for u in self.plane.users if u.startswith(f"{self.namespace}-")]

    def start(self, identity: str | None = None) -> OperatorProcess:
        """A new replica; `identity` again: the same pod's container restarted."""
        if identity is None:
            identity = self._free.pop(0)
            self.identities.append(identity)
        assert identity not in self.running, f"{identity} is running"
        self.started[identity] = now()
        process = start_operator(
            self.plane.kubeconfig_for(identity),
            self.plane.log_dir,
            self.namespace,
            "--lease-namespace",
            self.namespace,
            "--lease-name",
            LEASE,
            *self.extra,
            identity=identity,
            name=f"operator-{identity}",
        )
        self.running[identity] = process
        return process

    def kill(self, identity: str) -> dt.datetime:
        """kill -9; returns when the signal was sent."""
        process = self.running.pop(identity)
        at = now()
        process.kill()
        return at

    def stop_all(self) -> None:
        for process in self.running.values():
            process.stop()
        self.running.clear()

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for identity in self.identities:
            path = self.plane.log_dir / f"operator-{identity}.log"
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"--- operator {identity} (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)


def users_for(namespaces: Iterable[str], per_namespace: int = 24) -> list[str]:
    """The extra users a fault plane needs: `<namespace>-<n>`, one per operator start."""
    return [f"{ns}-{i:02d}" for ns in namespaces for i in range(per_namespace)]


def lease_holder(api: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return (lease.spec.holder_identity if lease.spec else None) or None


def wait_leader(
    api: client.ApiClient, namespace: str, among: Iterable[str], timeout: float = 90
) -> str:
    """Until the Lease names one of `among` (a live replica)."""
    wanted = set(among)
    deadline = time.monotonic() + timeout
    holder = None
    while time.monotonic() < deadline:
        try:
            holder = lease_holder(api, namespace)
        except Exception:  # the apiserver may be restarting
            holder = None
        if holder in wanted:
            return holder
        time.sleep(0.1)
    raise AssertionError(f"no leader among {sorted(wanted)} after {timeout:.0f}s (Lease: {holder})")


# --- models that keep rolling ---------------------------------------------------------------


def rolling_model(namespace: str, name: str, target: str = "v1") -> dict[str, Any]:
    document = sample("sklearn-iris", namespace)
    document["metadata"] = {"name": name, "namespace": namespace}
    document["spec"]["versions"] = [
        {"name": v, "storageUri": f"gs://kfserving-examples/models/sklearn/1.0/{name}-{v}"}
        for v in VERSIONS
    ]
    document["spec"]["traffic"]["hostnames"] = [f"{name}.{namespace}.models.example.com"]
    document["spec"]["rollout"] = {**ROLLOUT, "target": target}
    return document


def settled(found: dict[str, Any] | None) -> bool:
    """Where its spec says: Stable on the target, all traffic on it, spec observed."""
    if not found:
        return False
    status = found.get("status") or {}
    target = found["spec"]["rollout"]["target"]
    return (
        status.get("observedGeneration") == found["metadata"].get("generation")
        and status.get("phase") == "Stable"
        and status.get("stableVersion") == target
        and status.get("weights") == {target: 100}
    )


@dataclass
class Fleet:
    """Models that roll on and on: each time one settles on its target, the next
    version becomes its target (v1 -> v2 -> v3 -> v1 ...)."""

    kube: Kube
    namespace: str
    names: list[str]
    rollouts: int = 0  # rollouts the fleet started
    errors: Counter[str] = field(default_factory=Counter)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def create(self) -> None:
        for name in self.names:
            self.documents[name] = rolling_model(self.namespace, name)
            self.kube.apply(self.documents[name], manager=USER)

    def start(self) -> Fleet:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            for name in self.names:
                try:
                    found = self.kube.get(MANAGED_MODEL, name, self.namespace)
                    if settled(found):
                        self.retarget(name)
                except Exception as err:  # the apiserver may be down: try again
                    self.errors[type(err).__name__] += 1

    def retarget(self, name: str) -> None:
        document = self.documents[name]
        current = document["spec"]["rollout"]["target"]
        following = VERSIONS[(VERSIONS.index(current) + 1) % len(VERSIONS)]
        document["spec"]["rollout"]["target"] = following
        try:
            self.kube.apply(document, manager=USER)
        except Exception:
            document["spec"]["rollout"]["target"] = current
            raise
        self.rollouts += 1


def wait_settled(
    kube: Kube, namespace: str, names: Iterable[str], timeout: float = 240
) -> dict[str, dict[str, Any]]:
    """Until every model is where its spec says; fails naming those that are not."""
    pending = set(names)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            try:
                model = kube.get(MANAGED_MODEL, name, namespace)
            except Exception:
                continue
            if model is not None and settled(model):
                found[name] = model
                pending.discard(name)
        time.sleep(0.5)
    if pending:
        stuck = {}
        for name in sorted(pending):
            model = kube.get(MANAGED_MODEL, name, namespace) or {}
            status = model.get("status") or {}
            stuck[name] = {
                "target": (model.get("spec") or {}).get("rollout", {}).get("target"),
                "generation": (model.get("metadata") or {}).get("generation"),
                "observed": status.get("observedGeneration"),
                "phase": status.get("phase"),
                "weights": status.get("weights"),
                "conditions": [
                    (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                    for c in status.get("conditions") or []
                    if c.get("status") != "True" or c.get("type") == "Degraded"
                ],
            }
        raise AssertionError(f"stuck after {timeout:.0f}s: {stuck}")
    return found


# --- the record -------------------------------------------------------------------------


@dataclass
class NamespaceWatch:
    """Every event of the recorded kinds in one namespace, through apiserver restarts."""

    api: client.ApiClient
    namespace: str
    # (kind, name) -> {resourceVersion: object, or None once deleted}
    versions: dict[tuple[str, str], dict[int, dict[str, Any] | None]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    relists: int = 0  # listings after the first (a watch too old to resume)
    reconnects: int = 0  # watches reopened after an error (the apiserver was down)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> NamespaceWatch:
        for kind in RECORDED:
            ready = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(kind, ready), name=f"record-{kind.plural}", daemon=True
            )
            thread.start()
            ready.wait(30)  # listed: nothing the test does next is missed
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def snapshot(self) -> dict[tuple[str, str], dict[int, dict[str, Any] | None]]:
        with self._lock:
            return {key: dict(found) for key, found in self.versions.items()}

    def _lister(self, kind: Kind) -> Callable[..., Any]:
        custom = client.CustomObjectsApi(self.api)

        def lister(**kw: Any) -> Any:
            return custom.list_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, **kw
            )

        return lister

    def _run(self, kind: Kind, ready: threading.Event) -> None:
        lister = self._lister(kind)
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(kind, lister)
                    ready.set()
                # kubernetes' Watch carries no annotations.
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    lister,
                    resource_version=version,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        self._add(kind.kind, obj["metadata"]["name"], int(version), None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._add(kind.kind, obj["metadata"]["name"], int(version), obj)
                    if self._stop.is_set():
                        return
            except ApiException as err:
                if err.status == 410:
                    version = None  # too old to resume: list again
                    self.relists += 1
                else:
                    self.reconnects += 1
                    self._stop.wait(0.5)
            except Exception:  # connection refused or reset: the apiserver is down
                self.reconnects += 1
                self._stop.wait(0.5)

    def _list(self, kind: Kind, lister: Callable[..., Any]) -> str:
        listing = lister()
        listed_rv = int(listing["metadata"]["resourceVersion"])
        names = set()
        for obj in listing.get("items") or []:
            names.add(obj["metadata"]["name"])
            self._add(
                kind.kind, obj["metadata"]["name"], int(obj["metadata"]["resourceVersion"]), obj
            )
        with self._lock:
            for (k, name), found in self.versions.items():
                # Deleted while the watch was away: gone by the listing's version.
                if k == kind.kind and name not in names and found[max(found)] is not None:
                    found[listed_rv] = None
        return str(listed_rv)

    def _add(self, kind: str, name: str, rv: int, obj: dict[str, Any] | None) -> None:
        with self._lock:
            self.versions[(kind, name)].setdefault(rv, obj)


@dataclass
class Record:
    """A namespace's history, merged from the watch and the audit log."""

    namespace: str
    versions: dict[tuple[str, str], list[tuple[int, dict[str, Any] | None]]]
    audit: list[AuditEvent]  # this namespace's, every write
    only_audit: int = 0  # object versions the watch missed (the audit log had them)
    unreadable_audit_lines: int = 0

    @staticmethod
    def build(watched: NamespaceWatch, audit_log: Path) -> Record:
        merged = watched.snapshot()
        reader = AuditLog(audit_log)
        events = [e for e in reader.events() if e.namespace == watched.namespace]
        only_audit = 0
        for event in events:
            kind = KIND_OF_RESOURCE.get(event.resource)
            rv = event.resource_version
            obj = event.response
            if kind is None or not event.succeeded or rv is None or obj.get("kind") != kind:
                continue
            meta = obj.get("metadata") or {}
            if event.verb == "delete" and not (
                meta.get("deletionTimestamp") and meta.get("finalizers")
            ):
                continue  # deletions come from the watch
            found = merged.setdefault((kind, event.name), {})
            if rv not in found:
                found[rv] = obj
                only_audit += 1
        ordered = {
            key: sorted(found.items(), key=lambda item: item[0]) for key, found in merged.items()
        }
        return Record(watched.namespace, ordered, events, only_audit, reader.unreadable)

    def before(self, kind: str, name: str, rv: int) -> dict[str, Any] | None:
        """The object as it was just before the write at rv (None: absent)."""
        found = self.versions.get((kind, name)) or []
        index = bisect.bisect_left(found, rv, key=lambda item: item[0])
        return found[index - 1][1] if index else None

    def models(self) -> set[str]:
        return {name for (kind, name) in self.versions if kind == MANAGED_MODEL.kind}

    def writer(self, kind: str, name: str, rv: int) -> str:
        """Who wrote the version at rv, as the audit log says ("?" when it does not)."""
        for event in self.audit:
            if (
                KIND_OF_RESOURCE.get(event.resource) == kind
                and event.name == name
                and event.resource_version == rv
            ):
                sub = f"/{event.subresource}" if event.subresource else ""
                return f"{event.user} {event.verb}{sub}"
        return "?"

    def around(self, kind: str, name: str, rv: int, count: int = 2) -> str:
        """The versions of an object just before and after rv, for a failure message."""
        found = self.versions.get((kind, name)) or []
        index = bisect.bisect_left(found, rv, key=lambda item: item[0])
        near = found[max(0, index - count) : index + count]
        steps = []
        for at, obj in near:
            if obj is None:
                steps.append(f"{at} deleted")
                continue
            meta = obj["metadata"]
            flags = " deleting" if meta.get("deletionTimestamp") else ""
            steps.append(f"{at} {self.writer(kind, name, at)} uid {meta.get('uid', '')[:8]}{flags}")
        return f"{kind} {name}: [" + "; ".join(steps) + "]"


def serving(record: Record, model: str, version: str, rv: int) -> tuple[bool, str]:
    """Whether a version could answer requests when the write at rv was made: its
    InferenceService exists, is not stopped, and KServe says Ready; its predictor
    Deployment has an available pod. (Looser than the operator's own readiness, which
    also waits for a Deployment's rollout to finish: a version this calls unready
    certainly was.)"""
    isvc = record.before(INFERENCE_SERVICE.kind, f"{model}-{version}", rv)
    deployment = record.before(DEPLOYMENT.kind, f"{model}-{version}{PREDICTOR_SUFFIX}", rv)
    if isvc is None:
        return False, "no InferenceService"
    if (isvc["metadata"].get("annotations") or {}).get(STOP) == "true":
        return False, "InferenceService stopped"
    if isvc["metadata"].get("deletionTimestamp"):
        return False, "InferenceService being deleted"
    ready = next(
        (c for c in (isvc.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    available = int(((deployment or {}).get("status") or {}).get("availableReplicas") or 0)
    if deployment is None or available < 1:
        return False, "no available predictor pod"
    if ready is None or (
        ready.get("status") != "True" and ready.get("reason") != "MinimumReplicasUnavailable"
    ):
        return False, f"InferenceService not Ready ({(ready or {}).get('reason')})"
    return True, ""


def owner_gone(record: Record, route: dict[str, Any], model: str, rv: int) -> bool:
    """Whether the ManagedModel the route's owner reference names no longer existed
    when the route was written at rv (deleted, or replaced by a new model of its name)."""
    owners = {o.get("uid") for o in route["metadata"].get("ownerReferences") or []}
    current = record.before(MANAGED_MODEL.kind, model, rv)
    return bool(owners) and (current is None or current["metadata"].get("uid") not in owners)


def operator_ready(record: Record, model: str, version: str, rv: int) -> tuple[bool, bool]:
    """(ready, stale) by the operator's own rule (modelpilot.k8s.readiness) on the
    recorded objects: what explains a canary's weight going down."""
    isvc = record.before(INFERENCE_SERVICE.kind, f"{model}-{version}", rv)
    deployment = record.before(DEPLOYMENT.kind, f"{model}-{version}{PREDICTOR_SUFFIX}", rv)
    found = version_readiness(isvc, deployment)
    return found.ready, found.stale


def model_story(record: Record, model: str, rv: int, count: int = 4) -> str:
    """The ManagedModel's versions around rv: what the spec and status said."""
    found = record.versions.get((MANAGED_MODEL.kind, model)) or []
    index = bisect.bisect_left(found, rv, key=lambda item: item[0])
    steps = []
    for at, obj in found[max(0, index - count) : index + count]:
        if obj is None:
            steps.append(f"{at} deleted")
            continue
        status = obj.get("status") or {}
        steps.append(
            f"{at} gen {obj['metadata'].get('generation')} target "
            f"{obj['spec']['rollout'].get('target')} | observed "
            f"{status.get('observedGeneration')} {status.get('phase')} "
            f"stable {status.get('stableVersion')} canary {status.get('canaryVersion')} "
            f"{status.get('weights')} revision {status.get('revision')}"
        )
    return "ManagedModel: [" + "; ".join(steps) + "]"


def candidate_changed(record: Record, model: str, since: int, rv: int) -> str | None:
    """Whether the operator recorded a new revision of the candidate (status.revision, the
    hash of its rendered InferenceService) between two route writes."""
    old = record.before(MANAGED_MODEL.kind, model, since)
    new = record.before(MANAGED_MODEL.kind, model, rv)
    revisions = [((o or {}).get("status") or {}).get("revision") for o in (old, new)]
    if None not in revisions and revisions[0] != revisions[1]:
        return f"candidate revision {revisions[0]} -> {revisions[1]}"
    # A person edited the steps: the rollout goes on at the new weight of its step.
    steps = [
        ((o or {}).get("spec") or {}).get("rollout", {}).get("stepWeights") for o in (old, new)
    ]
    observed = [((o or {}).get("status") or {}).get("observedGeneration") for o in (old, new)]
    if steps[0] != steps[1] and observed[0] != observed[1]:
        return f"stepWeights {steps[0]} -> {steps[1]}"
    return None


def decided_target(record: Record, model: str, rv: int) -> str | None:
    """The target of the spec the operator had seen when it wrote at rv: the status it
    wrote before (status goes before the route in one reconcile) names the generation."""
    current = record.before(MANAGED_MODEL.kind, model, rv)
    if current is None:
        return None
    observed = (current.get("status") or {}).get("observedGeneration")
    for version_rv, obj in reversed(record.versions.get((MANAGED_MODEL.kind, model)) or []):
        if version_rv >= rv or obj is None:
            continue
        if obj["metadata"].get("generation") == observed:
            return str(obj["spec"]["rollout"]["target"])
    return str(current["spec"]["rollout"]["target"])


@dataclass
class RouteFindings:
    weight_sets: int = 0  # distinct weight sets written, all routes
    route_writes: int = 0
    bad_sums: list[str] = field(default_factory=list)
    unready_weight: list[str] = field(default_factory=list)
    # Written by a reconcile already in flight when its model was deleted: the route
    # names a gone owner, and the garbage collector removes it (the leftovers check).
    after_delete: list[str] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)
    explained_drops: list[str] = field(default_factory=list)  # an unready canary lost weight
    stopped_while_weighted: list[str] = field(default_factory=list)
    sequences: dict[str, list[dict[str, int]]] = field(default_factory=dict)


def check_routes(record: Record) -> RouteFindings:
    """Every weight set sums to 100; no version has weight (or a pin) while it cannot
    serve; the target's weight never goes down within one rollout (one decided target)
    unless the target was unready by the operator's own rule."""
    out = RouteFindings()
    for (kind, name), found in sorted(record.versions.items()):
        if kind != HTTP_ROUTE.kind:
            continue
        previous: dict[str, int] | None = None
        previous_target: str | None = None
        previous_rv = 0
        sequence: list[dict[str, int]] = []
        for rv, route in found:
            if route is None:  # deleted with its model: a new life may follow
                previous, previous_target = None, None
                sequence.append({})
                continue
            out.route_writes += 1
            weights = split_weights(route, name)
            if weights == previous:
                continue
            out.weight_sets += 1
            sequence.append(weights)
            where = f"{name} at rv {rv}: {weights}"
            if sum(weights.values()) != 100:
                out.bad_sums.append(where)
            if owner_gone(record, route, name, rv):
                out.after_delete.append(f"{where}; {record.writer(HTTP_ROUTE.kind, name, rv)}")
                previous, previous_target, previous_rv = weights, None, rv
                continue
            for version in sorted(
                {v for v, w in weights.items() if w > 0} | pinned_versions(route, name)
            ):
                ok, why = serving(record, name, version, rv)
                if not ok:
                    out.unready_weight.append(
                        f"{where}: {version} {why}; written by "
                        f"{record.writer(HTTP_ROUTE.kind, name, rv)}; "
                        + "; ".join(
                            record.around(kind, obj_name, rv)
                            for kind, obj_name in (
                                (MANAGED_MODEL.kind, name),
                                (HTTP_ROUTE.kind, name),
                                (INFERENCE_SERVICE.kind, f"{name}-{version}"),
                                (DEPLOYMENT.kind, f"{name}-{version}{PREDICTOR_SUFFIX}"),
                            )
                        )
                    )
            target = decided_target(record, name, rv)
            if previous is not None and target is not None and target == previous_target:
                before, after = previous.get(target, 0), weights.get(target, 0)
                if after < before:
                    ready, stale = operator_ready(record, name, target, rv)
                    line = f"{where}: target {target} {before} -> {after}"
                    changed = candidate_changed(record, name, previous_rv, rv)
                    if changed:
                        # A person edited the candidate: its new revision is not ready
                        # yet (the route goes out before the InferenceService), and the
                        # canary starts over, as Flagger restarts on a new revision.
                        out.explained_drops.append(f"{line} ({changed})")
                    elif ready or stale:
                        out.backwards.append(
                            f"{line} (previous {previous}); {model_story(record, name, rv)}"
                        )
                    else:
                        out.explained_drops.append(line)
            previous, previous_target, previous_rv = weights, target, rv
        out.sequences[name] = sequence
    out.stopped_while_weighted = _stopped_while_weighted(record)
    return out


def _stopped_while_weighted(record: Record) -> list[str]:
    """The operator's own writes that take a version's pods away (the stop annotation,
    a delete) while the route in force still gives it weight."""
    found = []
    for (kind, name), versions in record.versions.items():
        if kind != INFERENCE_SERVICE.kind:
            continue
        for index, (rv, isvc) in enumerate(versions):
            before = versions[index - 1][1] if index else None
            if isvc is None or before is None:
                continue
            stopped_now = (isvc["metadata"].get("annotations") or {}).get(STOP) == "true"
            stopped_before = (before["metadata"].get("annotations") or {}).get(STOP) == "true"
            if not stopped_now or stopped_before:
                continue
            model = (isvc["metadata"].get("labels") or {}).get("modelpilot.io/model", "")
            version = (isvc["metadata"].get("labels") or {}).get("modelpilot.io/version", "")
            route = record.before(HTTP_ROUTE.kind, model, rv)
            if route is not None and split_weights(route, model).get(version, 0) > 0:
                found.append(f"{name} stopped at rv {rv} while the route gave it weight")
    return found


# --- who wrote ----------------------------------------------------------------------------


@dataclass
class LeaseSpan:
    rv: int
    holder: str
    at: dt.datetime  # when the apiserver completed the write


@dataclass
class WriteFindings:
    checked: int = 0  # operator writes with a resourceVersion of their own
    no_ops: int = 0  # writes that changed nothing (answered with an existing version)
    by_time: int = 0  # writes with no resourceVersion (a delete's Status): checked by time
    by_agent: Counter[str] = field(default_factory=Counter)  # modelpilot / kopf / other
    violations: list[str] = field(default_factory=list)
    lease_writes: int = 0
    holders: list[str] = field(default_factory=list)  # each new holder, in order


def lease_spans(record: Record) -> list[LeaseSpan]:
    spans = []
    for event in record.audit:
        if event.resource != "leases" or event.name != LEASE or not event.succeeded:
            continue
        rv = event.resource_version
        if rv is None:
            continue
        holder = ((event.response.get("spec") or {}).get("holderIdentity")) or ""
        spans.append(LeaseSpan(rv, holder, event.completed))
    spans.sort(key=lambda s: s.rv)
    return spans


def _holder_at_rv(spans: list[LeaseSpan], rv: int) -> str | None:
    index = bisect.bisect_left(spans, rv, key=lambda s: s.rv)
    return spans[index - 1].holder if index else None


def _holder_at_time(spans: list[LeaseSpan], at: dt.datetime) -> str | None:
    holder = None
    for span in sorted(spans, key=lambda s: s.at):
        if span.at > at:
            break
        holder = span.holder
    return holder


def check_writes(record: Record, identities: Iterable[str]) -> WriteFindings:
    """Every write by an operator replica landed while that replica held the Lease: the
    latest Lease write below the write's resourceVersion names it. A write that changed
    nothing (its answer carries a version an earlier write produced) is checked by time
    instead: the Lease named the replica when the apiserver received it."""
    replicas = set(identities)
    out = WriteFindings()
    spans = lease_spans(record)
    out.lease_writes = len(spans)
    for span in spans:
        if span.holder and (not out.holders or out.holders[-1] != span.holder):
            out.holders.append(span.holder)
    # Every write of each object version, to tell the write that produced a version
    # from those that only found it.
    producers: dict[tuple[str, str, int], list[AuditEvent]] = defaultdict(list)
    for event in record.audit:
        if event.succeeded and event.resource_version is not None:
            producers[(event.resource, event.name, event.resource_version)].append(event)
    for group in producers.values():
        group.sort(key=lambda e: e.received)
    for event in record.audit:
        if event.user not in replicas or not event.succeeded:
            continue
        agent = event.user_agent
        if agent.startswith("modelpilot/"):
            out.by_agent["modelpilot"] += 1
            if not agent.endswith(f"({event.user})"):
                out.violations.append(
                    f"{_describe(event)}: User-Agent {agent!r} names another replica"
                )
        elif agent.startswith("kopf/"):
            out.by_agent["kopf"] += 1
        else:
            out.by_agent[agent.split("/")[0] or "none"] += 1
        if event.resource == "leases":
            holder = (event.response.get("spec") or {}).get("holderIdentity") or ""
            previous = _holder_at_rv(spans, event.resource_version or 0)
            # Renewing is the holder's alone; taking or releasing changes the holder.
            if holder == previous and holder not in ("", event.user):
                out.violations.append(f"{_describe(event)}: renewed {holder}'s Lease")
            continue
        rv = event.resource_version
        if rv is None:
            out.by_time += 1
            if _holder_at_time(spans, event.received) != event.user:
                out.violations.append(
                    f"{_describe(event)}: received while the Lease named "
                    f"{_holder_at_time(spans, event.received)}"
                )
            continue
        group = producers[(event.resource, event.name, rv)]
        if group[0] is not event:
            out.no_ops += 1  # an earlier write produced this version
            holder = _holder_at_time(spans, event.received)
            if holder != event.user:
                out.violations.append(
                    f"{_describe(event)} (changed nothing): received while the Lease named {holder}"
                )
            continue
        out.checked += 1
        holder = _holder_at_rv(spans, rv)
        if holder != event.user:
            out.violations.append(f"{_describe(event)}: at rv {rv} the Lease named {holder}")
    return out


def _describe(event: AuditEvent) -> str:
    sub = f"/{event.subresource}" if event.subresource else ""
    return (
        f"{event.user} {event.verb} {event.resource}{sub} {event.name} "
        f"({event.received.isoformat(timespec='milliseconds')})"
    )


@dataclass
class Kill:
    """One kill -9 of the leader, and who led next."""

    at: dt.datetime
    killed: str
    successor: str = ""
    successor_started: dt.datetime | None = None  # set when it restarted in the same pod


def takeover_times(record: Record, kills: list[Kill]) -> list[tuple[float, float]]:
    """(seconds to the successor's first Lease write, to its first other write) per kill."""
    out = []
    for kill in kills:
        after = kill.successor_started or kill.at
        lease = [
            e
            for e in record.audit
            if e.resource == "leases"
            and e.user == kill.successor
            and e.succeeded
            and e.received > after
            and (e.response.get("spec") or {}).get("holderIdentity") == kill.successor
        ]
        writes = [
            e
            for e in record.audit
            if e.resource != "leases"
            and e.user == kill.successor
            and e.succeeded
            and e.received > after
        ]
        if not lease or not writes:
            continue
        acquired = min(e.completed for e in lease)
        first = min((e.completed for e in writes if e.completed >= acquired), default=None)
        if first is not None:
            out.append(((acquired - kill.at).total_seconds(), (first - kill.at).total_seconds()))
    return out


def p50_max(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values):.1f}s, max {max(values):.1f}s"


# --- leftovers ------------------------------------------------------------------------------


def leftovers(api: client.ApiClient, namespace: str, models: Iterable[str]) -> list[str]:
    """Children (and the ManagedModel) of deleted models still present."""
    custom = client.CustomObjectsApi(api)
    gone = set(models)
    found = []
    for kind in (MANAGED_MODEL, INFERENCE_SERVICE, AUTOSCALER, HTTP_ROUTE, DEPLOYMENT):
        listing: Any = custom.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural
        )
        for obj in listing.get("items") or []:
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            owner = labels.get("modelpilot.io/model") or (
                meta["name"] if kind in (MANAGED_MODEL, HTTP_ROUTE) else None
            )
            if owner is None and kind == DEPLOYMENT:
                owner = meta["name"].rsplit("-", 2)[0]
            if owner in gone:
                found.append(f"{kind.kind} {meta['name']}")
    return found
