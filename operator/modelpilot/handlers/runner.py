"""Run the operator: blocking for `modelpilot run`, or in a thread for tests."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import kopf

from modelpilot.handlers import wiring
from modelpilot.handlers.manage import Settings
from modelpilot.k8s.client import Kube
from modelpilot.k8s.leader import Election

log = logging.getLogger(__name__)


async def run_operator(
    kube: Kube,
    settings: Settings,
    *,
    namespaces: Sequence[str] = (),
    liveness: str | None = None,
    metrics_port: int | None = None,
    stop_flag: threading.Event | asyncio.Event | None = None,
    ready_flag: threading.Event | asyncio.Event | None = None,
    state: wiring.OperatorState | None = None,
    election: Election | None = None,
) -> wiring.OperatorState:
    state = state or operator_state(kube, settings, namespaces, election, metrics_port)
    # No kopf peering: it pauses every replica while another is alive, which fences
    # nothing (a paused replica's writes in flight still land). The Lease does.
    await kopf.operator(
        registry=kopf.get_default_registry(),
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=True,
        liveness_endpoint=liveness,
        memo=kopf.Memo(state=state),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
    return state


def operator_state(
    kube: Kube,
    settings: Settings,
    namespaces: Sequence[str] = (),
    election: Election | None = None,
    metrics_port: int | None = None,
) -> wiring.OperatorState:
    return wiring.OperatorState(
        kube=kube,
        settings=settings,
        metrics_port=metrics_port,
        namespaces=tuple(namespaces),
        elector=election.elector(kube.api) if election is not None else None,
        identity=election.identity if election is not None else None,
    )


class OperatorThread:
    """The operator in a background thread of this process (tests, the demo); without
    an election it writes whenever it likes, as the only replica."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings | None = None,
        namespaces: Sequence[str] = (),
        election: Election | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings or Settings()
        self.namespaces = namespaces
        self.state = operator_state(kube, self.settings, namespaces, election)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="modelpilot-operator", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(
                run_operator(
                    self.kube,
                    self.settings,
                    namespaces=self.namespaces,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    state=self.state,
                )
            )
        except BaseException as err:
            self.error = err
            self._ready.set()
            raise

    def start(self, timeout: float = 30.0) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"operator did not start: {self.error}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("operator did not stop in time")

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
