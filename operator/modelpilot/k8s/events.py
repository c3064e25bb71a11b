"""Kubernetes Events on the ManagedModel: the story `kubectl describe mm` tells."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from modelpilot.api.events import Event

log = logging.getLogger(__name__)
COMPONENT = "modelpilot"


def post_event(
    api: client.ApiClient, owner: Mapping[str, Any], event: Event, instance: str | None = None
) -> None:
    """Post one Event; a failure to post is logged, never raised (it is only a story).
    instance: the replica that posts it (its pod name), in the Event's source."""
    meta = owner["metadata"]
    now = dt.datetime.now(dt.UTC)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=owner["apiVersion"],
            kind=owner["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        type=event.type,
        reason=event.reason,
        message=event.message[:1024],
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=client.V1EventSource(component=COMPONENT, host=instance),
        reporting_component=COMPONENT,
        reporting_instance=instance or COMPONENT,
    )
    try:
        client.CoreV1Api(api).create_namespaced_event(meta["namespace"], body)
    except client.ApiException as err:
        log.warning("could not post event %s on %s: %s", event.reason, meta["name"], err.reason)
