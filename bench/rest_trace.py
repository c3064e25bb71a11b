"""N single-version models applied at once to a cluster of their own (the HPA controller
off, KServe's stand-in instant), traced until every one is Stable: each sample prints
how many are, the operator's RSS, each process's share of a core and the apiserver's
busiest requests; then the operator at rest (RSS, CPU over 60 s).

    python -m bench.rest_trace 10000 --minutes 45 --every 60
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time

from bench import scenarios
from bench.harness import World
from modelpilot_dev import tools
from modelpilot_dev.operator_process import cpu_seconds


def apiserver_requests(world: World) -> dict[tuple[str, str], float]:
    """apiserver_request_total summed by verb and resource[/subresource]."""
    kubectl = [str(tools.binary_path("kubectl")), "--kubeconfig", str(world.plane.kubeconfig)]
    command = [*kubectl, "get", "--raw", "/metrics"]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            resource = labels.get("resource", "") + (
                f"/{labels['subresource']}" if labels.get("subresource") else ""
            )
            key = (labels.get("verb", ""), resource)
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def trace(n: int, minutes: float, every: float) -> None:
    with World(hpa_sync_period=None) as world:
        operator = world.start_operator()
        assert world.standins is not None and world.standins.pid is not None
        pids = {p.name: p.pid for p in world.plane.processes if p.pid is not None}
        pids |= {"standins": world.standins.pid, "operator": operator.pid}
        names = [f"s-{i}" for i in range(n)]
        started = time.monotonic()
        for first in range(0, n, 100):
            batch = names[first : first + 100]
            scenarios.apply_all(
                world, [scenarios.model_doc(m, world.namespace, versions=1) for m in batch]
            )
        print(f"applied {n} in {time.monotonic() - started:.0f}s", flush=True)
        cpu = {k: cpu_seconds(p) for k, p in pids.items()}
        requests, sampled = apiserver_requests(world), time.monotonic()
        while time.monotonic() - started < minutes * 60:
            time.sleep(every)
            now = time.monotonic()
            span = now - sampled
            cpu_now = {k: cpu_seconds(p) for k, p in pids.items()}
            requests_now = apiserver_requests(world)
            stable = sum(
                1 for m in world.models() if (m.get("status") or {}).get("phase") == "Stable"
            )
            shares = " ".join(f"{k}={100 * (cpu_now[k] - cpu[k]) / span:.0f}%" for k in pids)
            print(f"t={now - started:.0f}s stable={stable} rss={operator.rss_mb():.0f}MB {shares}")
            busiest = sorted(((v - requests.get(k, 0.0), k) for k, v in requests_now.items()))
            print("  req/s: " + ", ".join(f"{v} {r} {d / span:.1f}" for d, (v, r) in busiest[-8:]))
            cpu, requests, sampled = cpu_now, requests_now, now
            if stable == n:
                spent = operator.cpu_seconds()
                print(f"all Stable at {now - started:.0f}s, operator CPU {spent:.0f}s")
                time.sleep(5)
                before, rest_started = operator.cpu_seconds(), time.monotonic()
                time.sleep(60)
                share = 100 * (operator.cpu_seconds() - before) / (time.monotonic() - rest_started)
                print(f"at rest: RSS {operator.rss_mb():.0f} MB, CPU {share:.2f}% of a core")
                return
        print(f"stopped after {minutes} minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=int)
    parser.add_argument("--minutes", type=float, default=45)
    parser.add_argument("--every", type=float, default=60, help="seconds between samples")
    args = parser.parse_args()
    trace(args.models, args.minutes, args.every)


if __name__ == "__main__":
    main()
