"""A stand-in for KServe's ModelMesh controller (modelmesh-serving), which the simulated
cluster does not run. It is a simulation, and says so wherever it is used.

What upstream does (modelmesh-serving's docs, docs/predictors/inferenceservice-cr.md),
and what of it is played here:

- Which InferenceServices: only those annotated `serving.kserve.io/deploymentMode:
  ModelMesh`; KServe's own controller skips them (so does the KServe stand-in).
- Where models run: not in pods of their own. A multi-model ServingRuntime
  (`spec.multiModel: true`) gets, per namespace, one Deployment
  `modelmesh-serving-<runtime>` of podsPerRuntime replicas (2 by default; the runtime's
  `spec.replicas` overrides it), and every model using that runtime is loaded into those
  shared pods. Each namespace has one Service `modelmesh-serving` (REST on 8008, named
  http; gRPC on 8033, named grpc; headless, as upstream's default config has it) that
  selects every runtime pod by `modelmesh-service: modelmesh-serving`. A client names the
  model, which is the InferenceService's name, in the request path or in the
  `mm-vmodel-id` header. Here the Deployment is real (kwok runs its pods, the scheduler
  places them), but its one container `mm` is a placeholder that serves nothing. With a
  model store (`model_store=`), models from the store are loaded into a real KServe
  model server per namespace (`modelpilot_dev.mesh_servers`, load before switch
  included), and `modelmesh-serving` is made without a selector and points at that
  process: requests reach them by name, as through ModelMesh. Other models are only
  simulated.
- Which runtime: `spec.predictor.model.runtime` names a ServingRuntime of the namespace,
  else a ClusterServingRuntime; it must be multi-model, enabled and list the model's
  format. If it is not, the model fails with reason RuntimeNotRecognized (or
  NoSupportingRuntime when no runtime is named: upstream would then pick one by model
  format; the stand-in does not), transitionStatus InvalidSpec, and is not Ready.
- Status, in KServe's InferenceService schema (the SDK's V1beta1ModelStatus and friends):
  `modelStatus.states.activeModelState` (Pending, Loading, Loaded, FailedToLoad; upstream
  also has Standby, for a model registered but not loaded, which is not simulated),
  `targetModelState` while a new model is on its way, `transitionStatus` (UpToDate,
  InProgress, BlockedByFailedLoad, InvalidSpec), `copies` (one copy of a loaded model, as
  ModelMesh keeps by default; it adds copies under load, which is not simulated) and
  `lastFailureInfo`; conditions PredictorReady and Ready, True while a model is Loaded;
  `url` and `components.predictor` (`url`, `restUrl`, `grpcUrl`) on the Service; and the
  generation the status describes.
- Load before switch: when the predictor's model changes (storage, format or runtime),
  ModelMesh loads the new one while the old one keeps serving; the InferenceService stays
  Ready (active Loaded, target Loading, InProgress) and switches once the new one is
  loaded. A new model that fails to load leaves the old one serving (target
  FailedToLoad, BlockedByFailedLoad). A first load is simply Loading, not Ready.

What is simulated, and how:

- Loading takes `load_seconds` (1.0 by default), counted from when a runtime pod of the
  model's runtime is available; a timer wakes the InferenceService when it is due. With
  `instant=True` (benchmarks) the Deployment has no replicas and models load at once.
- A model whose `storageUri` ends in the path segment `broken` fails to load
  (ModelLoadFailed), so tests can provoke a failed load. It is not retried until the spec
  changes (upstream retries failed loads after a while).
- Model state lives in memory, per InferenceService uid. A restarted stand-in starts from
  the status it finds: one that says Loaded and UpToDate for the current generation is
  taken as loaded; one that says Loaded otherwise, as an older model still serving.
- The runtime Deployment is made when the first InferenceService uses the runtime and left
  when the last one goes (upstream scales it to zero after a grace period when
  scale-to-zero is on); it is owned by its runtime, so the garbage collector removes it
  with the runtime. Only its replicas are kept in line with the runtime. A loaded model
  stays loaded: losing the runtime pods afterwards is not simulated, nor is
  `serving.kserve.io/stop`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from modelpilot.api.kinds import CLUSTER_SERVING_RUNTIME, SERVING_RUNTIME
from modelpilot_dev.mesh_servers import MeshServers
from modelpilot_dev.standins import DEPLOYMENTS, KSERVE, _Controller, is_model_mesh
from modelpilot_dev.store_servers import ignore_missing

SERVICE_NAME = "modelmesh-serving"
SERVICE_LABEL = "modelmesh-service"  # on the runtime Deployments and their pods
DEPLOYMENT_PREFIX = f"{SERVICE_NAME}-"
REST_PORT = 8008
GRPC_PORT = 8033
PODS_PER_RUNTIME = 2  # modelmesh-serving's default podsPerRuntime
RUNTIME_IMAGE = "example.invalid/modelmesh-standin/runtime:latest"
BROKEN = "broken"  # the last path segment of a storageUri that fails to load
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelmesh-controller"}

# Queue keys are (namespace, name) of an InferenceService, or of a runtime whose name is
# prefixed so (no object name holds a "/"): its events wake every model using it.
RUNTIME_KEY = "runtime/"
ALL_NAMESPACES = "*"  # the namespace of a ClusterServingRuntime's key
# The revision of an older model a restarted stand-in finds loaded: no spec hashes to it.
PREVIOUS = "previous"

# The model's fields whose change makes a new model to load (ModelMesh's revision).
REVISION_FIELDS = ("storageUri", "storage", "modelFormat", "runtime")

# Runtime problems: (lastFailureInfo reason, message).
Problem = tuple[str, str]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def multi_model_runtime(
    name: str, namespace: str, formats: Sequence[str] = ("sklearn",)
) -> dict[str, Any]:
    """A ModelMesh ServingRuntime for tests and the demo: multi-model, one auto-selected
    format version "1" per name, endpoints and adapter in the shape of modelmesh-serving's
    MLServer runtime (which speaks gRPC v2 only: ModelMesh's REST proxy translates)."""
    return {
        "apiVersion": f"{SERVING_RUNTIME.group}/{SERVING_RUNTIME.version}",
        "kind": SERVING_RUNTIME.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "multiModel": True,
            "supportedModelFormats": [
                {"name": fmt, "version": "1", "autoSelect": True} for fmt in formats
            ],
            "protocolVersions": ["grpc-v2"],
            "grpcEndpoint": "port:8085",
            "grpcDataEndpoint": "port:8001",
            "containers": [
                {
                    "name": "mlserver",
                    "image": RUNTIME_IMAGE,
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                }
            ],
            "builtInAdapter": {
                "serverType": "mlserver",
                "runtimeManagementPort": 8001,
                "memBufferBytes": 134217728,
                "modelLoadingTimeoutMillis": 90000,
            },
        },
    }


