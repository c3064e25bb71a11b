"""Benchmarks of the operator's own cost on the simulated cluster.

    python -m bench.run --profile quick   # N = 50 (x3), idle 60 s, 50 reactions (~5 min)
    python -m bench.run --profile full    # N = 50 and 200 (x3), idle 300 s, 1,000 models, storm
    python -m bench.run --profile storm   # 300 models move their target at once
    python -m bench.run --profile storm --scale 1000   # the storm on 1,000 (the goal's size)
    python -m bench.run --profile rest    # 10,000 models at rest, the HPA controller off
    python -m bench.run --profile shards  # 2,000 models converge with 1, 2 and 4 shards
    python -m bench.run --py-spy          # also sample the operator with py-spy
    python -m bench.run --convergence 50 200   # only the convergence runs (x3 each)

KServe's stand-in runs in instant mode (Ready at once, no pods) and the gateway
stand-in accepts routes, so the figures are the operator's cost, not kwok's. Results go
to bench/results/<profile>-<time>.json and .md, and bench/results/latest-<profile>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from bench import profiling, scenarios
from bench.harness import World

RESULTS = Path(__file__).resolve().parent / "results"
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"convergence": [50], "repeats": 3, "idle": 60, "reaction": 50, "scale": None},
    "full": {
        "convergence": [50, 200],
        "repeats": 3,
        "idle": 300,
        "reaction": 50,
        "scale": 1000,
        "storm": True,
        "rest": 10000,
        "shards": [1, 2, 4],
    },
    # The storm alone, on fewer models: a quick look at a fleet-wide change.
    "storm": {
        "convergence": [],
        "repeats": 0,
        "idle": 0,
        "reaction": 0,
        "scale": 300,
        "storm": True,
    },
    # 10,000 models at rest, each section in a cluster of its own with the HPA
    # controller off: its sync over 10,000 HPAs (all without a Deployment in instant
    # mode) would keep both cores busy, and it is the cluster's cost, not the operator's.
    "rest": {"rest": 10000},
    # 2,000 models converging on 1, 2 and 4 shards, each in a fresh cluster (HPA
    # controller off, as above).
    "shards": {"shards": [1, 2, 4]},
}
SHARDED_MODELS = 2000


def machine() -> dict[str, Any]:
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(
    profile: str,
    py_spy: Path | None = None,
    scale: int | None = None,
    only_convergence: list[int] | None = None,
) -> dict[str, Any]:
    plan = dict(PROFILES[profile])
    if scale is not None:
        plan["scale"] = scale
    if only_convergence:
        plan = {"convergence": only_convergence, "repeats": 3}
    result: dict[str, Any] = {
        "machine": machine(),
        "profile": profile,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if any(plan.get(k) for k in ("convergence", "idle", "reaction", "scale", "storm")):
        result |= _one_operator(plan, py_spy)
    if plan.get("rest"):
        print(f"rest: {plan['rest']} models, the HPA controller off ...", flush=True)
        with World(hpa_sync_period=None) as world:
            world.start_operator()
            result["rest"] = scenarios.scale(world, plan["rest"])
    for count in plan.get("shards") or []:
        print(f"shards: {SHARDED_MODELS} models on {count} shard(s) ...", flush=True)
        with World(hpa_sync_period=None) as world:
            result.setdefault("shards", []).append(scenarios.sharded(world, count, SHARDED_MODELS))
    return result


def _one_operator(plan: dict[str, Any], py_spy: Path | None) -> dict[str, Any]:
    """The sections that share one cluster and one operator, in order."""
    result: dict[str, Any] = {}
    with World() as world:
        operator = world.start_operator()
        spy = profiling.PySpy(operator.pid, py_spy) if py_spy else None
        result["convergence"] = []
        for n in plan.get("convergence") or []:
            for repeat in range(plan["repeats"]):
                print(f"convergence, N = {n}, run {repeat + 1} ...", flush=True)
                result["convergence"].append(scenarios.convergence(world, n, repeat))
        result["convergence_summary"] = summarize(result["convergence"])
        if plan.get("idle"):
            print(f"idle, {plan['idle']} s ...", flush=True)
            at_rest = len(world.models())
            result["idle"] = scenarios.idle(world, at_rest, plan["idle"])
        if plan.get("reaction"):
            print(f"reaction, {plan['reaction']} rollouts ...", flush=True)
            result["reaction"] = scenarios.reaction(world, plan["reaction"])
        if plan.get("scale"):
            print(f"scale, {plan['scale']} models ...", flush=True)
            result["scale"] = scenarios.scale(world, plan["scale"])
        if plan.get("storm"):
            print("storm: every model of the scale section moves its target ...", flush=True)
            result["storm"] = scenarios.storm(world)
        if spy is not None:
            spy.stop()
    return result


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: the median of each figure over the repeats, and its spread (min, max):
    the machine is noisy, one run says little."""
    figures = ("operator_s", "ideal_s", "ideal_ratio", "floor_s", "ratio", "operator_cpu_s")
    summary = []
    for n in sorted({r["n"] for r in runs}):
        these = [r for r in runs if r["n"] == n]
        entry: dict[str, Any] = {"n": n, "runs": len(these)}
        for figure in figures:
            values = [r[figure] for r in these if figure in r]
            if values:
                entry[figure] = round(statistics.median(values), 2)
                entry[f"{figure}_spread"] = [min(values), max(values)]
        summary.append(entry)
    return summary


