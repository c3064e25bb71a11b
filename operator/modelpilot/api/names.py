"""Names and labels of the children a ManagedModel owns, and the field manager its
writes go under: the contract between the renderer, the reads and the writes."""

from __future__ import annotations

import hashlib

MANAGED_BY = "app.kubernetes.io/managed-by"
MODEL_LABEL = "modelpilot.io/model"
VERSION_LABEL = "modelpilot.io/version"
FIELD_MANAGER = "modelpilot"
# Set on requests the route sends to a weighted backend (on gateways that apply it).
VERSION_HEADER = "x-modelpilot-version"


# ModelMesh mode: every model of a namespace is reached through one Service of
# ModelMesh's, by the name of its InferenceService (REST in the path, gRPC in a header).
MODEL_MESH_SERVICE = "modelmesh-serving"
MODEL_MESH_REST_PORT = 8008
# Marks the InferenceService that carries a ModelMesh model's stable name (the served
# name, with no version in it) and says which version it serves.
STABLE_NAME_LABEL = "modelpilot.io/stable-name-of"


# Knative mode: on the model's InferenceService, the version its spec carries; KServe
# copies it onto every revision (and the revision's Deployment), so a revision says
# which version it runs.
SERVES_LABEL = "modelpilot.io/serves"


def stable_name(model: str, served: str | None) -> str:
    """ModelMesh mode: the InferenceService clients of modelmesh-serving call the model
    by, with no version in its name: the served name."""
    return served or model


def knative_service_name(model: str) -> str:
    """Knative mode: the model's one InferenceService."""
    return model


def inference_service_name(model: str, version: str) -> str:
    return f"{model}-{version}"


def predictor_name(model: str, version: str) -> str:
    """KServe's Standard mode names the Deployment and Service after the predictor."""
    return f"{inference_service_name(model, version)}-predictor"


def autoscaler_name(model: str, version: str) -> str:
    return inference_service_name(model, version)


def mirror_name(model: str, version: str) -> str:
    """Traefik's mirroring TraefikService for a shadow of `version` (the stable one)."""
    return f"{inference_service_name(model, version)}-mirror"


def route_name(model: str) -> str:
    return model


def common_labels(model: str, version: str | None = None) -> dict[str, str]:
    # Deliberately not KServe's serving.kserve.io/inferenceservice + component=predictor:
    # KServe's orphan cleanup owns those.
    labels = {MANAGED_BY: "modelpilot", MODEL_LABEL: model}
    if version is not None:
        labels[VERSION_LABEL] = version
    return labels


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard that owns a model: a stable hash of namespace/name (the same in every
    process and release, unlike Python's hash()), so replicas agree without talking."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards
