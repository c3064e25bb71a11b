"""The API as a real apiserver sees it: the generated CRD's CEL rules, every sample, and
every manifest `modelpilot render` produces, checked against the KServe CRDs (generated
from KServe's SDK) and Gateway API's own CRDs by a server-side-apply dry run."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from modelpilot.api import parse_managed_model
from modelpilot.api.names import FIELD_MANAGER
from modelpilot.render import default_render_state, render_model
from modelpilot.runtimes import default_runtimes
from modelpilot_dev.checkout import checkout_root

pytestmark = pytest.mark.cluster

ROOT = checkout_root()
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


@pytest.fixture(scope="session")
def kubectl(control_plane: Any) -> str:
    from modelpilot_dev import tools

    return str(tools.binary_path("kubectl"))


def sample(path: Path, namespace: str) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    document["metadata"]["namespace"] = namespace
    return document


def apply(dynamic: DynamicClient, obj: dict[str, Any], *, dry_run: bool = False) -> Any:
    api = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return api.server_side_apply(
        body=obj,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All" if dry_run else None,
    )


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_accepted_by_kubectl(
    path: Path, namespace: str, kubeconfig: str, tmp_path: Path, kubectl: str
) -> None:
    manifest = tmp_path / path.name
    manifest.write_text(yaml.safe_dump(sample(path, namespace)))
    result = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "serverside-applied" in result.stdout


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_rendered_manifests_accepted(path: Path, namespace: str, dynamic: DynamicClient) -> None:
    model = parse_managed_model(sample(path, namespace))
    if model.spec.registry is not None:  # as the operator derives it after a poll
        from modelpilot.api.status import RegistryStatus, RegistryVersion
        from modelpilot.rollout.registry import registry_spec

        polled = RegistryStatus(
            alias_version=7,
            versions=[RegistryVersion(name="v7", registry_version=7, storage_uri="s3://m/7")],
        )
        model = model.model_copy(update={"spec": registry_spec(model.spec, polled)})
    rendered = render_model(model, default_render_state(model), default_runtimes())
    kinds = set()
    for obj in rendered.objects:
        apply(dynamic, obj, dry_run=True)  # raises on any field the schema lacks
        kinds.add(obj["kind"])
    if model.spec.serving.deployment_mode == "ModelMesh":  # no HPA: ModelMesh scales
        assert kinds == {"InferenceService", "HTTPRoute"}
    elif model.spec.serving.deployment_mode == "Knative":  # KServe's ingress, Knative's scaling
        assert kinds == {"InferenceService"}
    else:
        assert kinds == {"InferenceService", "HorizontalPodAutoscaler", "HTTPRoute"}


def test_unknown_kserve_field_is_refused(namespace: str, dynamic: DynamicClient) -> None:
    # The check the loop above relies on: the generated schema refuses what KServe lacks.
    model = parse_managed_model(sample(SAMPLES[0], namespace))
    isvc = render_model(model, default_render_state(model), default_runtimes()).objects[0]
    isvc = copy.deepcopy(isvc)
    isvc["spec"]["predictor"]["model"]["modelPath"] = "/mnt/models"
    with pytest.raises(DynamicApiError, match="field not declared in schema"):
        apply(dynamic, isvc, dry_run=True)


def iris(namespace: str) -> dict[str, Any]:
    return sample(ROOT / "manifests/samples/sklearn-iris.yaml", namespace)


def edit_versions(doc: dict[str, Any], versions: list[dict[str, Any]]) -> dict[str, Any]:
    doc["spec"]["versions"] = versions
    return doc


def violations(namespace: str) -> list[tuple[str, dict[str, Any], str]]:
    cases: list[tuple[str, dict[str, Any], str]] = []

    doc = iris(namespace)
    doc["spec"]["versions"][1]["name"] = "v1"
    doc["spec"]["rollout"]["target"] = "v1"
    cases.append(("unique", doc, "version names must be unique"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["target"] = "v3"
    cases.append(("target", doc, "rollout.target must name a version in spec.versions"))

    doc = iris(namespace)
    del doc["spec"]["rollout"]["target"]
    cases.append(("target-required", doc, "rollout.target is required when there is more than one"))

    doc = iris(namespace)
    doc["spec"]["versions"][0]["storage"] = {"key": "k", "path": "p"}
    cases.append(("storage", doc, "set exactly one of storageUri or storage"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["stepWeights"] = [50, 25]
    cases.append(("steps", doc, "stepWeights must be strictly increasing"))

    doc = iris(namespace)
    doc["spec"]["autoscaling"] = {"minReplicas": 4, "maxReplicas": 2}
    cases.append(("replicas", doc, "minReplicas must not exceed maxReplicas"))

    doc = iris(namespace)
    doc["spec"]["autoscaling"]["metrics"] = [{"type": "gpu"}]
    cases.append(("metric", doc, "cpu, memory and gpu metrics need averageUtilization"))

    doc = iris(namespace)
    doc["metadata"]["name"] = "iris.v"
    cases.append(("dns1035", doc, "metadata.name must be a DNS-1035 label"))

    doc = iris(namespace)
    doc["metadata"]["name"] = "m" * 40
    doc["spec"]["versions"][1]["name"] = "v" * 20
    doc["spec"]["rollout"]["target"] = "v" * 20
    cases.append(("length", doc, "'<model>-<version>-predictor' must fit in 63 characters"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["analysis"] = {
        "metrics": [{"name": "ok", "template": "success-rate", "query": "up", "min": 1}]
    }
    cases.append(("analysis-source", doc, "set exactly one of template or query"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["analysis"] = {"metrics": [{"name": "ok", "template": "success-rate"}]}
    cases.append(("analysis-bound", doc, "set at least one bound"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["webhooks"] = [
        {"name": "hook", "type": "rollout", "url": "ftp://hooks.ops.svc/x"}
    ]
    cases.append(("webhook-url", doc, "spec.rollout.webhooks[0].url"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["strategy"] = "ABTest"
    cases.append(("ab-match", doc, "strategy ABTest needs match"))

    doc = iris(namespace)
    doc["spec"]["rollout"].update(strategy="BlueGreen", capacity="Shared")
    cases.append(("blue-green-shared", doc, "it needs capacity Surge, not Shared"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["strategy"] = "ABTest"
    doc["spec"]["rollout"]["match"] = [
        {"headers": [{"name": "Cookie", "value": "beta=(", "type": "RegularExpression"}]}
    ]
    cases.append(("regex", doc, "spec.rollout.match[0].headers[0]"))

    def mesh() -> dict[str, Any]:
        return sample(ROOT / "manifests/samples/iris-modelmesh.yaml", namespace)

    doc = mesh()
    doc["spec"]["gpu"] = {"count": 1}
    cases.append(("mesh-gpu", doc, "request GPUs in the ServingRuntime"))

    doc = mesh()
    doc["spec"]["autoscaling"] = {"maxReplicas": 2}
    cases.append(("mesh-autoscaling", doc, "ModelMesh scales model copies itself"))

    doc = mesh()
    doc["spec"]["versions"][1]["resources"] = {"requests": {"cpu": "1"}}
    cases.append(("mesh-resources", doc, "the ServingRuntime sizes the shared pods"))

    doc = mesh()
    doc["spec"]["protocolVersion"] = "v1"
    cases.append(("mesh-protocol", doc, "speaks the v2 protocol only"))

    doc = mesh()
    doc["spec"]["rollout"]["capacity"] = "Shared"
    cases.append(("mesh-shared", doc, "share the runtime's pods: use Surge"))

    doc = mesh()
    doc["spec"]["rollout"]["strategy"] = "Shadow"
    cases.append(("mesh-shadow", doc, "every version sits behind modelmesh-serving"))

    doc = mesh()
    doc["spec"]["rollout"]["analysis"] = {
        "metrics": [{"name": "ok", "template": "success-rate", "min": 0.99}]
    }
    cases.append(("mesh-template", doc, "write a query instead"))

    doc = mesh()
    doc["spec"]["servedModelName"] = "Iris_2"
    cases.append(("mesh-served-name", doc, "use a DNS-1123 label"))

    doc = mesh()
    doc["spec"]["serving"]["deploymentMode"] = "Serverless"
    cases.append(("mode-serverless", doc, 'supported values: "Standard", "ModelMesh", "Knative"'))

    def knative() -> dict[str, Any]:
        return sample(ROOT / "manifests/samples/iris-knative.yaml", namespace)

    doc = iris(namespace)
    doc["spec"]["autoscaling"]["minReplicas"] = 0
    cases.append(("zero-outside-knative", doc, "minReplicas 0 (scale to zero) needs"))

    doc = knative()
    doc["spec"]["traffic"] = iris(namespace)["spec"]["traffic"]
    cases.append(("knative-traffic", doc, "with no HTTPRoute: remove spec.traffic"))

    doc = iris(namespace)
    del doc["spec"]["traffic"]
    cases.append(("traffic-required", doc, "spec.traffic is required"))

    doc = knative()
    doc["spec"]["rollout"]["strategy"] = "Shadow"
    cases.append(("knative-strategy", doc, "by weight only: use strategy Canary"))

    doc = knative()
    doc["spec"]["autoscaling"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    cases.append(("knative-behavior", doc, "Knative mode has no HPA"))

    doc = iris(namespace)
    doc["spec"]["rollout"]["analysis"] = {
        "metrics": [{"name": "q", "query": "x{r=~{{revision}}}", "min": 1}]
    }
    cases.append(("revision-outside-knative", doc, "only in deploymentMode Knative"))
    return cases


CASE_IDS = [case[0] for case in violations("x")]


@pytest.mark.parametrize("case", CASE_IDS)
def test_cel_rule_rejects(case: str, namespace: str, dynamic: DynamicClient) -> None:
    _, document, message = next(c for c in violations(namespace) if c[0] == case)
    with pytest.raises(DynamicApiError) as caught:
        apply(dynamic, document)
    assert caught.value.status == 422
    assert message in json.loads(caught.value.body)["message"]


def test_the_deployment_mode_cannot_change(namespace: str, dynamic: DynamicClient) -> None:
    apply(dynamic, iris(namespace))
    moved = iris(namespace)
    moved["spec"]["serving"] = {"deploymentMode": "ModelMesh"}
    del moved["spec"]["resources"], moved["spec"]["autoscaling"]
    with pytest.raises(DynamicApiError) as caught:
        apply(dynamic, moved)
    assert "deploymentMode cannot change" in json.loads(caught.value.body)["message"]


def test_valid_iris_accepted_with_defaults(namespace: str, dynamic: DynamicClient) -> None:
    created = apply(dynamic, iris(namespace)).to_dict()
    # The apiserver applies the schema's defaults; modelpilot reads the same values.
    assert created["spec"]["rollout"]["capacity"] == "Surge"
    assert created["spec"]["traffic"]["pinHeader"] == "x-model-version"
    assert "protocolVersion" not in created["spec"]
    parse_managed_model(created)
