"""Canary rollouts on the real control plane, with short intervals.

The operator runs in-process; KServe is played by modelpilot_dev.standins (readiness
comes from real scheduling of the predictor pods on kwok's fake nodes) and so is the
gateway (it marks each HTTPRoute Accepted). Every test records each HTTPRoute version
written and checks that every weight set sums to 100 and that no weight ever went to a
version with no available pod at that moment.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from modelpilot.api.kinds import (
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    KSERVE_ISVC_LABEL,
    MANAGED_MODEL,
    POD,
)
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot.k8s.observe import route_weights
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import apply_as_user as apply
from tests.cluster.helpers import command, condition, eventually, model, retarget, sample
from tests.cluster.recorder import Recorder

pytestmark = pytest.mark.cluster
FAST = {"interval": "2s", "progressDeadline": "60s", "scaleDownDelay": "10m"}


def status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return model(kube, namespace, name).get("status") or {}


def phase_is(kube: Kube, namespace: str, name: str, phase: str, **fields: Any) -> bool:
    found = status(kube, namespace, name)
    return found.get("phase") == phase and all(found.get(k) == v for k, v in fields.items())


def stable_iris(kube: Kube, namespace: str, **rollout: Any) -> dict[str, Any]:
    """iris serving v1 at rest, ready for a rollout to v2."""
    document = sample("sklearn-iris", namespace)
    document["spec"]["rollout"] = {**FAST, **rollout, "target": "v1"}
    apply(kube, document)
    eventually(
        lambda: phase_is(kube, namespace, "iris", "Stable", stableVersion="v1"),
        what="iris stable on v1",
    )
    eventually(
        lambda: all(v["ready"] for v in status(kube, namespace, "iris")["versions"]),
        what="both versions ready",
    )
    return document


def with_annotation(document: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    metadata = {**document["metadata"], "annotations": {key: value}}
    return {**document, "metadata": metadata}


def live_weights(kube: Kube, namespace: str, name: str) -> dict[str, int]:
    return route_weights(kube.get(HTTP_ROUTE, name, namespace), name)


def wait_carried_out(recorder: Recorder, key: str, weights: dict[str, int]) -> None:
    """Status shows a command's outcome, the route carries it out, then it is consumed."""
    recorder.wait_for(
        lambda r: r.consumed(key) and r.route_is(weights), f"{key} consumed and carried out"
    )


def assert_one_reconcile(recorder: Recorder, key: str, phase: str, weights: dict[str, int]) -> None:
    """The command took effect in one reconcile: the decision went into status, the
    route moved, then the command was consumed, with no other route write between."""
    annotated = recorder.annotated_rv(key)
    decided = recorder.decided_rv(phase, after=annotated)
    routed = recorder.first_route_rv(weights, after=annotated)
    assert decided < routed < recorder.consumed_rv(key)
    assert recorder.route_writes_between(annotated, routed) == []


def test_full_rollout_with_auto_promotion(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: Any
) -> None:
    document = stable_iris(kube, namespace, promotion="auto")
    with Recorder(api_client, namespace, "iris") as recorder:
        retarget(kube, document, "v2")
        eventually(
            lambda: phase_is(kube, namespace, "iris", "Stable", stableVersion="v2"),
            timeout=90,
            what="v2 promoted",
        )
        recorder.wait_for(lambda r: r.route_is({"v2": 100}), "the route on v2")
    sets = recorder.assert_safe()
    assert sets == [
        {"v1": 100},
        {"v1": 90, "v2": 10},
        {"v1": 75, "v2": 25},
        {"v1": 50, "v2": 50},
        {"v2": 100},
    ]
    final = status(kube, namespace, "iris")
    assert final["previousStableVersion"] == "v1"
    assert [h["result"] for h in final["history"]] == ["Promoted"]
    assert condition(model(kube, namespace, "iris"), "Ready")["status"] == "True"


