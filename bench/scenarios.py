"""The four measurements: convergence against the apiserver floor, idle writes, reaction
latency, memory and CPU at scale. Each returns the JSON section the issue fixes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import World
from bench.ideal import IdealController, ready
from modelpilot.api import parse_managed_model
from modelpilot.api.kinds import (
    AUTOSCALER,
    CHILD_KINDS,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    MANAGED_MODEL,
    Kind,
)
from modelpilot.render import default_render_state, render_model
from modelpilot.runtimes import default_runtimes
from modelpilot_dev.watch import KindWatch

USER = "bench"
# The operator reconciles in asyncio's default thread pool: min(32, cores + 4) threads.
CONCURRENCY = 6


def model_doc(name: str, namespace: str, target: str = "v1", versions: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": MANAGED_MODEL.api_version,
        "kind": MANAGED_MODEL.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "modelFormat": {"name": "sklearn"},
            "versions": [
                {"name": f"v{i + 1}", "storageUri": f"s3://bench/{name}/v{i + 1}"}
                for i in range(versions)
            ],
            "traffic": {"gatewayRef": {"name": "gw"}, "hostnames": [f"{name}.bench.local"]},
            "rollout": {
                "target": target,
                "stepWeights": [50],
                "interval": "1s",
                "promotion": "manual",
            },
        },
    }


def apply_all(
    world: World, objects: Iterable[dict[str, Any]], concurrency: int = CONCURRENCY
) -> None:
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda o: world.kube.apply(o, manager=USER), objects))


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def settled(world: World, names: set[str], phase: str = "Stable") -> bool:
    found = 0
    for mm in world.models():
        if mm["metadata"]["name"] not in names:
            continue
        status = mm.get("status") or {}
        if (
            status.get("phase") == phase
            and status.get("readyVersions") == "2/2"
            and status.get("observedGeneration") == mm["metadata"]["generation"]
        ):
            found += 1
    return found == len(names)


def statuses_written(world: World, names: set[str]) -> bool:
    """Every model's status speaks of its current generation."""
    written = {
        mm["metadata"]["name"]
        for mm in world.models()
        if (mm.get("status") or {}).get("observedGeneration") == mm["metadata"]["generation"]
    }
    return names <= written


def children_of(world: World, names: set[str], kinds: tuple[Kind, ...] = CHILD_KINDS) -> int:
    return sum(
        1
        for kind in kinds
        for o in world.kube.list(kind, world.namespace)
        if o["metadata"].get("labels", {}).get("modelpilot.io/model") in names
    )


