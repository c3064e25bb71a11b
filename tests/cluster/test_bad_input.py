"""What users really get wrong, applied to the running operator on the real apiserver:
each case is refused at admission with a message naming the field, or accepted and
reported in the model's Degraded condition (a reason, or a warning in its message) with
an Event; a wrong command is refused in status.lastCommand with an Event. Never a
traceback, never a crash, never a write to another model's children."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from modelpilot.handlers.manage import Settings
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import ApiError, Kube
from tests.cluster.helpers import (
    annotate,
    condition,
    eventually,
    spec_versions,
    wait_carried,
    wait_model,
)
from tests.unit.conftest import BASE

pytestmark = pytest.mark.cluster

Doc = dict[str, Any]


def base(name: str, namespace: str) -> Doc:
    """The unit tests' valid two-version model, stable on v1 once ready."""
    doc = copy.deepcopy(BASE)
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["rollout"] = {"target": "v1"}
    return doc


@dataclass(frozen=True)
class Case:
    id: str
    change: Callable[[Doc], None]
    # admission: a substring of the apiserver's refusal (the field); degraded: the
    # condition's reason; warning: a substring of the condition's message; command: a
    # substring of status.lastCommand.outcome.
    expect: tuple[str, str]
    command: tuple[str, str] | None = None  # an annotation applied once the model is Stable


def spec(path: str, value: Any) -> Callable[[Doc], None]:
    """Set spec.<path> (dots; [i] for list items) to value."""

    def change(doc: Doc) -> None:
        node: Any = doc["spec"]
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return change


def drop(key: str) -> Callable[[Doc], None]:
    return lambda doc: doc["spec"].pop(key)


def versions(count: int) -> Callable[[Doc], None]:
    return spec(
        "versions", [{"name": f"v{i}", "storageUri": "gs://b/m"} for i in range(1, count + 1)]
    )


def long_name(doc: Doc) -> None:
    doc["metadata"]["name"] = "m" * 60


def huge_annotations(doc: Doc) -> None:
    doc["metadata"]["annotations"] = {"example.com/blob": "x" * 300_000}


