"""Small helpers for cluster tests: polling with deadlines, objects by name."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from modelpilot.api.kinds import (
    CHILD_KINDS,
    HTTP_ROUTE,
    MANAGED_MODEL,
)
from modelpilot.k8s.client import Kube
from modelpilot_dev.checkout import checkout_root

T = TypeVar("T")
ROOT = checkout_root()
PREDICTOR_SUFFIX = "-predictor"


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
    explain: Callable[[], Any] | None = None,
) -> T:
    """Poll until probe returns something truthy; fail with the last value seen, and
    with what explain() says then (e.g. the model's status), when given."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    message = f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
    if explain is not None:
        message += f"; then: {explain()!r}"
    raise AssertionError(message)


def describe_model(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """What a timed-out wait on a model should print: where its rollout stood."""
    found = kube.get(MANAGED_MODEL, name, namespace)
    if found is None:
        return {"model": "gone"}
    status = found.get("status") or {}
    return {
        "phase": status.get("phase"),
        "weights": status.get("weights"),
        "conditions": {
            c["type"]: (c["status"], c.get("reason"), c.get("message"))
            for c in status.get("conditions") or []
        },
        "versions": {
            v["name"]: (v.get("ready"), v.get("message")) for v in status.get("versions") or []
        },
    }


def sample(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "manifests" / "samples" / f"{name}.yaml").read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"].update(copy.deepcopy(spec))
    return document


def model(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    found = kube.get(MANAGED_MODEL, name, namespace)
    assert found is not None, f"ManagedModel {name} is gone"
    return found


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def children(kube: Kube, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in CHILD_KINDS:
        for obj in kube.list(kind, namespace):
            found[(kind.kind, obj["metadata"]["name"])] = obj
    return found


def resource_versions(kube: Kube, namespace: str) -> dict[tuple[str, str], str]:
    return {k: v["metadata"]["resourceVersion"] for k, v in children(kube, namespace).items()}


def spec_versions(kube: Kube, namespace: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    """What only a spec or metadata write changes (status writes by other controllers,
    such as the HPA controller's, do not count)."""
    return {
        key: (
            obj["metadata"].get("generation"),
            obj["metadata"].get("annotations"),
            obj["metadata"].get("labels"),
            obj["metadata"].get("ownerReferences"),
        )
        for key, obj in children(kube, namespace).items()
    }


def annotate(kube: Kube, document: dict[str, Any], key: str, value: str) -> None:
    """A user's command: the document applied again with one annotation."""
    meta = {**document["metadata"], "annotations": {key: value}}
    kube.apply({**document, "metadata": meta}, manager="test-user")


def wait_model(
    kube: Kube,
    namespace: str,
    check: Callable[[dict[str, Any]], Any],
    what: str,
    *,
    timeout: float = 120.0,
    name: str = "iris",
) -> dict[str, Any]:
    """Until check(the model's status) holds; a timeout says where the model stood."""

    def status() -> dict[str, Any] | None:
        found = ((kube.get(MANAGED_MODEL, name, namespace) or {}).get("status")) or {}
        return found if check(found) else None

    return eventually(
        status, timeout=timeout, what=what, explain=lambda: describe_model(kube, namespace, name)
    )


def split_weights(route: dict[str, Any], model: str) -> dict[str, int]:
    """The weighted split: backends of the rules that match no header or query."""
    weights: dict[str, int] = {}
    for rule in (route.get("spec") or {}).get("rules") or []:
        if any(m.get("headers") or m.get("queryParams") for m in rule.get("matches") or []):
            continue
        for backend in rule.get("backendRefs") or []:
            version = backend_version(rule, backend, model)
            if version is not None:
                weights[version] = weights.get(version, 0) + int(backend.get("weight", 1))
    return weights


def version_of(service: str, model: str) -> str | None:
    prefix = f"{model}-"
    if service.startswith(prefix) and service.endswith(PREDICTOR_SUFFIX):
        return service[len(prefix) : -len(PREDICTOR_SUFFIX)]
    return None


def backend_version(rule: dict[str, Any], backend: dict[str, Any], model: str) -> str | None:
    """The version a backend reaches: its predictor Service's, or in ModelMesh mode (one
    modelmesh-serving Service for all) the InferenceService the path is rewritten to."""
    if backend.get("name") != "modelmesh-serving":
        return version_of(backend.get("name", ""), model)
    for holder in (backend, rule):
        for item in holder.get("filters") or []:
            path = (item.get("urlRewrite") or {}).get("path") or {}
            called = str(path.get("replacePrefixMatch") or "").removeprefix("/v2/models/")
            if called.startswith(f"{model}-"):
                return called[len(model) + 1 :]
    return None


def pinned_versions(route: dict[str, Any], model: str) -> set[str]:
    """Versions some requests reach by a header or query match (pins)."""
    found = set()
    for rule in (route.get("spec") or {}).get("rules") or []:
        if not any(m.get("headers") or m.get("queryParams") for m in rule.get("matches") or []):
            continue
        for backend in rule.get("backendRefs") or []:
            version = backend_version(rule, backend, model)
            if version is not None and int(backend.get("weight", 1)) > 0:
                found.add(version)
    return found


def wait_carried(kube: Kube, namespace: str, name: str, timeout: float = 120.0) -> dict[str, int]:
    """Until every version the model's status lists (stopped ones aside) is ready and
    the route carries what the status says: its weights, and a pin for each ready
    version. The status (the decision) is written before the route that carries it
    out, so a status that says Stable or Ready does not yet mean the route is written;
    and a version that turns ready after Stable gets its pin in a later route."""

    def settled() -> dict[str, int] | None:
        status = (kube.get(MANAGED_MODEL, name, namespace) or {}).get("status") or {}
        versions = [v for v in status.get("versions") or [] if not v.get("stopped")]
        if not versions or not all(v.get("ready") for v in versions):
            return None
        route = kube.get(HTTP_ROUTE, name, namespace)
        wanted = {v: w for v, w in (status.get("weights") or {}).items() if w}
        if not wanted or route is None:
            return None
        found = {v: w for v, w in split_weights(route, name).items() if w}
        pins = {v["name"] for v in versions}
        return found if found == wanted and pinned_versions(route, name) == pins else None

    return eventually(
        settled,
        timeout=timeout,
        what=f"{name}'s versions ready and its route carrying its status",
        explain=lambda: describe_model(kube, namespace, name),
    )


USER = "test-user"  # the field manager of a test's own writes, as a person's kubectl


def apply_as_user(kube: Kube, document: dict[str, Any]) -> None:
    kube.apply(document, manager=USER)


def retarget(kube: Kube, document: dict[str, Any], target: str, **rollout: Any) -> dict[str, Any]:
    """The document with spec.rollout.target (and any other rollout field) changed, applied."""
    document = copy.deepcopy(document)
    document["spec"]["rollout"].update(target=target, **rollout)
    apply_as_user(kube, document)
    return document


def command(kubeconfig: Path, namespace: str, *argv: str) -> None:
    """A `modelpilot` CLI command against the test's namespace."""
    from modelpilot.cli import main as cli

    assert cli([*argv, "-n", namespace, "--kubeconfig", str(kubeconfig)]) == 0


def settled(
    kube: Kube, namespace: str, phase: str, stable: str, name: str = "iris", timeout: float = 90.0
) -> None:
    """Until the model's status is in `phase` with `stable` as its stable version."""
    eventually(
        lambda: (
            (found := (kube.get(MANAGED_MODEL, name, namespace) or {}).get("status") or {}).get(
                "phase"
            )
            == phase
            and found.get("stableVersion") == stable
        ),
        timeout=timeout,
        what=f"{name} {phase} on {stable}",
        explain=lambda: describe_model(kube, namespace, name),
    )


def knative_traffic(
    kube: Kube, namespace: str, name: str = "iris", versions: tuple[str, ...] = ("v1", "v2")
) -> dict[str, int] | None:
    """Knative mode: where KServe (here: the stand-in) sends requests, per version."""
    from modelpilot.api.kinds import DEPLOYMENT, INFERENCE_SERVICE, KNATIVE_REVISION_LABEL
    from modelpilot.k8s.knative import knative_view

    isvc = kube.get(INFERENCE_SERVICE, name, namespace)
    revisions = kube.list(DEPLOYMENT, namespace, {KNATIVE_REVISION_LABEL: None})
    return knative_view(isvc, revisions, list(versions)).weights
