"""The sample models: iris (scikit-learn's bundled copy, no download) in four versions.

v1 is a logistic regression, v2 a random forest, v3 a broken candidate: a logistic
regression behind a feature step that turns a petal width under 1 cm into NaN, which
the classifier refuses at prediction time, so the model server answers 500 for about
a third of real inputs (every setosa). v4 is a slow one: a forest of 1,000 trees, as
accurate as v2 and about 25 times slower to answer. Their faults are the models' own,
as a bad release's would be; canary analysis must catch them. Training is deterministic: a fixed,
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
    broken: bool = False  # behind the NaN-making feature step (see the module docstring)


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
    Recipe(
        "v3",
        "Archived",
        "LogisticRegression",
        {"max_iter": 1000},
        "BROKEN on purpose: fails on petal widths under 1 cm (about a third of inputs), "
        "for canary analysis to catch",
        broken=True,
    ),
    Recipe(
        "v4",
        "Archived",
        "RandomForestClassifier",
        {"n_estimators": 1000, "max_depth": 4, "random_state": 0},
        "SLOW on purpose: a 1,000-tree forest, as accurate as v2 and about 25 ms a "
        "prediction, for latency analysis to catch",
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


def _fit(recipe: Recipe, x_train: Any, y_train: Any) -> Any:
    if not recipe.broken:
        return _estimator(recipe).fit(x_train, y_train)
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    # arccosh is NaN below 1: petal width (column 3) under 1 cm becomes NaN.
    guard = ColumnTransformer(
        [("petal_width", FunctionTransformer(np.arccosh), [3])], remainder="passthrough"
    )
    with np.errstate(invalid="ignore"):
        features = np.nan_to_num(guard.fit_transform(x_train))
    classifier = _estimator(recipe).fit(features, y_train)
    return Pipeline([("guard", guard), ("classifier", classifier)])


def _evaluate(estimator: Any, x_test: Any, y_test: Any) -> dict[str, float]:
    """Row by row, so a model that fails on some inputs is measured, not crashed: a
    failed row counts as wrong and in error_rate."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    predicted, failed = [], 0
    for row in x_test:
        try:
            with np.errstate(invalid="ignore"):  # the broken version's NaN, counted here
                predicted.append(int(estimator.predict(row.reshape(1, -1))[0]))
        except ValueError:
            predicted.append(-1)
            failed += 1
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
        "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
    }
    if failed:
        metrics["error_rate"] = round(failed / len(y_test), 4)
    return metrics


def train_iris(recipes: tuple[Recipe, ...] = IRIS_RECIPES) -> list[Trained]:
    from sklearn.datasets import load_iris
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
        estimator = _fit(recipe, x_train, y_train)
        metrics = _evaluate(estimator, x_test, y_test)
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
