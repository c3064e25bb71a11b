"""The CLI's exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelpilot.cli import main
from modelpilot_dev.checkout import checkout_root

ROOT = checkout_root()
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_samples_validate_and_render(capsys: pytest.CaptureFixture[str], sample: Path) -> None:
    code, out, err = run(capsys, "validate", "-f", str(sample))
    assert code == 0 and "is valid" in out and err == ""
    code, out, err = run(capsys, "render", "-f", str(sample))
    if "registry" in yaml.safe_load(sample.read_text())["spec"]:
        # Its versions exist only once the operator polled the registry.
        assert code == 2 and "takes its versions from a model registry" in err
        return
    assert code == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    spec = yaml.safe_load(sample.read_text())["spec"]
    versions = len(spec["versions"])
    mode = spec.get("serving", {}).get("deploymentMode")
    if mode == "Knative":
        # One InferenceService for the model; Knative scales it; KServe's ingress serves it.
        assert kinds == ["InferenceService"]
        return
    if mode == "ModelMesh":
        # One more for the stable name; ModelMesh scales the shared pods, no HPA.
        assert kinds.count("InferenceService") == versions + 1
        assert kinds.count("HorizontalPodAutoscaler") == 0
    else:
        assert kinds.count("InferenceService") == versions
        assert kinds.count("HorizontalPodAutoscaler") == versions
    assert kinds.count("HTTPRoute") == 1


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 5


def test_render_canary_split(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "render",
        "-f",
        str(ROOT / "manifests/samples/sklearn-iris.yaml"),
        "--weights",
        "v1=90,v2=10",
    )
    assert code == 0
    route = next(d for d in yaml.safe_load_all(out) if d["kind"] == "HTTPRoute")
    assert [b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]] == [90, 10]


def test_render_is_byte_identical(capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(ROOT / "manifests/samples/huggingface-llm-gpu.yaml")
    assert run(capsys, "render", "-f", sample) == run(capsys, "render", "-f", sample)


def test_render_warnings_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "render", "-f", str(ROOT / "manifests/samples/torchserve.yaml"))
    assert code == 0 and out.startswith("---\n")
    assert err.startswith("warning: mnist: spec.versions[0] (v1): runtime kserve-torchserve")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return str(path)


def sample_with(tmp_path: Path, old: str, new: str) -> str:
    text = (ROOT / "manifests/samples/sklearn-iris.yaml").read_text()
    assert old in text
    return write(tmp_path, text.replace(old, new))


def test_broken_rule_exits_2_with_field_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = sample_with(tmp_path, "target: v2", "target: v3")
    for command in ("validate", "render"):
        code, out, err = run(capsys, command, "-f", path)
        assert (code, out) == (2, "")
        assert err == f"error: {path}: spec.rollout.target: names no version; known: v1, v2\n"


def test_unknown_field_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = sample_with(tmp_path, "interval: 60s", "intervall: 60s")
    code, _, err = run(capsys, "validate", "-f", path)
    assert code == 2
    assert err.startswith(f"error: {path}: spec.rollout.intervall: unknown field; known fields:")


def test_wrong_type_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = sample_with(tmp_path, "maxReplicas: 3", "maxReplicas: many")
    code, _, err = run(capsys, "validate", "-f", path)
    assert code == 2
    assert err == (
        f"error: {path}: spec.autoscaling.maxReplicas: Input should be a valid "
        "integer, unable to parse string as an integer\n"
    )


def test_unreadable_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "validate", "-f", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert err == f"error: cannot read {tmp_path / 'missing.yaml'}: No such file or directory\n"


def test_not_yaml_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "spec: [unclosed\n")
    code, _, err = run(capsys, "render", "-f", path)
    assert code == 2
    assert err.startswith(f"error: {path} is not valid YAML (line 2, column 1):")
    assert "Traceback" not in err


def test_empty_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing\n")
    assert run(capsys, "validate", "-f", path) == (2, "", f"error: {path} holds no document\n")


def test_bad_weights_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "render",
        "-f",
        str(ROOT / "manifests/samples/sklearn-iris.yaml"),
        "--weights",
        "v1=50,v2=10",
    )
    assert code == 2 and err == "error: --weights: must sum to 100 (got 60)\n"


def test_unservable_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = sample_with(tmp_path, "name: sklearn", "name: caffe")
    code, _, err = run(capsys, "render", "-f", path)
    assert code == 2
    assert err.splitlines()[0] == (
        f"error: {path}: spec.versions[0] (v1): no serving runtime serves format caffe on "
        "protocol v1"
    )


def test_multi_document_problems_name_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = (ROOT / "manifests/samples/cpu-single.yaml").read_text()
    path = write(tmp_path, good + "---\n" + good.replace("name: v1", "name: V1"))
    code, _, err = run(capsys, "validate", "-f", path)
    assert code == 2
    assert err.startswith(f"error: {path} (document 2): spec.versions[0].name: must be")


def test_crd_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "crd")
    crd = yaml.safe_load(out)
    assert code == 0 and crd["metadata"]["name"] == "managedmodels.modelpilot.io"


def test_namespace_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "render", "-f", str(ROOT / "manifests/samples/cpu-single.yaml"), "-n", "team-a"
    )
    assert code == 0
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(out)} == {"team-a"}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--shards", "2", "--shard", "2"], "--shard 2 of --shards 2"),
        (["--shards", "0"], "need --shards >= 1"),
        (["--max-concurrent-rollouts", "-1"], "must be 0 (no limit) or more"),
        (["--registry-webhook-port", "8082"], "an unsigned webhook is never accepted"),
    ],
)
def test_run_refuses_flags_that_do_not_fit_before_it_connects(argv: list[str], said: str) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["run", "--kubeconfig", "/nonexistent", *argv])
    assert said in str(refused.value)