def per_model_costs(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Reconciles, API requests (per HTTP method), wakes (per source: what changed) and
    the reconciles' own CPU per model, from two scrapes."""
    prefix = 'modelpilot_api_requests_total{method="'
    wanted = {"reconciles": ["modelpilot_reconciles_total"]} | {
        series[len(prefix) : -2]: [series] for series in after if series.startswith(prefix)
    }
    wakes = 'modelpilot_wakes_total{source="'
    for series in after:
        if series.startswith(wakes):
            source = series[len(wakes) :].split('"', 1)[0]
            wanted.setdefault(f"wakes by {source}", []).append(series)
    costs = {
        label: round(sum(after.get(s, 0) - before.get(s, 0) for s in series) / n, 1)
        for label, series in sorted(wanted.items())
    }
    cpu = "modelpilot_reconcile_cpu_seconds_total"
    if cpu in after:
        costs["reconcile CPU ms"] = round(1000 * (after[cpu] - before.get(cpu, 0)) / n, 1)
    return costs


def convergence(world: World, n: int, run: int = 0) -> dict[str, Any]:
    """operator_s: from the first apply until every child exists and every status is
    written (the issue's measure). A model's HTTPRoute appears only once a version is
    Ready (no route to nothing), so operator_s includes KServe's (the stand-in's) work;
    applied_s stops when every InferenceService and HPA exists and every status is
    written, which is the operator's part alone. ready_s: until every model is Stable
    with both versions Ready. ideal_s: the ideal controller (bench/ideal.py) bringing
    the same N models to a route, the fair floor for operator_s."""
    names = {f"c{n}-{run}-{i}" for i in range(n)}
    docs = [model_doc(name, world.namespace) for name in sorted(names)]
    operator = world.operator
    assert operator is not None
    before = operator.scrape()
    cpu, started = operator.cpu_seconds(), time.monotonic()
    apply_all(world, docs)
    wait_until(
        lambda: (
            statuses_written(world, names)
            and children_of(world, names, (INFERENCE_SERVICE, AUTOSCALER)) == 4 * n
        ),
        600,
        f"{n} models' InferenceServices, HPAs and statuses",
    )
    applied_s = time.monotonic() - started
    wait_until(
        lambda: statuses_written(world, names) and children_of(world, names) == 5 * n,
        600,
        f"{n} models' children and statuses",
    )
    operator_s = time.monotonic() - started
    wait_until(lambda: settled(world, names), 600, f"{n} models to turn Stable")
    ready_s = time.monotonic() - started
    cpu_s = operator.cpu_seconds() - cpu
    per_model = per_model_costs(before, operator.scrape(), n)

    # The ideal controller first, while KServe's stand-in is idle (it works through
    # InferenceServices one by one: a backlog would count against whoever runs next).
    renamed = [
        {**doc, "metadata": {**doc["metadata"], "name": "i" + doc["metadata"]["name"]}}
        for doc in docs
    ]
    ideal_s = IdealController(world, renamed, CONCURRENCY).converge()

    # The floor: the same children, rendered here and applied directly.
    rendered = []
    for doc in docs:
        doc = {**doc, "metadata": {**doc["metadata"], "name": "f" + doc["metadata"]["name"]}}
        model = parse_managed_model(doc)
        rendered += render_model(model, default_render_state(model), default_runtimes()).objects
    started = time.monotonic()
    apply_all(world, rendered)
    floor_s = time.monotonic() - started
    floor_names = {o["metadata"]["name"] for o in rendered if o["kind"] == INFERENCE_SERVICE.kind}
    wait_until(
        lambda: (
            floor_names
            <= {
                o["metadata"]["name"]
                for o in world.kube.list(INFERENCE_SERVICE, world.namespace)
                if ready(o)
            }
        ),
        600,
        "the stand-in to finish the floor's InferenceServices (quiet before the next run)",
    )
    return {
        "n": n,
        "run": run,
        "operator_s": round(operator_s, 2),
        "ideal_s": round(ideal_s, 2),
        "ideal_ratio": round(operator_s / ideal_s, 2),
        "floor_s": round(floor_s, 2),
        "ratio": round(operator_s / floor_s, 2),
        "applied_s": round(applied_s, 2),
        "applied_ratio": round(applied_s / floor_s, 2),
        "ready_s": round(ready_s, 2),
        "ready_ratio": round(ready_s / floor_s, 2),
        "operator_cpu_s": round(cpu_s, 2),
        "per_model": per_model,
    }


class Watcher(KindWatch):
    """Timestamps every event of one kind in the bench namespace (writes are counted
    from them)."""

    def __init__(self, world: World, kind: Kind) -> None:
        super().__init__(world.api, world.namespace, kind)
        self.events: list[tuple[float, str, dict[str, Any]]] = []

    def deliver(self, moment: float, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((moment, kind, obj))


def spec_writes(events: list[tuple[float, str, dict[str, Any]]], since: float) -> int:
    """MODIFIED events that changed the object's spec or metadata (not its status)."""
    last: dict[str, Any] = {}
    count = 0
    for moment, kind, obj in events:
        meta = obj["metadata"]
        key = (
            meta.get("generation"),
            meta.get("annotations"),
            meta.get("labels"),
            meta.get("ownerReferences"),
            meta.get("finalizers"),
        )
        if moment >= since and kind == "MODIFIED" and last.get(meta["name"]) != key:
            count += 1
        last[meta["name"]] = key
    return count


def idle(world: World, n: int, seconds: float) -> dict[str, Any]:
    watchers = {
        "isvc": Watcher(world, INFERENCE_SERVICE).start(),
        "hpa": Watcher(world, AUTOSCALER).start(),
        "route": Watcher(world, HTTP_ROUTE).start(),
        "mm": Watcher(world, MANAGED_MODEL).start(),
    }
    time.sleep(3)  # the initial listing
    operator = world.operator
    assert operator is not None
    since, cpu = time.monotonic(), operator.cpu_seconds()
    time.sleep(seconds)
    cpu_s = operator.cpu_seconds() - cpu
    for watcher in watchers.values():
        watcher.stop()
    missed = [kind for kind, w in watchers.items() if any(t >= since for t in w.gaps)]
    if missed:
        raise RuntimeError(f"the {', '.join(missed)} watch expired while idle: counts unknown")
    child_writes = sum(spec_writes(w.events, since) for k, w in watchers.items() if k != "mm")
    mm_writes = sum(1 for t, kind, _ in watchers["mm"].events if t >= since and kind == "MODIFIED")
    return {
        "n": n,
        "seconds": seconds,
        "child_writes": child_writes,
        "mm_writes": mm_writes,
        "cpu_s": round(cpu_s, 2),
        "rss_mb": round(operator.rss_mb(), 1),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "samples": len(samples),
        "p50_ms": round(cuts[49] * 1000, 1),
        "p95_ms": round(cuts[94] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
    }


def route_weights(route: dict[str, Any]) -> dict[str, int]:
    rule = route["spec"]["rules"][-1]
    model = route["metadata"]["name"]
    return {
        b["name"][len(model) + 1 : -len("-predictor")]: b.get("weight", 1)
        for b in rule.get("backendRefs") or []
    }


def first_route(
    events: list[tuple[float, str, dict[str, Any]]],
    name: str,
    weights: dict[str, int],
    after: float,
) -> float | None:
    for moment, _, obj in events:
        if moment >= after and obj["metadata"]["name"] == name and route_weights(obj) == weights:
            return moment
    return None


def promote(world: World, name: str) -> None:
    """A person's `modelpilot.io/promote: v2` on the model."""
    world.kube.patch(
        {
            "apiVersion": MANAGED_MODEL.api_version,
            "kind": MANAGED_MODEL.kind,
            "metadata": {"name": name, "namespace": world.namespace},
        },
        {"metadata": {"annotations": {"modelpilot.io/promote": "v2"}}},
    )


def promoted_at(routes: Watcher, name: str, sent: float, timeout: float) -> float:
    """When the route watch first saw the model's route at v2 100% after sent."""
    deadline = sent + timeout
    while (moment := first_route(routes.events, name, {"v2": 100}, sent)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not promoted within {timeout:.0f} s")
        time.sleep(0.01)
    return moment


def reaction(world: World, n: int) -> dict[str, Any]:
    """Promote -> route at 100%, and canary Ready -> route at its first step."""
    names = [f"r-{i}" for i in range(n)]
    apply_all(world, [model_doc(name, world.namespace, versions=1) for name in names])
    wait_until(lambda: settled_single(world, set(names)), 300, "reaction models stable")
    routes = Watcher(world, HTTP_ROUTE).start()
    isvcs = Watcher(world, INFERENCE_SERVICE).start()
    time.sleep(2)
    for name in names:  # add v2 as the target: it turns Ready, then gets its first step
        world.kube.apply(model_doc(name, world.namespace, target="v2"), manager=USER)
        time.sleep(0.1)
    wait_until(lambda: settled(world, set(names), "WaitingPromotion"), 300, "waiting")
    ready_latency = []
    for name in names:
        turned = next(
            t for t, _, o in isvcs.events if o["metadata"]["name"] == f"{name}-v2" and _ready(o)
        )
        routed = first_route(routes.events, name, {"v1": 50, "v2": 50}, after=0)
        assert routed is not None
        ready_latency.append(routed - turned)
    promote_latency = []
    for name in names:
        sent = time.monotonic()
        promote(world, name)
        promote_latency.append(promoted_at(routes, name, sent, timeout=30) - sent)
    routes.stop()
    isvcs.stop()
    return {"n": n, **percentiles(promote_latency), "canary_ready": percentiles(ready_latency)}


def _ready(isvc: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (isvc.get("status") or {}).get("conditions") or []
    )


def settled_single(world: World, names: set[str]) -> bool:
    found = 0
    for mm in world.models():
        status = mm.get("status") or {}
        if (
            mm["metadata"]["name"] in names
            and status.get("phase") == "Stable"
            and status.get("readyVersions") == "1/1"
        ):
            found += 1
    return found == len(names)


def apply_until_stable(world: World, names: list[str]) -> None:
    """Single-version models applied 100 at a time, then waited on until all are Stable."""
    for start in range(0, len(names), 100):
        batch = names[start : start + 100]
        apply_all(world, [model_doc(name, world.namespace, versions=1) for name in batch])
    n = len(names)
    wait_until(lambda: settled_single(world, set(names)), max(1800, n), f"{n} models stable")


def scale(world: World, n: int, seconds: float = 60) -> dict[str, Any]:
    """RSS and CPU of the operator with n ManagedModels at rest (earlier sections' models
    count towards n), and how long the new ones took to become Stable (applied 100 at a
    time)."""
    existing = len(world.models())
    names = [f"s-{i}" for i in range(max(0, n - existing))]
    operator = world.operator
    assert operator is not None
    cpu, started = operator.cpu_seconds(), time.monotonic()
    apply_until_stable(world, names)
    converge_s, converge_cpu_s = time.monotonic() - started, operator.cpu_seconds() - cpu
    total = len(world.models())
    time.sleep(5)
    cpu, started = operator.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu_pct = 100 * (operator.cpu_seconds() - cpu) / (time.monotonic() - started)
    return {
        "n": total,
        "converge_s": round(converge_s, 1),
        "converge_cpu_s": round(converge_cpu_s, 1),
        "rss_mb": round(operator.rss_mb(), 1),
        "cpu_pct": round(cpu_pct, 2),
    }


def sharded(world: World, shards: int, n: int, rest_seconds: float = 60) -> dict[str, Any]:
    """n new single-version models until every one is Stable, with `shards` operator
    processes (one replica per shard, each the leader of its shard's Lease); then each
    process's RSS and CPU over rest_seconds at rest."""
    operators = [
        world.start_operator("--shards", str(shards), "--shard", str(i), name=f"operator-{i}")
        for i in range(shards)
    ]
    names = [f"s-{i}" for i in range(n)]
    cpu, started = [o.cpu_seconds() for o in operators], time.monotonic()
    apply_until_stable(world, names)
    converge_s = time.monotonic() - started
    each = [round(o.cpu_seconds() - c, 1) for o, c in zip(operators, cpu, strict=True)]
    time.sleep(5)
    idle, idle_started = [o.cpu_seconds() for o in operators], time.monotonic()
    time.sleep(rest_seconds)
    idle_pct = [
        round(100 * (o.cpu_seconds() - c) / (time.monotonic() - idle_started), 2)
        for o, c in zip(operators, idle, strict=True)
    ]
    return {
        "shards": shards,
        "n": n,
        "converge_s": round(converge_s, 1),
        "cpu_s": round(sum(each), 1),
        "cpu_s_each": each,
        "rss_mb_each": [round(o.rss_mb(), 1) for o in operators],
        "idle_cpu_pct_each": idle_pct,
    }


def waits(
    before: dict[str, float],
    after: dict[str, float],
    cause: str,
    histogram: str = "modelpilot_reconcile_wait_seconds",
) -> dict[str, float]:
    """The operator's reconciles woken for `cause` between two scrapes: how many, and
    how many started within 50 ms, 250 ms and 1 s of the wake; or, from the histogram
    modelpilot_reconcile_duration_seconds, how many ran within those times."""
    series = histogram + '_bucket{cause="%s",le="%s"}'
    counts = {
        bound: after.get(series % (cause, bound), 0) - before.get(series % (cause, bound), 0)
        for bound in ("0.05", "0.25", "1.0", "+Inf")
    }
    return {
        "n": counts["+Inf"],
        "within_50ms": counts["0.05"],
        "within_250ms": counts["0.25"],
        "within_1s": counts["1.0"],
    }


def storm(world: World, humans: int = 20) -> dict[str, Any]:
    """A fleet-wide change: every model of the scale section (s-*, at rest on v1) gets a
    v2 and the target v2 at once. While it lands, a person promotes other models one by
    one: promote -> route at 100%, measured during the storm (it must not starve them).
    land_s: until every storm model has its canary at the first step."""
    fleet = [
        m["metadata"]["name"] for m in world.models() if m["metadata"]["name"].startswith("s-")
    ]
    people = [f"h-{i}" for i in range(humans)]
    apply_all(world, [model_doc(name, world.namespace, versions=1) for name in people])
    wait_until(lambda: settled_single(world, set(people)), 300, "the people's models stable")
    apply_all(world, [model_doc(name, world.namespace, target="v2") for name in people])
    wait_until(lambda: settled(world, set(people), "WaitingPromotion"), 300, "people waiting")
    routes = Watcher(world, HTTP_ROUTE).start()
    models = Watcher(world, MANAGED_MODEL).start()
    time.sleep(2)
    operator = world.operator
    assert operator is not None
    before = operator.scrape()
    cpu, started = operator.cpu_seconds(), time.monotonic()
    changed = [model_doc(name, world.namespace, target="v2") for name in fleet]
    decided = []  # promote sent -> the operator's status naming it seen (the decision)
    patched = []  # promote sent -> the apiserver answered the PATCH
    watched = []  # promote sent -> a watch (this bench's) delivered the annotation
    with ThreadPoolExecutor(1) as background:
        landing = background.submit(apply_all, world, changed)
        latency = []
        for name in people:
            time.sleep(0.5)
            sent = time.monotonic()
            promote(world, name)
            patched.append(time.monotonic() - sent)
            latency.append(promoted_at(routes, name, sent, timeout=60) - sent)
            # None where the bench's own watch missed the event (its watch was closed
            # and the kind listed again: see gaps).
            decision = next(
                (
                    t
                    for t, _, o in list(models.events)
                    if t >= sent
                    and o["metadata"]["name"] == name
                    and ((o.get("status") or {}).get("lastCommand") or {}).get("name") == "promote"
                ),
                None,
            )
            seen = next(
                (
                    t
                    for t, kind, o in list(models.events)
                    if t >= sent
                    and kind != "LISTED"
                    and o["metadata"]["name"] == name
                    and "modelpilot.io/promote" in (o["metadata"].get("annotations") or {})
                ),
                None,
            )
            if decision is not None:
                decided.append(decision - sent)
            if seen is not None:
                watched.append(seen - sent)
        landing.result()
    after = operator.scrape()
    applied_s = time.monotonic() - started
    wait_until(lambda: settled(world, set(fleet), "WaitingPromotion"), 1800, "the storm to land")
    land_s = time.monotonic() - started
    routes.stop()
    models.stop()
    return {
        "n": len(fleet),
        "humans": humans,
        "applied_s": round(applied_s, 1),
        "land_s": round(land_s, 1),
        "cpu_s": round(operator.cpu_seconds() - cpu, 1),
        **percentiles(latency),
        "decided": percentiles(decided),
        "bench_watch_gaps": len(models.gaps) + len(routes.gaps),
        "waits": {cause: waits(before, after, cause) for cause in ("command", "change", "other")},
        "runs": {
            cause: waits(before, after, cause, "modelpilot_reconcile_duration_seconds")
            for cause in ("command", "change", "other")
        },
        "patched": percentiles(patched),
        "watched": percentiles(watched),
    }
