"""`make demo` (`python -m modelpilot_dev demo`): modelpilot's main job on a laptop, no Docker.

Starts the local cluster (`modelpilot_dev.cluster`: a real control plane with kwok's fake
CPU and GPU nodes), the KServe stand-in with real model servers for the store's models,
Traefik as the gateway, and the operator in this process; applies the iris ManagedModel
from the model store serving v1, then sends clients' requests through the gateway while
it walks a canary to v2, promotes it and watches v1 scale down, printing `kubectl get
mm`, the pods per version, `modelpilot status` and what the clients saw (answers per
version, errors) on the way. Act 2, with Prometheus: a broken v3 rolled out with canary
analysis is rolled back by itself while the clients' traffic keeps flowing. It stops
everything it started, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from modelpilot.api.kinds import MANAGED_MODEL
from modelpilot.store import ModelStore, StoreError
from modelpilot_dev import checkout, tools
from modelpilot_dev.gateway import TRAEFIK_SETTINGS, LocalGateway
from modelpilot_dev.load import Load
from modelpilot_dev.local_server import LocalServer
from modelpilot_dev.prometheus import LocalPrometheus

if TYPE_CHECKING:
    from modelpilot_dev.cluster import ControlPlane

NAMESPACE = "default"
# Three flowers: a clear setosa, a borderline one, a clear virginica.
PROBE = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]
OPERATOR_LOG = Path(tempfile.gettempdir()) / "modelpilot-demo" / "operator.log"
HOST = "iris.models.example.com"  # the sample's hostname
LOAD_RATE = 50.0  # requests per second during the rollout
POD_COLUMNS = ["-l", "modelpilot.io/model=iris", "-L", "modelpilot.io/version"]


class DemoError(RuntimeError):
    pass


class Interrupted(BaseException):
    """SIGTERM: like Ctrl-C's KeyboardInterrupt, not an error to wrap or report."""