def test_manual_promotion_waits_then_cli_promotes(
    kube: Kube, namespace: str, operator: OperatorThread, kubeconfig: Path
) -> None:
    document = stable_iris(kube, namespace, stepWeights=[20], interval="1s")
    retarget(kube, document, "v2")
    eventually(
        lambda: phase_is(kube, namespace, "iris", "WaitingPromotion"), what="WaitingPromotion"
    )
    time.sleep(5)
    waiting = status(kube, namespace, "iris")
    assert waiting["phase"] == "WaitingPromotion"
    assert waiting["weights"] == {"v1": 80, "v2": 20}
    command(kubeconfig, namespace, "promote", "iris")
    eventually(
        lambda: phase_is(kube, namespace, "iris", "Stable", stableVersion="v2"), what="promoted"
    )
    final = model(kube, namespace, "iris")
    assert "modelpilot.io/promote" not in (final["metadata"].get("annotations") or {})
    assert final["status"]["lastCommand"]["outcome"] == "applied"
    assert final["status"]["weights"] == {"v2": 100}


def test_abort_midway_restores_stable_in_one_reconcile(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: Any
) -> None:
    document = stable_iris(kube, namespace, interval="10m")
    with Recorder(api_client, namespace, "iris") as recorder:
        document = retarget(kube, document, "v2")
        eventually(
            lambda: status(kube, namespace, "iris").get("weights") == {"v1": 90, "v2": 10},
            what="canary at 10%",
        )
        apply(kube, with_annotation(document, "modelpilot.io/abort", "v2"))
        eventually(lambda: phase_is(kube, namespace, "iris", "Aborted"), what="Aborted")
        wait_carried_out(recorder, "modelpilot.io/abort", {"v1": 100})
    assert recorder.assert_safe()[-1] == {"v1": 100}
    assert_one_reconcile(recorder, "modelpilot.io/abort", "Aborted", {"v1": 100})
    assert kube.get(INFERENCE_SERVICE, "iris-v2", namespace) is not None  # kept for inspection
    time.sleep(3)
    assert phase_is(kube, namespace, "iris", "Aborted", weights={"v1": 100})