CASES: list[Case] = [
    # types, missing and unknown fields
    Case("versions-not-a-list", spec("versions", "v1"), ("admission", "spec.versions")),
    Case("format-missing", drop("modelFormat"), ("admission", "modelFormat")),
    Case("unknown-field", spec("replica", 3), ("admission", "replica")),
    Case("no-versions", spec("versions", []), ("admission", "spec.versions")),
    Case("16-versions", versions(16), ("admission", "spec.versions")),
    Case("duplicate-versions", spec("versions[1].name", "v1"), ("admission", "unique")),
    Case("target-names-nothing", spec("rollout.target", "v9"), ("admission", "rollout.target")),
    Case("steps-out-of-order", spec("rollout.stepWeights", [50, 10]), ("admission", "stepWeights")),
    Case("step-zero", spec("rollout.stepWeights", [0, 50]), ("admission", "stepWeights")),
    Case("step-100", spec("rollout.stepWeights", [100]), ("admission", "stepWeights")),
    Case("bad-duration", spec("rollout.interval", "10 minutes"), ("admission", "interval")),
    Case(
        "min-over-max",
        spec("autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        ("admission", "minReplicas"),
    ),
    Case(
        "replicas-beyond-int32",
        spec("autoscaling", {"maxReplicas": 2**31}),
        ("admission", "maxReplicas"),
    ),
    # GPUs
    Case("gpu-zero", spec("gpu", {"count": 0}), ("admission", "gpu.count")),
    Case("gpu-huge", spec("gpu", {"count": 10_000}), ("admission", "gpu.count")),
    Case("gpu-fractional", spec("gpu", {"count": 0.5}), ("admission", "gpu.count")),
    Case(
        "gpu-in-resources",
        spec("versions[0].resources", {"requests": {"nvidia.com/gpu": "1"}}),
        ("degraded", "InvalidSpec"),
    ),
    # names and quantities the children would carry
    Case("name-too-long", long_name, ("admission", "within 52 characters")),
    Case("grpc", spec("protocolVersion", "grpc-v2"), ("admission", "protocolVersion")),
    Case(
        "hostname-uppercase",
        spec("traffic.hostnames", ["Iris.Example.com"]),
        ("admission", "hostnames"),
    ),
    Case(
        "hostname-unicode",
        spec("traffic.hostnames", ["ïris.example.com"]),
        ("admission", "hostnames"),
    ),
    Case("huge-annotations", huge_annotations, ("admission", "metadata.annotations")),
    Case("storage-empty", spec("versions[0].storageUri", ""), ("admission", "storageUri")),
    Case("storage-blank", spec("versions[0].storageUri", "   "), ("admission", "storageUri")),
    Case(
        "served-name-slash-space",
        spec("servedModelName", "my model/x"),
        ("admission", "servedModelName"),
    ),
    Case("pin-header-space", spec("traffic.pinHeader", "x model"), ("admission", "pinHeader")),
    Case(
        "section-name-space",
        spec("traffic.gatewayRef.sectionName", "web 1"),
        ("admission", "sectionName"),
    ),
    Case("label-key-space", spec("serving.labels", {"bad key": "x"}), ("degraded", "InvalidSpec")),
    Case("cpu-lots", spec("resources", {"requests": {"cpu": "lots"}}), ("admission", "cpu")),
    Case(
        "memory-negative",
        spec("resources", {"requests": {"memory": "-1Gi"}}),
        ("admission", "memory"),
    ),
    Case(
        "env-name-equals",
        spec("versions[0].env", [{"name": "A=B", "value": "1"}]),
        ("admission", "env"),
    ),
    Case(
        "node-selector-space",
        spec("serving.nodeSelector", {"bad key": "x"}),
        ("degraded", "InvalidSpec"),
    ),
    Case(
        "deployment-strategy-unknown",
        spec("serving.deploymentStrategy", {"type": "Teleport"}),
        ("degraded", "InvalidSpec"),
    ),
    # rollout features
    Case(
        "analysis-unknown-placeholder",
        spec(
            "rollout.analysis", {"metrics": [{"name": "x", "query": "up{a={{ nope }}}", "min": 1}]}
        ),
        ("degraded", "InvalidSpec"),
    ),
    Case(
        "webhook-not-http",
        spec("rollout.webhooks", [{"name": "h", "type": "rollout", "url": "ftp://x.svc/"}]),
        ("admission", "url"),
    ),
    Case("then-without-shadow", spec("rollout.then", "Canary"), ("admission", "then")),
    Case(
        "ab-bad-regex",
        spec(
            "rollout",
            {
                "target": "v1",
                "strategy": "ABTest",
                "match": [
                    {"headers": [{"name": "Cookie", "value": "(", "type": "RegularExpression"}]}
                ],
            },
        ),
        ("admission", "regular expression"),
    ),
    # accepted by the apiserver, reported by the operator
    Case("format-unknown", spec("modelFormat", {"name": "caffe"}), ("degraded", "NoRuntime")),
    Case("runtime-unknown", spec("runtime", "no-such-runtime"), ("degraded", "NoRuntime")),
    Case(
        "shadow-on-generic", spec("rollout.strategy", "Shadow"), ("degraded", "MirrorUnsupported")
    ),
    # commands
    Case("set-weight-150", lambda d: None, ("command", "refused"), ("set-weight", "150")),
    Case(
        "promote-no-rollout",
        lambda d: None,
        ("command", "no rollout in progress"),
        ("promote", "v2"),
    ),
    Case("command-empty-version", lambda d: None, ("command", "refused"), ("abort", "")),
    Case("command-misspelt", lambda d: None, ("warning", "modelpilot.io/promte"), ("promte", "v2")),
]


def test_the_bad_input_corpus(
    kube: Kube,
    namespace: str,
    standins: Any,
    api_client: client.ApiClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="modelpilot")
    bystander = base("iris", namespace)
    owner = base("own", namespace)  # its child own-a-v1 is what "own-a" would claim
    owner["spec"]["versions"][0]["name"] = "a-v1"
    owner["spec"]["rollout"]["target"] = "a-v1"
    claimer = base("own-a", namespace)
    where: dict[str, str] = {}
    failures: list[str] = []
    with OperatorThread(kube, Settings(), namespaces=[namespace]) as operator:
        for doc in (bystander, owner):
            kube.apply(doc, manager="test-user")
        for name in ("iris", "own"):
            wait_model(
                kube, namespace, lambda s: s.get("phase") == "Stable", f"{name} stable", name=name
            )
            wait_carried(kube, namespace, name)
        before = {
            k: v for k, v in spec_versions(kube, namespace).items() if k[1].startswith("iris")
        }
        kube.apply(claimer, manager="test-user")
        accepted: dict[str, Case] = {}
        for index, case in enumerate(CASES):
            doc = base(f"c{index:02d}", namespace)
            case.change(doc)
            try:
                kube.apply(copy.deepcopy(doc), manager="test-user")
            except ApiError as err:
                where[case.id] = f"admission: {err.message[:150]}"
                kind, text = case.expect
                if kind != "admission" or text not in err.message:
                    failures.append(
                        f"{case.id}: refused ({err.message[:300]}), expected {case.expect}"
                    )
                continue
            accepted[doc["metadata"]["name"]] = case
        for name, case in accepted.items():
            kind, text = case.expect
            if case.command is not None:
                wait_model(kube, namespace, lambda s: s.get("phase") == "Stable", name, name=name)
                verb, value = case.command
                annotate(kube, base(name, namespace), f"modelpilot.io/{verb}", value)
            try:
                status = wait_model(
                    kube,
                    namespace,
                    reported(kind, text),
                    f"{case.id}: {case.expect}",
                    name=name,
                    timeout=30,
                )
            except AssertionError as err:
                failures.append(f"{case.id}: {err}")
                where[case.id] = "NOT CAUGHT"
                continue
            where[case.id] = describe(kind, status)
            if kind == "warning":
                continue
            try:
                # The Event follows the status write that told of it: its arrival counts,
                # not how soon.
                eventually(
                    lambda name=name: events_of(api_client, namespace, name),
                    timeout=30,
                    what=f"a Warning Event on {name}",
                )
            except AssertionError:
                failures.append(f"{case.id}: no Warning Event")
        conflict = wait_model(
            kube,
            namespace,
            reported("degraded", "NameConflict"),
            "own-a's name conflict",
            name="own-a",
        )
        where["children-claimed"] = describe("degraded", conflict)
        after = {k: v for k, v in spec_versions(kube, namespace).items() if k[1].startswith("iris")}
        assert operator.error is None
    width = max(len(k) for k in where)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in where.items()))
    print(f"{len(where)} cases")
    assert failures == [], "\n".join(failures)
    assert after == before  # the bystander's children never written
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def reported(kind: str, text: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        degraded = condition({"status": status}, "Degraded") or {}
        if kind == "degraded":
            return degraded.get("status") == "True" and degraded.get("reason") == text
        if kind == "warning":
            return text in (degraded.get("message") or "")
        if kind == "command":
            return text in ((status.get("lastCommand") or {}).get("outcome") or "")
        return False

    return check


def describe(kind: str, status: dict[str, Any]) -> str:
    degraded = condition({"status": status}, "Degraded") or {}
    if kind == "command":
        return f"command: {(status.get('lastCommand') or {}).get('outcome')}"
    message = (degraded.get("message") or "")[:110]
    return f"Degraded={degraded.get('status')} {degraded.get('reason')}: {message}"


def events_of(api_client: client.ApiClient, namespace: str, name: str) -> list[str]:
    found = (
        client.CoreV1Api(api_client)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    return [e.reason for e in found if e.type == "Warning"]
