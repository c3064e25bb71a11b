"""Every model rule, valid and invalid; one test per error message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelpilot.api import InvalidManagedModel, parse_managed_model

Doc = Callable[..., dict[str, Any]]


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidManagedModel) as caught:
        parse_managed_model(document)
    return [str(p) for p in caught.value.problems]


def test_valid_model_parses_with_defaults(doc: Doc) -> None:
    model = parse_managed_model(doc())
    assert model.spec.target == "v2"
    assert model.spec.rollout.step_weights == [10, 25, 50]
    assert model.spec.rollout.promotion == "manual"
    assert model.spec.rollout.capacity == "Surge"
    assert model.spec.protocol_version is None  # never defaulted
    assert model.spec.traffic.pin_header == "x-model-version"
    assert model.spec.autoscaling.min_replicas == 1


def test_single_version_needs_no_target(doc: Doc) -> None:
    document = doc(versions=[{"name": "v1", "storageUri": "s3://b/m"}], rollout={})
    assert parse_managed_model(document).spec.target == "v1"


def test_target_required_with_several_versions(doc: Doc) -> None:
    assert problems(doc(rollout={})) == [
        "spec.rollout.target: required when there is more than one version; known: v1, v2"
    ]


def test_target_must_name_a_version(doc: Doc) -> None:
    assert problems(doc(rollout={"target": "v3"})) == [
        "spec.rollout.target: names no version; known: v1, v2"
    ]


def test_version_names_unique(doc: Doc) -> None:
    versions = [{"name": "v1", "storageUri": "s3://a"}, {"name": "v1", "storageUri": "s3://b"}]
    assert problems(doc(versions=versions, rollout={"target": "v1"})) == [
        "spec.versions[1].name: 'v1' repeats spec.versions[0]; version names must be unique"
    ]


def test_exactly_one_storage(doc: Doc) -> None:
    both = {"name": "v1", "storageUri": "s3://a", "storage": {"key": "k", "path": "p"}}
    neither = {"name": "v2"}
    assert problems(doc(versions=[both, neither])) == [
        "spec.versions[0]: set exactly one of storageUri or storage",
        "spec.versions[1]: set exactly one of storageUri or storage",
    ]


def test_storage_spec_accepted(doc: Doc) -> None:
    versions = [
        {"name": "v1", "storageUri": "s3://a"},
        {"name": "v2", "storage": {"key": "minio", "path": "iris/v2", "parameters": {"b": "c"}}},
    ]
    assert parse_managed_model(doc(versions=versions)).spec.versions[1].storage is not None


def test_version_name_is_dns_label(doc: Doc) -> None:
    versions = [{"name": "V_1", "storageUri": "s3://a"}]
    assert problems(doc(versions=versions, rollout={})) == [
        "spec.versions[0].name: must be a DNS-1123 label: lower-case letters, digits and '-'"
    ]


def test_model_name_is_dns1035(doc: Doc) -> None:
    document = doc()
    document["metadata"]["name"] = "iris.v"
    assert problems(document)[0].startswith("metadata.name: 'iris.v' must be a DNS-1035 label")


def test_predictor_name_fits_63(doc: Doc) -> None:
    document = doc(versions=[{"name": "v" * 30, "storageUri": "s3://a"}], rollout={})
    document["metadata"]["name"] = "m" * 22  # 22 + 30 = 52: fits exactly
    parse_managed_model(document)
    document["metadata"]["name"] = "m" * 23
    assert problems(document) == [
        f"spec.versions[0].name: '{'m' * 23}-{'v' * 30}-predictor' is longer than 63 "
        "characters; keep model and version names within 52 characters together"
    ]


def test_step_weights_strictly_increasing(doc: Doc) -> None:
    assert problems(doc(rollout={"target": "v2", "stepWeights": [10, 10, 50]})) == [
        "spec.rollout.stepWeights: must be strictly increasing (got [10, 10, 50])"
    ]


@pytest.mark.parametrize("weight", [0, 100])
def test_step_weights_within_1_99(doc: Doc, weight: int) -> None:
    found = problems(doc(rollout={"target": "v2", "stepWeights": [weight]}))
    assert len(found) == 1 and found[0].startswith("spec.rollout.stepWeights[0]: Input should")


def test_min_replicas_not_above_max(doc: Doc) -> None:
    assert problems(doc(autoscaling={"minReplicas": 3, "maxReplicas": 2})) == [
        "spec.autoscaling.minReplicas: 3 exceeds maxReplicas 2"
    ]


def test_min_replicas_at_least_one(doc: Doc) -> None:
    assert problems(doc(autoscaling={"minReplicas": 0, "maxReplicas": 2})) == [
        "spec.autoscaling.minReplicas: must be at least 1: an HPA cannot scale to zero "
        "(0, scale to zero, needs deploymentMode Knative)"
    ]


def test_grpc_protocol_refused(doc: Doc) -> None:
    assert problems(doc(protocolVersion="grpc-v2")) == [
        "spec.protocolVersion: grpc-v2 is not supported yet: an HTTPRoute cannot carry gRPC; "
        "use v1 or v2"
    ]


def test_unknown_protocol_refused(doc: Doc) -> None:
    assert problems(doc(protocolVersion="v3")) == [
        "spec.protocolVersion: 'v3' is not a protocol; use v1 or v2"
    ]


def test_gpu_in_resources_points_to_gpu(doc: Doc) -> None:
    resources = {"limits": {"nvidia.com/gpu": 1}}
    assert problems(doc(resources=resources)) == [
        "spec.resources.limits.nvidia.com/gpu: GPUs are set in spec.gpu (count, resourceName), "
        "not in resources"
    ]


def test_gpu_in_version_resources_refused(doc: Doc) -> None:
    versions = [
        {"name": "v1", "storageUri": "s3://a", "resources": {"requests": {"amd.com/gpu": 1}}},
        {"name": "v2", "storageUri": "s3://b"},
    ]
    assert problems(doc(versions=versions)) == [
        "spec.versions[0].resources.requests.amd.com/gpu: GPUs are set in spec.gpu "
        "(count, resourceName), not in resources"
    ]


def test_unknown_field_names_known_ones(doc: Doc) -> None:
    found = problems(doc(rollout={"target": "v2", "stepWeight": [10]}))
    assert found == [
        "spec.rollout.stepWeight: unknown field; known fields: analysis, capacity, interval, "
        "iterations, match, mirrorPercent, progressDeadline, promotion, scaleDownDelay, "
        "stepWeights, strategy, target, then, webhooks"
    ]


def test_wrong_type_names_field(doc: Doc) -> None:
    found = problems(doc(gpu={"count": "two"}))
    assert found == [
        "spec.gpu.count: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_missing_required_field(doc: Doc) -> None:
    document = doc()
    del document["spec"]["traffic"]
    assert problems(document) == ["spec.traffic: required: the Gateway the HTTPRoute attaches to"]


def test_bad_duration(doc: Doc) -> None:
    assert problems(doc(rollout={"target": "v2", "interval": "1 minute"})) == [
        "spec.rollout.interval: must be a duration such as 30s, 10m or 1h30m"
    ]


def test_metric_needs_its_target(doc: Doc) -> None:
    scaling = {"metrics": [{"type": "gpu"}, {"type": "pods", "metricName": "queue"}]}
    assert problems(doc(autoscaling=scaling)) == [
        "spec.autoscaling.metrics[0]: a gpu metric needs averageUtilization",
        "spec.autoscaling.metrics[1]: a pods metric needs metricName and averageValue",
    ]


def test_reserved_labels_refused(doc: Doc) -> None:
    serving = {"labels": {"component": "predictor", "team": "ml"}}
    assert problems(doc(serving=serving)) == [
        "spec.serving.labels.component: is set by modelpilot or KServe; choose another label key"
    ]


def test_too_many_versions(doc: Doc) -> None:
    versions = [{"name": f"v{i}", "storageUri": "s3://a"} for i in range(16)]
    found = problems(doc(versions=versions, rollout={"target": "v1"}))
    assert found == ["spec.versions: List should have at most 15 items after validation, not 16"]


def test_too_many_hostnames(doc: Doc) -> None:
    traffic = {"gatewayRef": {"name": "gw"}, "hostnames": [f"h{i}.example" for i in range(17)]}
    found = problems(doc(traffic=traffic))
    assert found == [
        "spec.traffic.hostnames: List should have at most 16 items after validation, not 17"
    ]


def test_envelope_checked(doc: Doc) -> None:
    document = doc()
    document["apiVersion"] = "modelpilot.io/v1"
    assert problems(document) == ["apiVersion: must be modelpilot.io/v1alpha1"]


def test_not_a_mapping() -> None:
    assert problems(["a"]) == ["(document): expected a mapping (a YAML object)"]  # type: ignore[arg-type]


def test_all_problems_reported_at_once(doc: Doc) -> None:
    found = problems(doc(rollout={"target": "v9", "stepWeights": [50, 20]}, protocolVersion="v3"))
    assert len(found) == 1  # type errors stop before cross-field rules run
    found = problems(doc(rollout={"target": "v9", "stepWeights": [50, 20]}))
    assert len(found) == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["spec"]["versions"][0].update(storageUri="   "),
            "spec.versions[0].storageUri: must not be empty or contain blanks",
        ),
        (
            lambda d: d["spec"].update(servedModelName="my model/x"),
            "spec.servedModelName: must be letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or digit: it is a path segment of every request",
        ),
        (
            lambda d: d["spec"]["rollout"].update(interval="soon"),
            "spec.rollout.interval: must be a duration such as 30s, 10m or 1h30m",
        ),
    ],
)
def test_a_pattern_mismatch_says_what_the_field_must_be(
    doc: Doc, change: Any, expected: str
) -> None:
    document = doc()
    change(document)
    assert problems(document) == [expected]


def test_replicas_of_two_operator_versions_read_each_others_status() -> None:
    """During a rolling update an older and a newer operator meet: a status without the
    newer fields, or with fields this version does not know, still parses, and what it
    knows survives."""
    from modelpilot.api.status import ManagedModelStatus

    older = {"phase": "Progressing", "stableVersion": "v1", "canaryVersion": "v2"}
    parsed = ManagedModelStatus.model_validate(older)
    assert (parsed.phase, parsed.stable_version, parsed.mirror_objects) == (
        "Progressing",
        "v1",
        [],
    )
    newer = {**older, "fieldOfALaterVersion": {"x": 1}}
    assert ManagedModelStatus.model_validate(newer).canary_version == "v2"
