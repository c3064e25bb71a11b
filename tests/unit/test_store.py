"""The model store: cards, layout, the deterministic builder and `modelpilot store`.

Building needs scikit-learn (the `serve` extra). Without it these tests skip, except
under CI=true, where a missing package is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelpilot.cli import main as cli
from modelpilot.store import CARD_FILE, ModelCard, ModelStore, StoreError
from modelpilot.store.card import read_card, write_card

# A clear setosa, a borderline flower, a clear virginica.
PROBE = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]


def _need_sklearn() -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if importlib.util.find_spec("sklearn") is None and not in_ci:
        pytest.skip("needs scikit-learn (pip install -e '.[serve]')")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_sklearn()
    root = tmp_path_factory.mktemp("store")
    assert cli(["store", "build", "--root", str(root)]) == 0
    return root


def card_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "iris",
        "version": "v1",
        "stage": "Production",
        "format": "sklearn",
        "artifact": "model.joblib",
        "sha256": "0" * 64,
        "framework": {"name": "scikit-learn", "version": "1.5.2"},
        "algorithm": "LogisticRegression",
        "metrics": {"accuracy": 0.95},
    }
    data.update(overrides)
    return data


# --- cards (no scikit-learn needed) ---------------------------------------------------


def test_card_round_trips(tmp_path: Path) -> None:
    card = ModelCard.from_dict(card_data(features=["a", "b"], classes=["x"]), "here")
    write_card(tmp_path / CARD_FILE, card)
    assert read_card(tmp_path / CARD_FILE) == card
    assert yaml.safe_load((tmp_path / CARD_FILE).read_text())["framework"] == {
        "name": "scikit-learn",
        "version": "1.5.2",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stage": "Live"}, "stage 'Live' is not one of Staging, Production, Archived"),
        ({"sha256": None, "format": ""}, "missing format, sha256"),
        ({"framework": {}}, "missing framework.name"),
        ({"metrics": {"accuracy": "high"}}, "metrics must map names to numbers"),
        ({"metrics": {"ok": True}}, "metrics must map names to numbers"),
    ],
)
def test_card_rejects(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(StoreError, match=r"^model\.yaml: ") as caught:
        ModelCard.from_dict(card_data(**overrides), "model.yaml")
    assert message in str(caught.value)


def test_card_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / CARD_FILE
    path.write_text("- just\n- a list\n")
    with pytest.raises(StoreError, match="not a mapping"):
        read_card(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(StoreError, match="not YAML"):
        read_card(path)


def test_store_lists_only_directories_with_cards(tmp_path: Path) -> None:
    (tmp_path / "empty" / "v1").mkdir(parents=True)
    for model, version in (("iris", "v2"), ("iris", "v1"), ("digits", "v1")):
        directory = tmp_path / model / version
        directory.mkdir(parents=True)
        write_card(directory / CARD_FILE, ModelCard.from_dict(card_data(version=version), "t"))
    store = ModelStore(tmp_path)
    assert store.models() == ["digits", "iris"]
    assert [v.directory.name for v in store.versions("iris")] == ["v1", "v2"]
    assert ModelStore(tmp_path / "absent").models() == []


def test_get_names_what_exists(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"the store is empty: run `modelpilot store build`"):
        ModelStore(tmp_path).get("iris", "v1")
    directory = tmp_path / "iris" / "v1"
    directory.mkdir(parents=True)
    write_card(directory / CARD_FILE, ModelCard.from_dict(card_data(), "t"))
    with pytest.raises(StoreError, match=r"no iris/v3 in .*; iris has v1$"):
        ModelStore(tmp_path).get("iris", "v3")
    with pytest.raises(StoreError, match=r"no wine/v1 in .*; the store has iris$"):
        ModelStore(tmp_path).get("wine", "v1")


def test_get_refuses_a_card_in_the_wrong_place(tmp_path: Path) -> None:
    directory = tmp_path / "iris" / "v2"
    directory.mkdir(parents=True)
    write_card(directory / CARD_FILE, ModelCard.from_dict(card_data(version="v1"), "t"))
    with pytest.raises(StoreError, match="says iris/v1, but lies in iris/v2"):
        ModelStore(tmp_path).get("iris", "v2", verify=False)


def test_store_commands_need_no_heavy_imports() -> None:
    # The CLI, the store, the local server and the demo must not drag in kserve or sklearn.
    code = (
        "import sys, modelpilot.cli, modelpilot.store, modelpilot_dev.local_server,"
        " modelpilot_dev.demo;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kserve', 'sklearn', 'joblib'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --- the builder ----------------------------------------------------------------------


def test_builder_needs_only_what_a_model_server_image_has(tmp_path: Path) -> None:
    # The kind e2e test runs the builder inside KServe's sklearn server image, with only
    # operator/ on PYTHONPATH: PyYAML, numpy, scikit-learn and joblib, nothing else.
    _need_sklearn()
    code = (
        "import sys; from modelpilot.store.build import main; assert main(sys.argv[1:]) == 0;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pydantic', 'kubernetes', 'jinja2', 'kopf', 'kserve'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris"]


def test_build_writes_both_versions_with_cards(built: Path) -> None:
    import sklearn

    versions = {v.card.version: v for v in ModelStore(built).versions("iris")}
    assert sorted(versions) == ["v1", "v2", "v3", "v4"]
    v1, v2, v3 = versions["v1"].card, versions["v2"].card, versions["v3"].card
    assert (v3.stage, v3.metrics["error_rate"]) == ("Archived", 0.3333)  # every setosa fails
    assert "BROKEN on purpose" in v3.description
    assert (v1.algorithm, v1.stage) == ("LogisticRegression", "Production")
    assert (v2.algorithm, v2.stage) == ("RandomForestClassifier", "Staging")
    for card in (v1, v2):
        assert card.format == "sklearn"
        assert (card.framework, card.framework_version) == ("scikit-learn", sklearn.__version__)
        assert card.classes == ["setosa", "versicolor", "virginica"]
        assert len(card.features) == 4
        assert card.dataset["train"] + card.dataset["test"] == 150
        assert card.metrics["accuracy"] >= 0.9
        assert 0 < card.metrics["f1_macro"] <= 1
    # The artifact is the only model file KServe's sklearn server would find there.
    assert sorted(p.name for p in versions["v1"].directory.iterdir()) == [
        "model.joblib",
        "model.yaml",
    ]


def test_artifacts_are_the_models_their_cards_describe(built: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    from modelpilot.store.train import SPLIT_SEED, TEST_FRACTION

    iris = load_iris()
    _, x_test, _, y_test = train_test_split(
        iris.data,
        iris.target,
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=iris.target,
    )
    for stored in ModelStore(built).versions("iris"):
        estimator = joblib.load(stored.artifact_path)
        if stored.card.version == "v3":
            # the broken one: its classifier behind a step that fails on small petals
            assert type(estimator[-1]).__name__ == stored.card.algorithm
            rows = np.array(PROBE)  # as the model server passes them
            with pytest.raises(ValueError, match="NaN"), np.errstate(invalid="ignore"):
                estimator.predict(rows[:1])  # a setosa
            assert len(estimator.predict(rows[1:])) == 2  # the others are answered
            continue
        assert type(estimator).__name__ == stored.card.algorithm
        accuracy = accuracy_score(y_test, estimator.predict(x_test))
        assert round(float(accuracy), 4) == stored.card.metrics["accuracy"]
        first, _, last = estimator.predict(PROBE).tolist()
        assert (first, last) == (0, 2)  # setosa, virginica


def test_build_is_deterministic_and_replaces_in_place(built: Path, tmp_path: Path) -> None:
    before = {p.relative_to(built): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    assert cli(["store", "build", "--root", str(tmp_path)]) == 0
    again = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert again == before
    # A rebuild over an existing store swaps each version whole and leaves nothing behind.
    assert cli(["store", "build", "--root", str(tmp_path)]) == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "iris",
        "iris/v1",
        "iris/v1/model.joblib",
        "iris/v1/model.yaml",
        "iris/v2",
        "iris/v2/model.joblib",
        "iris/v2/model.yaml",
        "iris/v3",
        "iris/v3/model.joblib",
        "iris/v3/model.yaml",
        "iris/v4",
        "iris/v4/model.joblib",
        "iris/v4/model.yaml",
    ]


def test_get_catches_an_artifact_that_changed(built: Path, tmp_path: Path) -> None:
    assert cli(["store", "build", "--root", str(tmp_path)]) == 0
    store = ModelStore(tmp_path)
    assert store.get("iris", "v2").card.version == "v2"
    with (tmp_path / "iris" / "v2" / "model.joblib").open("ab") as artifact:
        artifact.write(b"tampered")
    with pytest.raises(StoreError, match=r"iris/v2: model.joblib has sha256 .*rebuild"):
        store.get("iris", "v2")
    (tmp_path / "iris" / "v1" / "model.joblib").unlink()
    with pytest.raises(StoreError, match=r"artifact model\.joblib is missing"):
        store.get("iris", "v1")


# --- the CLI --------------------------------------------------------------------------


def test_store_list(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["store", "list", "--root", str(built)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "MODEL",
        "VERSION",
        "STAGE",
        "FORMAT",
        "FRAMEWORK",
        "ALGORITHM",
        "ACCURACY",
        "ERROR_RATE",
        "F1_MACRO",
    ]
    cards = {v.card.version: v.card for v in ModelStore(built).versions("iris")}
    for line, version in zip(lines[1:], ("v1", "v2", "v3", "v4"), strict=True):
        card = cards[version]
        cells = line.split()
        assert cells[:4] == ["iris", version, card.stage, "sklearn"]
        assert cells[-3:] == [
            f"{card.metrics['accuracy']:.4f}",
            f"{card.metrics['error_rate']:.4f}" if version == "v3" else "-",
            f"{card.metrics['f1_macro']:.4f}",
        ]


def test_store_list_of_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["store", "list", "--root", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "run `modelpilot store build`" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["iris", "v9"], "error: no iris/v9 in"),
        (["iris", "v1", "--port", "70000"], "error: --port 70000 is not a TCP port"),
    ],
)
def test_store_serve_refuses_bad_input_before_loading_kserve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli(["store", "serve", "--root", str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err.startswith(message)
