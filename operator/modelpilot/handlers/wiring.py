"""Thin kopf wiring: every event about a model (kopf's watch) or its children (the
operator's own watch, `modelpilot.k8s.watch`) wakes that model's loop, and the loop
runs the one reconcile (`manage`).

Each ManagedModel gets one loop (an asyncio task) that reconciles, then sleeps until it
is poked (a change to the model, or to one of its children) or until the rollout has a
deadline or interval to keep. An idle model sleeps without a timeout, so it costs no
reads or writes. One loop per model also means a model is never reconciled twice at
once. The loops are the operator's own, not kopf daemons: kopf puts a finalizer on
every object a daemon runs for, a write every replica would make, leader or not.

With leader election, every replica watches (its cache stays warm) and every model
has a loop, but a loop reconciles only while its replica holds the Lease, and the
client's fence refuses any write that would leave a replica which may not be sure of
it (`modelpilot.k8s.leader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from modelpilot.api.kinds import (
    CLUSTER_SERVING_RUNTIME,
    DEPLOYMENT,
    MANAGED_MODEL,
    SERVING_RUNTIME,
    WATCHED_CHILD_KINDS,
    Kind,
)
from modelpilot.api.names import MODEL_LABEL, shard_of
from modelpilot.api.spec import MlflowSource
from modelpilot.api.status import ManagedModelStatus
from modelpilot.handlers.checks import CheckRunner
from modelpilot.handlers.manage import Outcome, Settings, manage
from modelpilot.handlers.metrics import Metrics, serve_metrics
from modelpilot.handlers.registry_webhook import serve_receiver
from modelpilot.handlers.renders import RenderMemo
from modelpilot.k8s.cache import ChildCache
from modelpilot.k8s.client import Kube, label_selector
from modelpilot.k8s.cluster import KubeCluster
from modelpilot.k8s.leader import LeaderElector, NotLeading
from modelpilot.k8s.models import ModelCache
from modelpilot.k8s.runtime_index import RuntimeIndex
from modelpilot.k8s.watch import KindWatch, Lister, Scope, first_listing
from modelpilot.rollout.commands import parse_commands
from modelpilot.rollout.slots import RolloutSlots

log = logging.getLogger(__name__)
# kopf's own annotations. Not "modelpilot.io": kopf ignores annotations under its own
# prefix when it compares old and new objects, so the user's modelpilot.io/* commands
# would never count as a change.
KOPF_PREFIX = "kopf.modelpilot.io"
LEGACY_FINALIZER = f"{KOPF_PREFIX}/finalizer"
MAX_BACKOFF = 60.0
ROUTINE_THREADS = 6  # asyncio's default pool size on 2 cores, which reconciles used before
COMMAND_THREADS = 2
# Why a model was woken, most urgent first: a command annotation appeared or changed;
# its spec changed (a new generation); anything else (children, runtimes, a restart).
CAUSES = ("command", "change", "other")
CHILD_SETTLE = 0.1  # seconds a wake by a child waits for the rest of its burst
CHILD_RESYNC_SECONDS = 600.0


def watch_labels(kind: Kind) -> dict[str, str | None] | None:
    """The label selector a child kind is watched and listed with. Every
    InferenceService, HPA and HTTPRoute in scope enters the cache, labelled or not: an
    object someone else made under a child's name must be seen before we apply ours.
    KServe's predictor Deployments carry their InferenceService's labels and the
    operator never writes Deployments, so only labelled ones (selected server-side)."""
    return {MODEL_LABEL: None} if kind == DEPLOYMENT else None


@dataclass
class OperatorState:
    """What the handlers share within one operator process (kopf's memo)."""

    kube: Kube
    settings: Settings = field(default_factory=Settings)
    # KServe's ServingRuntimes and ClusterServingRuntimes, as watched.
    serving_runtimes: RuntimeIndex = field(default_factory=RuntimeIndex)
    metrics: Metrics = field(default_factory=Metrics)
    metrics_port: int | None = None
    namespaces: tuple[str, ...] = ()  # the watched namespaces; empty: all of them
    # Touched only from the operator's event loop (the handlers below are async).
    pokes: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    # Each model's generation and annotations as last seen: what the user last changed.
    seen: dict[tuple[str, str], Seen] = field(default_factory=dict)
    # When a sleeping model was first poked, and why (see wake_cause).
    woken: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    # A person's command must not queue behind a fleet's worth of routine reconciles
    # (a storm of spec or child changes): commands run on threads of their own. Neither
    # pool is asyncio's default one, which the Lease's renewals use.
    routine: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(ROUTINE_THREADS, "reconcile")
    )
    urgent: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(COMMAND_THREADS, "reconcile-command")
    )
    commands: CommandsFirst = field(default_factory=lambda: CommandsFirst())
    # Every child as last watched or written: reconciles read children from here.
    children: ChildCache = field(default_factory=ChildCache)
    # Every model as last watched or written: a reconcile reads its model from here.
    models: ModelCache = field(default_factory=ModelCache)
    # The last renders of recently reconciled models, reused while their inputs hold.
    renders: RenderMemo = field(default_factory=RenderMemo)
    # None: this process writes whenever it likes (one replica, or a test).
    elector: LeaderElector | None = None
    identity: str | None = None  # the replica's name, in its Events and the Lease
    loops: dict[tuple[str, str], ModelLoop] = field(default_factory=dict)
    legacy_finalizers: set[tuple[str, str]] = field(default_factory=set)
    # Registry-driven models by the (registered model, alias) they follow, for webhooks.
    registry_sources: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    registry_wakes: set[tuple[str, str]] = field(default_factory=set)
    slots: RolloutSlots = field(init=False)
    recount: asyncio.Future[None] | None = None  # slots recounted after taking the lead

    def __post_init__(self) -> None:
        self.slots = RolloutSlots(self.settings.max_concurrent_rollouts)
        self.kube.fence = self.elector
        self.cluster = KubeCluster(self.kube, self.children, self.identity, self.models)
        self.metrics.leader_identity = self.identity
        self.metrics.shard = (self.settings.shard, self.settings.shards)
        if self.elector is not None:
            self.metrics.leading = self.elector.may_write
        self.metrics.api_requests = getattr(self.kube.api, "requests", {})
        self.checks = CheckRunner(
            self.settings.gateway_flavor,
            self.settings.prometheus_url,
            self.settings.webhook_allow,
            self.settings.prometheus_auth,
        )
        self.metrics.checks_total = self.checks.checks_total

    def poke(
        self, namespace: str | None, name: str | None, cause: str = "other", source: str = ""
    ) -> None:
        """Wake a model's loop. source: what changed (a child's kind, "model", "slot"...),
        counted so that a figure of reconciles per model can be taken apart."""
        if namespace and name and self.owns(namespace, name):
            self.metrics.woke(source or "other", cause)
            key = (namespace, name)
            woken = self.woken.get(key)
            if woken is None or CAUSES.index(cause) < CAUSES.index(woken[1]):
                self.woken[key] = (time.monotonic(), cause)
            self.pokes.setdefault(key, asyncio.Event()).set()

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this process's shard owns the model (always, unsharded)."""
        shards = self.settings.shards
        return shards <= 1 or shard_of(namespace, name, shards) == self.settings.shard

    def wake_registry_followers(self, model: str, alias: str) -> int:
        """A webhook said model@alias moved: its followers poll in their next reconcile."""
        woken = followers(self.registry_sources, model, alias)
        for key in woken:
            self.registry_wakes.add(key)
            self.poke(*key, source="registry")
        return len(woken)


