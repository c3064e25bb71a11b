"""The fault suite's checks (tests/cluster/faults.py) on records made by hand: each
check must find the fault it is for, and nothing in a clean record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelpilot_dev.audit import AuditEvent, mutation_policy, parse
from tests.cluster.faults import Record, check_routes, check_writes

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def route(weights: dict[str, int], model: str = "m") -> dict[str, Any]:
    backends = [{"name": f"{model}-{v}-predictor", "weight": w} for v, w in weights.items()]
    pin = {
        "matches": [{"headers": [{"name": "x-model-version", "value": "v9"}]}],
        "backendRefs": [{"name": f"{model}-v9-predictor"}],
    }
    return {"metadata": {"name": model}, "spec": {"rules": [pin, {"backendRefs": backends}]}}


def isvc(version: str, *, ready: bool = True, stop: bool = False) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"m-{version}",
            "labels": {"modelpilot.io/model": "m", "modelpilot.io/version": version},
            "annotations": {"serving.kserve.io/stop": "true"} if stop else {},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def deployment(version: str, available: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": f"m-{version}-predictor", "generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": available,
            "updatedReplicas": available,
            "availableReplicas": available,
        },
    }


def model(target: str, generation: int = 1, observed: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "generation": generation},
        "spec": {"rollout": {"target": target}},
        "status": {"observedGeneration": observed},
    }


def record(
    routes: list[dict[str, int]],
    *,
    v2_available_from: int = 0,
    models: list[tuple[int, dict[str, Any]]] | None = None,
    extra: dict[tuple[str, str], list[tuple[int, Any]]] | None = None,
) -> Record:
    """v1 and v2 ready from rv 1 (v2's pod from rv v2_available_from); the routes'
    weight sets at rv 100, 110, 120, ...; v9 (pinned) ready throughout."""
    versions: dict[tuple[str, str], list[tuple[int, Any]]] = {
        ("InferenceService", "m-v1"): [(1, isvc("v1"))],
        ("InferenceService", "m-v2"): [(1, isvc("v2"))],
        ("InferenceService", "m-v9"): [(1, isvc("v9"))],
        ("Deployment", "m-v1-predictor"): [(2, deployment("v1"))],
        ("Deployment", "m-v2-predictor"): [(2, deployment("v2", 0))],
        ("Deployment", "m-v9-predictor"): [(2, deployment("v9"))],
        ("ManagedModel", "m"): models or [(3, model("v2"))],
        ("HTTPRoute", "m"): [(100 + 10 * i, route(w)) for i, w in enumerate(routes)],
    }
    if v2_available_from:
        versions[("Deployment", "m-v2-predictor")].append((v2_available_from, deployment("v2")))
    for key, more in (extra or {}).items():
        versions[key] = sorted(versions.get(key, []) + more, key=lambda item: item[0])
    return Record("ns", versions, [])


def test_a_clean_rollout_passes() -> None:
    found = check_routes(
        record([{"v1": 100}, {"v1": 75, "v2": 25}, {"v2": 100}], v2_available_from=5)
    )
    assert (found.bad_sums, found.unready_weight, found.backwards) == ([], [], [])
    assert found.weight_sets == 3


def test_a_set_not_summing_to_100() -> None:
    found = check_routes(record([{"v1": 100}, {"v1": 70, "v2": 25}], v2_available_from=5))
    assert found.bad_sums == ["m at rv 110: {'v1': 70, 'v2': 25}"]


def test_weight_before_the_pod_is_available() -> None:
    found = check_routes(record([{"v1": 100}, {"v1": 75, "v2": 25}], v2_available_from=115))
    assert [u.split(";")[0] for u in found.unready_weight] == [
        "m at rv 110: {'v1': 75, 'v2': 25}: v2 no available predictor pod"
    ]


def test_a_pin_to_a_stopped_version() -> None:
    stopped = {("InferenceService", "m-v9"): [(50, isvc("v9", stop=True))]}
    found = check_routes(record([{"v1": 100}], extra=stopped))
    assert [u.split(";")[0] for u in found.unready_weight] == [
        "m at rv 100: {'v1': 100}: v9 InferenceService stopped"
    ]


def test_traffic_back_after_a_promotion() -> None:
    """The issue's case: 100 -> 50 -> 100 after a kill."""
    found = check_routes(
        record([{"v1": 50, "v2": 50}, {"v2": 100}, {"v1": 50, "v2": 50}], v2_available_from=5)
    )
    assert [line.split("; ManagedModel")[0] for line in found.backwards] == [
        "m at rv 120: {'v1': 50, 'v2': 50}: target v2 100 -> 50 (previous {'v2': 100})"
    ]
    assert "ManagedModel: [3 gen 1 target v2" in found.backwards[0]  # the story told


def test_an_unready_target_may_lose_its_weight() -> None:
    unready = {("Deployment", "m-v2-predictor"): [(105, deployment("v2", 0))]}
    found = check_routes(
        record([{"v1": 50, "v2": 50}, {"v1": 100}], v2_available_from=5, extra=unready)
    )
    assert found.backwards == []
    assert found.explained_drops == ["m at rv 110: {'v1': 100}: target v2 50 -> 0"]


def test_a_new_target_is_a_new_rollout() -> None:
    """The spec says v1 from rv 105 on, but the operator's status names generation 1
    (target v2) until rv 115: the write at 110 still belongs to the rollout to v2."""
    models = [
        (3, model("v2")),
        (105, model("v1", generation=2, observed=1)),
        (115, model("v1", generation=2, observed=2)),
    ]
    found = check_routes(
        record(
            [{"v1": 50, "v2": 50}, {"v1": 25, "v2": 75}, {"v1": 50, "v2": 50}],
            v2_available_from=5,
            models=models,
        )
    )
    assert found.backwards == []


def test_stopping_a_version_that_has_weight() -> None:
    stopped = {("InferenceService", "m-v1"): [(105, isvc("v1", stop=True))]}
    found = check_routes(record([{"v1": 100}], extra=stopped))
    assert found.stopped_while_weighted == ["m-v1 stopped at rv 105 while the route gave it weight"]


def event(
    user: str, resource: str, rv: int, at: float, *, holder: str | None = None, name: str = "x"
) -> AuditEvent:
    response: dict[str, Any] = {"metadata": {"resourceVersion": str(rv)}}
    if holder is not None:
        response["spec"] = {"holderIdentity": holder}
        name = "modelpilot"
    return AuditEvent(
        audit_id=f"{user}-{rv}-{at}",
        verb="update" if holder is not None else "patch",
        user=user,
        user_agent=f"modelpilot/0.1.0 ({user})",
        code=200,
        resource=resource,
        subresource="",
        namespace="ns",
        name=name,
        received=T0 + dt.timedelta(seconds=at),
        completed=T0 + dt.timedelta(seconds=at, milliseconds=5),
        response=response,
        request={},
    )


def test_writes_outside_the_lease() -> None:
    audit = [
        event("a", "leases", 10, 1, holder="a"),
        event("a", "httproutes", 11, 2),  # a leads: fine
        event("b", "httproutes", 12, 3),  # b is the standby: refused
        event("b", "leases", 20, 10, holder="b"),  # b takes the expired Lease
        event("a", "httproutes", 21, 11),  # a, deposed, still writes
        event("b", "httproutes", 21, 12),  # finds a's version: changed nothing, b leads
        event("b", "inferenceservices", 22, 13),
    ]
    found = check_writes(Record("ns", {}, audit), ["a", "b"])
    assert found.checked == 4 and found.no_ops == 1
    assert [v.split(" (")[0] for v in found.violations] == [
        "b patch httproutes x",
        "a patch httproutes x",
    ]
    assert found.holders == ["a", "b"]


def test_a_user_agent_naming_another_replica() -> None:
    wrong = event("a", "leases", 10, 1, holder="a")
    audit = [
        wrong,
        AuditEvent(
            **{**vars(event("a", "httproutes", 11, 2)), "user_agent": "modelpilot/0.1.0 (b)"}
        ),
    ]
    found = check_writes(Record("ns", {}, audit), ["a"])
    assert len(found.violations) == 1 and "names another replica" in found.violations[0]


def test_the_audit_policy_and_a_truncated_line() -> None:
    policy = mutation_policy(["ns"])
    assert policy["rules"][0]["verbs"] == ["create", "update", "patch", "delete"]
    assert policy["rules"][-1] == {"level": "None"}
    assert parse('{"stage": "ResponseComplete", "verb": "pa') is None


def test_an_edited_candidate_may_start_over_but_nothing_else_explains_a_drop() -> None:
    """A person edits the candidate mid-rollout: the operator records a new revision and
    the canary starts over. The same drop with the revision unchanged is backwards."""

    def with_revision(revision: str) -> dict[str, Any]:
        found = model("v2")
        found["status"]["revision"] = revision
        return found

    edited = [(3, with_revision("aaa")), (105, with_revision("bbb"))]  # status first
    found = check_routes(
        record([{"v1": 50, "v2": 50}, {"v1": 100}], v2_available_from=5, models=edited)
    )
    assert found.backwards == []
    assert found.explained_drops == [
        "m at rv 110: {'v1': 100}: target v2 50 -> 0 (candidate revision aaa -> bbb)"
    ]
    same = [(3, with_revision("aaa")), (105, with_revision("aaa"))]
    found = check_routes(
        record([{"v1": 50, "v2": 50}, {"v1": 100}], v2_available_from=5, models=same)
    )
    assert len(found.backwards) == 1


def test_an_edit_of_the_steps_explains_a_canary_moving_to_its_new_step_weight() -> None:
    """A person changes stepWeights mid-rollout: the canary goes on at its step's new
    weight, which may be lower. Without the edit the same drop is backwards."""

    def with_steps(steps: list[int], generation: int) -> dict[str, Any]:
        found = model("v2", generation=generation, observed=generation)
        found["spec"]["rollout"]["stepWeights"] = steps
        return found

    edited = [(3, with_steps([50, 100], 1)), (105, with_steps([20, 100], 2))]
    found = check_routes(
        record([{"v1": 50, "v2": 50}, {"v1": 80, "v2": 20}], v2_available_from=5, models=edited)
    )
    assert found.backwards == []
    assert found.explained_drops == [
        "m at rv 110: {'v1': 80, 'v2': 20}: target v2 50 -> 20 (stepWeights [50, 100] -> [20, 100])"
    ]
    unedited = [(3, with_steps([50, 100], 1)), (105, with_steps([50, 100], 1))]
    found = check_routes(
        record([{"v1": 50, "v2": 50}, {"v1": 80, "v2": 20}], v2_available_from=5, models=unedited)
    )
    assert len(found.backwards) == 1


def test_a_route_written_after_its_model_was_deleted_is_told_apart() -> None:
    """A reconcile in flight when its model is deleted may still write the route: it
    names a gone owner (the garbage collector removes it), so it is not judged as the
    model's traffic; the same write while the model lives is."""

    def owned(weights: dict[str, int], uid: str) -> dict[str, Any]:
        found = route(weights)
        found["metadata"]["ownerReferences"] = [{"kind": "ManagedModel", "name": "m", "uid": uid}]
        return found

    alive = model("v1")
    alive["metadata"]["uid"] = "u1"
    gone: dict[tuple[str, str], list[tuple[int, Any]]] = {
        ("InferenceService", "m-v1"): [(95, None)],
    }
    versions = record([], models=[(3, alive), (90, None)], extra=gone).versions
    versions[("HTTPRoute", "m")] = [(100, owned({"v1": 100}, "u1"))]
    found = check_routes(Record("ns", versions, []))
    assert found.unready_weight == []
    assert found.after_delete == ["m at rv 100: {'v1': 100}; ?"]
    versions[("ManagedModel", "m")] = [(3, alive)]  # the model lives: a real fault
    found = check_routes(Record("ns", versions, []))
    assert found.after_delete == []
    assert [u.split(";")[0] for u in found.unready_weight] == [
        "m at rv 100: {'v1': 100}: v1 no InferenceService"
    ]
