"""A lean list-and-watch of one kind, for the children's cache.

kopf's per-event machinery (bodies, causes, handler selection, per-object queues) was
two thirds of the operator's CPU in a fleet's convergence, and a child's event needs
none of it: the cache trims the object and tells whether a model should look. So the
children are watched here: one thread per kind and namespace reads the watch stream,
parses each line and hands the object to the operator's event loop.

The protocol is Kubernetes' own: LIST, then WATCH from the list's resourceVersion with
bookmarks; a watch that ends is resumed from the last resourceVersion seen; one that is
too old (410 Gone) is followed by a new LIST, whose result replaces what the cache held
for that scope (deletions missed meanwhile included).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelpilot.api.kinds import Kind

log = logging.getLogger(__name__)
SERVER_TIMEOUT = 300  # seconds the apiserver keeps one watch open
READ_TIMEOUT = SERVER_TIMEOUT + 30
CONNECT_TIMEOUT = 10
MAX_BACKOFF = 30.0


class Gone(Exception):
    """The resourceVersion to watch from is too old: list again."""


@dataclass(frozen=True)
class Scope:
    kind: Kind
    namespace: str | None  # None: every namespace
    labels: str | None  # a label selector, or None

    def path(self) -> str:
        kind = self.kind
        base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
        where = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{base}{where}/{kind.plural}"

    def holds(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace


class Lister:
    """LIST and WATCH requests on its own connection pool: watches hold their
    connections for minutes and must not take the reconciles' ones."""

    def __init__(self, configuration: client.Configuration) -> None:
        self.api = client.ApiClient(configuration)

    def _get(self, scope: Scope, query: list[tuple[str, str]], timeout: float) -> Any:
        """The urllib3 response, its body not yet read; raises ApiException unless 200."""
        if scope.labels:
            query = [*query, ("labelSelector", scope.labels)]
        method, url, headers, _, _ = self.api.param_serialize(
            "GET",
            scope.path(),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method, url, header_params=headers, _request_timeout=(CONNECT_TIMEOUT, timeout)
        ).response
        if response.status != 200:
            body = response.data
            response.release_conn()
            raise ApiException(status=response.status, reason=response.reason, body=body)
        return response

    def list(self, scope: Scope) -> tuple[list[dict[str, Any]], str]:
        """Every object in scope (with its kind) and the list's resourceVersion."""
        response = self._get(scope, [], 60)
        try:
            listed = json.loads(response.data)
        finally:
            response.release_conn()
        kind, api_version = scope.kind.kind, scope.kind.api_version
        items = [{**item, "kind": kind, "apiVersion": api_version} for item in listed["items"]]
        return items, str(listed["metadata"]["resourceVersion"])

    def watch(
        self,
        scope: Scope,
        since: str,
        deliver: Callable[[str, dict[str, Any]], object],
        opened: Callable[[Any], None],
    ) -> str:
        """Streams events from since until the server ends the watch; returns the last
        resourceVersion seen (bookmarks included). Raises Gone."""
        query = [
            ("watch", "true"),
            ("resourceVersion", since),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(SERVER_TIMEOUT)),
        ]
        response = self._get(scope, query, READ_TIMEOUT)
        opened(response)
        last = since
        try:
            pending = b""
            for chunk in response.stream(65536, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        last = self._event(scope, json.loads(line), deliver) or last
        finally:
            response.release_conn()
        return last

    @staticmethod
    def _event(
        scope: Scope, event: Mapping[str, Any], deliver: Callable[[str, dict[str, Any]], object]
    ) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", ""))
            raise RuntimeError(f"watch error: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind != "BOOKMARK":
            obj = {**obj, "kind": scope.kind.kind, "apiVersion": scope.kind.api_version}
            deliver(str(kind), obj)
        return str(version) if version else None


class KindWatch:
    """One scope's list-and-watch on a daemon thread (a watch read blocks for minutes;
    the interpreter must not wait for it at exit). on_event(type, obj) and
    on_listed(scope, objects) are called on the thread: they hand over to the loop."""

    def __init__(
        self,
        lister: Lister,
        scope: Scope,
        on_event: Callable[[str, dict[str, Any]], object],
        on_listed: Callable[[Scope, list[dict[str, Any]]], object],
        since: str | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        """alive: False once whoever receives the events is gone (its event loop closed
        without a stop, as when an operator crashed): the watch ends then."""
        self.lister, self.scope, self.since, self.alive = lister, scope, since, alive
        self.on_event, self.on_listed = on_event, on_listed
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(
            target=self._run,
            name=f"watch {scope.kind.plural} {scope.namespace or '*'}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed
                response.shutdown()  # unblocks the read

    def _opened(self, response: Any) -> None:
        self._response = response
        if self._stopped.is_set():
            self.stop()

    def _run(self) -> None:
        backoff, complained = 1.0, False
        while not self._stopped.is_set():
            try:
                if self.since is None:
                    objects, self.since = self.lister.list(self.scope)
                    self.on_listed(self.scope, objects)
                self.since = self.lister.watch(self.scope, self.since, self.on_event, self._opened)
                backoff, complained = 1.0, False
            except Gone:
                self.since = None  # too old to resume: list again
            except ApiException as err:
                if err.status == 410:
                    self.since = None
                    continue
                if self._complain(err, complained):
                    return
                complained = True
                backoff = self._pause(backoff)
            except Exception as err:
                if self._complain(err, complained):
                    return
                complained = True
                backoff = self._pause(backoff)

    def _complain(self, err: Exception, complained: bool) -> bool:
        """Logs the first of a run of failures (a missing CRD would otherwise say so
        every 30 s); True when the watch was stopped (the failure is its closing)."""
        if self._stopped.is_set() or not self.alive():
            return True
        if not complained:
            log.warning("watching %ss: %s", self.scope.kind.kind, err)
        return False

    def _pause(self, backoff: float) -> float:
        self._stopped.wait(backoff * (1 + random.random() / 4))
        return min(backoff * 2, MAX_BACKOFF)


def first_listing(lister: Lister, scope: Scope) -> tuple[list[dict[str, Any]], str | None]:
    """The listing at start; ([], None) when it fails (the watch lists again itself)."""
    try:
        return lister.list(scope)
    except Exception as err:
        log.warning("cannot list %ss at start: %s", scope.kind.kind, err)
        return [], None
