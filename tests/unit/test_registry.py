"""Registry-driven models (spec.registry): which versions serve, and the reconcile
against an in-memory registry: an alias move is a canary, the registry away holds
everything, an artifact KServe cannot download is refused."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from modelpilot.api.status import RegistryVersion
from modelpilot.probes.mlflow import AliasNotFound, RegistryError
from modelpilot.rollout.registry import served_versions
from tests.unit.test_manage import MODEL, NAME, NS, World


def known(*numbers: int) -> list[RegistryVersion]:
    return [
        RegistryVersion(name=f"v{n}", registry_version=n, storage_uri=f"s3://m/iris/{n}")
        for n in numbers
    ]


def names(versions: list[RegistryVersion]) -> list[str]:
    return [v.name for v in versions]


def test_the_alias_version_serves_alone_at_first() -> None:
    assert names(served_versions(known(1), 1, None, {}, keep=1)) == ["v1"]


def test_the_stable_stays_beside_the_new_alias_version() -> None:
    assert names(served_versions(known(1, 2), 2, "v1", {"v1": 100}, keep=0)) == ["v2", "v1"]


def test_keep_bounds_the_stopped_versions_and_traffic_is_never_pruned() -> None:
    everything = known(1, 2, 3, 4)
    assert names(served_versions(everything, 4, "v3", {"v3": 100}, keep=1)) == ["v4", "v3", "v2"]
    assert names(served_versions(everything, 4, "v4", {"v4": 100}, keep=0)) == ["v4"]
    # v1 still carries traffic (a canary aborted toward it, say): kept whatever keep says.
    assert names(served_versions(everything, 4, "v3", {"v3": 90, "v1": 10}, keep=0)) == [
        "v4",
        "v3",
        "v1",
    ]


class MemoryRegistry:
    """An in-memory MLflow: aliases, download URIs, and an off switch."""

    def __init__(self) -> None:
        self.aliases: dict[str, int] = {}
        self.uris: dict[int, str] = {}
        self.down = False
        self.calls = 0

    def alias_version(self, model: str, alias: str) -> int:
        self.calls += 1
        if self.down:
            raise RegistryError("cannot reach http://mlflow:5000: connection refused")
        if alias not in self.aliases:
            raise AliasNotFound(f"registered model {model!r} has no alias {alias!r}")
        return self.aliases[alias]

    def download_uri(self, model: str, version: int) -> str:
        if self.down:
            raise RegistryError("cannot reach http://mlflow:5000: connection refused")
        return self.uris[version]


REGISTRY_MODEL: dict[str, Any] = copy.deepcopy(MODEL)
REGISTRY_MODEL["spec"].pop("versions")
REGISTRY_MODEL["spec"]["rollout"].pop("target")
REGISTRY_MODEL["spec"]["registry"] = {
    "mlflow": {"trackingUri": "http://mlflow:5000", "model": "iris", "alias": "champion"},
    "pollInterval": "30s",
}


class RegistryWorld(World):
    def __init__(self) -> None:
        super().__init__(copy.deepcopy(REGISTRY_MODEL))
        self.registry = MemoryRegistry()
        self.registry.uris = {n: f"s3://models/iris/{n}" for n in range(1, 5)}

    def reconcile(self, *, after: float = 0.0, woken: bool = False) -> Any:
        from modelpilot.handlers.manage import manage

        self.now += dt.timedelta(seconds=after)
        return manage(
            self.cluster,
            NS,
            NAME,
            self.runtimes,
            self.settings,
            now=self.now,
            checks=self.checks,
            registries=lambda uri: self.registry,
            registry_woken=woken,
        )


@pytest.fixture
def champion_1() -> RegistryWorld:
    world = RegistryWorld()
    world.registry.aliases["champion"] = 1
    world.converge()
    assert world.route() == {"v1": 100} and world.status()["phase"] == "Stable"
    return world


def test_the_alias_version_is_served_with_the_registry_uri(champion_1: RegistryWorld) -> None:
    registry = champion_1.status()["registry"]
    assert registry["aliasVersion"] == 1
    assert registry["versions"] == [
        {"name": "v1", "registryVersion": 1, "storageUri": "s3://models/iris/1"}
    ]
    assert champion_1.model()["spec"].get("versions") is None  # spec is never written


def test_polls_wait_for_the_interval_and_say_when(champion_1: RegistryWorld) -> None:
    calls = champion_1.registry.calls
    outcome = champion_1.reconcile(after=10)
    assert champion_1.registry.calls == calls
    assert outcome.requeue_after is not None and outcome.requeue_after <= 20
    champion_1.reconcile(after=21)
    assert champion_1.registry.calls == calls + 1


def test_a_webhook_wake_polls_at_once_and_the_poll_decides(champion_1: RegistryWorld) -> None:
    calls = champion_1.registry.calls
    champion_1.registry.aliases["champion"] = 2
    champion_1.reconcile(after=1, woken=True)
    assert champion_1.registry.calls == calls + 1
    assert champion_1.status()["registry"]["aliasVersion"] == 2
    # A wake whose alias did not move (a replay, another MLflow) changes nothing.
    champion_1.reconcile(after=1, woken=True)
    assert champion_1.status()["registry"]["aliasVersion"] == 2


def test_an_alias_move_is_a_canary_from_the_version_served(champion_1: RegistryWorld) -> None:
    champion_1.registry.aliases["champion"] = 2
    champion_1.reconcile(after=31)
    champion_1.converge()
    status = champion_1.status()
    assert (status["stableVersion"], status.get("canaryVersion")) == ("v1", "v2")
    assert status["phase"] in ("Progressing", "WaitingPromotion")
    assert champion_1.route()["v1"] > 0 and champion_1.route()["v2"] > 0


def test_an_abort_holds_until_the_alias_moves_and_status_says_they_disagree(
    champion_1: RegistryWorld,
) -> None:
    champion_1.registry.aliases["champion"] = 2
    champion_1.reconcile(after=31)
    champion_1.converge()
    champion_1.annotate("modelpilot.io/abort", "v2")
    champion_1.converge()
    status = champion_1.status()
    assert status["phase"] == "Aborted" and champion_1.route() == {"v1": 100}
    said = status["registry"]["disagreement"]
    assert "alias names v2 but v1 serves (Aborted)" in said and "move it to 1" in said
    # Polls that find the alias where it was keep the hold.
    champion_1.reconcile(after=31)
    assert champion_1.status()["phase"] == "Aborted" and champion_1.route() == {"v1": 100}
    # The data scientist moves the alias back: registry and serving agree again.
    champion_1.registry.aliases["champion"] = 1
    champion_1.reconcile(after=31)
    champion_1.converge()
    status = champion_1.status()
    assert status["phase"] == "Stable" and status["stableVersion"] == "v1"
    assert status["registry"].get("disagreement") is None


def test_the_registry_away_holds_traffic_and_says_why(champion_1: RegistryWorld) -> None:
    champion_1.registry.down = True
    writes = champion_1.writes_of(lambda: champion_1.reconcile(after=31))
    assert {w.verb for w in writes} <= {"status", "event"}
    degraded = champion_1.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RegistryUnavailable")
    assert "connection refused" in degraded["message"]
    assert champion_1.route() == {"v1": 100}
    # Again at the next poll: no second Event for the same reason.
    again = champion_1.writes_of(lambda: champion_1.reconcile(after=31))
    assert [w.verb for w in again if w.verb == "event"] == []
    champion_1.registry.down = False
    champion_1.reconcile(after=31)
    champion_1.converge()
    assert champion_1.condition("Degraded")["status"] == "False"


def test_a_deleted_alias_holds_and_names_the_fix(champion_1: RegistryWorld) -> None:
    del champion_1.registry.aliases["champion"]
    champion_1.reconcile(after=31)
    message = champion_1.condition("Degraded")["message"]
    assert "no alias 'champion'" in message and "set the alias" in message
    assert champion_1.route() == {"v1": 100}


@pytest.mark.parametrize(
    "uri", ["mlflow-artifacts:/1/abc/artifacts", "models:/m-123", "runs:/x/model"]
)
def test_an_artifact_kserve_cannot_download_is_never_rendered(
    champion_1: RegistryWorld, uri: str
) -> None:
    champion_1.registry.uris[2] = uri
    champion_1.registry.aliases["champion"] = 2
    champion_1.reconcile(after=31)
    message = champion_1.condition("Degraded")["message"]
    assert uri in message and "KServe cannot download" in message
    assert champion_1.route() == {"v1": 100}
    assert "v2" not in champion_1.applied_versions()


def test_a_promoted_alias_prunes_beyond_keep(champion_1: RegistryWorld) -> None:
    for version in (2, 3):
        champion_1.registry.aliases["champion"] = version
        champion_1.reconcile(after=31)
        champion_1.converge()
        champion_1.annotate("modelpilot.io/promote", f"v{version}")
        champion_1.converge()
        assert champion_1.status()["stableVersion"] == f"v{version}"
    champion_1.reconcile(after=31)
    champion_1.converge()
    assert sorted(champion_1.applied_versions()) == ["v2", "v3"]  # keep 1: v1 pruned
