"""Kubernetes Events on the ManagedModel: the story `kubectl describe mm` tells."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from modelpilot.api.events import Event
from modelpilot.api.kinds import EVENT
from modelpilot.k8s.client import ApiError, Kube

log = logging.getLogger(__name__)
COMPONENT = "modelpilot"


def post_event(
    kube: Kube, owner: Mapping[str, Any], event: Event, instance: str | None = None
) -> None:
    """Post one Event; a failure to post is logged, never raised (it is only a story).
    instance: the replica that posts it (its pod name), in the Event's source. Written
    as plain JSON through the same client as every other write (not kubernetes' typed
    CoreV1Event, which is built, serialized and parsed back into one)."""
    meta = owner["metadata"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": _present(
            apiVersion=owner["apiVersion"],
            kind=owner["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
            resourceVersion=meta.get("resourceVersion"),
        ),
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": _present(component=COMPONENT, host=instance),
        "reportingComponent": COMPONENT,
        "reportingInstance": instance or COMPONENT,
    }
    try:
        kube.create_once(EVENT, body)
    except ApiError as err:
        log.warning("could not post event %s on %s: %s", event.reason, meta["name"], err)


def _present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}