class Demo:
    def __init__(
        self,
        *,
        out: TextIO = sys.stdout,
        store_root: Path | None = None,
        sample: Path | None = None,
        timeout: float = 90.0,
        serve: bool = True,
    ) -> None:
        self.out = out
        self.store = ModelStore(store_root or checkout.model_store())
        self.sample = sample or checkout.manifests() / "samples" / "iris-store.yaml"
        self.timeout = timeout  # for each wait on the cluster
        self.serve = serve  # real predictions from the store's artifacts first
        self.started = time.monotonic()
        self.kubeconfig: Path | None = None
        self.kube: Any = None
        self._seen: tuple[Any, ...] | None = None  # the last (phase, weights) printed
        self.load: Load | None = None  # clients' requests through the gateway
        self.gateway: LocalGateway | None = None
        self.prometheus: LocalPrometheus | None = None
        self.real_servers = False
        self._mark = 0.0  # when the last traffic line was printed

    # --- output -------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self.out.write(f"\n[{self.elapsed():5.1f}s] ==> {text}\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write(f"    {text}\n")
        self.out.flush()

    def kubectl(self, *argv: str, shown: str | None = None) -> str:

        assert self.kubeconfig is not None
        self.out.write(f"$ {shown or 'kubectl ' + ' '.join(argv)}\n")
        self.out.flush()
        result = subprocess.run(
            [str(tools.binary_path("kubectl")), *argv],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        text = result.stdout + result.stderr
        self.out.write(text)
        self.out.flush()
        if result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(argv)} exited {result.returncode}")
        return text

    def modelpilot(self, *argv: str) -> None:
        from modelpilot.cli import main as cli

        assert self.kubeconfig is not None
        self.out.write(f"$ modelpilot {' '.join(argv)}\n")
        self.out.flush()
        with contextlib.redirect_stdout(self.out):
            code = cli([*argv, "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE])
        if code != 0:
            raise DemoError(f"modelpilot {' '.join(argv)} exited {code}")

    def show(self) -> None:
        self.kubectl("get", "mm")
        self.kubectl("get", "pods", *POD_COLUMNS, shown="kubectl get pods -L modelpilot.io/version")

    # --- cluster reads ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        found = self.kube.get(MANAGED_MODEL, "iris", NAMESPACE)
        return ((found or {}).get("status")) or {}

    def wait(self, what: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll the model's status; print each new (phase, weights) on the way."""
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.status()
            state = (status.get("phase"), tuple(sorted((status.get("weights") or {}).items())))
            if state != self._seen and status.get("phase"):
                self._seen = state
                weights = ", ".join(f"{v}={w}%" for v, w in state[1]) or "(no route yet)"
                self.traffic()
                self.note(f"{self.elapsed():5.1f}s  {state[0]:<17} {weights}")
            if done(status):
                self.note(f"{self.elapsed():5.1f}s  {what}")
                return status
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {self.timeout:.0f}s waiting for {what}")
            time.sleep(0.3)

    def traffic(self) -> None:
        """What clients saw since the last line: answers per version, and errors."""
        if self.load is None:
            return
        now = time.monotonic()
        window = self.load.tally(self._mark, now)
        self._mark = now
        if window.requests:
            self.note(f"         clients: {window.line()}")

    def pods_of(self, version: str) -> int:
        from kubernetes import client

        pods = client.CoreV1Api(self.kube.api).list_namespaced_pod(
            NAMESPACE, label_selector=f"modelpilot.io/model=iris,modelpilot.io/version={version}"
        )
        return len(pods.items)

    # --- steps --------------------------------------------------------------------

    def ensure_store(self) -> None:
        self.say(f"the model store: {self.store.root}")
        try:
            for version in ("v1", "v2", "v3"):
                self.store.get("iris", version)
        except StoreError as err:
            self.note(f"{err}; building it")
            from modelpilot.store.build import build

            build(self.store.root, log=self.note)
        from modelpilot.cli.store import format_table

        self.out.write("$ modelpilot store list\n" + format_table(self.store.all_versions()))

    def run(self) -> None:
        from modelpilot.handlers.runner import OperatorThread
        from modelpilot.k8s.client import Kube, api_client
        from modelpilot_dev.cluster import ControlPlane
        from modelpilot_dev.nodes import NodePool
        from modelpilot_dev.standins import StandIns

        self.ensure_store()
        missing = tools.missing((*tools.CONTROL_PLANE, "kubectl"))
        if missing:
            raise DemoError(f"tools not built: {', '.join(missing)}; run `make tools` first")
        pool = NodePool()
        nodes = ", ".join(
            f"{g.count} x {'GPU (' + str(g.gpus) + ' nvidia.com/gpu)' if g.gpus else 'CPU'}"
            for g in pool.groups
        )
        self.say(
            "starting the local control plane: etcd, kube-apiserver, kube-controller-manager, "
            f"kube-scheduler (real), kwok nodes: {nodes}"
        )
        plane = ControlPlane(pool)
        with contextlib.ExitStack() as cleanup:
            servers = self.start_servers(cleanup)
            log_path = cleanup.enter_context(_operator_log())
            plane.start()  # a failed start stops what it started
            api = api_client(str(plane.kubeconfig))
            # Real servers behind the predictors and a real gateway need kserve and
            # Traefik; without them the stand-ins play both, as before.
            self.real_servers = self.serve and importlib.util.find_spec("kserve") is not None
            standins = StandIns(api, model_store=self.store.root if self.real_servers else None)
            # Stops run last registered, first: the operator, the control plane, then the
            # stand-ins. Stopped first, each stand-in would wait out its watches' 20 s
            # timeout; this way the API server ends them when it stops.
            cleanup.callback(standins.stop)
            cleanup.callback(_stop_plane, plane)
            self.kubeconfig = plane.kubeconfig
            self.note(f"up in {plane.timings['total']:.1f}s; KUBECONFIG={plane.kubeconfig}")
            if servers:
                self.predictions(servers)
            self.say(
                "REAL: the gateway (Traefik, routing by the HTTPRoute) and the model servers "
                "behind it (KServe's, serving iris v1 and v2 from the store). SIMULATED: "
                "KServe's controller (modelpilot_dev.standins: a Deployment and Service per "
                "InferenceService, Ready from the Deployment and the model server); pods "
                "are kwok's, scheduled for real, never run."
                if self.real_servers
                else "SIMULATED: KServe and the gateway are stand-ins (modelpilot_dev.standins): "
                "a Deployment and Service per InferenceService, Ready from the Deployment; "
                "HTTPRoutes marked Accepted. Pods are kwok's: scheduled for real, never run, "
                "so nothing loads the model artifacts on this cluster."
            )
            self.note(f"the operator runs in this process; its log: {log_path} (kept)")
            standins.start()
            if self.real_servers and not tools.missing(["traefik"]):
                self.gateway = LocalGateway(plane.kubeconfig, plane.log_dir).start(api)
                cleanup.callback(self.gateway.stop)
            else:
                self.real_servers = False
            settings = TRAEFIK_SETTINGS
            if self.gateway is not None and not tools.missing(["prometheus"]):
                self.prometheus = LocalPrometheus(
                    plane.log_dir, gateway_metrics=self.gateway.metrics_url
                ).start()
                cleanup.callback(self.prometheus.stop)
                standins.kserve.store_servers.report_to(self.prometheus)
                standins.knative.report_to(self.prometheus)
                settings = replace(TRAEFIK_SETTINGS, prometheus_url=self.prometheus.url)
                self.note(
                    f"Prometheus {tools.prometheus_version()} scrapes the gateway and the "
                    f"model servers every second: {self.prometheus.url} (real)"
                )
            self.kube = Kube(api_client(str(plane.kubeconfig)))
            cleanup.enter_context(OperatorThread(self.kube, settings, namespaces=[NAMESPACE]))
            cleanup.callback(self.say, "stopping the operator, the control plane and the stand-ins")
            self.rollout()

    def start_servers(self, cleanup: contextlib.ExitStack) -> dict[str, LocalServer]:
        """iris v1 and v2 on KServe's model server, loading while the cluster starts."""
        if not self.serve:
            return {}
        if importlib.util.find_spec("kserve") is None:
            self.note("kserve is not installed: no real predictions (pip install '.[serve]')")
            return {}
        servers = {}
        for version in ("v1", "v2"):
            server = LocalServer("iris", version, root=self.store.root)
            cleanup.callback(server.close)
            servers[version] = server.start()
        self.note("starting iris v1 and v2 on KServe's model server meanwhile (real)")
        return servers

    def predictions(self, servers: dict[str, LocalServer]) -> None:
        self.say("the two versions, served for real by KServe's model server (kserve)")
        classes = self.store.get("iris", "v1", verify=False).card.classes
        body = json.dumps({"instances": PROBE})
        answers = {}
        for version, server in servers.items():
            server.wait_ready()
            answers[version] = predicted = server.predict(PROBE)
            names = ", ".join(classes[i] if 0 <= i < len(classes) else str(i) for i in predicted)
            self.out.write(
                f"$ curl {server.url}/v1/models/iris:predict -d '{body}'   "
                f"# modelpilot store serve iris {version}\n"
                f'{{"predictions": {predicted}}}   -> {names}\n'
            )
        first, second = answers.get("v1", []), answers.get("v2", [])
        differ = [str(i + 1) for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
        self.note(
            "one name (iris) for both versions; "
            + (f"they disagree on flower {', '.join(differ)}" if differ else "they agree here")
        )
        for server in servers.values():
            server.terminate()  # they exit in the background; reaped at the end

    def rollout(self) -> None:
        document = yaml.safe_load(self.sample.read_text())
        rollout = document["spec"]["rollout"]
        self.say(f"iris serving v1 (steps {rollout['stepWeights']}, {rollout['interval']} each)")
        self.kubectl(
            "apply", "-f", str(self.sample), shown=f"kubectl apply -f {_relative(self.sample)}"
        )
        self.wait(
            "iris stable on v1",
            lambda s: (
                s.get("phase") == "Stable"
                and s.get("stableVersion") == "v1"
                and all(v.get("ready") for v in s.get("versions") or [])
            ),
        )
        self.show()
        self.start_load()

        self.say("canary v1 -> v2: change the target")
        self.kubectl(
            "patch", "mm", "iris", "--type", "merge", "-p",
            '{"spec":{"rollout":{"target":"v2"}}}',
            shown="kubectl patch mm iris --type merge -p "
            "'{\"spec\":{\"rollout\":{\"target\":\"v2\"}}}'",
        )  # fmt: skip
        self.wait("the last step", lambda s: s.get("phase") == "WaitingPromotion")
        self.show()
        self.modelpilot("status", "iris")

        self.say("the canary held its last step; promote it")
        self.modelpilot("promote", "iris")
        self.wait(
            "v2 promoted",
            lambda s: s.get("phase") == "Stable" and s.get("stableVersion") == "v2",
        )
        self.show()

        delay = rollout.get("scaleDownDelay", "10m")
        self.say(f"v1 stays warm for scaleDownDelay ({delay}) for a rollback, then stops")
        self.wait(
            "v1 stopped",
            lambda s: (
                any(v["name"] == "v1" and v.get("stopped") for v in s.get("versions") or [])
                and self.pods_of("v1") == 0
            ),
        )
        self.show()
        self.modelpilot("status", "iris")
        if self.prometheus is not None and self.load is not None:
            self.broken_release()
        self.stop_load()

    def broken_release(self) -> None:
        """Act 2: v3 fails on a third of real inputs; the analysis rolls it back."""
        self.say(
            "act 2: v3 is broken (it fails on every setosa, about a third of the clients' "
            "inputs); roll it out with canary analysis: the gateway's success rate must "
            "stay >= 95%, checked every 6 s, two failed checks roll it back"
        )
        patch = {
            "spec": {
                "versions": [
                    {"name": v, "storageUri": f"pvc://model-store/iris/{v}"}
                    for v in ("v1", "v2", "v3")
                ],
                "rollout": {
                    "target": "v3",
                    "stepWeights": [20, 50],
                    "interval": "6s",
                    "promotion": "auto",
                    "analysis": {
                        "metrics": [{"name": "success", "template": "success-rate", "min": 95}],
                        "threshold": 2,
                        "minRequests": 20,
                    },
                },
            }
        }
        text = json.dumps(patch, separators=(",", ":"))
        self.kubectl(
            "patch", "mm", "iris", "--type", "merge", "-p", text,
            shown=f"kubectl patch mm iris --type merge -p '{text}'",
        )  # fmt: skip
        self.wait("v3 rolled back by its analysis", lambda s: s.get("phase") == "Failed")
        time.sleep(3.0)  # the clients once the route is back on v2
        self.traffic()
        self.show()
        self.modelpilot("status", "iris")

    def start_load(self) -> None:
        """Clients: prediction requests through the gateway from here on."""
        if self.gateway is None or not self.real_servers:
            return
        deadline = time.monotonic() + self.timeout
        while self.gateway.request("/v2/models/iris/ready", host=HOST)[0] != 200:
            if time.monotonic() > deadline:
                raise DemoError("the gateway did not serve iris in time")
            time.sleep(0.3)
        self.say(
            f"clients: {LOAD_RATE:.0f} requests/s through the gateway "
            f"(POST {self.gateway.url}/v2/models/iris/infer, Host: {HOST}); "
            "each answer names the version that gave it"
        )
        self.load = Load(self.gateway.url, host=HOST, model="iris", rate=LOAD_RATE, seconds=600)
        self.load.start()
        self._mark = self.load.started

    def stop_load(self) -> None:
        if self.load is None:
            return
        self.traffic()
        total = self.load.stop()
        self.say(
            f"clients, the whole rollout: {total.line()} of {total.requests} requests "
            f"(p50 {total.p50_ms} ms, p99 {total.p99_ms} ms)"
        )
        self.load = None


def _stop_plane(plane: ControlPlane) -> None:
    # kube-apiserver does not exit on SIGTERM while watches are open (the stand-ins', up
    # to their 20 s timeout); its data is thrown away, so it gets 2 s before SIGKILL
    # instead of the usual 10.
    for process in plane.processes:
        if process.name == "kube-apiserver":
            process.stop(grace=2.0)
    plane.stop()


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def _operator_log() -> Iterator[Path]:
    """The operator's and kopf's log lines go to a file kept after the demo (the control
    plane's own logs go with its temporary directory), not over the demo's output."""
    path = OPERATOR_LOG
    path.parent.mkdir(exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level, old_last_resort = root.level, logging.lastResort
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.lastResort = None
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logging.lastResort = old_last_resort
        handler.close()


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM (make, a supervisor) stops the demo the way Ctrl-C does."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(store_root: Path | None = None, *, serve: bool = True, out: TextIO = sys.stdout) -> int:
    demo = Demo(out=out, store_root=store_root, serve=serve)
    demo.out.write(
        "modelpilot demo: a canary rollout v1 -> v2 on a local control plane (no Docker)\n"
    )
    try:
        with _interruptible():
            demo.run()
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted: everything the demo started is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, StoreError) as err:  # DemoError, ClusterError, the operator's
        print(f"\nerror: {err}", file=sys.stderr)
        print(f"the operator's log: {OPERATOR_LOG}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - demo.started
    rolled_back = ", v3 was rolled back by its analysis" if demo.prometheus else ""
    demo.out.write(
        f"\ndone in {elapsed:.0f}s: v2 serves all traffic, v1 is stopped{rolled_back}.\n"
    )
    return 0