def _spread(summary: dict[str, Any], figure: str) -> str:
    if figure not in summary:
        return "-"
    low, high = summary[f"{figure}_spread"]
    return f"{summary[figure]} [{low}, {high}]"


def _convergence(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Convergence: operator s is until every child exists and every status is written "
        "(a model's HTTPRoute only once a version is Ready, so this includes the KServe "
        "stand-in's work); applied s until every InferenceService and HPA exists and every "
        "status is written (the operator's part); Stable s until every model is Stable with "
        "both versions Ready. ideal s: an ideal controller (bench/ideal.py: the same "
        "children, each route applied the moment its version is Ready, no status, same "
        "client and concurrency), the fair floor for operator s; floor s: the same children "
        "applied directly, never waiting for KServe.",
        "",
        "| N | run | operator s | ideal s | vs ideal | floor s | vs floor | applied s | "
        "Stable s | operator CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['n']} | {c.get('run', 0) + 1} | {c['operator_s']} | {c.get('ideal_s', '-')} | "
        f"{c.get('ideal_ratio', '-')} | {c['floor_s']} | {c['ratio']} | "
        f"{c.get('applied_s', '-')} | {c.get('ready_s', '-')} | {c.get('operator_cpu_s', '-')} |"
        for c in result["convergence"]
    ]
    summary = result.get("convergence_summary") or []
    if summary:
        lines += [
            "",
            "Median over the runs [min, max]:",
            "",
            "| N | runs | operator s | ideal s | vs ideal | vs floor | operator CPU s |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['n']} | {s['runs']} | {_spread(s, 'operator_s')} | {_spread(s, 'ideal_s')} | "
            f"{_spread(s, 'ideal_ratio')} | {_spread(s, 'ratio')} | "
            f"{_spread(s, 'operator_cpu_s')} |"
            for s in summary
        ]
    lines += [
        "",
        "Per model while converging, reconciles and the operator's API requests by method "
        "(besides kopf's watches and finalizer patch): "
        + "; ".join(
            f"N = {c['n']}: " + ", ".join(f"{m} {v}" for m, v in c.get("per_model", {}).items())
            for c in result["convergence"]
        ),
    ]
    return lines


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# modelpilot bench ({result['profile']}, {result['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gb']} GiB, Python {m['python']}. "
        "KServe and the gateway are simulated (instant mode); the operator runs as its own "
        "process.",
    ]
    if result.get("convergence"):
        lines += _convergence(result)
    i = result.get("idle") or {}
    lines += (
        []
        if not i
        else [
            "",
            "| idle models | seconds | child writes | model writes | CPU s | RSS MB |",
            "|---|---|---|---|---|---|",
            f"| {i['n']} | {i['seconds']} | {i['child_writes']} | {i['mm_writes']} | "
            f"{i['cpu_s']} | {i['rss_mb']} |",
        ]
    )
    r = result.get("reaction") or {}
    c = r.get("canary_ready") or {}
    lines += (
        []
        if not r
        else [
            "",
            f"| reaction (n = {r['n']}) | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|",
            f"| promote -> route | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |",
            f"| canary Ready -> route | {c['p50_ms']} | {c['p95_ms']} | {c['p99_ms']} |",
        ]
    )
    if "scale" in result:
        s = result["scale"]
        lines += [
            "",
            "| models at rest | RSS MB | CPU % |",
            "|---|---|---|",
            f"| {s['n']} | {s['rss_mb']} | {s['cpu_pct']} |",
        ]
    if "rest" in result:
        s = result["rest"]
        lines += [
            "",
            "At rest, the HPA controller off (a cluster of its own):",
            "",
            "| models at rest | converged in s | operator CPU s to converge | RSS MB | CPU % |",
            "|---|---|---|---|---|",
            f"| {s['n']} | {s.get('converge_s', '-')} | {s.get('converge_cpu_s', '-')} "
            f"| {s['rss_mb']} | {s['cpu_pct']} |",
        ]
    if "shards" in result:
        lines += [
            "",
            f"Sharding: {SHARDED_MODELS} new models (one version each) until every one is "
            "Stable, each shard count in a fresh cluster (HPA controller off):",
            "",
            "| shards | converged in s | operator CPU s (all shards) | per shard CPU s "
            "| per shard RSS MB at rest | per shard CPU % at rest |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["shards"]:
            lines.append(
                f"| {r['shards']} | {r['converge_s']} | {r['cpu_s']} "
                f"| {', '.join(str(c) for c in r['cpu_s_each'])} "
                f"| {', '.join(str(m) for m in r['rss_mb_each'])} "
                f"| {', '.join(str(c) for c in r.get('idle_cpu_pct_each', []))} |"
            )
    if "storm" in result:
        t = result["storm"]
        lines += [
            "",
            f"Storm: {t['n']} models move their target at once (applied in {t['applied_s']} s, "
            f"every canary at its first step after {t['land_s']} s, operator CPU "
            f"{t['cpu_s']} s); meanwhile {t['humans']} promotes of other models:",
            "",
            "| promote -> route during the storm | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|",
            f"| n = {t['humans']} | {t['p50_ms']} | {t['p95_ms']} | {t['p99_ms']} |",
        ]
        for key, what in (
            ("patched", "promote -> the apiserver answered its PATCH"),
            ("watched", "promote -> a watch delivered its annotation"),
            ("decided", "promote -> the operator's status naming it"),
        ):
            if key in t:
                d = t[key]
                n = f" (n = {d['samples']})" if d.get("samples", t["humans"]) != t["humans"] else ""
                lines.append(f"| {what}{n} | {d['p50_ms']} | {d['p95_ms']} | {d['p99_ms']} |")
        if "waits" in t:
            lines += [
                "",
                "| the operator's reconciles by cause: wake -> start | n | within 50 ms "
                "| within 250 ms | within 1 s |",
                "|---|---|---|---|---|",
            ]
            for cause, w in t["waits"].items():
                lines.append(
                    f"| {cause} | {w['n']:.0f} | {w['within_50ms']:.0f} "
                    f"| {w['within_250ms']:.0f} | {w['within_1s']:.0f} |"
                )
            for cause, w in (t.get("runs") or {}).items():
                lines.append(
                    f"| {cause}: start -> end | {w['n']:.0f} | {w['within_50ms']:.0f} "
                    f"| {w['within_250ms']:.0f} | {w['within_1s']:.0f} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample the operator with py-spy; collapsed stacks and a summary land next "
        "to the results",
    )
    parser.add_argument("--scale", type=int, help="models at rest for the scale and storm sections")
    parser.add_argument(
        "--convergence",
        type=int,
        nargs="+",
        metavar="N",
        help="only the convergence runs, N models three times each (e.g. 50 200)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    name = "convergence" if args.convergence else args.profile
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    stacks = RESULTS / f"{name}-{stamp}.stacks.txt" if args.py_spy else None
    started = time.monotonic()
    result = run(args.profile, stacks, args.scale, args.convergence)
    result["profile"] = name
    result["wall_s"] = round(time.monotonic() - started, 1)
    (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS / f"{name}-{stamp}.md").write_text(table)
    (RESULTS / f"latest-{name}.md").write_text(table)
    print(table)
    if stacks is not None:
        top = "\n".join(f"{share:5.1f}%  {frame}" for share, frame in profiling.summary(stacks))
        (RESULTS / f"{name}-{stamp}.profile.txt").write_text(top + "\n")
        print("where the operator spent its samples (inclusive):\n" + top)
    print(f"wall time {result['wall_s']} s")


if __name__ == "__main__":
    main()
