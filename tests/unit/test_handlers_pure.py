"""Pure parts of the handlers layer: metrics text, conditions, the runtime index."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from modelpilot.api.status import Condition
from modelpilot.handlers.conditions import set_condition
from modelpilot.handlers.metrics import Metrics
from modelpilot.k8s.client import CountingApiClient
from modelpilot.k8s.observe import route_accepted, route_weights
from modelpilot.k8s.runtime_index import RuntimeIndex
from modelpilot.runtimes import default_cluster_serving_runtimes


def test_metrics_exposition() -> None:
    metrics = Metrics()
    metrics.observe(0.03, writes=2, error=False)
    metrics.observe(3.0, writes=0, error=True)
    metrics.observe(0.2, writes=1, error=False, cause="command")
    metrics.observe_cpu(0.004)
    metrics.observe_cpu(0.0015)
    metrics.set_phase("ml", "iris", "Progressing")
    metrics.set_phase("ml", "churn", "Stable")
    metrics.set_phase("ml", "gone", "Stable")
    metrics.set_phase("ml", "gone", None)
    text = metrics.render()
    assert "modelpilot_reconciles_total 3\n" in text
    assert "modelpilot_reconcile_errors_total 1\n" in text
    assert "modelpilot_child_writes_total 3\n" in text
    assert "modelpilot_reconcile_cpu_seconds_total 0.005500\n" in text
    other = 'modelpilot_reconcile_duration_seconds_bucket{cause="other",le="%s"} %d\n'
    assert other % ("0.05", 1) in text and other % ("+Inf", 2) in text
    command = 'modelpilot_reconcile_duration_seconds_bucket{cause="command",le="%s"} %d\n'
    assert command % ("0.1", 0) in text and command % ("0.25", 1) in text
    assert 'modelpilot_reconcile_duration_seconds_sum{cause="command"} 0.200000\n' in text
    assert 'modelpilot_models{phase="Stable"} 1\n' in text
    assert 'modelpilot_models{phase="Progressing"} 1\n' in text


def test_rollout_and_analysis_gauges_per_model() -> None:
    from collections import Counter

    metrics = Metrics()
    metrics.set_phase("ml", "iris", "Progressing", canary_weight=20)
    metrics.set_analysis("ml", "iris", "Failed", failed_checks=1)
    metrics.set_phase("ml", "churn", "Stable")
    metrics.checks_total = Counter({"Passed": 3, "Failed": 1})
    text = metrics.render()
    assert 'modelpilot_canary_weight{namespace="ml",name="iris"} 20\n' in text
    assert 'name="churn"} ' not in text.split("modelpilot_canary_weight", 1)[1]
    assert 'modelpilot_analysis_last_result{namespace="ml",name="iris",result="Failed"} 1\n' in text
    assert 'modelpilot_analysis_failed_checks{namespace="ml",name="iris"} 1\n' in text
    for result, count in (("Passed", 3), ("Failed", 1), ("Inconclusive", 0)):
        assert f'modelpilot_analysis_checks_total{{result="{result}"}} {count}\n' in text
    metrics.set_analysis("ml", "iris", None)
    metrics.set_phase("ml", "iris", None)
    assert 'name="iris"' not in metrics.render()


def test_api_requests_are_counted_per_method_and_exposed() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # the discard port: nothing answers
    configuration.retries = False
    api = CountingApiClient(configuration)
    for method in ("GET", "GET", "PATCH"):
        with pytest.raises(Exception):  # noqa: B017 (refused or reset: either is fine)
            api.call_api(method, f"{configuration.host}/api", _request_timeout=1)
    metrics = Metrics()
    metrics.api_requests = api.requests
    text = metrics.render()
    assert 'modelpilot_api_requests_total{method="GET"} 2\n' in text
    assert 'modelpilot_api_requests_total{method="PATCH"} 1\n' in text


def test_condition_transition_time_moves_only_with_status() -> None:
    first = set_condition([], "Ready", False, "NotReady", "waiting", 1, "t1")
    same = set_condition(first, "Ready", False, "NotReady", "still waiting", 2, "t2")
    flipped = set_condition(same, "Ready", True, "Serving", "", 2, "t3")
    assert same[0].last_transition_time == "t1" and same[0].message == "still waiting"
    assert flipped[0].last_transition_time == "t3" and flipped[0].status == "True"
    assert flipped == [
        Condition(
            type="Ready",
            status="True",
            reason="Serving",
            message="",
            last_transition_time="t3",
            observed_generation=2,
        )
    ]


def test_runtime_index_scopes_namespaces() -> None:
    index = RuntimeIndex()
    index.replace_all(default_cluster_serving_runtimes())
    team = {
        "kind": "ServingRuntime",
        "metadata": {"name": "mine", "namespace": "team"},
        "spec": {"supportedModelFormats": [{"name": "sklearn", "autoSelect": True}]},
    }
    index.upsert(team)
    assert "mine" in [r.name for r in index.for_namespace("team")]
    assert "mine" not in [r.name for r in index.for_namespace("other")]
    index.remove(team)
    assert "mine" not in [r.name for r in index.for_namespace("team")]
    assert len(index.for_namespace("x")) == len(default_cluster_serving_runtimes())


def route(generation: int, observed: int | None, status: str = "True") -> dict:
    conditions = [{"type": "Accepted", "status": status, "observedGeneration": observed}]
    return {
        "metadata": {"generation": generation},
        "spec": {
            "rules": [
                {
                    "matches": [{"headers": [{"name": "x", "value": "v1"}]}],
                    "backendRefs": [{"name": "iris-v1-predictor", "port": 80}],
                },
                {
                    "backendRefs": [
                        {"name": "iris-v1-predictor", "weight": 90},
                        {"name": "iris-v2-predictor", "weight": 10},
                    ]
                },
            ]
        },
        "status": {"parents": [{"conditions": conditions}]},
    }


def test_route_observations() -> None:
    assert route_weights(route(2, 2), "iris") == {"v1": 90, "v2": 10}
    assert route_accepted(route(2, 2)) is True
    assert route_accepted(route(3, 2)) is False  # accepted, but an older generation
    assert route_accepted(route(2, 2, "False")) is False
    assert route_accepted(None) is None
    assert route_accepted({"metadata": {"generation": 1}}) is False


def test_merge_patch_removes_keys_at_every_depth() -> None:
    from modelpilot.handlers.manage import merge_patch

    before = {"weights": {"v1": 50, "v2": 50}, "phase": "Promoting", "canaryVersion": "v2"}
    after = {"weights": {"v2": 100}, "phase": "Stable"}
    assert merge_patch(before, after) == {
        "weights": {"v1": None, "v2": 100},
        "phase": "Stable",
        "canaryVersion": None,
    }
    assert merge_patch(after, after) == {}

    # Applying the patch (RFC 7386) to before gives after.
    def apply(target: dict, patch: dict) -> dict:
        out = dict(target)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict):
                out[key] = apply(out.get(key) or {}, value)
            else:
                out[key] = value
        return out

    assert apply(before, merge_patch(before, after)) == after


def test_shards_split_models_stably_and_evenly() -> None:
    from modelpilot.api.names import shard_of

    # Fixed across processes and releases (a changed hash would move every model).
    assert [shard_of("ml", f"m{i}", 4) for i in range(8)] == [3, 3, 0, 2, 0, 0, 0, 3]
    assert shard_of("ml", "iris", 1) == 0
    counts = [0, 0, 0, 0]
    for i in range(4000):
        counts[shard_of(f"ns{i % 7}", f"model-{i}", 4)] += 1
    assert all(900 < c < 1100 for c in counts), counts


def test_a_command_wakes_ahead_of_spec_and_child_changes() -> None:
    from modelpilot.handlers.wiring import Seen, wake_cause

    rest = Seen(3, {"team": "ml"})
    assert wake_cause(None, Seen(3, {"modelpilot.io/promote": "v2"})) == "other"  # a restart
    assert wake_cause(rest, Seen(3, {"team": "ml", "modelpilot.io/promote": "v2"})) == "command"
    promoting = Seen(3, {"modelpilot.io/promote": "v2"})
    assert wake_cause(promoting, Seen(3, {"modelpilot.io/promote": "v3"})) == "command"
    # The command given again after the operator consumed (removed) it.
    assert wake_cause(Seen(3, {}), promoting) == "command"
    # A spec change that carries an old, unchanged command is the spec's.
    assert wake_cause(promoting, Seen(4, {"modelpilot.io/promote": "v2"})) == "change"
    assert wake_cause(promoting, Seen(3, {})) == "other"  # the operator consumed it
    assert wake_cause(rest, Seen(3, {"team": "ml", "modelpilot.io/typo": "v2"})) == "other"
    assert wake_cause(rest, Seen(4, {"team": "ml"})) == "change"


def test_reconcile_waits_are_exposed_per_cause() -> None:
    metrics = Metrics()
    metrics.observe_wait("command", 0.02)
    metrics.observe_wait("other", 3.0)
    metrics.observe_wait("other", 0.2)
    text = metrics.render()
    assert 'modelpilot_reconcile_wait_seconds_bucket{cause="command",le="0.05"} 1\n' in text
    assert 'modelpilot_reconcile_wait_seconds_bucket{cause="other",le="0.25"} 1\n' in text
    assert 'modelpilot_reconcile_wait_seconds_bucket{cause="other",le="+Inf"} 2\n' in text
    assert 'modelpilot_reconcile_wait_seconds_count{cause="other"} 2\n' in text
    assert 'modelpilot_reconcile_wait_seconds_sum{cause="other"} 3.200000\n' in text


def test_a_child_wake_waits_for_its_burst_and_a_command_cuts_it_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import time
    from types import SimpleNamespace

    from modelpilot.handlers import wiring

    key = ("ml", "iris")

    async def settle(after: list[tuple[float, str]]) -> tuple[tuple[float, str], float]:
        state = SimpleNamespace(woken={})
        poke, stopped = asyncio.Event(), asyncio.Event()
        first = (time.monotonic(), "other")

        async def later() -> None:
            for delay, cause in after:
                await asyncio.sleep(delay)
                state.woken[key] = (time.monotonic(), cause)
                poke.set()

        task = asyncio.ensure_future(later())
        woken = await wiring._settle(state, key, first, poke, stopped)  # type: ignore[arg-type]
        task.cancel()
        return woken, time.monotonic() - first[0]

    # More of the burst arrives: still one wake, after the settle time from the first.
    monkeypatch.setattr(wiring, "CHILD_SETTLE", 0.2)
    woken, took = asyncio.run(settle([(0.02, "other"), (0.02, "other")]))
    assert woken[1] == "other" and took >= 0.2
    # A command meanwhile: on at once (long before the settle time), as a command.
    monkeypatch.setattr(wiring, "CHILD_SETTLE", 30.0)
    woken, took = asyncio.run(settle([(0.01, "command")]))
    assert woken[1] == "command" and took < 10


def test_listed_items_carry_their_kind_as_the_dynamic_client_gave_them() -> None:
    from modelpilot.k8s.client import _plain

    listed = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscalerList",
        "items": [{"metadata": {"name": "a"}}, {"kind": "Other", "metadata": {"name": "b"}}],
    }
    items = _plain(None, listed)["items"]
    assert items[0]["kind"] == "HorizontalPodAutoscaler"
    assert items[0]["apiVersion"] == "autoscaling/v2"
    assert items[1]["kind"] == "Other"  # what the server said stays
    single = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert _plain(None, single) == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}


def test_child_events_wake_a_model_only_for_news_and_a_relisting_forgets_the_vanished() -> None:
    from modelpilot.api.kinds import AUTOSCALER
    from modelpilot.handlers.wiring import child_event, children_relisted
    from modelpilot.k8s.cache import ChildCache
    from modelpilot.k8s.watch import Scope

    children = ChildCache()

    def hpa(name: str, rv: str, max_replicas: int = 2) -> dict[str, Any]:
        return {
            "apiVersion": AUTOSCALER.api_version,
            "kind": AUTOSCALER.kind,
            "metadata": {
                "name": name,
                "namespace": "ml",
                "resourceVersion": rv,
                "labels": {"modelpilot.io/model": name.split("-")[0]},
            },
            "spec": {"maxReplicas": max_replicas},
        }

    wakes = [
        child_event(children, "ADDED", hpa("iris-v1", "1")),
        child_event(children, "MODIFIED", hpa("iris-v1", "2")),  # no news
        child_event(children, "MODIFIED", hpa("iris-v1", "3", 4)),
        child_event(children, "ADDED", hpa("wine-v1", "4")),
    ]
    iris, wine = ("ml", "iris", AUTOSCALER.kind), ("ml", "wine", AUTOSCALER.kind)
    assert wakes == [iris, None, iris, wine]
    # The watch was too old to resume: wine's HPA was deleted while no one looked.
    relisted = children_relisted(children, Scope(AUTOSCALER, "ml", None), [hpa("iris-v1", "3", 4)])
    assert relisted == [("ml", "wine", "relist")]
    assert children.read(AUTOSCALER, "wine-v1", "ml") is None
    assert children.read(AUTOSCALER, "iris-v1", "ml") is not None
    assert child_event(children, "DELETED", hpa("iris-v1", "5", 4)) == iris


def test_wakes_are_counted_by_what_changed_and_why() -> None:
    metrics = Metrics()
    metrics.woke("Deployment", "other")
    metrics.woke("Deployment", "other")
    metrics.woke("ManagedModel", "command")
    text = metrics.render()
    assert 'modelpilot_wakes_total{source="Deployment",cause="other"} 2\n' in text
    assert 'modelpilot_wakes_total{source="ManagedModel",cause="command"} 1\n' in text
