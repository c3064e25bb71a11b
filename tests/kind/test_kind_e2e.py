"""The iris model from the store, rolled v1 -> v2 on a real cluster: KServe's sklearn
server loads the artifacts from the mounted store, Envoy Gateway carries the weighted
HTTPRoute, and every prediction here goes through the gateway."""

from __future__ import annotations

import collections
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from modelpilot.api.kinds import KSERVE_ISVC_LABEL, MANAGED_MODEL, POD
from modelpilot.cli import main as cli
from tests.cluster.helpers import eventually
from tests.kind import stack
from tests.kind.conftest import KindEnv

pytestmark = pytest.mark.kind

HOST = "iris.models.example.com"
# A clear setosa, a borderline flower (the versions may disagree), a clear virginica.
PROBE = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]
NAMESPACE = stack.MODELS_NAMESPACE


def status(env: KindEnv) -> dict[str, Any]:
    found = env.kube.get(MANAGED_MODEL, "iris", NAMESPACE)
    return (found or {}).get("status") or {}


def predict(port: int, rows: list[list[float]], version: str | None = None) -> list[int] | None:
    """Class indices through the gateway, or None while the route is not serving yet."""
    headers = {"Host": HOST, "Content-Type": "application/json"}
    if version:
        headers["x-model-version"] = version  # the route's pin header
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/iris:predict",
        data=json.dumps({"instances": rows}).encode(),
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return [int(p) for p in json.loads(response.read())["predictions"]]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def gateway_service(env: KindEnv) -> str:
    selector = (
        f"gateway.envoyproxy.io/owning-gateway-name={stack.GATEWAY_NAME},"
        f"gateway.envoyproxy.io/owning-gateway-namespace={stack.GATEWAY_NAMESPACE}"
    )
    name = env.cluster.kubectl(
        "get", "service", "-n", "envoy-gateway-system", "-l", selector,
        "-o", "jsonpath={.items[0].metadata.name}",
    )  # fmt: skip
    assert name, "Envoy Gateway made no Service for the gateway"
    return f"service/{name}"


def test_rollout_with_real_predictions_through_the_gateway(kind_env: KindEnv) -> None:
    env = kind_env
    document = yaml.safe_load((stack.REPO_ROOT / "manifests/samples/iris-store.yaml").read_text())
    document["metadata"]["namespace"] = NAMESPACE
    env.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(document))
    eventually(
        lambda: (
            status(env).get("phase") == "Stable"
            and all(v.get("ready") for v in status(env).get("versions") or [])
        ),
        timeout=900,  # the first pull of KServe's sklearn server image
        interval=5,
        what="iris stable on v1 with both versions ready",
    )
    assert status(env)["weights"] == {"v1": 100}

    with env.cluster.port_forward(gateway_service(env), 80, "-n", "envoy-gateway-system") as port:
        # Each version, asked by its pin header: the real models from the store.
        expected = {
            version: eventually(
                lambda version=version: predict(port, PROBE, version),
                timeout=120,
                interval=2,
                what=f"a prediction from {version}",
            )
            for version in ("v1", "v2")
        }
        for answer in expected.values():
            assert (answer[0], answer[2]) == (0, 2)  # setosa, virginica
        assert eventually(lambda: predict(port, PROBE), timeout=60) == expected["v1"]

        # The canary: at 50% both versions answer the same name, iris.
        document["spec"]["rollout"]["target"] = "v2"
        env.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(document))
        eventually(
            lambda: status(env).get("phase") == "WaitingPromotion",
            timeout=600,
            interval=2,
            what="the canary at its last step",
        )
        assert status(env)["weights"] == {"v1": 50, "v2": 50}
        answers = collections.Counter(tuple(predict(port, PROBE) or ()) for _ in range(40))
        assert set(answers) <= {tuple(expected["v1"]), tuple(expected["v2"])}, answers
        if expected["v1"] != expected["v2"]:
            assert len(answers) == 2, f"40 calls at 50/50 all reached one version: {answers}"

        # Promotion: everything on v2, through the CLI as a user would.
        argv = ["promote", "iris", "-n", NAMESPACE, "--kubeconfig", str(env.kubeconfig)]
        assert cli(argv) == 0
        eventually(
            lambda: status(env).get("phase") == "Stable" and status(env)["stableVersion"] == "v2",
            timeout=300,
            what="v2 promoted",
        )
        assert all(predict(port, PROBE) == expected["v2"] for _ in range(20))

    # The real gateway accepted the route; v1 stops after scaleDownDelay (KServe's stop).
    route = env.kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", "iris", NAMESPACE)
    parents = (route or {}).get("status", {}).get("parents") or []
    assert any(
        p.get("controllerName") == "gateway.envoyproxy.io/gatewayclass-controller"
        and any(c["type"] == "Accepted" and c["status"] == "True" for c in p["conditions"])
        for p in parents
    ), parents
    eventually(
        lambda: (
            any(v["name"] == "v1" and v.get("stopped") for v in status(env)["versions"])
            and not env.kube.list(POD, NAMESPACE, {KSERVE_ISVC_LABEL: "iris-v1"})
        ),
        timeout=300,
        interval=2,
        what="v1 stopped and its pods gone",
    )
