"""The ManagedModel spec: what the user declares. The CRD schema is generated from it.

Every field carries a description: it becomes `kubectl explain` text. Cross-field rules
that the apiserver enforces with CEL sit next to the model they constrain
(`x-kubernetes-validations`); `modelpilot.api.checks` enforces the same rules in Python
so that `modelpilot validate` and the operator say the same thing as admission.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from modelpilot.api.analysis import Analysis, Webhook
from modelpilot.api.spec_base import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ENV_NAME,
    HOSTNAME,
    HTTP_URL_WITH_HOST,
    INT32_MAX,
    NO_BLANKS,
    QUANTITY,
    SERVED_NAME,
    Duration,
    SpecModel,
    rules,
)
from modelpilot.api.strategies import HEADER_NAME, MAX_MATCHES, RequestMatch, Strategy

# Quantities are ints or strings ("500m", "8Gi"); the CRD says x-kubernetes-int-or-string.
# Never negative: a pod asking for -1Gi is refused by the apiserver, after the fact.
Quantity = Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=QUANTITY)]

# The longest DNS-1035 label is 63 characters and "-predictor" plus the "-" joining model
# and version take 11 of them: `<model>-<version>-predictor` names a Service.
MAX_MODEL_PLUS_VERSION = 63 - len("-predictor") - 1
MAX_VERSIONS = 15
REGISTRY_VERSION_ROOM = 6  # v<registry version>: up to v99999
MAX_HOSTNAMES = 16


class ModelFormat(SpecModel):
    name: str = Field(
        min_length=1,
        max_length=63,
        description="Model format KServe selects a runtime by, e.g. sklearn, xgboost, "
        "huggingface, pytorch, tensorflow, onnx.",
    )
    version: str | None = Field(
        default=None,
        max_length=32,
        description='Format version, e.g. "1" for sklearn 1.x. Narrows runtime choice to '
        "runtimes that list this version.",
    )


class EnvVar(SpecModel):
    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_NAME,
        description="Environment variable name (printable ASCII, no '=').",
    )
    value: str | None = Field(default=None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="Source for the value (a Kubernetes EnvVarSource: secretKeyRef, "
        "configMapKeyRef, fieldRef, resourceFieldRef), passed through unchanged.",
    )


class Resources(SpecModel):
    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Minimum resources per predictor pod, e.g. {cpu: 500m, memory: 1Gi}. "
        "GPUs are set in spec.gpu, not here.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources per predictor pod. GPUs are set in spec.gpu, not here.",
    )


class Storage(SpecModel):
    key: str | None = Field(default=None, description="Key of the storage secret entry.")
    path: str | None = Field(default=None, description="Path of the model in the storage.")
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Storage parameters that override the secret's."
    )


class ModelVersion(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.storageUri) != has(self.storage)",
                "set exactly one of storageUri or storage",
            )
        )
    )

    name: str = Field(
        min_length=1,
        max_length=MAX_MODEL_PLUS_VERSION - 1,
        pattern=DNS1123_LABEL,
        description="Version name, a DNS-1123 label (e.g. v1). Versions are meant to be "
        "immutable: publish a new artifact under a new name.",
    )
    storage_uri: str | None = Field(
        default=None,
        min_length=1,
        pattern=NO_BLANKS,  # a URI has no blanks; one of blanks was served in silence
        description="Where KServe loads the model from, e.g. gs://bucket/iris/v1, "
        "s3://..., pvc://claim/path, hf://org/model. Exactly one of storageUri or storage.",
    )
    storage: Storage | None = Field(
        default=None,
        description="Storage spec with a key into KServe's storage secret. Exactly one of "
        "storageUri or storage.",
    )
    runtime: str | None = Field(
        default=None, description="Serving runtime for this version (overrides spec.runtime)."
    )
    runtime_version: str | None = Field(
        default=None,
        description="Runtime image tag for this version (overrides spec.runtimeVersion).",
    )
    model_format_version: str | None = Field(
        default=None,
        max_length=32,
        description="Model format version for this version (overrides spec.modelFormat.version).",
    )
    resources: Resources | None = Field(
        default=None,
        description="Resources for this version; keys here override spec.resources.",
    )
    args: list[str] = Field(default_factory=list, description="Arguments appended after spec.args.")
    env: list[EnvVar] = Field(
        default_factory=list, description="Environment merged over spec.env by name."
    )
    service_account_name: str | None = Field(
        default=None,
        description="Service account for this version's pods (overrides "
        "spec.serving.serviceAccountName).",
    )


class Gpu(SpecModel):
    count: int = Field(ge=1, le=64, description="GPUs per predictor pod.")
    resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        description="Extended resource name: nvidia.com/gpu, amd.com/gpu, or a MIG profile "
        "such as nvidia.com/mig-1g.5gb.",
    )
    product: str | None = Field(
        default=None,
        description="GPU product; becomes the nodeSelector nvidia.com/gpu.product, "
        "e.g. NVIDIA-A100-SXM4-80GB.",
    )
    tolerate: bool = Field(
        default=True,
        description="Tolerate the NoSchedule taint that GPU node pools commonly carry "
        "(key = resourceName, operator Exists).",
    )


class Metric(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.type in ['cpu', 'memory', 'gpu'] ? has(self.averageUtilization) : true",
                "cpu, memory and gpu metrics need averageUtilization",
            ),
            (
                "self.type == 'pods' ? has(self.metricName) && has(self.averageValue) : true",
                "pods metrics need metricName and averageValue",
            ),
        )
    )

    type: Literal["cpu", "memory", "gpu", "pods"] = Field(
        description="cpu or memory: resource utilization; gpu: a per-pod GPU utilization "
        "metric (DCGM by default); pods: any per-pod custom metric."
    )
    average_utilization: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Target utilization in percent (cpu, memory, gpu).",
    )
    metric_name: str | None = Field(
        default=None,
        description="Custom metric name (pods; gpu defaults to DCGM_FI_DEV_GPU_UTIL).",
    )
    average_value: Quantity | None = Field(
        default=None, description="Target average value per pod (pods), e.g. 10 queued requests."
    )


class Autoscaling(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.minReplicas) || !has(self.maxReplicas) || "
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must not exceed maxReplicas",
            )
        )
    )

    min_replicas: int = Field(
        default=1,
        ge=0,
        le=INT32_MAX,
        description="Fewest pods per version, at least 1 (an HPA cannot scale to zero); 0 "
        "(scale to zero) in Knative mode only.",
    )
    max_replicas: int = Field(default=1, ge=1, le=INT32_MAX, description="Most pods per version.")
    metrics: list[Metric] = Field(
        default_factory=lambda: [Metric(type="cpu", average_utilization=80)],
        max_length=8,
        description="What the HPA scales on (default: CPU at 80%).",
    )
    behavior: dict[str, Any] | None = Field(
        default=None,
        description="HPA scaling behavior in the autoscaling/v2 shape, passed through.",
    )
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] | None = Field(
        default=None,
        description="Knative mode: what Knative's autoscaler scales on (KServe's default: "
        "concurrency).",
    )
    scale_target: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Knative mode: the target per pod of scaleMetric (e.g. 10 requests in flight).",
    )


DeploymentMode = Literal["Standard", "ModelMesh", "Knative"]
# KServe's names for modes modelpilot does not take (or takes under another name): each
# with what to write instead.
OTHER_MODE_NAMES = {
    "RawDeployment": "RawDeployment is KServe's old name for Standard: write Standard "
    "(run the operator with --kserve-legacy-raw-deployment for KServe before 0.16)",
    "Serverless": "Serverless is KServe's old name for Knative: write Knative (run the "
    "operator with --kserve-legacy-raw-deployment for KServe before 0.16)",
}


class Serving(SpecModel):
    deployment_mode: DeploymentMode = Field(
        default="Standard",
        description="KServe deployment mode. Standard: an InferenceService per version on "
        "Deployments of its own, with an HPA. ModelMesh: an InferenceService per version "
        "loaded into the shared pods of a multi-model ServingRuntime (legacy upstream: "
        "modelmesh-serving is archived). Knative: one InferenceService for the model, its "
        "versions Knative revisions split by canaryTrafficPercent, scaled by Knative (to "
        "zero with autoscaling.minReplicas 0), served at its URL by KServe's ingress.",
    )
    service_account_name: str | None = Field(
        default=None, description="Service account for the predictor pods."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector for the predictor pods."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for the predictor pods."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on every InferenceService."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on every InferenceService."
    )
    timeout: int | None = Field(
        default=None,
        ge=1,
        description="Request timeout in seconds: the predictor's and the route's.",
    )
    deployment_strategy: dict[str, Any] | None = Field(
        default=None,
        description="Deployment strategy of the predictor, passed through; "
        "rollingUpdate.maxSurge 0 matters when no spare GPU exists.",
    )

    @field_validator("deployment_mode", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        if isinstance(value, str) and value in OTHER_MODE_NAMES:
            raise ValueError(OTHER_MODE_NAMES[value])
        return value


class Toleration(SpecModel):
    key: str | None = Field(default=None, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(default=None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty means all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


class GatewayRef(SpecModel):
    name: str = Field(min_length=1, description="Gateway name.")
    namespace: str | None = Field(
        default=None, description="Gateway namespace (default: the model's)."
    )
    section_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Listener of the Gateway to attach to.",
    )


class Traffic(SpecModel):
    gateway_ref: GatewayRef = Field(description="The Gateway the model's HTTPRoute attaches to.")
    hostnames: list[Annotated[str, Field(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list,
        max_length=MAX_HOSTNAMES,
        description="Hostnames the route serves (at most 16, a Gateway API limit).",
    )
    pin_header: str = Field(
        default="x-model-version",
        min_length=1,
        max_length=256,
        pattern=HEADER_NAME,
        description="A request carrying this header, with a version name as its value, "
        "goes to that version.",
    )


class Rollout(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.stepWeights) || (self.stepWeights.isSorted() && "
                "self.stepWeights.all(w, self.stepWeights.exists_one(x, x == w)))",
                "stepWeights must be strictly increasing",
            ),
            (
                "!has(self.strategy) || self.strategy != 'ABTest' || "
                "(has(self.match) && size(self.match) > 0)",
                "strategy ABTest needs match: the requests that go to the candidate",
            ),
            (
                "!has(self.then) || (has(self.strategy) && self.strategy == 'Shadow')",
                "then is for strategy Shadow: what follows the shadow phase",
            ),
            (
                "!has(self.strategy) || self.strategy != 'BlueGreen' || "
                "!has(self.capacity) || self.capacity != 'Shared'",
                "strategy BlueGreen warms the candidate beside the stable version: it needs "
                "capacity Surge, not Shared",
            ),
        )
    )

    strategy: Strategy = Field(
        default="Canary",
        description="Canary: weight steps. ABTest: requests matching `match` go to the "
        "candidate, all others to stable, for `iterations` x `interval`. BlueGreen: the "
        "candidate is warmed to the stable's replicas (previewed by `match`, if set), then "
        "takes all traffic in one switch. Shadow: the candidate gets a copy of "
        "`mirrorPercent` of the stable's requests for `iterations` x `interval`, its answers "
        "discarded; then a canary (`then: Canary`) or promotion.",
    )
    mirror_percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Shadow: percent of the stable's requests copied to the candidate.",
    )
    then: Literal["Canary"] | None = Field(
        default=None,
        description="Shadow: Canary continues with weight steps once the shadow phase "
        "passed; absent, the candidate waits for promotion (or is promoted, with "
        "promotion: auto).",
    )
    match: list[RequestMatch] = Field(
        default_factory=list,
        max_length=MAX_MATCHES,
        description="ABTest and BlueGreen: requests matching any of these go to the "
        "candidate. A request carrying the pin header goes to the version it names first.",
    )
    iterations: int = Field(
        default=3,
        ge=1,
        le=100,
        description="ABTest, Shadow and BlueGreen: checks of `interval` each before "
        "promotion (or, for Shadow with then: Canary, before the canary steps).",
    )
    target: str | None = Field(
        default=None,
        max_length=63,
        description="The version that should end up with all traffic. Changing it starts a "
        "canary from the current stable version. Required when there is more than one "
        "version.",
    )
    # A plain default (pydantic copies it) so the CRD carries it too.
    step_weights: list[Annotated[int, Field(ge=1, le=99)]] = Field(
        default=[10, 25, 50],
        min_length=1,
        max_length=20,
        description="Canary traffic percentages, strictly increasing within 1..99.",
    )
    interval: Duration = Field(
        default="60s", description="Time at each weight before the next step."
    )
    promotion: Literal["manual", "auto"] = Field(
        default="manual",
        description="manual: wait at the last step for modelpilot.io/promote; auto: "
        "promote after the last step.",
    )
    capacity: Literal["Surge", "Shared"] = Field(
        default="Surge",
        description="Surge: the canary runs beside the full stable version. Shared: the "
        "stable version shrinks as the canary grows, so no spare GPUs are needed.",
    )
    progress_deadline: Duration = Field(
        default="10m", description="A canary not Ready by then fails the rollout."
    )
    scale_down_delay: Duration = Field(
        default="10m",
        description="How long a replaced stable version stays warm for an instant rollback.",
    )
    analysis: Analysis | None = Field(
        default=None,
        description="Judge each step on Prometheus metrics: a step advances only after a "
        "passed check, failed checks roll the canary back. Absent: steps advance on time "
        "and readiness alone.",
    )
    webhooks: list[Webhook] = Field(
        default_factory=list,
        max_length=10,
        description="HTTP hooks that gate the rollout (pre-rollout, rollout, "
        "confirm-promotion) or are told about it (post-rollout, rollback, event).",
    )

    def hooks(self, kind: str) -> list[Webhook]:
        return [hook for hook in self.webhooks if hook.type == kind]

    @property
    def threshold(self) -> int:
        """Failed checks (metrics or gating hooks) that roll the canary back."""
        return self.analysis.threshold if self.analysis else 2

    @property
    def judged(self) -> bool:
        """Checks run at each step: metrics, or hooks called at every check."""
        return self.analysis is not None or bool(self.hooks("rollout"))


class MlflowSource(SpecModel):
    tracking_uri: str = Field(
        max_length=2048,
        pattern=HTTP_URL_WITH_HOST,
        description="The MLflow tracking server, e.g. http://mlflow.mlflow:5000 (its REST "
        "API; credentials come from the operator's --registry-auth-dir).",
    )
    model: str = Field(
        min_length=1, max_length=256, description="The registered model's name in MLflow."
    )
    alias: str = Field(
        default="champion",
        max_length=255,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The alias whose version should serve (MLflow's aliases replaced "
        "stages in 2.9). Moving it starts a canary.",
    )


class Registry(SpecModel):
    mlflow: MlflowSource = Field(description="An MLflow model registry.")
    poll_interval: Duration = Field(
        default="30s",
        description="How often the alias is read; an alias move starts a canary within this time.",
    )
    keep: int = Field(
        default=1,
        ge=0,
        le=MAX_VERSIONS - 3,
        description="Previously served versions kept (stopped, each an InferenceService) "
        "for a rollback; older ones are pruned.",
    )


_MODEL_MESH = "has(self.serving) && self.serving.deploymentMode == 'ModelMesh'"
_KNATIVE = "has(self.serving) && self.serving.deploymentMode == 'Knative'"
# Knative mode: the model is one InferenceService whose revisions KServe splits by a
# percentage, scaled by Knative's autoscaler and reached through KServe's ingress.
KNATIVE_RULES = (
    (
        f"has(self.traffic) || ({_KNATIVE})",
        "spec.traffic is required: the Gateway the model's HTTPRoute attaches to (only "
        "Knative mode, served at its InferenceService's URL, has none)",
    ),
    (
        f"!has(self.traffic) || !({_KNATIVE})",
        "Knative mode is served at its InferenceService's URL by KServe's ingress, with no "
        "HTTPRoute: remove spec.traffic",
    ),
    (
        f"!has(self.autoscaling) || !has(self.autoscaling.minReplicas) || "
        f"self.autoscaling.minReplicas >= 1 || ({_KNATIVE})",
        "autoscaling.minReplicas 0 (scale to zero) needs deploymentMode Knative: an HPA "
        "cannot scale to zero",
    ),
    (
        f"!has(self.autoscaling) || (!has(self.autoscaling.scaleMetric) && "
        f"!has(self.autoscaling.scaleTarget)) || ({_KNATIVE})",
        "autoscaling.scaleMetric and scaleTarget are Knative's autoscaler's: set "
        "deploymentMode Knative, or use autoscaling.metrics (an HPA's)",
    ),
    (
        f"!({_KNATIVE}) || !has(self.autoscaling) || !has(self.autoscaling.behavior)",
        "autoscaling.behavior is an HPA's; Knative mode has no HPA: remove it",
    ),
    (
        f"!({_KNATIVE}) || !has(self.rollout) || !has(self.rollout.strategy) || "
        "self.rollout.strategy == 'Canary'",
        "Knative mode splits traffic between revisions by KServe's canaryTrafficPercent, by "
        "weight only: use strategy Canary",
    ),
    (
        # RE2 through a CEL string: `\\s` arrives as `\s`.
        f"({_KNATIVE}) || !has(self.rollout) || !has(self.rollout.analysis) || "
        "self.rollout.analysis.metrics.all(m, !has(m.query) || "
        r"!m.query.matches('[{][{]\\s*revision\\s*[}][}]'))",
        "the {{ revision }} placeholder names Knative revisions: only in deploymentMode "
        "Knative; use {{ service }} or {{ inference_service }}",
    ),
    (
        f"!({_KNATIVE}) || !has(self.rollout) || !has(self.rollout.capacity) || "
        "self.rollout.capacity == 'Surge'",
        "Knative's autoscaler sizes each revision: capacity Shared does not apply; use Surge",
    ),
)
# What ModelMesh mode cannot honour, refused rather than ignored: the models share the
# pods of their ServingRuntime, which ModelMesh sizes and scales itself.
MODEL_MESH_RULES = (
    (
        # A transition rule (oldSelf): checked on updates only. An absent serving is
        # Standard, the default.
        "(has(self.serving) ? self.serving.deploymentMode : 'Standard') == "
        "(has(oldSelf.serving) ? oldSelf.serving.deploymentMode : 'Standard')",
        "spec.serving.deploymentMode cannot change: KServe refuses to move an "
        "InferenceService between modes; create a ManagedModel of the other mode beside "
        "this one",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.gpu)",
        "spec.gpu is for Standard mode: in ModelMesh mode the models share the "
        "ServingRuntime's pods; request GPUs in the ServingRuntime",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.autoscaling)",
        "spec.autoscaling is for Standard mode: ModelMesh scales model copies itself; remove it",
    ),
    (
        f"!({_MODEL_MESH}) || (!has(self.resources) && "
        "(!has(self.versions) || self.versions.all(v, !has(v.resources))))",
        "resources are for Standard mode: in ModelMesh mode the ServingRuntime sizes the "
        "shared pods; remove spec.resources and spec.versions[].resources",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.protocolVersion) || self.protocolVersion == 'v2'",
        "ModelMesh's REST proxy speaks the v2 protocol only: set spec.protocolVersion v2 "
        "or leave it unset",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.rollout) || !has(self.rollout.capacity) || "
        "self.rollout.capacity == 'Surge'",
        "spec.rollout.capacity Shared shrinks a version's own pods; ModelMesh versions "
        "share the runtime's pods: use Surge",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.rollout) || !has(self.rollout.analysis) || "
        "self.rollout.analysis.metrics.all(m, !has(m.template))",
        "analysis templates read a version's own Service's metrics; in ModelMesh mode "
        "every version sits behind modelmesh-serving: write a query instead (ModelMesh's "
        "metrics name the model by {{ inference_service }})",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.rollout) || !has(self.rollout.strategy) || "
        "self.rollout.strategy != 'Shadow'",
        "strategy Shadow mirrors requests to a version's own Service; in ModelMesh mode "
        "every version sits behind modelmesh-serving: choose Canary, ABTest or BlueGreen",
    ),
    (
        f"!({_MODEL_MESH}) || !has(self.servedModelName) || "
        "(size(self.servedModelName) <= 63 && "
        "self.servedModelName.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
        "in ModelMesh mode servedModelName names an InferenceService (the model's stable "
        "name): use a DNS-1123 label of at most 63 characters",
    ),
)


class ManagedModelSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.registry) != (has(self.versions) && size(self.versions) > 0)",
                "set exactly one of spec.versions or spec.registry",
            ),
            (
                "!has(self.registry) || !has(self.rollout) || !has(self.rollout.target)",
                "with spec.registry the alias names the target: remove rollout.target",
            ),
            (
                "!has(self.versions) || "
                "self.versions.all(v, self.versions.exists_one(w, w.name == v.name))",
                "version names must be unique",
            ),
            (
                "has(self.rollout) && has(self.rollout.target) && has(self.versions) ? "
                "self.versions.exists(v, v.name == self.rollout.target) : true",
                "rollout.target must name a version in spec.versions",
            ),
            (
                "!has(self.versions) || size(self.versions) <= 1 || "
                "(has(self.rollout) && has(self.rollout.target))",
                "rollout.target is required when there is more than one version",
            ),
            *MODEL_MESH_RULES,
            *KNATIVE_RULES,
        )
    )

    model_format: ModelFormat = Field(description="The model's format.")
    runtime: str | None = Field(
        default=None,
        description="ServingRuntime or ClusterServingRuntime to use; default: the one KServe "
        "selects for the format and protocol.",
    )
    runtime_version: str | None = Field(
        default=None, description="Runtime image tag, e.g. a -gpu TensorFlow image."
    )
    protocol_version: str | None = Field(
        default=None,
        description="Inference protocol, v1 or v2. Left unset, KServe chooses (v1). gRPC "
        "protocols are not supported yet.",
        json_schema_extra={"enum": ["v1", "v2"]},
    )
    args: list[str] = Field(
        default_factory=list, description="Arguments for the model server, every version."
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Environment for the model server, every version."
    )
    resources: Resources = Field(
        default_factory=Resources, description="Resources per predictor pod, every version."
    )
    versions: list[ModelVersion] = Field(
        default_factory=list,
        max_length=MAX_VERSIONS,
        description="The model's versions; each gets an InferenceService and an HPA. "
        "Exactly one of versions or registry.",
    )
    registry: Registry | None = Field(
        default=None,
        description="Take the versions from a model registry instead of spec.versions: "
        "the alias's version is the target, the version served before stays stable until "
        "the canary ends. What the registry says is in status.registry.",
    )
    gpu: Gpu | None = Field(default=None, description="GPUs per predictor pod.")
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, description="Per-version horizontal autoscaling."
    )
    serving: Serving = Field(default_factory=Serving, description="How KServe runs the model.")
    traffic: Traffic | None = Field(
        default=None,
        description="How clients reach the model through a Gateway. Required, except in "
        "Knative mode (KServe's ingress serves the InferenceService's URL; no HTTPRoute).",
    )
    served_model_name: str | None = Field(
        default=None,
        max_length=253,
        # It is a path segment of every request (/v2/models/<name>/infer).
        pattern=SERVED_NAME,
        description="The name clients call (/v1/models/<name>:predict); the same for every "
        "version. Default: the ManagedModel's name.",
    )
    rollout: Rollout = Field(default_factory=Rollout, description="How versions take over.")

    @field_validator("protocol_version")
    @classmethod
    def _http_protocols_only(cls, value: str | None) -> str | None:
        if value is None or value in ("v1", "v2"):
            return value
        if value.startswith("grpc"):
            raise ValueError(
                f"{value} is not supported yet: an HTTPRoute cannot carry gRPC; use v1 or v2"
            )
        raise ValueError(f"{value!r} is not a protocol; use v1 or v2")

    def version(self, name: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.name == name), None)

    @property
    def target(self) -> str:
        """The version meant to carry all traffic (the only one when just one exists)."""
        return self.rollout.target or self.versions[0].name


Serving.model_rebuild()
