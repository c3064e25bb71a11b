"""Version readiness from the InferenceService and its predictor Deployment."""

from __future__ import annotations

from typing import Any

from modelpilot.k8s.readiness import version_readiness


def isvc(ready: str = "True", message: str = "") -> dict[str, Any]:
    return {
        "status": {
            "url": "http://iris-v1.ml",
            "conditions": [{"type": "Ready", "status": ready, "message": message}],
        }
    }


def deployment(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 2,
    updated: int = 2,
    available: str = "True",
    available_replicas: int = 2,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available_replicas,
            "conditions": [{"type": "Available", "status": available}],
        },
    }


def test_ready() -> None:
    result = version_readiness(isvc(), deployment())
    assert result.ready and result.url == "http://iris-v1.ml"


def test_missing_objects() -> None:
    assert version_readiness(None, None).message == "InferenceService not created yet"
    assert version_readiness(isvc(), None).message == "predictor Deployment not created yet"


def test_stale_isvc_ready_is_not_trusted() -> None:
    # KServe still says Ready, but the Deployment has not rolled out its new template.
    result = version_readiness(isvc(), deployment(generation=3, observed=2))
    assert not result.ready
    assert result.message == "predictor Deployment has not seen its latest spec"
    result = version_readiness(isvc(), deployment(updated=1))
    assert not result.ready and result.message == "1/2 predictor pods updated"


def test_not_available() -> None:
    result = version_readiness(isvc(), deployment(available="False", available_replicas=0))
    assert not result.ready and result.message == "0/2 predictor pods available"


def test_isvc_not_ready() -> None:
    result = version_readiness(isvc("False", "model failed to load"), deployment())
    assert not result.ready
    assert result.message == "InferenceService not Ready: model failed to load"


def test_hpa_scale_up_keeps_ready() -> None:
    # The HPA raised replicas to 4: two new pods are still starting, all are updated.
    assert version_readiness(isvc(), deployment(replicas=4, updated=4, available_replicas=2)).ready


def test_scheduler_reason_is_reported() -> None:
    pending = {
        "metadata": {"name": "iris-v1-predictor-abc"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu.",
                }
            ]
        },
    }
    result = version_readiness(
        isvc("False"), deployment(available="False", available_replicas=1), [pending]
    )
    assert result.message == (
        "1/2 predictor pods available; pod iris-v1-predictor-abc unschedulable: "
        "0/4 nodes are available: 2 Insufficient nvidia.com/gpu."
    )


def test_available_with_no_pod_is_not_ready() -> None:
    # maxUnavailable 1 with one replica: the Deployment says Available with zero pods.
    result = version_readiness(isvc(), deployment(replicas=1, updated=1, available_replicas=0))
    assert not result.ready and result.message == "0/1 predictor pods available"


def test_zero_replicas_is_ready() -> None:
    # The stand-in's instant mode (benchmarks): no pods by design.
    assert version_readiness(isvc(), deployment(replicas=0, updated=0, available_replicas=0)).ready
