"""Route change -> traffic, through the real gateway (Traefik) to real model servers: how
long after a command the operator writes the route, and how long after that write the
clients' requests follow it. A canary is moved between 0% and 50% with
`modelpilot.io/set-weight` CHANGES times under steady load; per change:

  operator: the annotation written -> the route write seen by a watch
  add:      the route write seen -> the first answer by v2 (it got 50%)
  remove:   the route write seen -> the last answer by v2 (it got 0%)

python -m bench.propagation [--changes 20] [--rate 200]

KServe's controller is the stand-in (modelpilot_dev.standins); pods are kwok's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from modelpilot.api.kinds import HTTP_ROUTE, MANAGED_MODEL
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube, api_client
from modelpilot.store.build import build
from modelpilot_dev.checkout import manifests
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.gateway import TRAEFIK_SETTINGS, LocalGateway
from modelpilot_dev.load import Load
from modelpilot_dev.standins import StandIns
from modelpilot_dev.watch import Timeline, route_changes

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE, HOST = "default", "iris.bench.example.com"
HOLD = 1.5  # seconds of traffic after each change before the next


def wait(check: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def percentiles(values: list[float]) -> dict[str, float]:
    """With 10-20 samples, p99 is the largest but one at most: read it as a maximum."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def run(changes: int, rate: float) -> dict[str, Any]:
    store = Path(tempfile.mkdtemp(prefix="modelpilot-bench-store-"))
    build(store, log=lambda _line: None)
    plane = ControlPlane()
    plane.start()
    try:
        api = api_client(str(plane.kubeconfig))
        gateway = LocalGateway(plane.kubeconfig, plane.log_dir).start(api)
        standins = StandIns(api_client(str(plane.kubeconfig)), model_store=store).start()
        kube = Kube(api_client(str(plane.kubeconfig)))
        document = yaml.safe_load((manifests() / "samples" / "iris-store.yaml").read_text())
        document["metadata"]["namespace"] = NAMESPACE
        document["spec"]["traffic"]["hostnames"] = [HOST]
        document["spec"]["rollout"].update({"stepWeights": [50], "interval": "10m"})
        routes = Timeline(api, NAMESPACE, HTTP_ROUTE).start()

        def last() -> tuple[float, dict[str, int]]:
            return (route_changes(routes, "iris") or [(0.0, {})])[-1]

        operator_lags, adds, removes = [], [], []
        with OperatorThread(
            Kube(api_client(str(plane.kubeconfig))), TRAEFIK_SETTINGS, namespaces=[NAMESPACE]
        ):
            kube.apply(document, manager="bench")
            wait(lambda: last()[1] == {"v1": 100}, "v1 serving")
            document["spec"]["rollout"]["target"] = "v2"
            kube.apply(document, manager="bench")
            wait(lambda: last()[1] == {"v1": 50, "v2": 50}, "the canary at 50%")
            wait(lambda: gateway.request("/v2/models/iris/ready", host=HOST)[0] == 200, "gw")
            with Load(gateway.url, host=HOST, model="iris", rate=rate, seconds=600) as load:
                time.sleep(HOLD)
                for index in range(changes):
                    weight = 0 if index % 2 == 0 else 50
                    wanted = {"v1": 100} if weight == 0 else {"v1": 50, "v2": 50}
                    model = kube.get(MANAGED_MODEL, "iris", NAMESPACE)
                    assert model is not None
                    sent = time.monotonic()
                    annotation = {"modelpilot.io/set-weight": f"v2={weight}"}
                    kube.patch(model, {"metadata": {"annotations": annotation}})
                    wait(lambda wanted=wanted: last()[1] == wanted, "the route")
                    seen = last()[0]
                    operator_lags.append(seen - sent)
                    time.sleep(HOLD)
                    answers = list(load.answers)  # a copy: the workers keep appending
                    v2 = [a.at - seen for a in answers if a.version == "v2" and a.at >= seen]
                    if weight == 0:
                        removes.append(max(v2, default=0.0))
                    elif v2:
                        adds.append(min(v2))
                total = load.stop()
        routes.stop()
        standins.stop()
        gateway.stop()
    finally:
        plane.stop()
        shutil.rmtree(store, ignore_errors=True)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "changes": changes,
        "rate": rate,
        "operator": percentiles(operator_lags),
        "add": percentiles(adds),
        "remove": percentiles(removes),
        "requests": total.requests,
        "failed": total.failed + total.errors,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# route change -> traffic ({result['date']}, {result['changes']} changes, "
        f"{result['rate']:.0f} requests/s, {result['requests']} requests, "
        f"{result['failed']} failed)",
        "",
        "| from -> to | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("operator", "set-weight written -> route write seen"),
        ("add", "route write seen -> first answer by the added version"),
        ("remove", "route write seen -> last answer by the removed version"),
    ):
        r = result[key]
        lines.append(f"| {label} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.propagation", description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    result = run(args.changes, args.rate)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"propagation-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS / "latest-propagation.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
