"""`modelpilot status` text and the command defaults (no cluster needed)."""

from __future__ import annotations

from modelpilot.cli.control import default_version
from modelpilot.cli.status_view import progress_bar, render_status


def test_progress_bar_marks_steps_and_fill() -> None:
    bar = progress_bar([10, 25, 50], 25, "Progressing")
    assert bar.startswith("[###|") and bar.endswith("] 25% (step 2/3, Progressing)")
    assert bar.count("|") == 3
    assert progress_bar([10, 25, 50], 0, "Progressing").startswith("[---|")


def test_render_status() -> None:
    model = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"rollout": {"target": "v2", "stepWeights": [10, 25, 50]}},
        "status": {
            "phase": "Progressing",
            "stableVersion": "v1",
            "canaryVersion": "v2",
            "canaryWeight": 10,
            "weights": {"v1": 90, "v2": 10},
            "versions": [
                {"name": "v1", "ready": True, "runtime": "kserve-sklearnserver"},
                {
                    "name": "v2",
                    "ready": False,
                    "runtime": "kserve-sklearnserver",
                    "message": "0/1 predictor pods available",
                },
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
            "lastCommand": {"name": "pause", "version": "v2", "outcome": "applied"},
        },
    }
    events = [
        {
            "type": "Normal",
            "reason": "StepWeight",
            "message": "v2 at 10%",
            "lastTimestamp": "2026-11-27T12:00:05Z",
        }
    ]
    text = render_status(model, events)
    assert "  weights:  v1=90%, v2=10%" in text
    assert "v2               not ready  kserve-sklearnserver  0/1 predictor pods available" in text
    assert "  last command: pause v2 -> applied" in text
    assert "12:00:05 Normal  StepWeight         v2 at 10%" in text
    assert "(step 1/3, Progressing)" in text


def test_default_version() -> None:
    status = {"canaryVersion": "v2", "previousStableVersion": "v1"}
    assert default_version("promote", status) == "v2"
    assert default_version("rollback", status) == "v1"
    assert default_version("abort", {}) is None


def test_render_status_shows_the_last_check_as_a_table() -> None:
    model = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"rollout": {"target": "v3"}},
        "status": {
            "phase": "Progressing",
            "analysis": {
                "lastCheckAt": "2026-11-29T09:35:07Z",
                "lastResult": "Failed",
                "weight": 20,
                "requests": 96,
                "failedChecks": 1,
                "inconclusiveChecks": 0,
                "metrics": [
                    {"name": "success", "result": "Failed", "canary": 68.75,
                     "message": "success 68.75 < min 95"},
                    {"name": "p99", "result": "Passed", "canary": 9.1, "stable": 8.8},
                    {"name": "webhook/qa", "result": "Passed",
                     "message": "webhook qa answered 200"},
                ],
            },
        },
    }  # fmt: skip
    text = render_status(model, [])
    assert (
        "  analysis: last check Failed at 20% (2026-11-29T09:35:07Z), 96 canary requests; "
        "failed 1, inconclusive in a row 0\n"
        "    METRIC      RESULT           CANARY     STABLE  WHY\n"
        "    success     Failed            68.75          -  success 68.75 < min 95\n"
        "    p99         Passed              9.1        8.8\n"
        "    webhook/qa  Passed                -          -  webhook qa answered 200\n"
    ) in text


def test_render_status_of_an_ab_test_names_its_rules_and_both_variants() -> None:
    model = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {
            "rollout": {
                "target": "v2",
                "strategy": "ABTest",
                "match": [
                    {"headers": [{"name": "x-beta", "value": "yes"}]},
                    {"headers": [{"name": "Cookie", "value": ".*beta.*",
                                  "type": "RegularExpression"}]},
                ],
            }
        },
        "status": {
            "phase": "Progressing",
            "canaryVersion": "v2",
            "matchedVersion": "v2",
            "analysis": {
                "lastCheckAt": "2026-11-29T10:00:00Z", "lastResult": "Passed", "weight": 0,
                "requests": 310, "stableRequests": 602,
                "metrics": [{"name": "p99", "result": "Passed", "canary": 9.5, "stable": 8.1}],
            },
        },
    }  # fmt: skip
    text = render_status(model, [])
    assert "  strategy: ABTest (x-beta=yes | Cookie~.*beta.* -> v2)\n  canary:   v2\n" in text
    assert "progress:" not in text
    assert "310 canary requests vs 602 stable;" in text
    assert "    p99     Passed              9.5        8.1\n" in text


def test_render_status_of_a_shadow_names_the_copy_then_its_canary_steps() -> None:
    model = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"rollout": {"target": "v2", "strategy": "Shadow", "stepWeights": [20, 50]}},
        "status": {
            "phase": "Progressing", "stableVersion": "v1", "canaryVersion": "v2",
            "mirroredVersion": "v2", "mirrorPercent": 40, "canaryWeight": 0,
        },
    }  # fmt: skip
    text = render_status(model, [])
    assert "  strategy: Shadow (a copy of 40% of v1's requests -> v2, answers discarded)\n" in text
    assert "progress:" not in text
    status = model["status"]
    for key in ("mirroredVersion", "mirrorPercent"):
        del status[key]  # type: ignore[attr-defined]
    status.update({"shadowPassedAt": "2026-12-01T10:00:00Z", "canaryWeight": 20})  # type: ignore[attr-defined]
    text = render_status(model, [])
    assert "  strategy: Shadow\n" in text and "20% (step 1/2, Progressing)" in text


def test_render_status_of_a_registry_model_names_the_alias_and_a_disagreement() -> None:
    said = "the registry's alias names v2 but v1 serves (Aborted): held until the alias moves"
    model = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"registry": {"mlflow": {"model": "iris"}}, "rollout": {}},
        "status": {
            "phase": "Aborted",
            "stableVersion": "v1",
            "registry": {
                "source": "http://mlflow:5000 iris@champion",
                "aliasVersion": 2,
                "lastPoll": "2026-12-01T10:00:00Z",
                "disagreement": said,
            },
        },
    }
    text = render_status(model, [])
    assert (
        "  registry: http://mlflow:5000 iris@champion -> v2 (last poll 2026-12-01T10:00:00Z)\n"
        f"    {said}\n"
    ) in text
