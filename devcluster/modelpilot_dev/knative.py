"""A stand-in for KServe's Knative ("Serverless") deployment mode, which the simulated
cluster does not run: neither Knative Serving nor KServe's controller is there. It is a
simulation, and says so wherever it is used.

What upstream does (KServe's Serverless/Knative docs and its canary rollout guide;
Knative Serving's revisions and routes), and what of it is played here:

- Which InferenceServices: those annotated `serving.kserve.io/deploymentMode: Knative`
  (or `Serverless`, the name KServe used before). The KServe stand-in skips them. Upstream,
  Knative is also the mode of an InferenceService without the annotation unless the
  cluster's default says otherwise; here those stay in Standard mode.
- Revisions: KServe makes one Knative Service `<isvc>-predictor` per InferenceService,
  and Knative makes an immutable Revision `<isvc>-predictor-00001`, `-00002`, ... for
  every change of its pod template, each run by a Deployment `<revision>-deployment`.
  Here there are no Knative objects: the Deployment plays the Revision. It is owned by the
  InferenceService (controller), labelled `serving.kserve.io/inferenceservice`,
  `serving.knative.dev/revision`, `serving.knative.dev/service`,
  `serving.knative.dev/configuration` and `component: predictor`, and annotated with a
  hash of the template it was made from (`TEMPLATE_HASH`), with Knative's
  `autoscaling.knative.dev/min-scale` (KServe's minReplicas, 1 by default) and, once it
  had an available pod, with `READY`: a restarted stand-in rebuilds every revision from the
  Deployments it finds. Its pods are those of the KServe stand-in's predictor
  (`standins.predictor_pod_spec`: `kserve-container` with the model's args, env and
  resources, GPUs included, nodeSelector, tolerations), so the scheduler places them on
  kwok's nodes for real. Knative's queue-proxy sidecar is not added. A new revision is
  made when spec.predictor, less canaryTrafficPercent, hashes otherwise than the latest
  revision (upstream, canaryTrafficPercent goes to the route, not to the template; a
  change of the InferenceService's own labels or annotations, which upstream may also
  reach the template, makes none here). Deleting a revision's Deployment deletes the
  revision.
- Readiness: a revision is ready once its Deployment had an available replica, and stays
  ready when scaled to zero afterwards. The latest ready revision is the newest ready one.
- Traffic (Knative's route, which KServe sets from canaryTrafficPercent and reports in
  status.components.predictor.traffic as Knative's TrafficTargets): without
  canaryTrafficPercent (or at 100), 100% goes to the latest ready revision, which then
  becomes latestRolledoutRevision, the one before it previousRolledoutRevision. With c
  below 100 and a rolled-out revision other than the latest ready one, c% goes to the
  latest ready revision (tag `latest`) and the rest to the rolled-out one (tag `prev`);
  c = 0 is KServe's rollback. A first revision gets 100% whatever c says. Setting c below
  100 with no new revision after a full rollout splits against previousRolledoutRevision
  (KServe's rollback after a promotion; latestRolledoutRevision stays). Knative routes
  only to ready revisions: while the latest created revision is not ready, the split stays
  on the latest ready one (upstream, a new canary against a fully rolled-out revision may
  briefly split against the one before it; that quirk is not played).
- Scale: a new revision starts at one replica (Knative's initial scale). While routed
  (a traffic entry above 0%) its floor is its minReplicas; minReplicas 0 lets it scale to
  zero once `idle_seconds` pass without a request. A revision no longer routed (no entry,
  or 0%) is scaled to zero `idle_seconds` after it stopped being routed, except the latest
  created one while it is not ready yet. Upstream waits a stable window and a grace
  period (a minute or so) and scales on measured concurrency between the floor and
  maxReplicas; here nothing scales above the floor, and timers wake the stand-in when a
  revision is due to go idle. With `instant=True` (benchmarks) every revision has zero
  replicas and is ready at once.
- Scale from zero: upstream, Knative's activator holds a request for a revision at zero,
  has it scaled up and forwards the request once a pod is ready. `request()` plays the
  arrival of a request: it marks the routed revisions active and returns once each
  routed revision with weight above 0 has an available pod. Without a model store no
  request is served (kwok's pods answer nothing), and no Service or route is made.
- Real requests (`model_store=`): a revision whose model is in the store
  (`storageUri: pvc://model-store/<model>/<version>`, kept on its Deployment as
  `STORAGE_URI`) is served by KServe's model server (`LocalServer`, one process per
  revision on a loopback port, the served name as modelpilot_dev.store_servers derives
  it) while its Deployment has replicas; the server is stopped when the revision scales
  to zero, as Knative removes its pods. Such a revision has an available pod only once
  its server also answers ready (for its first readiness and for `request()`). An
  ingress with Knative's activator (modelpilot_dev.knative_ingress, at `ingress_url`)
  takes requests for `<isvc>.<ns>.example.com`, splits them by the traffic written to
  the status and holds those for a revision at zero until it is served again.
- Metrics (`report_to(prometheus)`): the ingress counts and times every request it
  forwards per revision under queue-proxy's names and labels, and each revision's model
  server is scraped labelled `namespace` and `revision`.
- Status, in KServe's InferenceService schema: `url` http://<isvc>.<ns>.example.com and
  `address.url` http://<isvc>.<ns>.svc.cluster.local (KServe's default domain template
  with its Istio virtual host; with disableIstioVirtualHost KServe reports the
  predictor's hosts instead); `components.predictor` with latestCreatedRevision,
  latestReadyRevision, latestRolledoutRevision, previousRolledoutRevision, traffic (a
  tagged entry has Knative's tag url), `url` http://<isvc>-predictor.<ns>.example.com and
  `address.url` http://<isvc>-predictor.<ns>.svc.cluster.local; the urls appear once a
  revision was ready, as upstream. Conditions PredictorReady and Ready are True when the
  latest created revision is ready, else False with reason RevisionMissing and a message
  naming that revision, with the scheduler's reason when its pods cannot be scheduled (a
  revision that can never schedule just stays not ready, its traffic where it was).
  Upstream, a revision still deploying is Unknown, and an unschedulable one fails
  (RevisionFailed); KServe's other conditions (IngressReady, PredictorRouteReady, ...)
  and modelStatus are not written. observedGeneration is the InferenceService's
  generation. The status is written only when it changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client

from modelpilot.api.kinds import KSERVE_ISVC_LABEL
from modelpilot_dev.local_server import LocalServer
from modelpilot_dev.modelmesh import _removing
from modelpilot_dev.standins import (
    DEPLOYMENTS,
    KNATIVE_REVISION_LABEL,
    KSERVE,
    _Controller,
    is_knative,
    owner_references,
    predictor_pod_spec,
)
from modelpilot_dev.store_servers import StoreServers, ignore_missing

if TYPE_CHECKING:  # it builds on this module
    from modelpilot_dev.knative_ingress import KnativeIngress
    from modelpilot_dev.prometheus import LocalPrometheus

SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
MIN_SCALE = "autoscaling.knative.dev/min-scale"
# The stand-in's own marks on a revision's Deployment, which plays the Revision.
TEMPLATE_HASH = "knative-standin.modelpilot.io/template-hash"
READY = "knative-standin.modelpilot.io/ready"  # "true" once it had an available pod
# The predictor's storageUri: upstream it goes to the storage initializer, which the pod
# spec here leaves out; kept to know which model a revision's server loads.
STORAGE_URI = "knative-standin.modelpilot.io/storage-uri"
DEPLOYMENT_SUFFIX = "-deployment"  # Knative's: <revision>-deployment
DOMAIN = "example.com"  # Knative's default domain, as in KServe's docs
CANARY = "canaryTrafficPercent"
NOT_READY = "RevisionMissing"
IDLE_SECONDS = 2.0
INITIAL_SCALE = 1  # Knative's initial-scale default
DEFAULT_MIN_REPLICAS = 1  # KServe's, when spec.predictor.minReplicas is not set
_NUMBER = re.compile(r"-(\d+)$")

Key = tuple[str, str]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_name(isvc: str) -> str:
    """The Knative Service KServe makes for the predictor."""
    return f"{isvc}-predictor"


def revision_name(isvc: str, number: int) -> str:
    return f"{service_name(isvc)}-{number:05d}"


def deployment_name(revision: str) -> str:
    return f"{revision}{DEPLOYMENT_SUFFIX}"


def template_hash(predictor: dict[str, Any]) -> str:
    """What makes a new revision: the predictor less its traffic share."""
    template = {key: value for key, value in predictor.items() if key != CANARY}
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]


def _target(
    revision: str, percent: int, latest: bool, tag: str | None, host: str
) -> dict[str, Any]:
    """One of Knative's TrafficTargets as its route reports it (a tag gets its own url)."""
    target: dict[str, Any] = {
        "revisionName": revision,
        "percent": percent,
        "latestRevision": latest,
    }
    if tag:
        target["tag"] = tag
        target["url"] = f"http://{tag}-{host}"
    return target