def _state(memo: Any) -> OperatorState:
    state: OperatorState = memo.state
    return state


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf writes nothing of its own: no daemons or change handlers, so no finalizer,
    # progress or diff-base; these only keep its names out of the user's annotations.
    settings.persistence.finalizer = LEGACY_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # No change handlers read a diff: kopf would deep-copy every watched object to
    # build one (a tenth of its cost per event).
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.enabled = False  # modelpilot posts its own Events, with reasons
    settings.watching.server_timeout = 300
    settings.networking.connect_timeout = 10
    state = _state(memo)
    if state.elector is not None:
        memo.election = asyncio.create_task(
            state.elector.run(on_change=lambda leading: _on_leading(state, leading)),
            name="modelpilot-election",
        )
    # Before kopf's watches start (startup comes first): the first reconciles, woken
    # by the models' watch, see every child.
    memo.child_watches = await asyncio.to_thread(_watch_children, state, asyncio.get_running_loop())
    listed, complete = await asyncio.to_thread(_list_runtimes, state.kube, state.namespaces)
    state.serving_runtimes.replace_all(listed, complete=complete)
    if state.slots.limit is not None and state.elector is None:
        # Before any loop runs: rollouts in flight keep their slots, the queue its order.
        await asyncio.to_thread(_seed_slots, state)
    await state.checks.start(wake=lambda key: state.poke(*key, source="analysis"))
    if state.metrics_port is not None:
        memo.metrics_server = await serve_metrics(state.metrics, state.metrics_port)
    webhook = state.settings.registry_webhook_port, state.settings.registry_webhook_secret
    if webhook[0] is not None and webhook[1] is not None:
        elector = state.elector
        memo.registry_webhook = await serve_receiver(
            webhook[1],
            state.wake_registry_followers,
            time.time,
            webhook[0],
            leading=elector.may_write if elector is not None else lambda: True,
        )
    memo.resync = asyncio.create_task(_resync_children(state), name="modelpilot-resync")


