"""The sample models: iris (scikit-learn's bundled copy, no download) as two versions.

v1 is a logistic regression, v2 a random forest. Training is deterministic: a fixed,
stratified train/test split and fixed seeds, so the same scikit-learn and numpy produce
the same artifacts byte for byte. scikit-learn is imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPLIT_SEED = 42
TEST_FRACTION = 0.3


@dataclass(frozen=True)
class Recipe:
    version: str
    stage: str
    algorithm: str
    params: dict[str, Any]
    description: str


IRIS_RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "v1",
        "Production",
        "LogisticRegression",
        {"max_iter": 1000},
        "logistic regression on the iris measurements",
    ),
    Recipe(
        "v2",
        "Staging",
        "RandomForestClassifier",
        {"n_estimators": 50, "max_depth": 4, "random_state": 0},
        "random forest on the iris measurements, the candidate",
    ),
)


@dataclass(frozen=True)
class Trained:
    recipe: Recipe
    estimator: Any
    metrics: dict[str, float]
    features: list[str]
    classes: list[str]
    dataset: dict[str, Any]


def _estimator(recipe: Recipe) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    kinds: dict[str, Any] = {
        "LogisticRegression": LogisticRegression,
        "RandomForestClassifier": RandomForestClassifier,
    }
    return kinds[recipe.algorithm](**recipe.params)


def train_iris(recipes: tuple[Recipe, ...] = IRIS_RECIPES) -> list[Trained]:
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data,
        iris.target,
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=iris.target,
    )
    dataset = {
        "name": "iris",
        "source": "sklearn.datasets.load_iris",
        "train": len(y_train),
        "test": len(y_test),
        "split_seed": SPLIT_SEED,
    }
    trained = []
    for recipe in recipes:
        estimator = _estimator(recipe).fit(x_train, y_train)
        predicted = estimator.predict(x_test)
        metrics = {
            "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
            "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
        }
        trained.append(
            Trained(
                recipe=recipe,
                estimator=estimator,
                metrics=metrics,
                features=[str(name) for name in iris.feature_names],
                classes=[str(name) for name in iris.target_names],
                dataset=dataset,
            )
        )
    return trained
