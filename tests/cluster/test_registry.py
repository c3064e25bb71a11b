"""Registry-driven rollouts against a real MLflow tracking server (the test extra's
`mlflow`, sqlite backend, on loopback) and the real apiserver: versions are registered
and aliases moved with MLflow's own client, as a data scientist does; the operator reads
MLflow's REST API. KServe's controller is the stand-in (no artifact is downloaded:
versions are registered at s3:// locations, which the stand-in never reads)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from modelpilot.api.kinds import HTTP_ROUTE, INFERENCE_SERVICE, MANAGED_MODEL
from modelpilot.handlers.registry_webhook import PATH
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot.k8s.observe import route_weights
from modelpilot_dev.gateway import TRAEFIK_SETTINGS
from modelpilot_dev.procs import free_port
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import condition, eventually, sample, wait_model

pytestmark = pytest.mark.cluster
USER = "test-user"
FAST = {"interval": "1s", "progressDeadline": "90s", "scaleDownDelay": "10m"}


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("mlflow", reason="needs the test extra's mlflow")
    from modelpilot_dev.mlflow_server import MlflowServer

    with MlflowServer(tmp_path_factory.mktemp("mlflow-logs")) as server:
        print(f"\nMLflow server started in {server.start_seconds:.1f} s")
        yield server


def registry_model(namespace: str, tracking_uri: str, model: str) -> dict[str, Any]:
    document = sample("sklearn-iris", namespace)
    spec = document["spec"]
    spec.pop("versions")
    spec["rollout"] = {**FAST, "stepWeights": [50], "promotion": "auto"}
    spec["registry"] = {
        "mlflow": {"trackingUri": tracking_uri, "model": model, "alias": "champion"},
        "pollInterval": "1s",
    }
    return document


def status(kube: Kube, namespace: str) -> dict[str, Any]:
    return (kube.get(MANAGED_MODEL, "iris", namespace) or {}).get("status") or {}


def weights(kube: Kube, namespace: str) -> dict[str, int]:
    return route_weights(kube.get(HTTP_ROUTE, "iris", namespace), "iris")


def test_an_alias_move_rolls_out_and_the_registry_away_holds_traffic(
    kube: Kube, namespace: str, operator: OperatorThread, mlflow: Any
) -> None:
    model = f"iris-{namespace}"
    first = mlflow.register(model, "s3://models/iris/1")
    second = mlflow.register(model, "s3://models/iris/2")
    mlflow.set_alias(model, "champion", first)
    kube.apply(registry_model(namespace, mlflow.url, model), manager=USER)
    wait_model(
        kube, namespace, lambda s: s.get("phase") == "Stable" and s.get("stableVersion") == "v1",
        "v1 stable from the alias",
    )  # fmt: skip
    isvc = kube.get(INFERENCE_SERVICE, "iris-v1", namespace)
    assert isvc is not None
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://models/iris/1"
    assert status(kube, namespace)["registry"]["aliasVersion"] == first

    # The alias moves: a canary within the poll interval, then auto promotion.
    moved = time.monotonic()
    mlflow.set_alias(model, "champion", second)
    eventually(lambda: weights(kube, namespace).get("v2", 0) > 0, what="v2 weighted")
    print(f"\nalias move -> first weight on the route: {time.monotonic() - moved:.2f} s")
    wait_model(
        kube, namespace, lambda s: s.get("phase") == "Stable" and s.get("stableVersion") == "v2",
        "v2 promoted",
    )  # fmt: skip
    isvc2 = kube.get(INFERENCE_SERVICE, "iris-v2", namespace)
    assert isvc2 is not None
    assert isvc2["spec"]["predictor"]["model"]["storageUri"] == "s3://models/iris/2"
    found = kube.get(MANAGED_MODEL, "iris", namespace)
    assert found is not None and "versions" not in found["spec"]  # spec never written

    # The registry goes away: nothing changes, a condition says why.
    route_version = kube.get(HTTP_ROUTE, "iris", namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
    mlflow.stop()
    try:
        wait_model(
            kube,
            namespace,
            lambda s: (
                (condition({"status": s}, "Degraded") or {}).get("reason") == "RegistryUnavailable"
            ),
            "Degraded RegistryUnavailable",
        )
        time.sleep(3)
        assert weights(kube, namespace) == {"v2": 100}
        held = kube.get(HTTP_ROUTE, "iris", namespace)
        assert held is not None and held["metadata"]["resourceVersion"] == route_version
        message = condition({"status": status(kube, namespace)}, "Degraded")["message"]  # type: ignore[index]
        assert mlflow.url in message and "held" in message
    finally:
        mlflow.start()
    wait_model(
        kube,
        namespace,
        lambda s: (condition({"status": s}, "Degraded") or {}).get("status") == "False",
        "recovered when the registry answers again",
    )


def test_the_alias_moved_back_mid_rollout_takes_the_traffic_back(
    kube: Kube, namespace: str, operator: OperatorThread, mlflow: Any
) -> None:
    model = f"back-{namespace}"
    first = mlflow.register(model, "s3://models/iris/1")
    second = mlflow.register(model, "s3://models/iris/2")
    mlflow.set_alias(model, "champion", first)
    document = registry_model(namespace, mlflow.url, model)
    document["spec"]["rollout"]["promotion"] = "manual"  # the canary waits at 50%
    kube.apply(document, manager=USER)
    wait_model(kube, namespace, lambda s: s.get("stableVersion") == "v1", "v1 stable")
    mlflow.set_alias(model, "champion", second)
    wait_model(kube, namespace, lambda s: s.get("phase") == "WaitingPromotion", "the canary at 50%")
    assert weights(kube, namespace) == {"v1": 50, "v2": 50}
    mlflow.set_alias(model, "champion", first)  # the data scientist changes their mind
    wait_model(
        kube,
        namespace,
        lambda s: s.get("phase") == "Stable" and s.get("weights") == {"v1": 100},
        "back on v1",
    )
    # Status, the decision, is written before the route that carries it out.
    eventually(lambda: weights(kube, namespace) == {"v1": 100}, what="the route back on v1")
    assert status(kube, namespace)["registry"]["aliasVersion"] == first


def test_a_logged_model_kserve_cannot_download_is_refused(
    kube: Kube, namespace: str, operator: OperatorThread, mlflow: Any
) -> None:
    """A model logged with mlflow.sklearn.log_model to a server that serves artifacts
    gets an mlflow-artifacts:/ download URI: never rendered, the reason named."""
    model = f"logged-{namespace}"
    version = mlflow.log_sklearn(model)
    mlflow.set_alias(model, "champion", version)
    kube.apply(registry_model(namespace, mlflow.url, model), manager=USER)
    degraded = wait_model(
        kube,
        namespace,
        lambda s: (
            (condition({"status": s}, "Degraded") or {}).get("reason") == "RegistryUnavailable"
        ),
        "refused",
    )
    message = condition({"status": degraded}, "Degraded")["message"]  # type: ignore[index]
    assert "mlflow-artifacts:/" in message and "KServe cannot download" in message
    assert kube.get(INFERENCE_SERVICE, f"iris-v{version}", namespace) is None
    mlflow.delete_alias(model, "champion")
    eventually(
        lambda: (
            "no alias 'champion'"
            in (condition({"status": status(kube, namespace)}, "Degraded") or {}).get("message", "")
        ),
        what="the deleted alias named",
    )


def test_admission_refuses_both_versions_and_registry(kube: Kube, namespace: str) -> None:
    from modelpilot.k8s.client import ApiError

    document = registry_model(namespace, "http://mlflow:5000", "iris")
    document["spec"]["versions"] = [{"name": "v1", "storageUri": "s3://m/1"}]
    with pytest.raises(ApiError, match=r"exactly one of spec\.versions or spec\.registry"):
        kube.apply(document, manager=USER)
    document["spec"].pop("versions")
    document["spec"]["rollout"]["target"] = "v1"
    with pytest.raises(ApiError, match="the alias names the target"):
        kube.apply(document, manager=USER)


def test_a_signed_webhook_starts_the_canary_long_before_the_poll_and_a_forged_one_is_refused(
    kube: Kube,
    namespace: str,
    standins: StandIns,
    mlflow: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MLflow itself calls the operator's receiver (its webhook, signed with the shared
    secret) when the alias moves; the model polls at once though its pollInterval is an
    hour. A webhook signed with another secret is refused and changes nothing."""
    secret = tmp_path / "secret"
    secret.write_text("shared-secret\n")
    port = free_port()
    settings = replace(TRAEFIK_SETTINGS, registry_webhook_port=port, registry_webhook_secret=secret)
    model = f"hooked-{namespace}"
    first = mlflow.register(model, "s3://models/iris/1")
    second = mlflow.register(model, "s3://models/iris/2")
    third = mlflow.register(model, "s3://models/iris/3")
    mlflow.set_alias(model, "champion", first)
    document = registry_model(namespace, mlflow.url, model)
    document["spec"]["registry"]["pollInterval"] = "1h"
    url = f"http://127.0.0.1:{port}{PATH}"
    caplog.set_level(logging.INFO, logger="modelpilot.handlers.registry_webhook")
    with OperatorThread(kube, settings, namespaces=[namespace]):
        kube.apply(document, manager=USER)
        wait_model(
            kube, namespace, lambda s: s.get("stableVersion") == "v1", "v1 stable from the alias"
        )
        good = mlflow.add_alias_webhook(f"modelpilot-{namespace}", url, "shared-secret")
        moved = time.monotonic()
        mlflow.set_alias(model, "champion", second)
        eventually(lambda: weights(kube, namespace).get("v2", 0) > 0, what="v2 weighted")
        print(f"\nwebhook: alias move -> first weight {time.monotonic() - moved:.2f} s (poll: 1h)")
        wait_model(kube, namespace, lambda s: s.get("stableVersion") == "v2", "v2 promoted")

        mlflow.delete_webhook(good)
        mlflow.add_alias_webhook(f"forged-{namespace}", url, "not-the-secret")
        polled = status(kube, namespace)["registry"]["lastPoll"]
        mlflow.set_alias(model, "champion", third)
        eventually(
            lambda: any("refused: bad signature" in r.getMessage() for r in caplog.records),
            what="the forged call refused",
        )
        time.sleep(2)
        after = status(kube, namespace)
        assert after["registry"]["lastPoll"] == polled
        assert after["registry"]["aliasVersion"] == second
        assert weights(kube, namespace) == {"v2": 100}