@kopf.on.cleanup()
async def shut_down(memo: Any, **_: Any) -> None:
    state = _state(memo)
    for running in state.loops.values():
        running.stopped.set()
    if state.loops:
        await asyncio.wait([running.task for running in state.loops.values()], timeout=5)
    if state.elector is not None:
        # After the loops: a reconcile in flight finishes its writes (or is fenced),
        # then the Lease goes free and a standby takes it within a retry period.
        await state.elector.release()
    election = getattr(memo, "election", None)
    if election is not None:
        election.cancel()
    resync = getattr(memo, "resync", None)
    if resync is not None:
        resync.cancel()
    for watch in getattr(memo, "child_watches", ()):
        watch.stop()
    for server in (getattr(memo, "metrics_server", None), getattr(memo, "registry_webhook", None)):
        if server is not None:
            await server.cleanup()
    await state.checks.close()
    state.routine.shutdown(wait=False, cancel_futures=True)
    state.urgent.shutdown(wait=False, cancel_futures=True)


async def _resync_children(state: OperatorState, every: float = CHILD_RESYNC_SECONDS) -> None:
    """Lists every child kind now and then, and forgets what a watch gap hid the
    deletion of: four LISTs per period, whatever the number of models."""
    while True:
        await asyncio.sleep(every)
        for kind in WATCHED_CHILD_KINDS:
            before = state.children.of_kind(kind.kind)
            try:
                listed = await asyncio.to_thread(
                    _list_in_scope, state.kube, kind, state.namespaces, watch_labels(kind)
                )
            except Exception as err:  # the next period tries again
                log.warning("cannot list %ss to resync the cache: %s", kind.kind, err)
                continue
            for gone in state.children.forget_missing(before, listed):
                meta = gone["metadata"]
                log.info(
                    "%s %s/%s is gone (missed by the watch)",
                    kind.kind,
                    meta["namespace"],
                    meta["name"],
                )
                state.poke(
                    meta["namespace"], (meta.get("labels") or {}).get(MODEL_LABEL), source="resync"
                )


def _watch_children(state: OperatorState, loop: asyncio.AbstractEventLoop) -> list[KindWatch]:
    """Lists every child kind in scope into the cache, then watches each from its
    listing on (modelpilot.k8s.watch)."""
    lister = Lister(state.kube.api.configuration)
    events = ChildEvents(state, loop)
    watches = []
    for kind in WATCHED_CHILD_KINDS:
        for namespace in state.namespaces or (None,):
            scope = Scope(kind, namespace, label_selector(watch_labels(kind)))
            listed, since = first_listing(lister, scope)
            state.children.listed(listed)
            watch = KindWatch(
                lister,
                scope,
                on_event=events.event,
                on_listed=events.relisted,
                since=since,
                alive=lambda: not loop.is_closed(),
            )
            watch.start()
            watches.append(watch)
    return watches


Wake = tuple[str, str, str]  # namespace, model, what changed (its kind, or "relist")


