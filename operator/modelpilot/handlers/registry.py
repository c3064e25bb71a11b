"""A registry-driven model's versions (spec.registry): poll the alias when due, record
what the registry said in status.registry, and derive the spec the reconcile works on.

Polling is level-based on status.registry.lastPoll, so a restart neither polls early nor
forgets a version. While the registry cannot be read, the alias is gone, or it names an
artifact KServe cannot download, the model is held exactly as it is (Degraded, one
Event): traffic never changes because the registry is away.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelpilot.api import ManagedModel
from modelpilot.api.spec import Registry
from modelpilot.api.status import ManagedModelStatus, RegistryStatus, RegistryVersion
from modelpilot.probes.mlflow import (
    AliasNotFound,
    MlflowRegistry,
    RegistryError,
    undownloadable_scheme,
)
from modelpilot.rollout.durations import parse_duration, seconds_since, stamp
from modelpilot.rollout.registry import registry_spec, served_versions, version_name


class RegistryClient(Protocol):
    def alias_version(self, model: str, alias: str) -> int: ...

    def download_uri(self, model: str, version: int) -> str: ...


RegistryClients = Callable[[str], RegistryClient]  # tracking URI -> its client


def mlflow_clients(auth_dir: Path | None = None) -> RegistryClients:
    """auth_dir: a mounted Secret (token, or username and password), read per call."""
    return lambda uri: MlflowRegistry(uri, auth_dir=auth_dir)


@dataclass(frozen=True)
class Resolved:
    """The registry's answer for this reconcile: the spec to work on, or why to hold."""

    status: ManagedModelStatus  # with status.registry as it should be written
    model: ManagedModel | None  # None: hold (see held)
    held: tuple[str, str] | None = None  # (reason, message) for Degraded
    next_poll: float | None = None  # seconds until the alias is due again


def source_of(registry: Registry) -> str:
    mlflow = registry.mlflow
    return f"{mlflow.tracking_uri} {mlflow.model}@{mlflow.alias}"


def resolve(
    model: ManagedModel,
    status: ManagedModelStatus,
    clients: RegistryClients,
    now: dt.datetime,
    woken: bool = False,
) -> Resolved:
    """woken: a signed webhook said the alias moved; poll now, whatever the interval."""
    registry = model.spec.registry
    assert registry is not None
    interval = parse_duration(registry.poll_interval)
    current = status.registry or RegistryStatus()
    source = source_of(registry)
    if current.source != source:  # another registry, model or alias: start afresh
        current = RegistryStatus(source=source, versions=current.versions)
    due = woken or current.last_poll is None or seconds_since(current.last_poll, now) >= interval
    if due:
        current = _poll(registry, current, clients(registry.mlflow.tracking_uri), now)
    next_poll = max(0.0, interval - seconds_since(current.last_poll, now))
    if current.error is not None or current.alias_version is None:
        message = current.error or "the registry has not been read yet"
        held = status.model_copy(update={"registry": current})
        return Resolved(held, None, ("RegistryUnavailable", message), next_poll)
    served = served_versions(
        current.versions,
        current.alias_version,
        status.stable_version,
        status.weights,
        registry.keep,
    )
    current = current.model_copy(update={"versions": served})
    derived = model.model_copy(update={"spec": registry_spec(model.spec, current)})
    return Resolved(status.model_copy(update={"registry": current}), derived, None, next_poll)


def _poll(
    registry: Registry, current: RegistryStatus, client: RegistryClient, now: dt.datetime
) -> RegistryStatus:
    mlflow = registry.mlflow
    polled = current.model_copy(update={"last_poll": stamp(now)})
    try:
        number = client.alias_version(mlflow.model, mlflow.alias)
        known = {v.registry_version for v in current.versions}
        versions = list(current.versions)
        if number not in known:
            uri = client.download_uri(mlflow.model, number)
            scheme = undownloadable_scheme(uri)
            if scheme is not None:
                return polled.model_copy(
                    update={
                        "error": f"{mlflow.model} version {number} is stored at {uri}, which "
                        f"KServe cannot download ({scheme}): point MLflow's artifact store "
                        "at object storage KServe reads (s3://, gs://, hdfs://, https://...) "
                        "and register the version there; the model is held meanwhile"
                    }
                )
            versions.append(
                RegistryVersion(name=version_name(number), registry_version=number, storage_uri=uri)
            )
    except AliasNotFound as missing:
        return polled.model_copy(
            update={
                "error": f"{missing}: set the alias {mlflow.alias!r} on a version of "
                f"{mlflow.model} (or fix spec.registry.mlflow); the model is held meanwhile"
            }
        )
    except RegistryError as err:
        return polled.model_copy(
            update={"error": f"{err}; the model is held as it is until the registry answers"}
        )
    return polled.model_copy(update={"alias_version": number, "versions": versions, "error": None})
