"""The fair floor for end-to-end convergence: an ideal controller that does only what
modelpilot must do to bring N new models to traffic, with the same client library and
concurrency. It applies every InferenceService and HPA, watches the InferenceServices,
and applies a model's route the moment its target version is Ready (as the operator
does: no route to a version that cannot serve). It keeps no status, runs no phase
machine and renders everything up front, so the operator's ratio to it is what the
operator's own machinery costs on top of the unavoidable round trips and KServe's (the
stand-in's) work.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bench.harness import World
from modelpilot.api import parse_managed_model
from modelpilot.api.kinds import HTTP_ROUTE, INFERENCE_SERVICE
from modelpilot.api.names import MODEL_LABEL
from modelpilot.render import default_render_state, render_model
from modelpilot.runtimes import default_runtimes
from modelpilot_dev.watch import KindWatch

USER = "bench-ideal"


def ready(isvc: dict[str, Any]) -> bool:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class IdealController(KindWatch):
    """Routes each model once its target's InferenceService is Ready."""

    def __init__(self, world: World, docs: list[dict[str, Any]], concurrency: int) -> None:
        super().__init__(world.api, world.namespace, INFERENCE_SERVICE)
        self.world = world
        self.children: list[dict[str, Any]] = []
        self.routes: dict[str, dict[str, Any]] = {}  # model -> its route
        self.targets: dict[str, str] = {}  # model -> the InferenceService to wait for
        for doc in docs:
            model = parse_managed_model(doc)
            for obj in render_model(model, default_render_state(model), default_runtimes()).objects:
                if obj["kind"] == HTTP_ROUTE.kind:
                    self.routes[model.name] = obj
                else:
                    self.children.append(obj)
            self.targets[model.name] = f"{model.name}-{model.spec.target}"
        self.pool = ThreadPoolExecutor(concurrency)
        self._lock = threading.Lock()
        self._routed: set[str] = set()
        self._pending: list[Future[Any]] = []

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        model = (obj["metadata"].get("labels") or {}).get(MODEL_LABEL)
        if model not in self.routes or obj["metadata"]["name"] != self.targets[model]:
            return
        if not ready(obj):
            return
        with self._lock:
            if model in self._routed:
                return
            self._routed.add(model)
            future = self.pool.submit(self._route, model)
            self._pending.append(future)

    def _route(self, model: str) -> None:
        self.world.kube.apply(self.routes[model], manager=USER)

    def converge(self, timeout: float = 600) -> float:
        """Seconds from the first apply until every model's route is written."""
        self.start()
        started = time.monotonic()
        list(self.pool.map(lambda o: self.world.kube.apply(o, manager=USER), self.children))
        deadline = started + timeout
        while not self._all_routed():
            if time.monotonic() > deadline:
                raise TimeoutError(f"ideal controller: {len(self._routed)} of {len(self.routes)}")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        self.stop()
        self.pool.shutdown()
        return elapsed

    def _all_routed(self) -> bool:
        with self._lock:
            pending = list(self._pending)
            routed = len(self._routed)
        for future in pending:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return routed == len(self.routes) and all(f.done() for f in pending)
