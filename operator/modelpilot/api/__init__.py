"""The ManagedModel API: spec, status, parsing with clear problems, and the CRD."""

from modelpilot.api.model import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InvalidManagedModel,
    ManagedModel,
    Problem,
    parse_managed_model,
)
from modelpilot.api.spec import ManagedModelSpec, ModelVersion
from modelpilot.api.status import ManagedModelStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "InvalidManagedModel",
    "ManagedModel",
    "ManagedModelSpec",
    "ManagedModelStatus",
    "ModelVersion",
    "Problem",
    "parse_managed_model",
]