class ChildEvents:
    """A child watch's events, taken on the watch's own thread: the cache is updated
    there, and only a model to wake crosses to the event loop. Most events change
    nothing a reconcile reads (the echo of our own apply, the HPA controller's status),
    and each crossing costs the loop a wake-up of its own."""

    def __init__(self, state: OperatorState, loop: asyncio.AbstractEventLoop) -> None:
        self.state, self.loop = state, loop

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        wake = child_event(self.state.children, kind, obj)
        if wake is not None:
            self.loop.call_soon_threadsafe(_wake, self.state, [wake])

    def relisted(self, scope: Scope, listed: list[dict[str, Any]]) -> None:
        wakes = children_relisted(self.state.children, scope, listed)
        if wakes:
            self.loop.call_soon_threadsafe(_wake, self.state, wakes)


def _wake(state: OperatorState, wakes: list[Wake]) -> None:
    for namespace, model, source in wakes:
        state.poke(namespace, model, source=source)


def child_event(children: ChildCache, kind: str, obj: dict[str, Any]) -> Wake | None:
    """A watched child was added, changed or deleted: the model to wake, if what a
    reconcile reads of it changed."""
    if kind == "DELETED":
        children.deleted(obj)
    else:
        children.watched(obj)
        if not children.changed(obj):
            return None  # our own apply's echo, or a change no reconcile reads
    meta = obj.get("metadata") or {}
    model = (meta.get("labels") or {}).get(MODEL_LABEL)
    namespace = meta.get("namespace")
    if model is None or namespace is None:
        return None
    return (str(namespace), str(model), str(obj.get("kind")))


def children_relisted(
    children: ChildCache, scope: Scope, listed: list[dict[str, Any]]
) -> list[Wake]:
    """A watch too old to resume listed its scope again: the listing is the truth.
    Returns the models to wake."""
    before = {
        key: obj for key, obj in children.of_kind(scope.kind.kind).items() if scope.holds(key[0])
    }
    wakes = []
    for gone in children.forget_missing(before, listed):
        meta = gone["metadata"]
        model = (meta.get("labels") or {}).get(MODEL_LABEL)
        if model is not None:
            wakes.append((str(meta["namespace"]), str(model), "relist"))
    for obj in listed:
        wake = child_event(children, "MODIFIED", obj)
        if wake is not None:
            wakes.append(wake)
    return wakes


def _list_in_scope(
    kube: Kube,
    kind: Kind,
    namespaces: Sequence[str],
    labels: dict[str, str | None] | None,
) -> list[dict[str, Any]]:
    if not namespaces:
        return kube.list(kind, None, labels)
    return [obj for ns in namespaces for obj in kube.list(kind, ns, labels)]


def _list_runtimes(kube: Kube, namespaces: Sequence[str] = ()) -> tuple[list[dict[str, Any]], bool]:
    """Every runtime in scope, and whether every listing succeeded."""
    # Listed once at start so the first reconciles see every runtime; watch events
    # keep the index current afterwards. ServingRuntimes only where the operator
    # watches: with --namespace its RBAC allows no cluster-wide list.
    scopes: list[tuple[Kind, str | None]] = [(CLUSTER_SERVING_RUNTIME, None)]
    scopes += [(SERVING_RUNTIME, ns) for ns in namespaces] or [(SERVING_RUNTIME, None)]
    found: list[dict[str, Any]] = []
    complete = True
    for kind, namespace in scopes:
        try:
            found += [{**item, "kind": kind.kind} for item in kube.list(kind, namespace)]
        except Exception as err:  # KServe's CRDs may be missing: nothing resolves then
            log.warning("cannot list %ss: %s", kind.kind, err)
            complete = False
    return found, complete


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    """Log kopf in with the same credentials as the operator's own client."""
    config = _state(memo).kube.api.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    token = header.split(" ", 1)[-1] if header else None
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


@dataclass
class ModelLoop:
    task: asyncio.Task[None]
    stopped: asyncio.Event