def test_stale_promote_for_another_version_is_refused(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    document = sample("sklearn-iris", namespace)
    document["spec"]["versions"].append({"name": "v3", "storageUri": "s3://models/iris/v3"})
    document["spec"]["rollout"] = {**FAST, "interval": "10m", "target": "v1"}
    apply(kube, document)
    eventually(lambda: phase_is(kube, namespace, "iris", "Stable"), what="stable")
    document = retarget(kube, document, "v3")
    eventually(lambda: status(kube, namespace, "iris").get("canaryWeight") == 10, what="v3 10%")
    apply(kube, with_annotation(document, "modelpilot.io/promote", "v2"))

    def refused() -> dict[str, Any] | None:
        last = status(kube, namespace, "iris").get("lastCommand") or {}
        return last if last.get("outcome", "").startswith("refused") else None

    last = eventually(refused, what="the command refused")
    assert last["outcome"] == "refused: meant for v2, but the canary is v3"
    found = model(kube, namespace, "iris")
    assert found["status"]["phase"] == "Progressing"
    assert found["status"]["weights"] == {"v1": 90, "v3": 10}
    assert "modelpilot.io/promote" not in (found["metadata"].get("annotations") or {})


def test_pause_holds_past_interval(
    kube: Kube, namespace: str, operator: OperatorThread, kubeconfig: Path
) -> None:
    document = stable_iris(kube, namespace)
    retarget(kube, document, "v2")
    eventually(lambda: status(kube, namespace, "iris").get("canaryWeight") == 10, what="10%")
    command(kubeconfig, namespace, "pause", "iris")
    eventually(lambda: phase_is(kube, namespace, "iris", "Paused"), what="Paused")
    held = status(kube, namespace, "iris")["canaryWeight"]
    time.sleep(8)  # four intervals
    assert phase_is(kube, namespace, "iris", "Paused", canaryWeight=held)
    command(kubeconfig, namespace, "resume", "iris")
    eventually(
        lambda: (status(kube, namespace, "iris").get("canaryWeight") or 0) > held,
        what="the next step after resume",
    )


def test_restart_in_every_phase_finishes_correctly(
    kube: Kube, namespace: str, standins: StandIns, api_client: Any, kubeconfig: Path
) -> None:
    def run_until(predicate: Any, what: str) -> None:
        with OperatorThread(kube, namespaces=[namespace]):
            eventually(predicate, timeout=90, what=what)

    with Recorder(api_client, namespace, "iris") as recorder:
        with OperatorThread(kube, namespaces=[namespace]):
            document = stable_iris(kube, namespace, stepWeights=[10, 50], interval="3s")
        retarget(kube, document, "v2")  # while no operator runs
        run_until(lambda: status(kube, namespace, "iris").get("canaryWeight") == 10, "step 1")
        run_until(lambda: status(kube, namespace, "iris").get("canaryWeight") == 50, "step 2")
        run_until(lambda: phase_is(kube, namespace, "iris", "WaitingPromotion"), "waiting")
        command(kubeconfig, namespace, "promote", "iris")  # while no operator runs
        on_v2 = lambda: (  # noqa: E731
            phase_is(kube, namespace, "iris", "Stable", stableVersion="v2")
            and live_weights(kube, namespace, "iris") == {"v2": 100}
        )
        run_until(on_v2, "promoted")
        run_until(on_v2, "still stable")
        recorder.wait_for(lambda r: r.route_is({"v2": 100}), "the route on v2")
    assert recorder.assert_safe() == [
        {"v1": 100},
        {"v1": 90, "v2": 10},
        {"v1": 50, "v2": 50},
        {"v2": 100},
    ]
    assert [h["result"] for h in status(kube, namespace, "iris")["history"]] == ["Promoted"]


def test_candidate_never_ready_fails_at_deadline(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: Any
) -> None:
    document = stable_iris(kube, namespace, progressDeadline="6s")
    # No node has 100 CPUs: v2's pod stays Pending.
    document["spec"]["versions"][1]["resources"] = {
        "requests": {"cpu": "100"},
        "limits": {"cpu": "100"},
    }
    with Recorder(api_client, namespace, "iris") as recorder:
        retarget(kube, document, "v2")
        eventually(lambda: phase_is(kube, namespace, "iris", "Failed"), what="Failed")
    assert recorder.assert_safe() == [{"v1": 100}]
    found = model(kube, namespace, "iris")
    assert found["status"]["weights"] == {"v1": 100}
    degraded = condition(found, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolloutFailed"
    assert "Insufficient cpu" in degraded["message"]
    assert found["status"]["history"][-1]["result"] == "Failed"


def test_rollback_within_window(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: Any, kubeconfig: Path
) -> None:
    document = stable_iris(kube, namespace, promotion="auto", stepWeights=[50], interval="1s")
    with Recorder(api_client, namespace, "iris") as recorder:
        retarget(kube, document, "v2")
        eventually(
            lambda: phase_is(kube, namespace, "iris", "Stable", stableVersion="v2"), what="promoted"
        )
        command(kubeconfig, namespace, "rollback", "iris")
        eventually(
            lambda: phase_is(kube, namespace, "iris", "Aborted", stableVersion="v1"),
            what="rolled back",
        )
        wait_carried_out(recorder, "modelpilot.io/rollback", {"v1": 100})
    assert recorder.assert_safe()[-1] == {"v1": 100}
    assert_one_reconcile(recorder, "modelpilot.io/rollback", "Aborted", {"v1": 100})
    assert status(kube, namespace, "iris")["history"][-1]["result"] == "RolledBack"


# --- GPU capacity: a pool of 4 GPUs in all (2 nodes x 2) -----------------------------


def gpu_model(namespace: str, capacity: str) -> dict[str, Any]:
    document = sample("huggingface-llm-gpu", namespace)
    spec = document["spec"]
    spec.pop("env")  # no Secret for a token here
    spec["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}}
    spec["gpu"] = {"count": 1, "product": "NVIDIA-A100-SXM4-40GB"}
    spec["autoscaling"] = {"minReplicas": 4, "maxReplicas": 4}
    spec["serving"] = {"timeout": 300}
    spec["versions"] = [
        {"name": "v1", "storageUri": "hf://org/llm-v1"},
        {"name": "v2", "storageUri": "hf://org/llm-v2"},
    ]
    spec["rollout"] = {
        "target": "v1",
        "capacity": capacity,
        "stepWeights": [25, 50, 75],
        "interval": "3s",
        "promotion": "auto",
        "progressDeadline": "120s",
        "scaleDownDelay": "3s",
    }
    return document


def running_pods(kube: Kube, namespace: str, version: str) -> int:
    pods = kube.list(POD, namespace, {KSERVE_ISVC_LABEL: f"llama-chat-{version}"})
    return sum(
        1
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    )


def start_gpu_model(kube: Kube, namespace: str, capacity: str) -> dict[str, Any]:
    document = gpu_model(namespace, capacity)
    only_v1 = copy.deepcopy(document)
    only_v1["spec"]["versions"] = only_v1["spec"]["versions"][:1]
    apply(kube, only_v1)
    eventually(
        lambda: running_pods(kube, namespace, "v1") == 4, timeout=90, what="v1 on all 4 GPUs"
    )
    eventually(lambda: phase_is(kube, namespace, "llama-chat", "Stable"), what="stable")
    return document


def test_surge_without_spare_gpus_holds_and_says_why(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: Any
) -> None:
    document = start_gpu_model(kube, namespace, "Surge")
    with Recorder(api_client, namespace, "llama-chat") as recorder:
        retarget(kube, document, "v2")

        def says_why() -> str | None:
            message = condition(model(kube, namespace, "llama-chat"), "Progressing")
            text = (message or {}).get("message", "")
            return text if "Insufficient nvidia.com/gpu" in text else None

        text = eventually(says_why, timeout=60, what="status naming the GPU shortage")
        time.sleep(8)  # past several intervals
    assert "spec.rollout.capacity: Shared" in text
    assert recorder.assert_safe() == [{"v1": 100}]
    assert running_pods(kube, namespace, "v2") == 0
    assert status(kube, namespace, "llama-chat")["canaryWeight"] == 0


def test_shared_capacity_rolls_out_on_the_same_gpus(
    kube: Kube, namespace: str, operator: OperatorThread, api_client: Any
) -> None:
    document = start_gpu_model(kube, namespace, "Shared")
    samples: list[tuple[int, int, int]] = []  # (canary weight, v1 pods, v2 pods)
    with Recorder(api_client, namespace, "llama-chat") as recorder:
        retarget(kube, document, "v2")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = status(kube, namespace, "llama-chat")
            weights = found.get("weights") or {}
            samples.append(
                (
                    weights.get("v2", 0),
                    running_pods(kube, namespace, "v1"),
                    running_pods(kube, namespace, "v2"),
                )
            )
            if found.get("stableVersion") == "v2" and samples[-1][1:] == (0, 4):
                break
            time.sleep(0.3)
        recorder.wait_for(lambda r: r.route_is({"v2": 100}), "the route on v2")
    print(f"\nShared rollout (weight, v1 pods, v2 pods): {sorted(set(samples))}")
    assert recorder.assert_safe() == [
        {"v1": 100},
        {"v1": 75, "v2": 25},
        {"v1": 50, "v2": 50},
        {"v1": 25, "v2": 75},
        {"v2": 100},
    ]
    for weight, pods in ((25, (3, 1)), (50, (2, 2)), (75, (1, 3))):
        assert pods in {s[1:] for s in samples if s[0] == weight}, (weight, samples)
    assert samples[-1] == (100, 0, 4)  # the old version stopped, its GPU went to v2
    assert all(v1 + v2 <= 4 for _, v1, v2 in samples)
    final = model(kube, namespace, "llama-chat")
    stopped = {v["name"]: v["stopped"] for v in final["status"]["versions"]}
    assert stopped == {"v1": True, "v2": False}
    annotations = kube.get(INFERENCE_SERVICE, "llama-chat-v1", namespace)["metadata"]["annotations"]
    assert annotations["serving.kserve.io/stop"] == "true"
    assert kube.get(MANAGED_MODEL, "llama-chat", namespace) is not None
