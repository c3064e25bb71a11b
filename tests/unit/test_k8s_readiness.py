"""Version readiness from the InferenceService and its predictor Deployment."""

from __future__ import annotations

from typing import Any

from modelpilot.k8s.readiness import version_readiness


def isvc(ready: str = "True", message: str = "") -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": ready, "message": message}]
    return {"status": {"url": "http://iris-v1.ml", "conditions": conditions}}


def deployment(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 2,
    updated: int = 2,
    total: int | None = None,
    available: int = 2,
) -> dict[str, Any]:
    """A Deployment's status: total is every pod, old template included."""
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": updated if total is None else total,
            "updatedReplicas": updated,
            "availableReplicas": available,
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
    result = version_readiness(isvc(), deployment(updated=1, total=2))
    assert not result.ready and result.message == "1/2 predictor pods on the current spec"


def test_old_template_pods_still_serving_is_not_rolled_out() -> None:
    # The new pod is Pending; the old one still serves: the version is not yet what
    # its InferenceService says.
    result = version_readiness(isvc(), deployment(replicas=1, updated=1, total=2, available=1))
    assert not result.ready and result.message == "1/2 predictor pods on the current spec"


def test_no_available_pod() -> None:
    result = version_readiness(isvc("False"), deployment(available=0))
    assert not result.ready and result.message == "0/2 predictor pods available"


def test_available_condition_with_no_pod_is_not_ready() -> None:
    # maxUnavailable 1 with one replica: KServe may say Ready with zero pods.
    result = version_readiness(isvc("True"), deployment(replicas=1, updated=1, available=0))
    assert not result.ready and result.message == "0/1 predictor pods available"


def test_isvc_not_ready() -> None:
    result = version_readiness(isvc("False", "model failed to load"), deployment())
    assert not result.ready
    assert result.message == "InferenceService not Ready: model failed to load"


def test_scale_up_before_the_new_pod_exists_keeps_ready() -> None:
    # The ReplicaSet grew but its pod is not created yet: 1 of 2 updated, none old.
    assert version_readiness(isvc(), deployment(replicas=2, updated=1, available=1)).ready


def test_hpa_scale_up_keeps_ready() -> None:
    # The HPA raised replicas 2 -> 3; KServe's Ready follows Available, which is False
    # until the third pod is up. The version still serves.
    scaling = deployment(replicas=3, updated=3, available=2)
    assert version_readiness(
        isvc("False", "Deployment does not have minimum availability."), scaling
    ).ready


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
    result = version_readiness(isvc("False"), deployment(available=0), [pending])
    assert result.message == (
        "0/2 predictor pods available; pod iris-v1-predictor-abc unschedulable: "
        "0/4 nodes are available: 2 Insufficient nvidia.com/gpu."
    )
    assert result.waiting_for_pods


def test_only_a_version_short_of_pods_asks_for_its_pods() -> None:
    # The operator lists pods only then: the scheduler's reason is all they add.
    assert version_readiness(isvc("False"), deployment(available=0)).waiting_for_pods
    kserve_behind = version_readiness(isvc("False"), deployment())
    assert not kserve_behind.ready and not kserve_behind.waiting_for_pods
    assert not version_readiness(isvc(), deployment()).waiting_for_pods


def test_zero_replicas_is_ready() -> None:
    # The stand-in's instant mode (benchmarks): no pods by design.
    assert version_readiness(isvc(), deployment(replicas=0, updated=0, available=0)).ready


def with_template(dep: dict[str, Any], args: list[str], resources: dict[str, Any]) -> dict:
    container = {"name": "kserve-container", "args": args, "resources": resources}
    return {**dep, "spec": {**dep["spec"], "template": {"spec": {"containers": [container]}}}}


def isvc_with(args: list[str], resources: dict[str, Any]) -> dict[str, Any]:
    return {**isvc(), "spec": {"predictor": {"model": {"args": args, "resources": resources}}}}


def test_template_must_carry_the_isvc_spec() -> None:
    wanted = isvc_with(["--model_name=iris"], {"requests": {"cpu": "0.5"}})
    current = with_template(
        deployment(), ["--model_dir=/mnt", "--model_name=iris"], {"requests": {"cpu": "500m"}}
    )
    assert version_readiness(wanted, current).ready  # 0.5 and 500m are one quantity
    stale = with_template(deployment(), ["--model_name=iris"], {"requests": {"cpu": "100m"}})
    result = version_readiness(wanted, stale)
    assert not result.ready
    assert result.message == "KServe has not yet applied the InferenceService's spec to its pods"


def test_lagging_isvc_ready_defers_to_the_deployment() -> None:
    lagging = isvc("False", "Deployment does not have minimum availability.")
    assert version_readiness(lagging, deployment()).ready
    assert not version_readiness(isvc("False", "ServingRuntime not found"), deployment()).ready


def test_without_a_deployment_kserves_own_reason_is_shown() -> None:
    refused = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PredictorNotReady"},
                {
                    "type": "PredictorReady",
                    "status": "False",
                    "reason": "ServiceAccountNotFound",
                    "message": 'serviceaccount "reader" not found',
                },
            ]
        }
    }
    assert version_readiness(refused, None).message == (
        "predictor Deployment not created yet; KServe: PredictorReady "
        'ServiceAccountNotFound: serviceaccount "reader" not found'
    )


def test_a_deployment_owned_by_an_earlier_inference_service_is_not_trusted() -> None:
    """The model was deleted and created again: the old Deployment, not yet collected,
    is available but serves nothing of the new InferenceService."""
    new = isvc()
    new["metadata"] = {"uid": "new-uid"}
    old = deployment()
    old.setdefault("metadata", {})["ownerReferences"] = [{"kind": "InferenceService", "uid": "old"}]
    found = version_readiness(new, old)
    assert not found.ready and "previous InferenceService" in found.message
    old["metadata"]["ownerReferences"][0]["uid"] = "new-uid"
    assert version_readiness(new, old).ready