def ensure_loop(state: OperatorState, namespace: str, name: str) -> None:
    """One loop per model, started by its first event (the initial listing after a
    start, or its creation). A loop still winding down for a deleted model of the same
    name finishes first: a model is never reconciled twice at once."""
    key = (namespace, name)
    running = state.loops.get(key)
    if running is not None and not running.stopped.is_set():
        return
    stopped = asyncio.Event()
    after = running.task if running is not None else None
    task = asyncio.create_task(
        model_loop(state, namespace, name, stopped, after), name=f"model {namespace}/{name}"
    )
    state.loops[key] = ModelLoop(task, stopped)


def stop_loop(state: OperatorState, namespace: str, name: str) -> None:
    running = state.loops.get((namespace, name))
    if running is not None:
        running.stopped.set()


async def model_loop(
    state: OperatorState,
    namespace: str,
    name: str,
    stopped: asyncio.Event,
    after: asyncio.Task[None] | None = None,
) -> None:
    if after is not None:
        await asyncio.wait([after])
    key = (namespace, name)
    poke = state.pokes.setdefault(key, asyncio.Event())
    backoff = 1.0
    try:
        while not stopped.is_set():
            if not await _until_leading(state, stopped):
                break
            poke.clear()
            woken = state.woken.pop(key, None)
            if woken is not None and woken[1] == "other":
                woken = await _settle(state, key, woken, poke, stopped)
            registry_woken = key in state.registry_wakes
            state.registry_wakes.discard(key)
            started, cause = time.monotonic(), woken[1] if woken is not None else "other"
            try:
                if key in state.legacy_finalizers:
                    await asyncio.to_thread(drop_legacy_finalizer, state.kube, namespace, name)
                    state.legacy_finalizers.discard(key)
                pool = state.urgent if cause == "command" else state.routine
                outcome = await asyncio.get_running_loop().run_in_executor(
                    pool,
                    functools.partial(
                        _timed_manage,
                        state,
                        woken,
                        namespace,
                        name,
                        alive=lambda: not stopped.is_set(),
                        registry_woken=registry_woken,
                    ),
                )
            except NotLeading:
                log.info("%s/%s: this replica stopped leading mid-reconcile", namespace, name)
                continue
            except Exception:
                state.metrics.observe(time.monotonic() - started, 0, error=True, cause=cause)
                log.exception(
                    "reconcile of %s/%s failed; retrying in %.0fs", namespace, name, backoff
                )
                timeout: float | None = backoff
                backoff = min(backoff * 2, MAX_BACKOFF)
            else:
                state.metrics.observe(
                    time.monotonic() - started, outcome.writes, error=False, cause=cause
                )
                if outcome.phase is not None:
                    for waiting in state.slots.settle(key, outcome.phase):
                        state.poke(*waiting, source="slot")  # a slot came free: the line moves
                state.metrics.set_phase(namespace, name, outcome.phase, outcome.canary_weight)
                state.metrics.set_analysis(
                    namespace, name, outcome.analysis_result, outcome.failed_checks
                )
                timeout, backoff = outcome.requeue_after, 1.0
                if timeout is None:  # at rest until something changes
                    state.renders.forget(namespace, name)
            await _sleep([poke, stopped], timeout)
    finally:
        if state.loops.get(key) is not None and state.loops[key].stopped is stopped:
            del state.loops[key]
            state.pokes.pop(key, None)
            state.seen.pop(key, None)
            state.woken.pop(key, None)
            state.renders.forget(namespace, name)
            state.metrics.set_phase(namespace, name, None)
            state.metrics.set_analysis(namespace, name, None)
            state.checks.forget(key)
            for waiting in state.slots.forget(key):
                state.poke(*waiting, source="slot")


