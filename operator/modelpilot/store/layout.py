"""The file-based model store: `<root>/<model>/<version>/{model.yaml, <artifact>}`.

Where the store is: `--root`, else `$MODELPILOT_MODEL_STORE`, else `./model-store` (the
checkout's own store when run from the checkout, as make and the tests do).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from modelpilot.store.card import CARD_FILE, ModelCard, StoreError, read_card

ENV_ROOT = "MODELPILOT_MODEL_STORE"


def default_root() -> Path:
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env)
    return Path("model-store")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredVersion:
    card: ModelCard
    directory: Path

    @property
    def artifact_path(self) -> Path:
        return self.directory / self.card.artifact


class ModelStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def version_dir(self, model: str, version: str) -> Path:
        return self.root / model / version

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and any(entry.glob(f"*/{CARD_FILE}"))
        )

    def versions(self, model: str) -> list[StoredVersion]:
        base = self.root / model
        cards = sorted(base.glob(f"*/{CARD_FILE}")) if base.is_dir() else []
        return [StoredVersion(read_card(path), path.parent) for path in cards]

    def all_versions(self) -> list[StoredVersion]:
        return [v for model in self.models() for v in self.versions(model)]

    def get(self, model: str, version: str, *, verify: bool = True) -> StoredVersion:
        """One version, its card checked against its place and (by default) its artifact."""
        directory = self.version_dir(model, version)
        card_path = directory / CARD_FILE
        if not card_path.is_file():
            known = [v.directory.name for v in self.versions(model)]
            if known:
                hint = f"; {model} has {', '.join(known)}"
            elif self.models():
                hint = f"; the store has {', '.join(self.models())}"
            else:
                hint = "; the store is empty: run `modelpilot store build`"
            raise StoreError(f"no {model}/{version} in {self.root}{hint}")
        card = read_card(card_path)
        if (card.name, card.version) != (model, version):
            raise StoreError(
                f"{card_path}: says {card.name}/{card.version}, but lies in {model}/{version}"
            )
        stored = StoredVersion(card, directory)
        if verify:
            if not stored.artifact_path.is_file():
                raise StoreError(f"{model}/{version}: artifact {card.artifact} is missing")
            actual = sha256_of(stored.artifact_path)
            if actual != card.sha256:
                raise StoreError(
                    f"{model}/{version}: {card.artifact} has sha256 {actual[:12]}..., "
                    f"model.yaml says {card.sha256[:12]}...; rebuild with "
                    "`modelpilot store build`"
                )
        return stored
