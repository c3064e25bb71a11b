"""The ManagedModel object, and parsing it into one list of clear problems.

Each problem names a field path and says how to fix it, one line each, the same whether
`modelpilot validate` or the operator reads the object.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelpilot.api.analysis import PLACEHOLDER, PLACEHOLDERS, Analysis, unknown_placeholders
from modelpilot.api.kinds import KSERVE_ISVC_LABEL, MANAGED_MODEL
from modelpilot.api.names import MANAGED_BY, inference_service_name, stable_name
from modelpilot.api.spec import (
    MAX_MODEL_PLUS_VERSION,
    REGISTRY_VERSION_ROOM,
    ManagedModelSpec,
    Rollout,
)
from modelpilot.api.spec_base import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    DURATION,
    ENV_NAME,
    HOSTNAME,
    HTTP_URL,
    HTTP_URL_WITH_HOST,
    LABEL_KEY,
    NO_BLANKS,
    QUANTITY,
    SERVED_NAME,
    SpecModel,
)
from modelpilot.api.status import ManagedModelStatus
from modelpilot.api.strategies import HEADER_NAME, HeaderMatch, QueryParamMatch

GROUP = MANAGED_MODEL.group
VERSION = MANAGED_MODEL.version
API_VERSION = MANAGED_MODEL.api_version
KIND = MANAGED_MODEL.kind
PLURAL = MANAGED_MODEL.plural
SINGULAR = "managedmodel"
SHORT_NAMES = ("mm",)
CATEGORIES = ("modelpilot",)

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Labels the operator or KServe own: a user label with one of these keys would confuse
# KServe's orphan cleanup or our own child selection.
RESERVED_LABEL_KEYS = (MANAGED_BY, KSERVE_ISVC_LABEL, "component")
RESERVED_LABEL_PREFIX = "modelpilot.io/"
GPU_RESOURCE_HINTS = ("gpu", "nvidia.com/", "amd.com/")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidManagedModel(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class ObjectMeta(BaseModel):
    # Only what modelpilot reads; the rest of metadata is the apiserver's business.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    namespace: str = "default"
    generation: int | None = None
    uid: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class ManagedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: ManagedModelSpec
    status: ManagedModelStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


def parse_managed_model(doc: Any) -> ManagedModel:
    """Parse and check a ManagedModel; raise InvalidManagedModel listing every problem."""
    if not isinstance(doc, dict):
        raise InvalidManagedModel([Problem("(document)", "expected a mapping (a YAML object)")])
    problems = _envelope_problems(doc)
    try:
        model = ManagedModel.model_validate(doc)
    except ValidationError as err:
        problems += [_from_pydantic(e) for e in err.errors()]
        raise InvalidManagedModel(_unique(problems)) from None
    problems += check_rules(model)
    if problems:
        raise InvalidManagedModel(_unique(problems))
    return model


def _envelope_problems(doc: dict[str, Any]) -> list[Problem]:
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}"))
    if doc.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}"))
    return problems


def check_rules(model: ManagedModel) -> list[Problem]:
    """The cross-field rules the CRD also enforces with CEL."""
    spec = model.spec
    problems: list[Problem] = []
    name = model.metadata.name
    if not DNS1035_LABEL.match(name):
        problems.append(
            Problem(
                "metadata.name",
                f"{name!r} must be a DNS-1035 label (lower-case letters, digits and '-', "
                "starting with a letter, no dots): it names Services",
            )
        )
    seen: dict[str, int] = {}
    for index, version in enumerate(spec.versions):
        path = f"spec.versions[{index}]"
        if version.name in seen:
            problems.append(
                Problem(
                    f"{path}.name",
                    f"{version.name!r} repeats spec.versions[{seen[version.name]}]; "
                    "version names must be unique",
                )
            )
        seen.setdefault(version.name, index)
        if (version.storage_uri is None) == (version.storage is None):
            problems.append(Problem(path, "set exactly one of storageUri or storage"))
        if len(name) + len(version.name) > MAX_MODEL_PLUS_VERSION:
            problems.append(
                Problem(
                    f"{path}.name",
                    f"'{name}-{version.name}-predictor' is longer than 63 characters; "
                    f"keep model and version names within {MAX_MODEL_PLUS_VERSION} "
                    "characters together",
                )
            )
        if version.resources is not None:
            problems += _gpu_in_resources(f"{path}.resources", version.resources)
    if (spec.registry is None) == (not spec.versions):
        problems.append(
            Problem("spec.versions", "set exactly one of spec.versions or spec.registry")
        )
    room = MAX_MODEL_PLUS_VERSION - REGISTRY_VERSION_ROOM
    if spec.registry is not None and len(name) > room:
        problems.append(
            Problem(
                "metadata.name",
                f"with spec.registry versions are named v<number>: keep the name within "
                f"{room} characters",
            )
        )
    if spec.registry is not None and spec.rollout.target is not None:
        problems.append(
            Problem(
                "spec.rollout.target",
                "with spec.registry the alias names the target: remove rollout.target",
            )
        )
    known = ", ".join(v.name for v in spec.versions)
    target = spec.rollout.target if spec.registry is None else None
    if target is not None and spec.version(target) is None:
        problems.append(Problem("spec.rollout.target", f"names no version; known: {known}"))
    if target is None and len(spec.versions) > 1:
        problems.append(
            Problem(
                "spec.rollout.target",
                f"required when there is more than one version; known: {known}",
            )
        )
    weights = spec.rollout.step_weights
    if any(b <= a for a, b in pairwise(weights)):
        problems.append(
            Problem("spec.rollout.stepWeights", f"must be strictly increasing (got {weights})")
        )
    scaling = spec.autoscaling
    if scaling.min_replicas > scaling.max_replicas:
        problems.append(
            Problem(
                "spec.autoscaling.minReplicas",
                f"{scaling.min_replicas} exceeds maxReplicas {scaling.max_replicas}",
            )
        )
    for index, metric in enumerate(scaling.metrics):
        path = f"spec.autoscaling.metrics[{index}]"
        if metric.type != "pods" and metric.average_utilization is None:
            problems.append(Problem(path, f"a {metric.type} metric needs averageUtilization"))
        if metric.type == "pods" and (metric.metric_name is None or metric.average_value is None):
            problems.append(Problem(path, "a pods metric needs metricName and averageValue"))
    problems += _gpu_in_resources("spec.resources", spec.resources)
    if spec.rollout.analysis is not None:
        problems += _analysis_problems(spec.rollout.analysis)
    problems += _strategy_problems(spec.rollout)
    problems += _serving_problems(spec)
    if spec.serving.deployment_mode == "ModelMesh":
        problems += _model_mesh_problems(spec)
        stable = stable_name(name, spec.served_model_name)
        if any(inference_service_name(name, v.name) == stable for v in spec.versions):
            problems.append(
                Problem(
                    "spec.servedModelName",
                    f"{stable!r} is also a version's InferenceService name; the stable name "
                    "needs one of its own: choose another served name",
                )
            )
    problems += _knative_problems(name, spec)
    for key in spec.serving.labels:
        if key in RESERVED_LABEL_KEYS or key.startswith(RESERVED_LABEL_PREFIX):
            problems.append(
                Problem(
                    f"spec.serving.labels.{key}",
                    "is set by modelpilot or KServe; choose another label key",
                )
            )
    return problems


def _serving_problems(spec: ManagedModelSpec) -> list[Problem]:
    """What the apiserver would refuse in a child only after the fact (the CRD cannot
    check a map's keys within CEL's cost budget), or KServe would never get ready on."""
    problems = []
    keyed = [("labels", spec.serving.labels), ("nodeSelector", spec.serving.node_selector)]
    for field, mapping in keyed:
        for key in mapping:
            if len(key.rsplit("/", 1)[-1]) > 63 or not re.match(LABEL_KEY, key):
                problems.append(
                    Problem(
                        f"spec.serving.{field}.{key}",
                        "is not a valid label key: an optional DNS prefix and '/', then up "
                        "to 63 letters, digits, '-', '_' or '.', starting and ending with a "
                        "letter or digit",
                    )
                )
    strategy = (spec.serving.deployment_strategy or {}).get("type")
    if strategy is not None and strategy not in ("RollingUpdate", "Recreate"):
        problems.append(
            Problem(
                "spec.serving.deploymentStrategy.type",
                f"{strategy!r} is not a Deployment strategy: use RollingUpdate or Recreate",
            )
        )
    return problems


# Knative names a revision `<model>-predictor-00001`, a label value: at most 63.
MAX_KNATIVE_MODEL_NAME = 63 - len("-predictor-00001")


def _knative_problems(name: str, spec: ManagedModelSpec) -> list[Problem]:
    """Knative mode's rules (the CRD's KNATIVE_RULES), and the traffic rule of the others."""
    knative = spec.serving.deployment_mode == "Knative"
    scaling, rollout = spec.autoscaling, spec.rollout
    problems = []
    if spec.traffic is None and not knative:
        problems.append(Problem("spec.traffic", "required: the Gateway the HTTPRoute attaches to"))
    if not knative:
        if scaling.min_replicas < 1:
            problems.append(
                Problem(
                    "spec.autoscaling.minReplicas",
                    "must be at least 1: an HPA cannot scale to zero (0, scale to zero, "
                    "needs deploymentMode Knative)",
                )
            )
        for field in ("scale_metric", "scale_target"):
            if getattr(scaling, field) is not None:
                problems.append(
                    Problem(
                        f"spec.autoscaling.{_camel(field)}",
                        "is Knative's autoscaler's: set deploymentMode Knative, or use "
                        "autoscaling.metrics (an HPA's)",
                    )
                )
        for index, metric in enumerate(rollout.analysis.metrics if rollout.analysis else []):
            if "revision" in PLACEHOLDER.findall(metric.query or ""):
                problems.append(
                    Problem(
                        f"spec.rollout.analysis.metrics[{index}].query",
                        "the {{ revision }} placeholder names Knative revisions: only in "
                        "deploymentMode Knative; use {{ service }} or {{ inference_service }}",
                    )
                )
        return problems
    if spec.traffic is not None:
        problems.append(
            Problem(
                "spec.traffic",
                "Knative mode is served at its InferenceService's URL by KServe's ingress, "
                "with no HTTPRoute: remove it",
            )
        )
    if scaling.behavior is not None:
        problems.append(
            Problem("spec.autoscaling.behavior", "is an HPA's; Knative mode has no HPA: remove it")
        )
    if rollout.strategy != "Canary":
        problems.append(
            Problem(
                "spec.rollout.strategy",
                "Knative mode splits traffic between revisions by KServe's "
                "canaryTrafficPercent, by weight only: use Canary",
            )
        )
    if rollout.capacity != "Surge":
        problems.append(
            Problem(
                "spec.rollout.capacity",
                "Knative's autoscaler sizes each revision: Shared does not apply; use Surge",
            )
        )
    if len(name) > MAX_KNATIVE_MODEL_NAME:
        problems.append(
            Problem(
                "metadata.name",
                f"Knative names the model's revisions '{name}-predictor-00001', longer than "
                f"63 characters: keep the name within {MAX_KNATIVE_MODEL_NAME}",
            )
        )
    return problems


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def _model_mesh_problems(spec: ManagedModelSpec) -> list[Problem]:
    """ModelMesh mode's rules (the CRD's MODEL_MESH_RULES), each on its own field."""
    problems = []
    if spec.gpu is not None:
        problems.append(
            Problem(
                "spec.gpu",
                "is for Standard mode: in ModelMesh mode the models share the "
                "ServingRuntime's pods; request GPUs in the ServingRuntime",
            )
        )
    if "autoscaling" in spec.model_fields_set:
        problems.append(
            Problem(
                "spec.autoscaling",
                "is for Standard mode: ModelMesh scales model copies itself; remove it",
            )
        )
    sized = ["spec.resources"] if "resources" in spec.model_fields_set else []
    sized += [f"spec.versions[{i}].resources" for i, v in enumerate(spec.versions) if v.resources]
    for path in sized:
        problems.append(
            Problem(
                path,
                "is for Standard mode: in ModelMesh mode the ServingRuntime sizes the "
                "shared pods; remove it",
            )
        )
    if spec.protocol_version not in (None, "v2"):
        problems.append(
            Problem(
                "spec.protocolVersion",
                "ModelMesh's REST proxy speaks the v2 protocol only: set v2 or leave it unset",
            )
        )
    if spec.rollout.capacity != "Surge":
        problems.append(
            Problem(
                "spec.rollout.capacity",
                "Shared shrinks a version's own pods; ModelMesh versions share the "
                "runtime's pods: use Surge",
            )
        )
    analysis = spec.rollout.analysis
    for index, metric in enumerate(analysis.metrics if analysis is not None else []):
        if metric.template is not None:
            problems.append(
                Problem(
                    f"spec.rollout.analysis.metrics[{index}].template",
                    "templates read a version's own Service's metrics; in ModelMesh mode "
                    "every version sits behind modelmesh-serving: write a query instead "
                    "(ModelMesh's metrics name the model by {{ inference_service }})",
                )
            )
    if spec.rollout.strategy == "Shadow":
        problems.append(
            Problem(
                "spec.rollout.strategy",
                "Shadow mirrors requests to a version's own Service; in ModelMesh mode every "
                "version sits behind modelmesh-serving: choose Canary, ABTest or BlueGreen",
            )
        )
    served = spec.served_model_name
    if served is not None and not (len(served) <= 63 and re.match(DNS1123_LABEL, served)):
        problems.append(
            Problem(
                "spec.servedModelName",
                "in ModelMesh mode it names an InferenceService (the model's stable name): "
                "use a DNS-1123 label of at most 63 characters",
            )
        )
    return problems


def _strategy_problems(rollout: Rollout) -> list[Problem]:
    problems = []
    if rollout.strategy == "ABTest" and not rollout.match:
        problems.append(
            Problem(
                "spec.rollout.match",
                "strategy ABTest needs match: the requests that go to the candidate",
            )
        )
    if rollout.then is not None and rollout.strategy != "Shadow":
        problems.append(
            Problem(
                "spec.rollout.then",
                "then is for strategy Shadow: what follows the shadow phase",
            )
        )
    if rollout.strategy == "BlueGreen" and rollout.capacity == "Shared":
        problems.append(
            Problem(
                "spec.rollout.capacity",
                "strategy BlueGreen warms the candidate beside the stable version: it needs "
                "capacity Surge, not Shared",
            )
        )
    for index, match in enumerate(rollout.match):
        path = f"spec.rollout.match[{index}]"
        if not match.headers and not match.query_params:
            problems.append(Problem(path, "a match needs at least one header or query parameter"))
        fields: list[tuple[str, Sequence[HeaderMatch | QueryParamMatch]]] = [
            ("headers", match.headers),
            ("queryParams", match.query_params),
        ]
        for field, items in fields:
            for position, item in enumerate(items):
                if item.type != "RegularExpression":
                    continue
                try:
                    re.compile(item.value)
                except re.error as err:
                    problems.append(
                        Problem(
                            f"{path}.{field}[{position}].value",
                            f"{item.value!r} is not a valid regular expression: {err}",
                        )
                    )
    return problems


def _analysis_problems(analysis: Analysis) -> list[Problem]:
    problems = []
    for index, metric in enumerate(analysis.metrics):
        path = f"spec.rollout.analysis.metrics[{index}]"
        if (metric.template is None) == (metric.query is None):
            problems.append(Problem(path, "set exactly one of template or query"))
        bounds = (metric.min, metric.max, metric.min_ratio_to_stable, metric.max_ratio_to_stable)
        if all(bound is None for bound in bounds):
            problems.append(
                Problem(
                    path, "set at least one bound: min, max, minRatioToStable or maxRatioToStable"
                )
            )
        unknown = unknown_placeholders(metric.query or "")
        if unknown:
            problems.append(
                Problem(
                    f"{path}.query",
                    f"unknown placeholder {', '.join(unknown)}; use {', '.join(PLACEHOLDERS)}",
                )
            )
    names = [m.name for m in analysis.metrics]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(
            Problem("spec.rollout.analysis.metrics", f"{name!r} repeats; names must be unique")
        )
    return problems


def _gpu_in_resources(path: str, resources: SpecModel) -> list[Problem]:
    problems = []
    for field in ("requests", "limits"):
        for key in getattr(resources, field):
            if any(hint in key for hint in GPU_RESOURCE_HINTS):
                problems.append(
                    Problem(
                        f"{path}.{field}.{key}",
                        "GPUs are set in spec.gpu (count, resourceName), not in resources",
                    )
                )
    return problems


def _from_pydantic(error: Any) -> Problem:
    loc = error["loc"]
    path = _path(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_fields(loc[:-1])
        hint = f"; known fields: {', '.join(known)}" if known else ""
        return Problem(path, f"unknown field{hint}")
    if kind == "missing":
        return Problem(path, "required")
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        message = PATTERN_MESSAGES.get(pattern, f"must match {pattern}")
    return Problem(path, message)


# What each pattern of the spec means, for people (pydantic would print the regex).
PATTERN_MESSAGES = {
    DNS1123_LABEL: "must be a DNS-1123 label: lower-case letters, digits and '-'",
    DURATION: "must be a duration such as 30s, 10m or 1h30m",
    NO_BLANKS: "must not be empty or contain blanks",
    SERVED_NAME: "must be letters, digits, '.', '_' or '-', starting and ending with a "
    "letter or digit: it is a path segment of every request",
    HTTP_URL: "must be an http:// or https:// URL",
    HTTP_URL_WITH_HOST: "must be an http:// or https:// URL with a host",
    HEADER_NAME: "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
    DNS1123_SUBDOMAIN: "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'",
    HOSTNAME: "must be a lower-case DNS name (a leading '*.' allowed), as Gateway API "
    "hostnames are; write unicode names in their xn-- (punycode) form",
    QUANTITY: "must be a non-negative Kubernetes quantity such as 500m, 2 or 8Gi",
    ENV_NAME: "must be printable ASCII without '='",
}


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part) in ("int", "str") or "[" in str(part):
            continue  # union branch names pydantic adds; not part of the user's path
        else:
            out += f".{part}" if out else str(part)
    return out


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """The camelCase fields allowed at a location, to suggest the right spelling."""
    current: type[BaseModel] | None = ManagedModel
    for part in loc:
        if current is None or isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if current is None:
        return []
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