class CommandsFirst:
    """Routine reconciles do not start while a command's reconcile runs: on a busy
    operator the interpreter's lock is shared by every running reconcile, so each one
    started meanwhile would slow the command's (those already running finish)."""

    def __init__(self, longest_hold: float = 2.0) -> None:
        self._running = 0
        self._lock = threading.Lock()
        self._none = threading.Event()
        self._none.set()
        self.longest_hold = longest_hold  # a slow command does not stall the rest long

    @contextlib.contextmanager
    def command(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
            self._none.clear()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._none.set()

    def before_routine(self) -> None:
        self._none.wait(self.longest_hold)


def _timed_manage(
    state: OperatorState,
    woken: tuple[float, str] | None,
    namespace: str,
    name: str,
    alive: Callable[[], bool],
    registry_woken: bool,
) -> Outcome:
    command = woken is not None and woken[1] == "command"
    if not command:
        state.commands.before_routine()
    if woken is not None:
        state.metrics.observe_wait(woken[1], time.monotonic() - woken[0])
    cpu = time.thread_time()
    with (
        state.commands.command() if command else contextlib.nullcontext(),
        _cpu_counted(state.metrics, cpu),
    ):
        return manage(
            state.cluster,
            namespace,
            name,
            state.serving_runtimes,
            state.settings,
            checks=state.checks,
            alive=alive,
            registry_woken=registry_woken,
            slots=state.slots,
            renders=state.renders,
        )


@contextlib.contextmanager
def _cpu_counted(metrics: Metrics, started: float) -> Iterator[None]:
    try:
        yield
    finally:
        metrics.observe_cpu(time.thread_time() - started)


async def _settle(
    state: OperatorState,
    key: tuple[str, str],
    woken: tuple[float, str],
    poke: asyncio.Event,
    stopped: asyncio.Event,
) -> tuple[float, str]:
    """A child's change arrives in a burst (KServe's status, the Deployment
    controller's several status updates, the HPA's first status): wait CHILD_SETTLE
    for the rest of it, so one reconcile reads them all. A person's command or a spec
    change cuts the wait short. Returns the wake with the most urgent cause seen."""
    deadline = woken[0] + CHILD_SETTLE
    while (left := deadline - time.monotonic()) > 0 and not stopped.is_set():
        await _sleep([poke, stopped], left)
        poke.clear()
        later = state.woken.pop(key, None)
        if later is not None and later[1] != "other":
            return (woken[0], later[1])
    return woken


async def _until_leading(state: OperatorState, stopped: asyncio.Event) -> bool:
    """Waits until this replica may write (at once without leader election); False if
    the loop was stopped meanwhile. A standby's loops wait here, its cache kept warm."""
    elector = state.elector
    while elector is not None and not stopped.is_set() and not elector.may_write():
        # Polled as well as woken: the fence can close by time alone.
        leading = asyncio.ensure_future(elector.wait_leading())
        try:
            await _sleep([stopped], elector.timing.retry_period, also=[leading])
        finally:
            leading.cancel()
    return not stopped.is_set()


async def _sleep(
    events: Sequence[asyncio.Event],
    timeout: float | None,
    also: Sequence[asyncio.Future[Any]] = (),
) -> None:
    """Until one of events is set, one of also completes, or the timeout (None: no
    timeout) passes."""
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([*waiters, *also], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _seed_slots(state: OperatorState) -> list[tuple[str, str]]:
    """Counts every model's rollout in flight (and its place in line) from a fresh list;
    returns the waiting models to wake."""
    statuses = {}
    for namespace in state.namespaces or (None,):
        for body in state.kube.list(MANAGED_MODEL, namespace):
            meta = body["metadata"]
            if not state.owns(meta["namespace"], meta["name"]):
                continue
            try:
                status = ManagedModelStatus.model_validate(body.get("status") or {})
            except ValueError:
                continue  # an unreadable status holds no slot; its reconcile says why
            statuses[(meta["namespace"], meta["name"])] = status
    return state.slots.reseed(statuses)


async def _recount_slots(state: OperatorState) -> None:
    """On becoming leader: another replica may have started rollouts meanwhile."""
    while True:
        try:
            waiting = await asyncio.to_thread(_seed_slots, state)
        except Exception:
            log.exception("cannot list models to count rollouts in flight; retrying")
            await asyncio.sleep(2)
            continue
        for key in waiting:
            state.poke(*key, source="slot")
        return


def _on_leading(state: OperatorState, leading: bool) -> None:
    state.models.distrust()  # the other replica may have written statuses meanwhile
    if state.slots.limit is None:
        return
    state.slots.unseed()
    if leading:
        state.recount = asyncio.ensure_future(_recount_slots(state))


@dataclass(frozen=True)
class Seen:
    generation: int | None
    annotations: Mapping[str, str]


def wake_cause(before: Seen | None, now: Seen) -> str:
    """Why a model event wakes its loop (one of CAUSES). A model first seen (the initial
    listing after a start) is routine, whatever annotations it carries."""
    if before is None:
        return "other"
    given = {c.annotation: c for c in parse_commands(now.annotations)}
    if any(before.annotations.get(key) != now.annotations[key] for key in given):
        return "command"
    return "change" if now.generation != before.generation else "other"


def followers(
    sources: dict[tuple[str, str], tuple[str, str]], model: str, alias: str
) -> list[tuple[str, str]]:
    """The models (namespace, name) following model@alias in a registry."""
    return sorted(key for key, source in sources.items() if source == (model, alias))


def registry_source(spec: Any) -> tuple[str, str] | None:
    """(registered model, alias) a model's spec follows in MLflow, from the raw watched
    body (it may be invalid: then it follows nothing)."""
    mlflow = ((spec or {}).get("registry") or {}).get("mlflow") if isinstance(spec, dict) else None
    if not isinstance(mlflow, dict) or not isinstance(mlflow.get("model"), str):
        return None
    alias = mlflow.get("alias", MlflowSource.model_fields["alias"].default)
    return (mlflow["model"], alias) if isinstance(alias, str) else None


def drop_legacy_finalizer(kube: Kube, namespace: str, name: str) -> None:
    """Operators before leader election ran the loop as a kopf daemon, and kopf put a
    finalizer on every model for it; nothing removes it now but this (or the model
    could never be deleted). Conditional on the resourceVersion read."""
    model = kube.get(MANAGED_MODEL, name, namespace)
    if model is None:
        return
    meta = model["metadata"]
    finalizers = meta.get("finalizers") or []
    if LEGACY_FINALIZER in finalizers:
        kept = [f for f in finalizers if f != LEGACY_FINALIZER]
        kube.patch(
            model,
            {"metadata": {"finalizers": kept, "resourceVersion": meta["resourceVersion"]}},
        )
        log.info("%s/%s: removed the finalizer older operators put", namespace, name)


# kopf's WatchingFn protocol types `namespace` as str | None (always a str here: the kind
# is namespaced) and `event` as RawEvent, whose metadata type lacks `generation`.
@kopf.on.event(MANAGED_MODEL.group, MANAGED_MODEL.version, MANAGED_MODEL.plural)  # type: ignore[arg-type]
async def model_changed(
    event: dict[str, Any], namespace: str, name: str, memo: Any, **_: Any
) -> None:
    state = _state(memo)
    if not state.owns(namespace, name):
        return  # another shard's: its replicas reconcile it
    meta = (event.get("object") or {}).get("metadata") or {}
    if LEGACY_FINALIZER in (meta.get("finalizers") or []):
        state.legacy_finalizers.add((namespace, name))
    if event.get("type") == "DELETED":
        state.models.deleted(namespace, name)
        stop_loop(state, namespace, name)
        state.legacy_finalizers.discard((namespace, name))
        state.registry_sources.pop((namespace, name), None)
        return
    state.models.watched(event.get("object") or {})
    follows = registry_source((event.get("object") or {}).get("spec"))
    if follows is None:
        state.registry_sources.pop((namespace, name), None)
    else:
        state.registry_sources[(namespace, name)] = follows
    ensure_loop(state, namespace, name)
    # Only what the user changes (spec, annotations) wakes the loop, not the status
    # the loop itself just wrote.
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(KOPF_PREFIX)
    }
    now = Seen(meta.get("generation"), annotations)
    before = state.seen.get((namespace, name))
    if before != now:
        state.seen[(namespace, name)] = now
        state.poke(namespace, name, cause=wake_cause(before, now), source=MANAGED_MODEL.kind)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base for change handlers, of which modelpilot has none."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


async def _runtime_changed(event: kopf.RawEvent, body: Any, memo: Any, **_: Any) -> None:
    state = _state(memo)
    obj = dict(body)
    if event.get("type") == "DELETED":
        state.serving_runtimes.remove(obj)
    else:
        state.serving_runtimes.upsert(obj)
    # A runtime appearing can make a Degraded (NoRuntime) model servable.
    for namespace, name in list(state.pokes):
        state.poke(namespace, name, source="ServingRuntime")


for _kind in (SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME):
    kopf.on.event(_kind.group, _kind.version, _kind.plural)(_runtime_changed)