def route(
    created: str,
    ready: str | None,
    rolled: str | None,
    previous: str | None,
    canary: int | None,
    host: str,
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """Knative's traffic for KServe's route, and the rolled-out revisions after it:
    (traffic, latestRolledoutRevision, previousRolledoutRevision). `created` is the latest
    created revision, `ready` the latest ready one, `host` the Knative Service's."""
    if ready is None:
        return [], rolled, previous  # nothing to route to yet
    stable = rolled
    if canary is not None and canary < 100 and rolled == ready == created and previous:
        # A rollback: the latest was rolled out in full and the percentage drops again.
        # KServe's status then names the revision rolled out before it as the rolled-out
        # one again (its next reconcile splits against that one), so a later canary
        # splits against it too, not against the revision rolled back.
        stable = rolled = previous
    if canary is not None and canary < 100 and stable and stable != ready:
        return (
            [
                _target(ready, canary, True, "latest", host),
                _target(stable, 100 - canary, False, "prev", host),
            ],
            rolled,
            previous,
        )
    if rolled != ready:  # all traffic on the latest ready revision: it is rolled out
        previous, rolled = rolled or previous, ready
    return [_target(ready, 100, True, None, host)], rolled, previous


@dataclass(eq=False)  # compared by identity: one object per revision and pass
class _Revision:
    """A revision, as its Deployment shows it."""

    name: str
    number: int
    deployment: dict[str, Any]

    @classmethod
    def of(cls, deployment: dict[str, Any]) -> _Revision | None:
        name = ((deployment.get("metadata") or {}).get("labels") or {}).get(
            KNATIVE_REVISION_LABEL, ""
        )
        number = _NUMBER.search(name)
        return cls(name, int(number[1]), deployment) if number else None

    @property
    def annotations(self) -> dict[str, str]:
        return self.deployment["metadata"].get("annotations") or {}

    @property
    def template_hash(self) -> str | None:
        return self.annotations.get(TEMPLATE_HASH)

    @property
    def min_replicas(self) -> int:
        try:
            return int(self.annotations.get(MIN_SCALE, DEFAULT_MIN_REPLICAS))
        except ValueError:
            return DEFAULT_MIN_REPLICAS

    @property
    def replicas(self) -> int:
        return int((self.deployment.get("spec") or {}).get("replicas") or 0)

    @property
    def available(self) -> int:
        return int((self.deployment.get("status") or {}).get("availableReplicas") or 0)

    @property
    def marked_ready(self) -> bool:
        return self.annotations.get(READY) == "true"


@dataclass
class _Clock:
    """When a revision was last active (monotonic; -inf: long ago), and whether it was
    routed when last looked at."""

    active_at: float
    routed: bool = False


@dataclass
class _Service:
    """What the stand-in keeps in memory of one InferenceService: its revisions' idle
    clocks. Everything else is read from the cluster on each pass."""

    uid: str
    clocks: dict[str, _Clock] = field(default_factory=dict)
    # revision -> percent, as last written to status.components.predictor.traffic: what
    # the ingress splits requests by.
    weights: dict[str, int] = field(default_factory=dict)


@dataclass
class _Server:
    """A revision's model server, and whether it answered ready yet."""

    server: LocalServer
    ready: bool = False


class KnativeStandIn(_Controller):
    name = "knative-standin"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        instant: bool = False,
        idle_seconds: float = IDLE_SECONDS,
        model_store: Path | None = None,
    ) -> None:
        super().__init__(api)
        self.instant = instant
        self.idle_seconds = idle_seconds
        self.model_store = model_store
        # Only for store_model(): a revision's model and served name, derived as the
        # KServe stand-in derives them. Its servers are per InferenceService; these are
        # per revision, in _servers.
        self._store = StoreServers(self.custom, model_store)
        self._state_lock = threading.Lock()
        self._services: dict[Key, _Service] = {}
        # key -> (when due, monotonic; the timer): the next idle check of a service.
        self._timers: dict[Key, tuple[float, threading.Timer]] = {}
        # (namespace, revision) -> its model server, while it has replicas.
        self._servers: dict[Key, _Server] = {}
        self.ingress: KnativeIngress | None = None
        self.prometheus: LocalPrometheus | None = None

    @property
    def ingress_url(self) -> str | None:
        """http://127.0.0.1:PORT of the ingress (with a model store, once started)."""
        return self.ingress.url if self.ingress is not None else None

    def start(self) -> None:
        from modelpilot_dev.knative_ingress import KnativeIngress  # it builds on this module

        super().start()
        if self.model_store is not None:
            self.ingress = KnativeIngress(self).start()

    # --- watches and keys ---------------------------------------------------------------

    def watches(self) -> list[Callable[..., Any]]:
        def isvcs(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(*KSERVE, **kw)

        def deployments(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(
                *DEPLOYMENTS, label_selector=KNATIVE_REVISION_LABEL, **kw
            )

        def pods(**kw: Any) -> Any:
            # The scheduler's verdict on a new revision's pods is on the pods only. Typed:
            # the custom-objects API has no path for the core group.
            return self.core.list_pod_for_all_namespaces(
                label_selector=KNATIVE_REVISION_LABEL, **kw
            )

        return [isvcs, deployments, pods]

    def key_of(self, obj: dict[str, Any]) -> tuple[str | None, str | None]:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace")
        if obj.get("kind") == "InferenceService":
            # Other modes' are dropped here, not fetched in handle only to be skipped. One
            # that was Knative still comes through, to be forgotten.
            name = meta.get("name")
            with self._state_lock:
                known = (namespace, name) in self._services
            return (namespace, name) if known or is_knative(obj) else (None, None)
        return namespace, (meta.get("labels") or {}).get(KSERVE_ISVC_LABEL)

    def _remember(self, key: Key, uid: str) -> _Service:
        with self._state_lock:
            service = self._services.get(key)
            if service is None or service.uid != uid:  # new, or deleted and made again
                service = self._services[key] = _Service(uid)
            return service

    def _forget(self, key: Key) -> None:
        with self._state_lock:
            self._services.pop(key, None)
            timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        self._drop_servers(key, keep=set())

    def _wake(self, key: Key, delay: float) -> None:
        """Handle key again after delay: no event says when a revision goes idle. One timer
        per key, the earliest asked for; its pass asks for the next one."""
        due = time.monotonic() + delay

        def fire() -> None:
            with self._state_lock:
                current = self._timers.get(key)
                if current is not None and current[0] == due:
                    del self._timers[key]
            self.enqueue(key)

        with self._state_lock:
            current = self._timers.get(key)
            if current is not None and current[0] <= due:
                return
            timer = threading.Timer(delay, fire)
            timer.daemon = True
            self._timers[key] = (due, timer)
        if current is not None:
            current[1].cancel()
        timer.start()

    def stop(self) -> None:
        with self._state_lock:
            timers, self._timers = list(self._timers.values()), {}
        for _, timer in timers:
            timer.cancel()
        if self.ingress is not None:
            self.ingress.stop()
        super().stop()
        with self._state_lock:
            servers, self._servers = list(self._servers.values()), {}
        for running in servers:
            running.server.close()

    def report_to(self, prometheus: LocalPrometheus) -> None:
        """Have Prometheus scrape the ingress's queue-proxy metrics and every revision's
        model server, labelled `namespace` and `revision` (as a scrape of KServe's pods
        keeping their serving.knative.dev/revision label would), those running and those
        to come."""
        with self._state_lock:
            self.prometheus = prometheus
            if self.ingress is not None:
                prometheus.add_target(self.ingress.address, {"component": "queue-proxy"})
            for key, running in self._servers.items():
                self._scrape(key, running.server)

    def _scrape(self, key: Key, server: LocalServer, *, stop: bool = False) -> None:
        """Called with _state_lock held."""
        if self.prometheus is None:
            return
        address = f"127.0.0.1:{server.port}"
        if stop:
            self.prometheus.remove_target(address)
        else:
            self.prometheus.add_target(address, {"namespace": key[0], "revision": key[1]})

    # --- the activator --------------------------------------------------------------------

    def request(
        self, namespace: str, isvc: str, timeout: float = 30.0, revision: str | None = None
    ) -> bool:
        """A request arriving for the InferenceService, as Knative's activator sees it: the
        revisions it routes to are marked active (their idle clocks start again), a routed
        one at zero replicas is scaled back to max(1, minReplicas), and this returns True
        once each routed revision with weight above 0 has an available pod (with a model
        store: and its server answers ready); False if that takes longer than timeout (or
        there is no such InferenceService). While it waits the revisions count as active,
        as a request held by the activator keeps them. With `revision` (the ingress's
        pick), only that one is woken and waited for; False at once if it is not routed
        (any more): the caller picks again. This serves nothing itself: the ingress
        forwards the request it holds once this returns."""
        key = (namespace, isvc)
        group, version, plural = KSERVE
        deadline = time.monotonic() + timeout
        woken = False
        while True:
            found = ignore_missing(
                lambda: self.custom.get_namespaced_custom_object(
                    group, version, namespace, plural, isvc
                )
            )
            traffic = (
                (((found or {}).get("status") or {}).get("components") or {}).get("predictor") or {}
            ).get("traffic") or []
            routed = sorted({t["revisionName"] for t in traffic if int(t.get("percent") or 0)})
            if revision is not None:
                if found is not None and revision not in routed:
                    return False
                routed = [revision]
            if found is not None and routed:
                self._touch(key, found["metadata"]["uid"], routed)
                if self.instant:
                    return True  # no pods in instant mode: ready at once
                shown = [self._revision_deployment(namespace, name) for name in routed]
                if all(
                    (r := _Revision.of(d)) is not None and self._has_pod(namespace, r)
                    for d in shown
                ):
                    self._touch(key, found["metadata"]["uid"], routed)  # served now
                    return True
                asleep = any(not (d.get("spec") or {}).get("replicas") for d in shown)
                if asleep or not woken:
                    self.enqueue(key)
                    woken = True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _revision_deployment(self, namespace: str, revision: str) -> dict[str, Any]:
        apps, v1, plural = DEPLOYMENTS
        found = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                apps, v1, namespace, plural, deployment_name(revision)
            )
        )
        return dict(found or {})

    def _touch(self, key: Key, uid: str, revisions: list[str]) -> None:
        service = self._remember(key, uid)
        now = time.monotonic()
        with self._state_lock:
            for revision in revisions:
                service.clocks.setdefault(revision, _Clock(now)).active_at = now

    # --- for the ingress --------------------------------------------------------------------

    def routes(self, namespace: str, isvc: str) -> dict[str, int] | None:
        """Revision -> percent as last written to the InferenceService's status (percent 0
        included); None for an InferenceService not in Knative mode here."""
        with self._state_lock:
            service = self._services.get((namespace, isvc))
            return dict(service.weights) if service is not None else None

    def touch(self, namespace: str, isvc: str, revision: str) -> None:
        """A request went to the revision: its idle clock starts again."""
        with self._state_lock:
            service = self._services.get((namespace, isvc))
            clock = service.clocks.get(revision) if service is not None else None
            if clock is not None:
                clock.active_at = time.monotonic()

    def server(self, namespace: str, revision: str) -> LocalServer | None:
        """The revision's model server once it answered ready; None while it has none."""
        key = (namespace, revision)
        with self._state_lock:
            running = self._servers.get(key)
        return running.server if running is not None and self._server_ready(key) else None

    def servers(self) -> dict[Key, LocalServer]:
        """(namespace, revision) -> model server, of every revision that has one."""
        with self._state_lock:
            return {key: running.server for key, running in self._servers.items()}

    # --- model servers --------------------------------------------------------------------

    def _store_model(self, revision: _Revision) -> tuple[str, str, str] | None:
        """(model, version, served name) when the revision's model is in the store."""
        if self.model_store is None:
            return None
        containers = revision.deployment["spec"]["template"]["spec"].get("containers") or [{}]
        model = {
            "storageUri": revision.annotations.get(STORAGE_URI),
            "args": containers[0].get("args"),
        }
        return self._store.store_model({"spec": {"predictor": {"model": model}}})

    def _server_ready(self, key: Key) -> bool:
        """The revision's server is up and answered ready (probed until it once did)."""
        with self._state_lock:
            running = self._servers.get(key)
        if running is None or not running.server.alive():
            return False
        if not running.ready:
            running.ready = running.server.is_ready()
        return running.ready

    def _has_pod(self, namespace: str, revision: _Revision) -> bool:
        """An available pod, as the routing sees it: with a real server, one that answers.
        A revision scaled to zero has none, even while its Deployment's status still
        counts the pod being removed: the activator must wake it, not send to a pod on
        its way out."""
        if not revision.replicas or not revision.available:
            return False
        return self._store_model(revision) is None or self._server_ready((namespace, revision.name))

    def _sync_server(self, namespace: str, revision: _Revision) -> bool:
        """Start the revision's server while its Deployment has replicas (again if it
        died), stop it at zero. True while a server runs that is not ready yet: no event
        says when it is, so the caller looks again shortly."""
        key = (namespace, revision.name)
        wanted = self._store_model(revision) if revision.replicas else None
        with self._state_lock:
            running = self._servers.get(key)
            if running is not None and (wanted is None or not running.server.alive()):
                del self._servers[key]
                self._scrape(key, running.server, stop=True)
                # In the background: a worker must not wait for a server's grace period.
                threading.Thread(target=running.server.close, daemon=True).start()
                running = None
            if wanted is not None and running is None:
                model, version, served = wanted
                server = LocalServer(model, version, root=self.model_store, name=served)
                running = self._servers[key] = _Server(server.start())
                self._scrape(key, server)
        return running is not None and not self._server_ready(key)

    def _drop_servers(self, key: Key, keep: set[str]) -> None:
        """Stop the servers of the InferenceService's revisions not in keep (gone)."""
        namespace, isvc = key
        prefix = f"{service_name(isvc)}-"
        with self._state_lock:
            gone = [
                (k, running)
                for k, running in self._servers.items()
                if k[0] == namespace
                and k[1].startswith(prefix)
                and k[1][len(prefix) :].isdigit()
                and k[1] not in keep
            ]
            for k, running in gone:
                del self._servers[k]
                self._scrape(k, running.server, stop=True)
        for _, running in gone:
            threading.Thread(target=running.server.close, daemon=True).start()

    # --- reconcile ------------------------------------------------------------------------

    def handle(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        group, version, plural = KSERVE
        isvc = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        )
        if isvc is None or isvc["metadata"].get("deletionTimestamp") or not is_knative(isvc):
            self._forget(key)  # the garbage collector removes the revisions it owned
            return
        uid = isvc["metadata"]["uid"]
        service = self._remember(key, uid)
        predictor: dict[str, Any] = (isvc.get("spec") or {}).get("predictor") or {}
        revisions = self._revisions(namespace, name, uid)
        digest = template_hash(predictor)
        if not revisions or revisions[-1].template_hash != digest:
            number = revisions[-1].number + 1 if revisions else 1
            made = ignore_missing(
                lambda: self.custom.create_namespaced_custom_object(
                    *DEPLOYMENTS[:2],
                    namespace,
                    DEPLOYMENTS[2],
                    self._deployment(isvc, revision_name(name, number), digest),
                )
            )
            revision = _Revision.of(made) if made else None
            if revision is None:
                # 409: a Deployment of that name is still there, e.g. an earlier
                # InferenceService's of the same name being collected; its deletion
                # brings this one back.
                return
            revisions.append(revision)

        now = time.monotonic()
        latest = revisions[-1]
        self._drop_servers(key, keep={r.name for r in revisions})
        ready = [
            r for r in revisions if self.instant or r.marked_ready or self._has_pod(namespace, r)
        ]
        latest_ready = ready[-1].name if ready else None
        with self._state_lock:
            clocks = service.clocks
            for gone in set(clocks) - {r.name for r in revisions}:
                del clocks[gone]
            for r in revisions:
                # A revision first seen at zero replicas has been idle for long.
                clocks.setdefault(r.name, _Clock(now if r.replicas else float("-inf")))
                if r in ready and not r.marked_ready:
                    clocks[r.name].active_at = now  # it has just come up

        traffic, rolled, previous = self._route(isvc, revisions, latest_ready)
        weights: dict[str, int] = {}
        for target in traffic:
            revision = target["revisionName"]
            weights[revision] = weights.get(revision, 0) + int(target["percent"])
        with self._state_lock:
            service.weights = weights

        wake: float | None = None
        for r in revisions:
            routed = weights.get(r.name, 0) > 0
            with self._state_lock:
                clock = clocks[r.name]
                if clock.routed and not routed:
                    clock.active_at = now  # left behind: its idle clock starts now
                clock.routed = routed
                replicas, due = self._replicas(
                    r, clock, routed=routed, pending=r is latest and r not in ready, now=now
                )
            if due is not None:
                wake = due if wake is None else min(wake, due)
            self._update(namespace, r, replicas=replicas, ready=r in ready)
            if self._sync_server(namespace, r):  # loading: look again shortly
                wake = 0.3 if wake is None else min(wake, 0.3)
        if wake is not None:
            self._wake(key, wake + 0.05)

        message = None if latest in ready else self._not_ready(namespace, name, latest.name)
        self._write_status(
            isvc,
            {
                "latestCreatedRevision": latest.name,
                "latestReadyRevision": latest_ready,
                "latestRolledoutRevision": rolled,
                "previousRolledoutRevision": previous,
                "traffic": traffic or None,
            },
            message,
        )

    def _revisions(self, namespace: str, name: str, uid: str) -> list[_Revision]:
        """The InferenceService's revisions, oldest first, from their Deployments (only its
        own: one of an earlier InferenceService of that name may not be collected yet)."""
        found: Any = self.custom.list_namespaced_custom_object(
            *DEPLOYMENTS[:2],
            namespace,
            DEPLOYMENTS[2],
            label_selector=f"{KSERVE_ISVC_LABEL}={name},{KNATIVE_REVISION_LABEL}",
        )
        revisions = []
        for deployment in found.get("items") or []:
            owners = deployment["metadata"].get("ownerReferences") or []
            revision = _Revision.of(deployment)
            if revision is not None and any(o.get("uid") == uid for o in owners):
                revisions.append(revision)
        return sorted(revisions, key=lambda r: r.number)

    def _route(
        self, isvc: dict[str, Any], revisions: list[_Revision], latest_ready: str | None
    ) -> tuple[list[dict[str, Any]], str | None, str | None]:
        """route() on what the status says was rolled out: KServe keeps that there too."""
        meta = isvc["metadata"]
        prior = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
        names = {r.name for r in revisions}

        def existing(field_name: str) -> str | None:
            value = prior.get(field_name)
            return value if value in names else None

        canary = ((isvc.get("spec") or {}).get("predictor") or {}).get(CANARY)
        return route(
            revisions[-1].name,
            latest_ready,
            existing("latestRolledoutRevision"),
            existing("previousRolledoutRevision"),
            # KServe's webhook keeps it within 0..100; the CRD here cannot.
            None if canary is None else max(0, min(100, int(canary))),
            f"{service_name(meta['name'])}.{meta['namespace']}.{DOMAIN}",
        )

    def _replicas(
        self, revision: _Revision, clock: _Clock, *, routed: bool, pending: bool, now: float
    ) -> tuple[int, float | None]:
        """The replicas the revision should have now, and in how many seconds to look again
        (None: not before something else happens)."""
        if self.instant:
            return 0, None
        if pending:  # the latest created revision, coming up
            return max(revision.replicas, INITIAL_SCALE), None
        if routed and revision.min_replicas > 0:
            return revision.min_replicas, None
        remaining = clock.active_at + self.idle_seconds - now
        if remaining <= 0:
            return 0, None
        if routed:  # minReplicas 0: up while requests came lately (or one just came)
            return max(revision.replicas, 1), remaining
        # Not routed: what it has until it goes idle.
        return revision.replicas, remaining if revision.replicas else None

    def _update(self, namespace: str, revision: _Revision, *, replicas: int, ready: bool) -> None:
        """One patch for both: the replicas, and the mark of a revision that came up."""
        patch: dict[str, Any] = {}
        if revision.replicas != replicas:
            patch["spec"] = {"replicas": replicas}
        if ready and not revision.marked_ready:
            patch["metadata"] = {"annotations": {READY: "true"}}
        if not patch:
            return
        apps, v1, plural = DEPLOYMENTS
        patched = ignore_missing(
            lambda: self.custom.patch_namespaced_custom_object(
                apps, v1, namespace, plural, revision.deployment["metadata"]["name"], patch
            )
        )
        if patched is not None:
            revision.deployment = patched

    def _deployment(self, isvc: dict[str, Any], revision: str, digest: str) -> dict[str, Any]:
        meta = isvc["metadata"]
        predictor = isvc["spec"]["predictor"]
        service = service_name(meta["name"])
        labels = {
            **(meta.get("labels") or {}),
            KSERVE_ISVC_LABEL: meta["name"],
            "component": "predictor",
            SERVICE_LABEL: service,
            CONFIGURATION_LABEL: service,
            KNATIVE_REVISION_LABEL: revision,
        }
        min_replicas = predictor.get("minReplicas")
        annotations = {
            TEMPLATE_HASH: digest,
            MIN_SCALE: str(DEFAULT_MIN_REPLICAS if min_replicas is None else int(min_replicas)),
        }
        storage_uri = (predictor.get("model") or {}).get("storageUri")
        if storage_uri:
            annotations[STORAGE_URI] = str(storage_uri)
        if self.instant:
            annotations[READY] = "true"  # no pods to wait for
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": deployment_name(revision),
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": owner_references(isvc),
            },
            "spec": {
                "replicas": 0 if self.instant else INITIAL_SCALE,
                "selector": {"matchLabels": {KNATIVE_REVISION_LABEL: revision}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": predictor_pod_spec(predictor),
                },
            },
        }

    def _not_ready(self, namespace: str, name: str, revision: str) -> str:
        """Why the latest created revision is not ready: the scheduler's reason when its
        pods cannot be placed (as Knative reports an unschedulable revision)."""
        message = (
            f'Configuration "{service_name(name)}" is waiting for Revision "{revision}" '
            "to become ready"
        )
        # Typed as a V1PodList, which it is not without preloading.
        response: Any = self.core.list_namespaced_pod(
            namespace,
            label_selector=f"{KNATIVE_REVISION_LABEL}={revision}",
            _preload_content=False,  # plain dicts, as everywhere in the stand-ins
        )
        for pod in json.loads(response.data).get("items") or []:
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    return f"{message}: {cond.get('reason')}: {cond.get('message')}"
        return message

    # --- status ---------------------------------------------------------------------------

    def _write_status(
        self, isvc: dict[str, Any], predictor: dict[str, Any], message: str | None
    ) -> None:
        meta = isvc["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        previous = isvc.get("status") or {}
        old = {c.get("type"): c for c in previous.get("conditions") or []}
        ready = "True" if message is None else "False"

        def cond(kind: str) -> dict[str, Any]:
            moved = (old.get(kind) or {}).get("status") != ready
            condition: dict[str, Any] = {
                "type": kind,
                "status": ready,
                "lastTransitionTime": _now() if moved else old[kind].get("lastTransitionTime"),
            }
            if message is not None:  # Knative's conditions carry a reason only when not True
                condition["reason"] = NOT_READY
                condition["message"] = message
            return condition

        component = {key: value for key, value in predictor.items() if value is not None}
        status: dict[str, Any] = {
            "components": {"predictor": component},
            "conditions": [cond("PredictorReady"), cond("Ready")],
            "observedGeneration": meta.get("generation"),
        }
        if predictor.get("latestReadyRevision"):
            # Upstream the urls come with the first ready revision, and stay.
            service = service_name(name)
            component["url"] = f"http://{service}.{namespace}.{DOMAIN}"
            component["address"] = {"url": f"http://{service}.{namespace}.svc.cluster.local"}
            status["url"] = f"http://{name}.{namespace}.{DOMAIN}"
            status["address"] = {"url": f"http://{name}.{namespace}.svc.cluster.local"}
        if {key: previous.get(key) for key in status} == status and set(previous) <= set(status):
            return
        group, version, plural = KSERVE
        ignore_missing(
            lambda: self.custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, {"status": _removing(status, previous)}
            )
        )
