"""Run the simulated cluster in the foreground: `python -m modelpilot_dev cluster`.

Builds missing tools first, prints the `export KUBECONFIG=...` line to use it, and
stops everything it started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from modelpilot.k8s.client import api_client
from modelpilot_dev import tools
from modelpilot_dev.checkout import model_store
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.gateway import LocalGateway
from modelpilot_dev.nodes import NodeGroup, NodePool
from modelpilot_dev.procs import ClusterError
from modelpilot_dev.prometheus import LocalPrometheus
from modelpilot_dev.standins import StandIns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelpilot_dev cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cpu-nodes", type=int, default=2)
    parser.add_argument("--gpu-nodes", type=int, default=2)
    parser.add_argument("--gpus-per-node", type=int, default=2)
    parser.add_argument(
        "--no-crds", action="store_true", help="skip the ManagedModel, KServe and Gateway API CRDs"
    )
    parser.add_argument(
        "--no-standins",
        action="store_true",
        help="do not run the simulated KServe and gateway controllers",
    )
    parser.add_argument(
        "--no-gateway",
        action="store_true",
        help="no Traefik: the gateway stand-in only marks routes Accepted",
    )
    parser.add_argument(
        "--model-store",
        type=Path,
        help="serve this store's models for real behind their predictors (default: the "
        "checkout's model-store/ when it is built and kserve is installed)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # SIGTERM (e.g. from `make` or a supervisor) gets the same clean stop as Ctrl-C.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        tools.ensure_all(log=lambda line: print(line, file=sys.stderr))
    except tools.ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    pool = NodePool(
        (
            NodeGroup("cpu", args.cpu_nodes),
            NodeGroup("gpu", args.gpu_nodes, gpus=args.gpus_per_node),
        )
    )
    plane = ControlPlane(pool, install_crds=not args.no_crds)
    standins: StandIns | None = None
    gateway: LocalGateway | None = None
    prometheus: LocalPrometheus | None = None
    try:
        plane.start()
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in plane.timings.items())
        print(f"control plane up at {plane.server} ({steps})", file=sys.stderr)
        print(f"logs: {plane.log_dir}", file=sys.stderr)
        print(f"kubectl: {tools.binary_path('kubectl')}", file=sys.stderr)
        if not args.no_standins:
            store = args.model_store or _default_store()
            standins = StandIns(api_client(str(plane.kubeconfig)), model_store=store).start()
            print(
                "simulated: KServe (a Deployment + Service per InferenceService, Ready from "
                "the Deployment) and, for routes on no real gateway, a gateway (HTTPRoutes "
                "Accepted); pods are kwok's",
                file=sys.stderr,
            )
            if store is not None:
                print(f"real: model servers for the models in {store}", file=sys.stderr)
        if not args.no_gateway and not tools.missing(["traefik"]):
            gateway = LocalGateway(plane.kubeconfig, plane.log_dir).start(plane.api_client())
            print(
                f"real: Traefik, Gateway {gateway.namespace}/{gateway.name}, at {gateway.url} "
                f"(metrics {gateway.metrics_url})",
                file=sys.stderr,
            )
            if not tools.missing(["prometheus"]):
                prometheus = LocalPrometheus(plane.log_dir, gateway_metrics=gateway.metrics_url)
                prometheus.start()
                if standins is not None:
                    standins.kserve.store_servers.report_to(prometheus)
                    standins.knative.report_to(prometheus)
                print(
                    f"real: Prometheus {tools.prometheus_version()} at {prometheus.url}, "
                    "scraping the gateway and the model servers each second",
                    file=sys.stderr,
                )
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print("Ctrl-C stops it.", file=sys.stderr)
        while not stop.wait(1.0):
            for process in plane.processes:
                if not process.alive():
                    print(
                        f"error: {process.name} exited; log tail:\n{process.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
    finally:
        if prometheus is not None:
            prometheus.stop()
        if gateway is not None:
            gateway.stop()
        if standins is not None:
            standins.stop()
        plane.stop()
        print("stopped", file=sys.stderr)
    return 0


def _default_store() -> Path | None:
    store = model_store()
    built = (store / "iris" / "v1").is_dir()
    return store if built and importlib.util.find_spec("kserve") is not None else None


if __name__ == "__main__":
    sys.exit(main())
