"""The apiserver's audit log, for tests that must know who wrote what: a policy that
records only writes (of the kinds and namespaces named), and a reader of the log.

`ControlPlane(audit_policy=...)` starts kube-apiserver with `--audit-policy-file` and
`--audit-log-path` (`ControlPlane.audit_log`). At level RequestResponse each event
carries the user, the User-Agent, the request and the response object, so the response's
`metadata.resourceVersion` says which version of the object a write produced.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_VERBS = ("create", "update", "patch", "delete")

# (API group, resources) a mutation policy records by default: what modelpilot writes
# and what decides readiness, with the status subresources, so that every
# resourceVersion of these objects has its write in the log.
DEFAULT_RESOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("modelpilot.io", ("managedmodels", "managedmodels/status")),
    ("serving.kserve.io", ("inferenceservices", "inferenceservices/status")),
    ("gateway.networking.k8s.io", ("httproutes", "httproutes/status")),
    ("autoscaling", ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
    ("apps", ("deployments", "deployments/status")),
    ("coordination.k8s.io", ("leases",)),
    ("", ("events",)),
    ("events.k8s.io", ("events",)),
)


def mutation_policy(
    namespaces: Sequence[str],
    resources: Sequence[tuple[str, Sequence[str]]] = DEFAULT_RESOURCES,
) -> dict[str, Any]:
    """An audit.k8s.io/v1 Policy: create, update, patch and delete of `resources` in
    `namespaces` at level RequestResponse, nothing else (kwok renews node Leases several
    times a second; reads would swamp the log)."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {
                "level": "RequestResponse",
                "verbs": list(WRITE_VERBS),
                "namespaces": list(namespaces),
                "resources": [
                    {"group": group, "resources": list(names)} for group, names in resources
                ],
            },
            {"level": "None"},
        ],
    }


@dataclass(frozen=True)
class AuditEvent:
    """One write as the apiserver logged it at ResponseComplete."""

    audit_id: str
    verb: str
    user: str
    user_agent: str
    code: int
    resource: str  # plural, e.g. httproutes
    subresource: str  # "" or e.g. status
    namespace: str
    name: str
    received: dt.datetime  # requestReceivedTimestamp (the apiserver's clock)
    completed: dt.datetime  # stageTimestamp
    response: dict[str, Any]  # responseObject ({} when none)
    request: dict[str, Any]  # requestObject ({} when none)

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 300

    @property
    def resource_version(self) -> int | None:
        """The resourceVersion the response carries: the version this write produced
        (or, for a write that changed nothing, the one it found)."""
        found = (self.response.get("metadata") or {}).get("resourceVersion")
        return int(found) if found else None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.resource, self.namespace, self.name)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse(line: str) -> AuditEvent | None:
    """One log line; None for a line that is not a complete ResponseComplete event (the
    last line of an apiserver killed while writing it)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("stage") != "ResponseComplete":
        return None
    ref = raw.get("objectRef") or {}
    response = raw.get("responseObject") or {}
    name = ref.get("name") or (response.get("metadata") or {}).get("name") or ""
    return AuditEvent(
        audit_id=str(raw.get("auditID", "")),
        verb=str(raw.get("verb", "")),
        user=str((raw.get("user") or {}).get("username", "")),
        user_agent=str(raw.get("userAgent", "")),
        code=int((raw.get("responseStatus") or {}).get("code") or 0),
        resource=str(ref.get("resource", "")),
        subresource=str(ref.get("subresource", "")),
        namespace=str(ref.get("namespace", "")),
        name=str(name),
        received=_time(raw["requestReceivedTimestamp"]),
        completed=_time(raw["stageTimestamp"]),
        response=response if isinstance(response, dict) else {},
        request=raw.get("requestObject") or {},
    )


@dataclass
class AuditLog:
    """Reads an audit log as it grows; counts the lines it could not read."""

    path: Path
    unreadable: int = 0

    def events(self) -> Iterator[AuditEvent]:
        self.unreadable = 0
        if not self.path.exists():
            return
        with self.path.open(errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    continue
                event = parse(line)
                if event is None:
                    self.unreadable += 1
                    continue
                yield event