def _revision(model: dict[str, Any]) -> str:
    fields = {key: model.get(key) for key in REVISION_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def _is_broken(model: dict[str, Any]) -> bool:
    uri = str(model.get("storageUri") or "")
    return uri.rstrip("/").rsplit("/", 1)[-1] == BROKEN


def _runtime_of(deployment_name: str | None) -> str | None:
    if deployment_name and deployment_name.startswith(DEPLOYMENT_PREFIX):
        return deployment_name.removeprefix(DEPLOYMENT_PREFIX)
    return None


@dataclass
class _Model:
    """What ModelMesh knows of one InferenceService's models. Revisions are hashes of the
    model's REVISION_FIELDS."""

    uid: str
    loaded: str | None = None  # serving now
    target: str | None = None  # being loaded
    since: float | None = None  # monotonic: when the target's load began
    failed: str | None = None  # its load failed; not tried again until the spec changes
    failure: dict[str, Any] | None = None  # lastFailureInfo of that load, kept as written
    invalid: dict[str, Any] | None = None  # lastFailureInfo of a runtime problem


@dataclass(frozen=True)
class _View:
    """The model part of a status: modelStatus and what the conditions say."""

    model_status: dict[str, Any]
    ready: bool
    reason: str = ""
    message: str = ""


class ModelMeshStandIn(_Controller):
    name = "modelmesh-standin"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        instant: bool = False,
        load_seconds: float = 1.0,
        pods_per_runtime: int = PODS_PER_RUNTIME,
        model_store: Path | None = None,
    ) -> None:
        super().__init__(api)
        self.instant = instant
        # With a model store, its models are loaded into real servers (mesh_servers) and
        # modelmesh-serving points at them instead of selecting the runtime pods.
        self.servers = MeshServers(self.custom, model_store)
        self.load_seconds = load_seconds
        self.pods_per_runtime = pods_per_runtime
        self._index_lock = threading.Lock()
        # (namespace, name) -> (uid, runtime named): which models a runtime's event wakes.
        self._known: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._models: dict[str, _Model] = {}  # by InferenceService uid
        self._services: set[str] = set()  # namespaces whose Service was made
        self._timers: dict[tuple[str, str], threading.Timer] = {}

    # --- watches and keys ---------------------------------------------------------------

    def watches(self) -> list[Callable[..., Any]]:
        def isvcs(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(*KSERVE, **kw)

        def deployments(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(
                *DEPLOYMENTS, label_selector=SERVICE_LABEL, **kw
            )

        def runtimes(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(
                SERVING_RUNTIME.group, SERVING_RUNTIME.version, SERVING_RUNTIME.plural, **kw
            )

        def cluster_runtimes(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(
                CLUSTER_SERVING_RUNTIME.group,
                CLUSTER_SERVING_RUNTIME.version,
                CLUSTER_SERVING_RUNTIME.plural,
                **kw,
            )

        return [isvcs, deployments, runtimes, cluster_runtimes]

    def key_of(self, obj: dict[str, Any]) -> tuple[str | None, str | None]:
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        kind = obj.get("kind")
        if kind == "InferenceService":
            # Standard ones are KServe's: dropped here, not fetched in handle only to be
            # skipped (the benchmarks make thousands of events). One that was ModelMesh
            # still comes through, to be forgotten.
            with self._index_lock:
                known = (namespace, name) in self._known
            return (namespace, name) if known or is_model_mesh(obj) else (None, None)
        if kind == "Deployment":
            runtime = _runtime_of(name)
            return (namespace, RUNTIME_KEY + runtime) if runtime else (None, None)
        if kind == SERVING_RUNTIME.kind:
            return namespace, RUNTIME_KEY + str(name)
        if kind == CLUSTER_SERVING_RUNTIME.kind:
            return ALL_NAMESPACES, RUNTIME_KEY + str(name)
        return None, None

    def _users(self, namespace: str, runtime: str) -> list[tuple[str, str]]:
        with self._index_lock:
            return [
                key
                for key, (_, named) in self._known.items()
                if named == runtime and namespace in (key[0], ALL_NAMESPACES)
            ]

    def _remember(
        self, namespace: str, name: str, uid: str, runtime: str | None
    ) -> tuple[_Model, bool]:
        """The model's state, and whether it is new to this stand-in."""
        with self._index_lock:
            known = self._known.get((namespace, name))
            if known is not None and known[0] != uid:  # deleted and made again
                self._models.pop(known[0], None)
            self._known[(namespace, name)] = (uid, runtime)
            model = self._models.get(uid)
            if model is not None:
                return model, False
            model = self._models[uid] = _Model(uid)
            return model, True

    def _forget(self, namespace: str, name: str) -> None:
        with self._index_lock:
            known = self._known.pop((namespace, name), None)
            if known is not None:
                self._models.pop(known[0], None)
            timer = self._timers.pop((namespace, name), None)
            if not any(key[0] == namespace for key in self._known):
                # The namespace may go (and come back): look for its Service again.
                self._services.discard(namespace)
        if timer is not None:
            timer.cancel()
        if known is not None:
            self.servers.unload(namespace, name)

    def _wake(self, key: tuple[str, str], delay: float) -> None:
        """Handle key again after delay: no event says when a load is done."""

        def fire() -> None:
            with self._index_lock:
                self._timers.pop(key, None)
            self.enqueue(key)

        with self._index_lock:
            if key in self._timers:  # one is due already, for the same load
                return
            timer = threading.Timer(delay, fire)
            timer.daemon = True
            self._timers[key] = timer
        timer.start()

    def stop(self) -> None:
        with self._index_lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()
        super().stop()
        self.servers.stop_all()

    # --- reconcile ------------------------------------------------------------------------

    def handle(self, namespace: str, name: str) -> None:
        if name.startswith(RUNTIME_KEY):
            for key in self._users(namespace, name.removeprefix(RUNTIME_KEY)):
                self.enqueue(key)
            return
        group, version, plural = KSERVE
        isvc = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        )
        if isvc is None or isvc["metadata"].get("deletionTimestamp") or not is_model_mesh(isvc):
            self._forget(namespace, name)
            return
        meta = isvc["metadata"]
        spec = (isvc.get("spec") or {}).get("predictor") or {}
        model_spec: dict[str, Any] = spec.get("model") or {}
        runtime_name = model_spec.get("runtime")
        model, new = self._remember(namespace, name, meta["uid"], runtime_name)
        revision = _revision(model_spec)
        if new:
            self._resume(model, isvc, revision)
        runtime, problem = self._runtime(namespace, runtime_name, model_spec)
        if problem is not None:
            view = self._invalid(model, name, revision, problem)
        else:
            assert runtime is not None
            model.invalid = None
            deployment = self._ensure_runtime_pods(namespace, runtime)
            self._ensure_service(namespace)
            available = (
                self.instant
                or int(((deployment or {}).get("status") or {}).get("availableReplicas") or 0) > 0
            )
            broken = _is_broken(model_spec)
            stored = self.servers.stored(model_spec)
            self._advance((namespace, name), model, revision, available, broken, stored)
            view = self._view(model, revision, runtime["metadata"]["name"])
        self._write_status(isvc, view)

    def _resume(self, model: _Model, isvc: dict[str, Any], revision: str) -> None:
        """A model this stand-in has not seen load: take what its status says."""
        status = isvc.get("status") or {}
        model_status = status.get("modelStatus") or {}
        if (model_status.get("states") or {}).get("activeModelState") != "Loaded":
            return
        current = (
            status.get("observedGeneration") == isvc["metadata"].get("generation")
            and model_status.get("transitionStatus") == "UpToDate"
        )
        model.loaded = revision if current else PREVIOUS

    def _runtime(
        self, namespace: str, name: str | None, model_spec: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Problem | None]:
        """The model's runtime, or why there is none it can use."""
        if not name:
            return None, (
                "NoSupportingRuntime",
                "No ServingRuntime named in spec.predictor.model.runtime (the ModelMesh "
                "stand-in does not pick one by model format)",
            )
        runtime = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(
                SERVING_RUNTIME.group,
                SERVING_RUNTIME.version,
                namespace,
                SERVING_RUNTIME.plural,
                name,
            )
        ) or ignore_missing(
            lambda: self.custom.get_cluster_custom_object(
                CLUSTER_SERVING_RUNTIME.group,
                CLUSTER_SERVING_RUNTIME.version,
                CLUSTER_SERVING_RUNTIME.plural,
                name,
            )
        )
        if runtime is None:
            return None, ("RuntimeNotRecognized", f"Specified runtime name {name} not recognized")
        spec = runtime.get("spec") or {}
        if not spec.get("multiModel"):
            return None, (
                "RuntimeNotRecognized",
                f"Specified runtime {name} is not a multi-model runtime (spec.multiModel): "
                "ModelMesh serves models only in multi-model ServingRuntimes",
            )
        if spec.get("disabled"):
            return None, ("RuntimeNotRecognized", f"Specified runtime {name} is disabled")
        fmt = model_spec.get("modelFormat") or {}
        if not any(
            str(supported.get("name", "")).lower() == str(fmt.get("name", "")).lower()
            and (fmt.get("version") is None or supported.get("version") == fmt.get("version"))
            for supported in spec.get("supportedModelFormats") or []
        ):
            version = f" version {fmt['version']}" if fmt.get("version") else ""
            return None, (
                "RuntimeNotRecognized",
                f"Specified runtime {name} does not support model format "
                f"{fmt.get('name')}{version}",
            )
        return runtime, None

    def _advance(
        self,
        key: tuple[str, str],
        model: _Model,
        revision: str,
        available: bool,
        broken: bool,
        stored: Path | None = None,
    ) -> None:
        """Move the model's load along: start it, wait for it, finish it (into the
        namespace's real server when the model is in the store)."""
        if revision == model.loaded:
            # Also a spec set back to the model serving: whatever was on its way is dropped.
            model.target = model.since = model.failed = model.failure = None
            return
        if revision == model.failed:
            model.target = model.since = None
            return
        if model.target != revision:
            model.target, model.since = revision, None
        if not available:
            return  # Pending: no runtime pod to load into yet
        now = time.monotonic()
        if model.since is None:
            model.since = now
        remaining = 0.0 if self.instant else model.since + self.load_seconds - now
        if remaining > 0:
            self._wake(key, remaining)
            return
        failed = None
        if stored is not None and not broken:
            failed = self.servers.load(key[0], key[1], stored, SERVICE_NAME)
        if broken or failed:
            model.failed = revision
            model.failure = {
                "reason": "ModelLoadFailed",
                "message": failed
                or "the model's storage holds no loadable model (simulated: its "
                f"storageUri ends in /{BROKEN})",
                "modelRevisionName": f"{key[1]}__isvc-{revision}",
                "time": _now(),
            }
        else:
            model.loaded, model.failed, model.failure = revision, None, None
        model.target = model.since = None

    def _view(self, model: _Model, revision: str, runtime: str) -> _View:
        serving = model.loaded is not None
        copies = {"totalCopies": 1 if serving else 0, "failedCopies": 0}
        if revision == model.loaded:
            return _View(_model_status("Loaded", None, "UpToDate", copies), ready=True)
        if revision == model.failed:
            copies["failedCopies"] = 1
            failure = model.failure or {}
            if serving:  # the new model failed: the old one keeps serving
                status = _model_status(
                    "Loaded", "FailedToLoad", "BlockedByFailedLoad", copies, failure
                )
            else:
                status = _model_status("FailedToLoad", None, "UpToDate", copies, failure)
            return _View(
                status,
                ready=serving,
                reason=failure.get("reason", ""),
                message=failure.get("message", ""),
            )
        loading = "Loading" if model.since is not None else "Pending"
        if serving:
            return _View(_model_status("Loaded", loading, "InProgress", copies), ready=True)
        if loading == "Pending":
            reason, message = "ModelPending", f"no pod of {DEPLOYMENT_PREFIX}{runtime} is ready"
        else:
            reason, message = (
                "ModelLoading",
                f"loading into the pods of {DEPLOYMENT_PREFIX}{runtime}",
            )
        return _View(
            _model_status(loading, None, "UpToDate", copies),
            ready=False,
            reason=reason,
            message=message,
        )

    def _invalid(self, model: _Model, name: str, revision: str, problem: Problem) -> _View:
        """A model whose runtime will not do: what was loaded keeps serving, nothing
        new loads."""
        model.target = model.since = None
        reason, message = problem
        failure = model.invalid
        if failure is None or (failure["reason"], failure["message"]) != problem:
            failure = {"reason": reason, "message": message, "time": _now()}
        failure["modelRevisionName"] = f"{name}__isvc-{revision}"
        model.invalid = failure
        serving = model.loaded is not None
        copies = {"totalCopies": 1 if serving else 0, "failedCopies": 0}
        if serving:
            status = _model_status("Loaded", "FailedToLoad", "InvalidSpec", copies, failure)
        else:
            status = _model_status("FailedToLoad", None, "InvalidSpec", copies, failure)
        return _View(
            status,
            ready=serving,
            reason=reason,
            message=message,
        )

    # --- the runtime's pods and the Service ----------------------------------------------

    def _ensure_runtime_pods(self, namespace: str, runtime: dict[str, Any]) -> dict[str, Any]:
        name = f"{DEPLOYMENT_PREFIX}{runtime['metadata']['name']}"
        replicas = (
            0
            if self.instant
            else int((runtime.get("spec") or {}).get("replicas") or self.pods_per_runtime)
        )
        apps, v1, plural = DEPLOYMENTS
        deployment = ignore_missing(
            lambda: self.custom.get_namespaced_custom_object(apps, v1, namespace, plural, name)
        )
        if deployment is None:
            created = ignore_missing(
                lambda: self.custom.create_namespaced_custom_object(
                    apps,
                    v1,
                    namespace,
                    plural,
                    self._deployment(namespace, name, runtime, replicas),
                )
            )
            # None: another worker made it first; its events bring everyone back.
            return created or {}
        if (deployment.get("spec") or {}).get("replicas") != replicas:
            deployment = self.custom.patch_namespaced_custom_object(
                apps, v1, namespace, plural, name, {"spec": {"replicas": replicas}}
            )
        return dict(deployment)

    def _deployment(
        self, namespace: str, name: str, runtime: dict[str, Any], replicas: int
    ) -> dict[str, Any]:
        labels = {SERVICE_LABEL: SERVICE_NAME, "name": name}
        container = {
            "name": "mm",
            "image": RUNTIME_IMAGE,
            "ports": [
                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        }
        owner = {
            "apiVersion": runtime["apiVersion"],
            "kind": runtime["kind"],
            "name": runtime["metadata"]["name"],
            "uid": runtime["metadata"]["uid"],
            "controller": True,
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**labels, **MANAGED_BY},
                "ownerReferences": [owner],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        }

    def _ensure_service(self, namespace: str) -> None:
        with self._index_lock:
            if namespace in self._services:
                return
        service: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": SERVICE_NAME,
                "namespace": namespace,
                "labels": {SERVICE_LABEL: SERVICE_NAME, **MANAGED_BY},
            },
            "spec": {
                "clusterIP": "None",
                "ports": [
                    {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                    {"name": "http", "port": REST_PORT, "targetPort": "http"},
                ],
            },
        }
        if self.servers.model_store is None:
            service["spec"]["selector"] = {SERVICE_LABEL: SERVICE_NAME}
        # kubernetes' types want a V1Service; the client accepts (and sends) a dict as is.
        ignore_missing(lambda: self.core.create_namespaced_service(namespace, service))  # type: ignore[arg-type]
        with self._index_lock:
            self._services.add(namespace)

    # --- status ---------------------------------------------------------------------------

    def _write_status(self, isvc: dict[str, Any], view: _View) -> None:
        meta = isvc["metadata"]
        grpc = f"grpc://{SERVICE_NAME}.{meta['namespace']}:{GRPC_PORT}"
        rest = f"http://{SERVICE_NAME}.{meta['namespace']}:{REST_PORT}"
        previous = isvc.get("status") or {}
        old = {c.get("type"): c for c in previous.get("conditions") or []}
        ready = "True" if view.ready else "False"

        def cond(kind: str) -> dict[str, Any]:
            moved = (old.get(kind) or {}).get("status") != ready
            condition: dict[str, Any] = {
                "type": kind,
                "status": ready,
                "lastTransitionTime": _now() if moved else old[kind].get("lastTransitionTime"),
            }
            if not view.ready:  # Knative's conditions carry a reason only when not True
                condition["reason"] = view.reason
                condition["message"] = view.message
            return condition

        status = {
            "url": grpc,
            "address": {"url": grpc},
            "components": {"predictor": {"url": grpc, "restUrl": rest, "grpcUrl": grpc}},
            "modelStatus": view.model_status,
            "conditions": [cond("PredictorReady"), cond("Ready")],
            "observedGeneration": meta.get("generation"),
        }
        if {key: previous.get(key) for key in status} == status:
            return
        group, version, plural = KSERVE
        ignore_missing(
            lambda: self.custom.patch_namespaced_custom_object_status(
                group,
                version,
                meta["namespace"],
                plural,
                meta["name"],
                {"status": _removing(status, previous)},
            )
        )


def _model_status(
    active: str,
    target: str | None,
    transition: str,
    copies: dict[str, int],
    failure: dict[str, Any] | None = None,
) -> dict[str, Any]:
    states = {"activeModelState": active}
    if target is not None:
        states["targetModelState"] = target
    status: dict[str, Any] = {"states": states, "transitionStatus": transition, "copies": copies}
    if failure:
        status["lastFailureInfo"] = dict(failure)
    return status


def _removing(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """new as a merge patch over old: a field new lacks (targetModelState once a load is
    done, lastFailureInfo once a model loads) is sent as null, so it goes."""
    patch = dict(new)
    for key, value in old.items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            patch[key] = _removing(new[key], value)
    return patch
