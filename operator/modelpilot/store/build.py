"""Train the sample models and write them into the store.

    python -m modelpilot.store.build [--root DIR]      (or `modelpilot store build`)

Each version is written to a temporary directory next to its place and then swapped in,
so a reader never sees half a version. Only this module's imports (PyYAML, scikit-learn,
joblib) are needed, so it also runs inside KServe's sklearn server image, which makes
artifacts that server's scikit-learn can surely load.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from modelpilot.store.card import CARD_FILE, ModelCard, StoreError, write_card
from modelpilot.store.layout import ModelStore, sha256_of
from modelpilot.store.train import Trained, train_iris

ARTIFACT = "model.joblib"
FORMAT = "sklearn"  # KServe's modelFormat name for scikit-learn artifacts


def _write_version(store: ModelStore, model: str, trained: Trained, framework: str) -> ModelCard:
    import joblib

    target = store.version_dir(model, trained.recipe.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    joblib.dump(trained.estimator, partial / ARTIFACT)
    card = ModelCard(
        name=model,
        version=trained.recipe.version,
        stage=trained.recipe.stage,
        format=FORMAT,
        artifact=ARTIFACT,
        sha256=sha256_of(partial / ARTIFACT),
        framework="scikit-learn",
        framework_version=framework,
        algorithm=trained.recipe.algorithm,
        metrics=trained.metrics,
        features=trained.features,
        classes=trained.classes,
        dataset=trained.dataset,
        description=trained.recipe.description,
    )
    write_card(partial / CARD_FILE, card)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.replace(old)
        partial.replace(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.replace(target)
    return card


def build(root: Path | str | None = None, log: Callable[[str], None] = print) -> list[ModelCard]:
    """Train iris v1 and v2 and write them; returns their cards."""
    try:
        import sklearn
    except ImportError:
        raise StoreError(
            "scikit-learn is not installed: pip install 'modelpilot[serve]' "
            "(or scikit-learn and joblib)"
        ) from None
    store = ModelStore(root)
    cards = []
    for trained in train_iris():
        card = _write_version(store, "iris", trained, sklearn.__version__)
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in card.metrics.items())
        log(f"iris/{card.version}: {card.algorithm} ({card.stage}), {metrics}")
        cards.append(card)
    log(f"wrote {len(cards)} versions to {store.root}")
    return cards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelpilot.store.build", description=__doc__)
    parser.add_argument("--root", help="store directory (default: the checkout's model-store/)")
    args = parser.parse_args(argv)
    try:
        build(args.root)
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
