"""Leader election on a `coordination.k8s.io/v1` Lease: one replica writes, the others
keep their watch caches warm and write nothing until they hold the Lease.

The rules follow client-go's leader election, which the Kubernetes controllers use:
- a replica takes the Lease when it is free (no holder) or when its record has not
  changed for `leaseDurationSeconds` by the replica's own clock (the holder's
  timestamps are never compared with ours: clocks differ, elapsed time does not);
- the holder renews every `retry_period`; it stops writing `renew_deadline` after the
  last renewal it *sent* succeeded, which is before any other replica can see the
  Lease expire (`renew_deadline < duration`): the gap covers a write already in flight;
- a replica that stops leading on purpose (SIGTERM) waits for its writes in flight,
  then frees the Lease, so a rolling update hands over within one `retry_period`.

Every write of the operator's own client passes `LeaderElector.writing()` (see
`Kube.fence`): the fence, not the election loop, is what guarantees that a replica
that lost the Lease writes nothing, even while its renewal call hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)
LEASE_API_VERSION = "coordination.k8s.io/v1"


class NotLeading(Exception):
    """A write was attempted by a replica that does not hold the Lease (or may no
    longer be sure it does): it is refused before it leaves the process."""


class LeaseConflict(Exception):
    """The Lease changed (or appeared) since it was read: someone else wrote it."""


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, "
                f"got {self.retry_period} / {self.renew_deadline} / {self.duration} s"
            )


Step = Literal["create", "renew", "take", "wait"]


def next_step(lease: dict[str, Any] | None, identity: str, unchanged_for: float) -> Step:
    """What a replica does with the Lease as read; unchanged_for: seconds, by this
    replica's clock, since it last saw the Lease's record change."""
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if holder == identity:
        return "renew"
    if not holder:
        return "take"
    duration = spec.get("leaseDurationSeconds")
    if not isinstance(duration, int) or unchanged_for >= duration:
        return "take"
    return "wait"


def claimed(
    lease: dict[str, Any] | None,
    identity: str,
    timing: LeaseTiming,
    now: dt.datetime,
    *,
    name: str,
    namespace: str,
) -> dict[str, Any]:
    """The Lease as the replica that holds it next writes it (create, take or renew).
    The resourceVersion read is kept: the write fails if anyone wrote in between."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = dict((lease or {}).get("spec") or {})
    taking = spec.get("holderIdentity") != identity
    if taking:
        spec["acquireTime"] = stamp
        if lease is not None and spec.get("holderIdentity"):
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.setdefault("leaseTransitions", 0)
    spec |= {
        "holderIdentity": identity,
        "leaseDurationSeconds": math.ceil(timing.duration),
        "renewTime": stamp,
    }
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    version = ((lease or {}).get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = version
    return {"apiVersion": LEASE_API_VERSION, "kind": "Lease", "metadata": metadata, "spec": spec}


def released(lease: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The Lease freed by its holder: no holder, so a standby takes it at once."""
    spec = dict(lease.get("spec") or {})
    spec.pop("holderIdentity", None)
    spec |= {"leaseDurationSeconds": 1, "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    return {**lease, "spec": spec}


@dataclass(frozen=True)
class Election:
    """Who this replica is and which Lease the replicas share."""

    identity: str
    lease_name: str = "modelpilot"
    lease_namespace: str = "default"
    timing: LeaseTiming = LeaseTiming()

    def elector(self, api: Any) -> LeaderElector:
        """An elector on the real Lease through the kubernetes ApiClient api. A call
        that hangs gives up within the renew deadline's half, so the next round runs."""
        store = KubeLeaseStore(
            api, self.lease_name, self.lease_namespace, self.timing.renew_deadline / 2
        )
        return LeaderElector(store, self.identity, self.timing)


class LeaseStore(Protocol):
    """One Lease, by name: the election's only door to the cluster."""

    name: str
    namespace: str

    def read(self) -> dict[str, Any] | None: ...

    def create(self, lease: dict[str, Any]) -> dict[str, Any]:
        """Raises LeaseConflict if it exists."""
        ...

    def replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        """Raises LeaseConflict if its resourceVersion is not the stored one."""
        ...


class KubeLeaseStore:
    def __init__(self, api: Any, name: str, namespace: str, timeout: float) -> None:
        from kubernetes import client  # the operator's dependency; not the unit tests'

        self.name, self.namespace, self._timeout = name, namespace, timeout
        self._api_client = api
        self._coordination = client.CoordinationV1Api(api)
        self._error = client.ApiException

    def _plain(self, lease: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self._api_client.sanitize_for_serialization(lease)
        return plain

    def read(self) -> dict[str, Any] | None:
        try:
            found = self._coordination.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
        except self._error as err:
            if err.status == 404:
                return None
            raise
        return self._plain(found)

    def create(self, lease: dict[str, Any]) -> dict[str, Any]:
        try:
            made = self._coordination.create_namespaced_lease(
                self.namespace,
                lease,  # type: ignore[arg-type]  # the client serializes a plain dict as is
                _request_timeout=self._timeout,
            )
        except self._error as err:
            if err.status == 409:
                raise LeaseConflict(str(err.reason)) from None
            raise
        return self._plain(made)

    def replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        try:
            written = self._coordination.replace_namespaced_lease(
                self.name,
                self.namespace,
                lease,  # type: ignore[arg-type]  # the client serializes a plain dict as is
                _request_timeout=self._timeout,
            )
        except self._error as err:
            if err.status == 409:
                raise LeaseConflict(str(err.reason)) from None
            raise
        return self._plain(written)


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        timing: LeaseTiming | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store, self.identity = store, identity
        self.timing = timing or LeaseTiming()
        self._clock, self._wall_clock = clock, wall_clock
        self._lock = threading.Lock()
        self._leading = False
        self._renewed_at = -math.inf  # when the last successful renewal was sent
        self._in_flight = 0
        self._seen: tuple[Any, ...] | None = None  # the Lease record last read
        self._seen_changed_at = clock()
        self._stopping = False
        self.transitions: list[tuple[float, bool]] = []  # (clock, leading) for metrics/logs
        self._leading_event: asyncio.Event | None = None

    # The fence ---------------------------------------------------------------------

    def may_write(self) -> bool:
        with self._lock:
            return self._may_write()

    def _may_write(self) -> bool:
        return (
            self._leading
            and not self._stopping
            and self._clock() < self._renewed_at + self.timing.renew_deadline
        )

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around every write: refused unless this replica surely leads; counted while
        in flight, so a release waits for it."""
        with self._lock:
            if not self._may_write():
                raise NotLeading(f"{self.identity} does not hold the lease")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    @property
    def leading(self) -> bool:
        return self.may_write()

    # The election ------------------------------------------------------------------

    def attempt(self) -> bool:
        """One round: read the Lease, then create, take or renew it if this replica
        may. Returns whether this replica leads afterwards (and may write)."""
        sent = self._clock()
        try:
            lease = self.store.read()
            record = _record(lease)
            if record != self._seen:
                self._seen, self._seen_changed_at = record, sent
            step = next_step(lease, self.identity, sent - self._seen_changed_at)
            if step == "wait":  # someone else holds it: whatever we believed, we do not
                with self._lock:
                    self._leading = False
            elif not self._stopping:
                body = claimed(
                    lease,
                    self.identity,
                    self.timing,
                    self._wall_clock(),
                    name=self.store.name,
                    namespace=self.store.namespace,
                )
                written = self.store.create(body) if step == "create" else self.store.replace(body)
                self._seen, self._seen_changed_at = _record(written), sent
                with self._lock:
                    self._leading, self._renewed_at = True, sent
        except LeaseConflict as err:
            log.debug("lease %s changed under us: %s", self.store.name, err)
        except Exception as err:  # the apiserver away: the fence decides, not this
            log.warning("cannot read or renew lease %s: %s", self.store.name, err)
        with self._lock:
            if self._leading and not self._may_write():
                self._leading = False
            return self._leading

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Elect forever (until cancelled). on_change(leading) is called from the event
        loop whenever this replica starts or stops leading."""
        event = self._event()
        was = False
        while True:
            now = await asyncio.to_thread(self.attempt)
            if now != was:
                was = now
                self.transitions.append((self._clock(), now))
                if now:
                    log.info("%s became leader (lease %s)", self.identity, self.store.name)
                    event.set()
                else:
                    log.warning(
                        "%s lost the lease %s: stops writing", self.identity, self.store.name
                    )
                    event.clear()
                if on_change is not None:
                    on_change(now)
            await asyncio.sleep(self.timing.retry_period)

    def _event(self) -> asyncio.Event:
        if self._leading_event is None:
            self._leading_event = asyncio.Event()
        return self._leading_event

    async def wait_leading(self) -> None:
        await self._event().wait()

    async def release(self, drain: float = 5.0) -> None:
        """Stop writing, wait for writes in flight (at most drain seconds), then free
        the Lease if this replica still holds it."""
        with self._lock:
            self._stopping = True
            held = self._leading
        self._event().clear()
        if not held:
            return
        deadline = self._clock() + drain
        while self._in_flight and self._clock() < deadline:
            await asyncio.sleep(0.05)
        try:
            await asyncio.to_thread(self._release)
        except Exception as err:  # the standby takes over after the lease duration
            log.warning("could not release lease %s: %s", self.store.name, err)

    def _release(self) -> None:
        lease = self.store.read()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        self.store.replace(released(lease, self._wall_clock()))
        with self._lock:
            self._leading = False
        log.info("%s released the lease %s", self.identity, self.store.name)


def _record(lease: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What tells that the Lease's holder is alive: any change of holder or renewal."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return (
        spec.get("holderIdentity"),
        spec.get("renewTime"),
        spec.get("acquireTime"),
        spec.get("leaseDurationSeconds"),
        (lease.get("metadata") or {}).get("resourceVersion"),
    )
