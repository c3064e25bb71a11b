"""The ManagedModel status: where traffic is and what the operator saw.

The operator is the only writer. Progress lives here and nowhere else, so a restarted
operator resumes exactly where it was.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal[
    "Pending", "Stable", "Progressing", "WaitingPromotion", "Promoting", "Paused", "Aborted",
    "Failed",
]  # fmt: skip


class StatusModel(BaseModel):
    # Unknown fields are ignored (not refused): status written by a newer operator must
    # still be readable by an older one during an upgrade.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    type: str = Field(description="Ready, Progressing or Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word saying why.")
    message: str = Field(default="", description="What happened, for humans.")
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition describes."
    )


class VersionStatus(StatusModel):
    name: str = Field(description="Version name.")
    inference_service: str = Field(default="", description="The version's InferenceService.")
    runtime: str = Field(default="", description="The serving runtime KServe runs it on.")
    ready: bool = Field(
        default=False,
        description="InferenceService Ready and its predictor Deployment rolled out.",
    )
    stopped: bool = Field(default=False, description="Stopped to free its resources.")
    url: str = Field(default="", description="The InferenceService's own address.")
    message: str = Field(default="", description="Why the version is not ready, if known.")
    unrouted_at: str | None = Field(
        default=None,
        description="When the gateway first accepted a route sending this version nothing "
        "while it was due to stop: it keeps its pods the operator's --drain-delay "
        "longer (RFC 3339).",
    )


class LastCommand(StatusModel):
    name: str = Field(description="The command: promote, abort, pause, ...")
    version: str = Field(default="", description="The version the command named.")
    outcome: str = Field(default="", description="Applied, or why it was refused.")
    at: str = Field(default="", description="When it was handled (RFC 3339).")


class HistoryEntry(StatusModel):
    version: str = Field(description="The candidate version.")
    result: str = Field(description="Promoted, Aborted, Failed, RolledBack or Superseded.")
    start: str = Field(default="", description="When the rollout began (RFC 3339).")
    end: str = Field(default="", description="When it ended (RFC 3339).")
    analysis: str | None = Field(
        default=None,
        description="Overridden when a human promoted before the analysis passed the last step.",
    )


CheckResult = Literal["Passed", "Failed", "Inconclusive"]


class MetricCheck(StatusModel):
    name: str = Field(description="The metric (spec.rollout.analysis.metrics[].name).")
    result: CheckResult = Field(description="Passed, Failed or Inconclusive.")
    canary: float | None = Field(default=None, description="The canary's value.")
    stable: float | None = Field(
        default=None, description="The stable version's value (relative bounds only)."
    )
    message: str = Field(default="", description="Which bound, or why inconclusive.")


class AnalysisStatus(StatusModel):
    last_check_at: str | None = Field(default=None, description="When the last check ran.")
    last_result: CheckResult | None = Field(default=None, description="The last check's result.")
    weight: int | None = Field(default=None, description="The canary weight it was taken at.")
    requests: float | None = Field(
        default=None, description="Requests the canary served in the last check's window."
    )
    stable_requests: float | None = Field(
        default=None, description="Requests the stable version served then (A/B tests)."
    )
    failed_checks: int = Field(default=0, description="Failed checks in this rollout.")
    inconclusive_checks: int = Field(default=0, description="Inconclusive checks in a row.")
    metrics: list[MetricCheck] = Field(default_factory=list, description="Per metric.")
    overridden: bool = Field(
        default=False, description="Promoted by a human before the analysis passed."
    )
    pre_rollout_passed: bool = Field(
        default=False, description="Every pre-rollout webhook answered 2xx."
    )
    confirmation: str | None = Field(
        default=None, description="The confirm-promotion webhooks' last answer."
    )


class MirrorObject(StatusModel):
    name: str = Field(description="The TraefikService's name.")
    written_at: str = Field(description="When the operator first wrote it.")
    released_at: str | None = Field(
        default=None, description="When the gateway accepted a route that no longer names it."
    )


class RegistryVersion(StatusModel):
    name: str = Field(description="The version's name here, v<registry version>.")
    registry_version: int = Field(description="The version number in the registry.")
    storage_uri: str = Field(
        description="Where KServe loads it from (the registry's download URI)."
    )


class RegistryStatus(StatusModel):
    alias_version: int | None = Field(
        default=None, description="The registry version the alias named at the last poll."
    )
    source: str | None = Field(
        default=None, description="tracking URI, model and alias this status was read from."
    )
    versions: list[RegistryVersion] = Field(
        default_factory=list,
        description="The registry versions this model serves or keeps, newest first.",
    )
    last_poll: str | None = Field(default=None, description="When the alias was last read.")
    error: str | None = Field(
        default=None,
        description="Why the last poll failed; everything is held as it was meanwhile.",
    )
    disagreement: str | None = Field(
        default=None,
        description="Set while the version serving is not the alias's: a rollback or an "
        "abort holds until the alias moves.",
    )


class ManagedModelStatus(StatusModel):
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status describes."
    )
    phase: Phase | None = Field(default=None, description="Where the model's rollout is.")
    stable_version: str | None = Field(
        default=None, description="The version with all traffic when no rollout runs."
    )
    canary_version: str | None = Field(default=None, description="The version being rolled out.")
    canary_weight: int | None = Field(default=None, description="Percent of traffic on the canary.")
    step_index: int | None = Field(default=None, description="Index into rollout.stepWeights.")
    weights: dict[str, int] = Field(
        default_factory=dict, description="Weight per version as last applied to the route."
    )
    ready_versions: str | None = Field(
        default=None, description="Ready versions out of all, e.g. 2/2."
    )
    url: str | None = Field(default=None, description="The model's address via the gateway.")
    versions: list[VersionStatus] = Field(default_factory=list, description="Per version.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing and Degraded."
    )
    rollout_started_at: str | None = Field(default=None, description="When the rollout began.")
    step_started_at: str | None = Field(
        default=None, description="When the current weight was applied."
    )
    shared_base_replicas: int | None = Field(
        default=None, description="Stable replicas when a Shared rollout began."
    )
    promoted_at: str | None = Field(default=None, description="When the last promotion ended.")
    queued_since: str | None = Field(
        default=None,
        description="When the model first waited for a rollout slot (the operator's "
        "--max-concurrent-rollouts): queued models start in this order.",
    )
    previous_stable_version: str | None = Field(
        default=None, description="The stable version before the last promotion."
    )
    revision: str | None = Field(
        default=None, description="Hash of the canary's rendered InferenceService spec."
    )
    last_command: LastCommand | None = Field(
        default=None, description="The last annotation command handled."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, description="The last 10 finished rollouts."
    )
    analysis: AnalysisStatus | None = Field(
        default=None, description="The canary analysis of the current rollout."
    )
    matched_version: str | None = Field(
        default=None,
        description="The version the requests matching spec.rollout.match go to (ABTest, "
        "BlueGreen preview).",
    )
    mirrored_version: str | None = Field(
        default=None,
        description="Shadow: the version that gets a copy of the stable's requests.",
    )
    mirror_percent: int | None = Field(
        default=None, description="Shadow: percent of the stable's requests copied to it."
    )
    shadow_passed_at: str | None = Field(
        default=None,
        description="Shadow with then: Canary: when the shadow phase passed; the canary "
        "steps follow.",
    )
    registry: RegistryStatus | None = Field(
        default=None, description="What the model registry said (spec.registry)."
    )
    mirror_objects: list[MirrorObject] = Field(
        default_factory=list,
        description="TraefikServices the operator made to mirror requests and has not "
        "deleted yet (gateway flavor traefik).",
    )
