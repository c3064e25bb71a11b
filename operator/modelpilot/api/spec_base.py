"""What every part of the spec shares: the model base class, CEL rules, durations."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Go-style durations as Kubernetes users write them: "30s", "10m", "1h30m".
DURATION = r"^([0-9]+(ms|s|m|h))+$"
Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]
NO_BLANKS = r"^\S+$"
SERVED_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
HTTP_URL = r"^https?://"
HTTP_URL_WITH_HOST = r"^https?://[^\s/]+"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Gateway API's Hostname: lowercase DNS names, a leading wildcard label allowed.
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A label (or node selector) key: an optional DNS subdomain prefix and a name.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
# A non-negative Kubernetes quantity: "500m", "8Gi", "1e3", "2".
QUANTITY = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Printable ASCII but '=': what Kubernetes accepts as an environment variable name.
ENV_NAME = r"^[ -<>-~]+$"
INT32_MAX = 2**31 - 1


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL rules for the CRD, as `json_schema_extra`."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]}


class SpecModel(BaseModel):
    """Base: camelCase in YAML, unknown fields refused, immutable once parsed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
