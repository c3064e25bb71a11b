"""Stand-ins for the two controllers the simulated cluster does not run: KServe and a
Gateway API implementation. They are simulations and say so; every test and the demo
that uses them says so too.

The KServe stand-in plays KServe's Standard-mode controller: for each InferenceService
it creates the `<isvc>-predictor` Deployment (pod template with the predictor's
resources, GPUs included, nodeSelector and tolerations; replicas from minReplicas, set at
creation only, as KServe does under an external autoscaler) and Service, and writes the
InferenceService's status as KServe does: Ready from the Deployment's Available
condition, a url, and the Deployment's observedGeneration. It honours
`serving.kserve.io/stop: "true"` by deleting the Deployment. So readiness follows real
scheduling on the kwok nodes. In instant mode (benchmarks) the Deployment has zero
replicas: Ready at once, no pods.

With a model store (`model_store=`), a version whose model is in it (`storageUri:
pvc://model-store/<model>/<version>`, as the samples) is also served for real: the
stand-in runs KServe's Python model server for it (`modelpilot store serve`, one process
per InferenceService, on a loopback port) and points the predictor Service at it: a
Service without a selector and an EndpointSlice of addressType FQDN holding 127.0.0.1
(the apiserver refuses loopback IPs in an IPv4 slice). Upstream KServe's Service selects
the predictor pods instead; kwok's pods answer nothing, so here the endpoint is the
process. Such an InferenceService is Ready only once its server answers ready too; a
stopped or deleted one stops its server. Models outside the store keep a Service that
selects kwok's pods: no traffic can reach them.

An InferenceService annotated `serving.kserve.io/deploymentMode: ModelMesh` is left
alone here, as KServe's own controller leaves it to ModelMesh's: `modelpilot_dev.modelmesh`
plays that one, and `StandIns` runs it too. So is one annotated `Knative` (or `Serverless`,
its older name): KServe serves those through Knative Services, which
`modelpilot_dev.knative` plays (revisions, traffic split, scale to zero), also run by
`StandIns`. Here, unlike upstream, an InferenceService without the annotation is in
Standard mode (upstream's default is configurable and ships as Knative).

The gateway stand-in marks every HTTPRoute Accepted for its current generation, except
on parents that are a real gateway's (a Gateway of class `traefik`, see
`modelpilot_dev.gateway`): those routes are the real gateway's to report on.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from modelpilot.api.kinds import (
    DEPLOYMENT,
    GATEWAY,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KSERVE_DEPLOYMENT_MODE,
    KSERVE_ISVC_LABEL,
)
from modelpilot.k8s.children import contains
from modelpilot_dev.store_servers import SERVICE_PORT, StoreServers, ignore_missing

log = logging.getLogger(__name__)

# Every kind through the custom-objects API, Deployments too: plain dicts, not the typed
# models whose deserialisation made the stand-in the slowest part of the benchmark.
KSERVE = (INFERENCE_SERVICE.group, INFERENCE_SERVICE.version, INFERENCE_SERVICE.plural)
DEPLOYMENTS = (DEPLOYMENT.group, DEPLOYMENT.version, DEPLOYMENT.plural)
ROUTES = (HTTP_ROUTE.group, HTTP_ROUTE.version, HTTP_ROUTE.plural)
STOP = "serving.kserve.io/stop"
STANDIN_IMAGE = "example.invalid/kserve-standin/predictor:latest"
GATEWAY_CONTROLLER = "modelpilot.io/gateway-standin"
REAL_GATEWAY_CLASS = "traefik"  # modelpilot_dev.gateway.GATEWAY_CLASS
GATEWAY_MEMORY = 5.0  # seconds a Gateway's class is remembered
WATCH_SECONDS = 20


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_model_mesh(isvc: dict[str, Any]) -> bool:
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return annotations.get(KSERVE_DEPLOYMENT_MODE) == "ModelMesh"


# KServe's name for the Knative mode, and the one it had before (still accepted upstream).
KNATIVE_MODES = ("Knative", "Serverless")
# The label Knative puts on a revision's Deployment and pods.
KNATIVE_REVISION_LABEL = "serving.knative.dev/revision"


def is_knative(isvc: dict[str, Any]) -> bool:
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return annotations.get(KSERVE_DEPLOYMENT_MODE) in KNATIVE_MODES


def owner_references(isvc: dict[str, Any]) -> list[dict[str, Any]]:
    """The InferenceService as the controlling owner of what KServe makes for it."""
    meta = isvc["metadata"]
    return [
        {
            "apiVersion": isvc["apiVersion"],
            "kind": "InferenceService",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def predictor_pod_spec(predictor: dict[str, Any]) -> dict[str, Any]:
    """The pod spec KServe builds from spec.predictor, in every mode: the model's container
    `kserve-container` (args, literal env, resources, GPUs included) and the predictor's
    nodeSelector and tolerations. The image is a placeholder: kwok runs no container."""
    model = predictor.get("model") or {}
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": STANDIN_IMAGE,
        "args": list(model.get("args") or []),
        "env": [e for e in model.get("env") or [] if "value" in e],
        # The typed client takes quantities as strings only.
        "resources": {
            kind: {k: str(v) for k, v in values.items()}
            for kind, values in (model.get("resources") or {}).items()
        },
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
    }
    pod_spec: dict[str, Any] = {"containers": [container]}
    for key in ("nodeSelector", "tolerations"):
        if predictor.get(key):
            pod_spec[key] = predictor[key]
    return pod_spec


class _Controller:
    """Watches feed keys to a few workers; a key waits in at most one queue at a time and
    is handled by one worker only (keys are sharded), as a controller's workqueue does.
    Watches resume from their last resourceVersion instead of listing everything again."""

    name = "controller"
    workers = 4

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self._queues: list[queue.Queue[tuple[str, str] | None]] = [
            queue.Queue() for _ in range(self.workers)
        ]
        self._pending: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def watches(self) -> list[Callable[..., Any]]:
        raise NotImplementedError

    def key_of(self, obj: dict[str, Any]) -> tuple[str | None, str | None]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace"), meta.get("name")

    def handle(self, namespace: str, name: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        for index, lister in enumerate(self.watches()):
            self._spawn(f"{self.name}-watch-{index}", self._watch, lister)
        for index, keys in enumerate(self._queues):
            self._spawn(f"{self.name}-worker-{index}", self._work, keys)

    def stop(self) -> None:
        self._stop.set()
        for keys in self._queues:
            keys.put(None)
        for thread in self._threads:
            thread.join(WATCH_SECONDS + 5)

    def enqueue(self, key: tuple[str, str]) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queues[hash(key) % self.workers].put(key)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self, lister: Callable[..., Any]) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                # kubernetes' Watch and ApiClient.sanitize_for_serialization carry no annotations.
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    lister, timeout_seconds=WATCH_SECONDS, resource_version=version
                )
                for event in stream:
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    namespace, name = self.key_of(obj)
                    if namespace and name:
                        self.enqueue((namespace, name))
                    if self._stop.is_set():
                        return
            except ApiException as err:
                if err.status == 410:  # too old to resume: list everything again
                    version = None
                elif not self._stop.is_set():
                    self._stop.wait(0.5)
            except Exception as err:  # a dropped watch is reopened
                if not self._stop.is_set():
                    log.debug("%s watch restarts: %s", self.name, err)
                    self._stop.wait(0.5)

    def _work(self, keys: queue.Queue[tuple[str, str] | None]) -> None:
        while not self._stop.is_set():
            key = keys.get()
            if key is None:
                return
            with self._lock:
                self._pending.discard(key)
            try:
                self.handle(*key)
            except ApiException as err:
                if err.status in (403, 404):
                    continue  # e.g. its namespace is being deleted: nothing left to do
                log.warning("%s: %s/%s: %s; retrying", self.name, key[0], key[1], err.reason)
                self._stop.wait(0.5)
                self.enqueue(key)
            except Exception as err:
                log.warning("%s: %s/%s: %s; retrying", self.name, key[0], key[1], err)
                self._stop.wait(0.5)
                self.enqueue(key)


class KServeStandIn(_Controller):
    name = "kserve-standin"

    def __init__(
        self, api: client.ApiClient, *, instant: bool = False, model_store: Path | None = None
    ) -> None:
        super().__init__(api)
        self.instant = instant
        self.store_servers = StoreServers(self.custom, model_store)
        self.store_servers.watch_liveness(self.enqueue)

    def watches(self) -> list[Callable[..., Any]]:
        group, version, plural = KSERVE

        def isvcs(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(group, version, plural, **kw)

        def deployments(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(
                *DEPLOYMENTS, label_selector=KSERVE_ISVC_LABEL, **kw
            )

        return [isvcs, deployments]

    def key_of(self, obj: dict[str, Any]) -> tuple[str | None, str | None]:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "InferenceService":
            return meta.get("namespace"), meta.get("name")
        labels = meta.get("labels") or {}
        if KNATIVE_REVISION_LABEL in labels:
            return None, None  # a Knative revision's: the Knative stand-in's to handle
        return meta.get("namespace"), labels.get(KSERVE_ISVC_LABEL)

    def handle(self, namespace: str, name: str) -> None:
        group, version, plural = KSERVE
        isvc = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        )
        if isvc is None or isvc["metadata"].get("deletionTimestamp"):
            self.store_servers.stop((namespace, name))
            return  # the garbage collector removes what it owned
        if is_model_mesh(isvc) or is_knative(isvc):
            # KServe's Standard mode skips these: ModelMesh's controller serves the first in
            # its shared runtime pods (modelpilot_dev.modelmesh), Knative Services the others
            # (modelpilot_dev.knative); so no predictor Deployment and no status here.
            return
        predictor = f"{name}-predictor"
        stopped = (isvc["metadata"].get("annotations") or {}).get(STOP) == "true"
        if stopped:
            self.store_servers.stop((namespace, name))
        apps, v1, deployments = DEPLOYMENTS
        deployment = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                apps, v1, namespace, deployments, predictor
            )
        )
        if stopped:
            if deployment is not None:
                ignore_missing(
                    lambda: self.custom.delete_namespaced_custom_object(
                        apps, v1, namespace, deployments, predictor
                    )
                )
            self._write_status(isvc, None, stopped=True)
            return
        server = self.store_servers.ensure(isvc, self._owner(isvc))
        wanted = self._deployment(isvc)
        if deployment is None:
            # Created together, once: re-creating the Service on every event is a wasted
            # request (and a 409) per event.
            self._ensure_service(isvc, selector=server is None)
            deployment = self.custom.create_namespaced_custom_object(
                apps, v1, namespace, deployments, wanted
            )
        else:
            current = deployment["spec"]
            template, strategy = wanted["spec"]["template"], wanted["spec"].get("strategy")
            if not contains(current["template"], template) or (
                strategy and not contains(current.get("strategy"), strategy)
            ):
                patch: dict[str, Any] = {"spec": {"template": template}}
                if strategy:
                    patch["spec"]["strategy"] = strategy
                # A merge patch: the template's lists are replaced whole, as intended.
                deployment = self.custom.patch_namespaced_custom_object(
                    apps, v1, namespace, deployments, predictor, patch
                )
        loading = False
        if server is not None:
            loading = not server.is_ready()
            if loading:  # no event says when it is: look again shortly
                timer = threading.Timer(0.5, self.enqueue, args=((namespace, name),))
                timer.daemon = True
                timer.start()
        self._write_status(isvc, deployment, stopped=False, loading=loading)

    def stop(self) -> None:
        super().stop()
        self.store_servers.stop_all()

    def _owner(self, isvc: dict[str, Any]) -> list[dict[str, Any]]:
        return owner_references(isvc)

    def _predictor_metadata(self, isvc: dict[str, Any]) -> dict[str, Any]:
        """Metadata of the Deployment and the Service KServe names after the predictor."""
        meta = isvc["metadata"]
        return {
            "name": f"{meta['name']}-predictor",
            "namespace": meta["namespace"],
            "labels": self._labels(isvc),
            "ownerReferences": self._owner(isvc),
        }

    def _labels(self, isvc: dict[str, Any]) -> dict[str, str]:
        name = isvc["metadata"]["name"]
        return {
            **(isvc["metadata"].get("labels") or {}),
            KSERVE_ISVC_LABEL: name,
            "component": "predictor",
            "app": f"isvc.{name}-predictor",
        }

    def _deployment(self, isvc: dict[str, Any]) -> dict[str, Any]:
        spec = isvc["spec"]["predictor"]
        pod_spec = predictor_pod_spec(spec)
        labels = self._labels(isvc)
        deployment: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._predictor_metadata(isvc),
            "spec": {
                "replicas": 0 if self.instant else int(spec.get("minReplicas") or 1),
                "selector": {"matchLabels": {"app": labels["app"]}},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }
        if spec.get("deploymentStrategy"):
            deployment["spec"]["strategy"] = spec["deploymentStrategy"]
        return deployment

    def _ensure_service(self, isvc: dict[str, Any], *, selector: bool) -> None:
        meta = isvc["metadata"]
        labels = self._labels(isvc)
        spec: dict[str, Any] = {"ports": [dict(SERVICE_PORT)]}
        if selector:
            spec["selector"] = {"app": labels["app"]}
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self._predictor_metadata(isvc),
            "spec": spec,
        }
        # kubernetes' types want a V1Service; the client accepts (and sends) a dict as is.
        ignore_missing(lambda: self.core.create_namespaced_service(meta["namespace"], service))  # type: ignore[arg-type]

    def _write_status(
        self,
        isvc: dict[str, Any],
        deployment: dict[str, Any] | None,
        *,
        stopped: bool,
        loading: bool = False,
    ) -> None:
        meta = isvc["metadata"]
        available = next(
            (
                c
                for c in ((deployment or {}).get("status") or {}).get("conditions") or []
                if c.get("type") == "Available"
            ),
            None,
        )
        if stopped:
            ready, reason, message = "False", "Stopped", "stopped by serving.kserve.io/stop"
        elif available is None:
            ready, reason, message = "False", "PredictorNotReady", "Deployment has no status yet"
        else:
            ready = available.get("status", "Unknown")
            reason = available.get("reason") or ""
            message = available.get("message") or ""
        if loading and ready == "True":
            ready, reason, message = "False", "ModelLoading", "the model server is not ready yet"
        url = f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local"
        previous = isvc.get("status") or {}
        old = {c.get("type"): c for c in previous.get("conditions") or []}

        def cond(kind: str) -> dict[str, Any]:
            moved = (old.get(kind) or {}).get("status") != ready
            when = _now() if moved else old[kind].get("lastTransitionTime")
            return {
                "type": kind,
                "status": ready,
                "reason": reason,
                "message": message,
                "lastTransitionTime": when,
            }

        status = {
            "url": url,
            "address": {"url": url},
            "observedGeneration": ((deployment or {}).get("status") or {}).get(
                "observedGeneration", 0
            ),
            "conditions": [cond("PredictorReady"), cond("Ready")],
        }
        if {k: previous.get(k) for k in status} == status:
            return
        group, version, plural = KSERVE
        ignore_missing(
            lambda: self.custom.patch_namespaced_custom_object_status(
                group, version, meta["namespace"], plural, meta["name"], {"status": status}
            )
        )


class GatewayStandIn(_Controller):
    name = "gateway-standin"

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        # (namespace, name) of a parent Gateway -> (when looked up, served by a real one)
        self._gateways: dict[tuple[str, str], tuple[float, bool]] = {}

    def watches(self) -> list[Callable[..., Any]]:
        group, version, plural = ROUTES

        def routes(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(group, version, plural, **kw)

        return [routes]

    def handle(self, namespace: str, name: str) -> None:
        group, version, plural = ROUTES
        route = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        )
        if route is None:
            return
        generation = route["metadata"].get("generation")
        parents = []
        for ref in route["spec"].get("parentRefs") or []:
            if self._real_gateway(ref, namespace):
                continue
            conditions = [
                {
                    "type": kind,
                    "status": "True",
                    "reason": kind,
                    "message": "simulated gateway",
                    "observedGeneration": generation,
                    "lastTransitionTime": _now(),
                }
                for kind in ("Accepted", "ResolvedRefs")
            ]
            parents.append(
                {"parentRef": ref, "controllerName": GATEWAY_CONTROLLER, "conditions": conditions}
            )
        if not parents:
            return
        current = [
            p
            for p in (route.get("status") or {}).get("parents") or []
            if p.get("controllerName") == GATEWAY_CONTROLLER
        ]
        if current and all(
            c.get("observedGeneration") == generation
            for p in current
            for c in p.get("conditions") or []
        ):
            return
        ignore_missing(
            lambda: self.custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, {"status": {"parents": parents}}
            )
        )

    def _real_gateway(self, ref: dict[str, Any], namespace: str) -> bool:
        """Whether a real gateway serves this parent. Remembered for a few seconds: a
        GET per route event would be the bench's busiest request, for an answer that
        hardly ever changes."""
        key = (ref.get("namespace") or namespace, str(ref.get("name")))
        known = self._gateways.get(key)
        if known is not None and time.monotonic() - known[0] < GATEWAY_MEMORY:
            return known[1]
        gateway = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                GATEWAY.group, GATEWAY.version, key[0], GATEWAY.plural, key[1]
            )
        )
        real = bool(gateway) and gateway["spec"].get("gatewayClassName") == REAL_GATEWAY_CLASS
        self._gateways[key] = (time.monotonic(), real)
        return real


class StandIns:
    """The stand-ins for KServe (Standard mode, ModelMesh and Knative) and the gateway,
    started and stopped together."""

    def __init__(
        self, api: client.ApiClient, *, instant: bool = False, model_store: Path | None = None
    ) -> None:
        # Imported here: modelmesh and knative build on this module's _Controller.
        from modelpilot_dev.knative import KnativeStandIn
        from modelpilot_dev.modelmesh import ModelMeshStandIn

        self.kserve = KServeStandIn(api, instant=instant, model_store=model_store)
        self.modelmesh = ModelMeshStandIn(api, instant=instant, model_store=model_store)
        self.knative = KnativeStandIn(api, instant=instant, model_store=model_store)
        self.gateway = GatewayStandIn(api)

    def start(self) -> StandIns:
        self.kserve.start()
        self.modelmesh.start()
        self.knative.start()
        self.gateway.start()
        return self

    def stop(self) -> None:
        # Each waits for its idle watches' long polls to end (up to WATCH_SECONDS): all
        # at once, not one after another.
        stoppers = [
            threading.Thread(target=standin.stop, name=f"{standin.name}-stop", daemon=True)
            for standin in (self.kserve, self.modelmesh, self.knative, self.gateway)
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def __enter__(self) -> StandIns:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
