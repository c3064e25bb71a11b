"""`model.yaml`: what one stored model version is, how it was made and how well it did.

Plain data, read and written with PyYAML only, so that the builder also runs inside a
model-server image (which has PyYAML, numpy and scikit-learn but not modelpilot's other
dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CARD_FILE = "model.yaml"
STAGES = ("Staging", "Production", "Archived")


class StoreError(Exception):
    """A store that is missing, malformed or lacks what was asked for."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    stage: str
    format: str  # the KServe modelFormat name, e.g. sklearn
    artifact: str  # file name inside the version directory
    sha256: str
    framework: str
    framework_version: str
    algorithm: str
    metrics: dict[str, float] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise StoreError(f"stage {self.stage!r} is not one of {', '.join(STAGES)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "stage": self.stage,
            "description": self.description,
            "format": self.format,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "framework": {"name": self.framework, "version": self.framework_version},
            "algorithm": self.algorithm,
            "metrics": dict(self.metrics),
            "dataset": dict(self.dataset),
            "features": list(self.features),
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelCard:
        if not isinstance(data, dict):
            raise StoreError(f"{where}: not a mapping")
        framework = data.get("framework") or {}
        required = ("name", "version", "stage", "format", "artifact", "sha256", "algorithm")
        lacking = [key for key in required if not data.get(key)]
        if not isinstance(framework, dict) or not framework.get("name"):
            lacking.append("framework.name")
        if lacking:
            raise StoreError(f"{where}: missing {', '.join(lacking)}")
        metrics = data.get("metrics") or {}
        if not isinstance(metrics, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise StoreError(f"{where}: metrics must map names to numbers")
        try:
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                stage=str(data["stage"]),
                format=str(data["format"]),
                artifact=str(data["artifact"]),
                sha256=str(data["sha256"]),
                framework=str(framework["name"]),
                framework_version=str(framework.get("version", "")),
                algorithm=str(data["algorithm"]),
                metrics={str(k): float(v) for k, v in metrics.items()},
                features=[str(f) for f in data.get("features") or []],
                classes=[str(c) for c in data.get("classes") or []],
                dataset=dict(data.get("dataset") or {}),
                description=str(data.get("description") or ""),
            )
        except StoreError as err:
            raise StoreError(f"{where}: {err}") from None


def read_card(path: Path) -> ModelCard:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise StoreError(f"cannot read {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise StoreError(f"{path}: not YAML: {err}") from None
    return ModelCard.from_dict(data, str(path))


def write_card(path: Path, card: ModelCard) -> None:
    path.write_text(yaml.safe_dump(card.to_dict(), sort_keys=False), encoding="utf-8")
