"""spec.rollout.analysis: the checks that judge a canary at each step.

A check queries Prometheus for every metric, for the canary and (for a bound relative
to it) the stable version over the same window, and comes out Passed, Failed or
Inconclusive. The built-in templates and the placeholders a query may use are listed
here, so that validation, the CRD's descriptions and the query builder agree.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from modelpilot.api.spec_base import (
    DNS1123_LABEL,
    DURATION,
    HTTP_URL,
    HTTP_URL_WITH_HOST,
    SpecModel,
    rules,
)

TEMPLATES = ("success-rate", "latency-p99", "predict-latency-p99")
Template = Literal["success-rate", "latency-p99", "predict-latency-p99"]
PLACEHOLDERS = (
    "namespace",
    "model",
    "version",
    "service",
    "inference_service",
    "revision",
    "route",
    "window",
)
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def unknown_placeholders(query: str) -> list[str]:
    return sorted({name for name in PLACEHOLDER.findall(query) if name not in PLACEHOLDERS})


class AnalysisMetric(SpecModel):
    model_config = SpecModel.model_config | {
        "json_schema_extra": rules(
            ("has(self.template) != has(self.query)", "set exactly one of template or query"),
            (
                "has(self.min) || has(self.max) || has(self.minRatioToStable) || "
                "has(self.maxRatioToStable)",
                "set at least one bound: min, max, minRatioToStable or maxRatioToStable",
            ),
        )
    }

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="The metric's name, in status and Events.",
    )
    template: Template | None = Field(
        default=None,
        description="A built-in query: success-rate (percent of the version's requests "
        "not answered 5xx, at the gateway), latency-p99 (ms, at the gateway), "
        "predict-latency-p99 (ms, KServe's model server). The gateway ones follow the "
        "operator's --gateway-flavor; in Knative mode they read Knative's queue-proxy "
        "metrics of the version's revisions.",
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL returning one number. Placeholders {{ namespace }}, "
        "{{ model }}, {{ version }}, {{ service }} (the version's predictor Service), "
        "{{ inference_service }}, {{ route }} become quoted, escaped strings; "
        "{{ revision }} (Knative mode) a quoted regular expression of the version's "
        "revisions, for =~; {{ window }} a duration.",
    )
    window: str | None = Field(
        default=None,
        pattern=DURATION,
        max_length=32,
        description="The range the query looks back over (default: the analysis interval).",
    )
    min: float | None = Field(default=None, description="The canary's value must be >= this.")
    max: float | None = Field(default=None, description="The canary's value must be <= this.")
    min_ratio_to_stable: float | None = Field(
        default=None,
        gt=0,
        description="canary / stable must be >= this (higher-is-better metrics, such as a "
        "success rate).",
    )
    max_ratio_to_stable: float | None = Field(
        default=None,
        gt=0,
        description="canary / stable must be <= this (lower-is-better metrics, such as "
        "latency): a slowdown of both versions does not fail the canary.",
    )

    @property
    def relative(self) -> bool:
        return self.min_ratio_to_stable is not None or self.max_ratio_to_stable is not None


class PrometheusSource(SpecModel):
    address: str | None = Field(
        default=None,
        pattern=HTTP_URL,
        max_length=2048,
        description="Prometheus's base URL, e.g. http://prometheus.monitoring:9090 "
        "(default: the operator's --prometheus-url).",
    )


class Analysis(SpecModel):
    metrics: list[AnalysisMetric] = Field(
        min_length=1, max_length=10, description="What each check measures and its bounds."
    )
    interval: str | None = Field(
        default=None,
        pattern=DURATION,
        max_length=32,
        description="How often checks run at each weight (default: rollout.interval).",
    )
    threshold: int = Field(
        default=2, ge=1, le=100, description="Failed checks in one rollout that roll it back."
    )
    min_requests: int = Field(
        default=50,
        ge=0,
        description="Requests the canary must have served in the window for a check to "
        "count; fewer make it inconclusive.",
    )
    inconclusive_limit: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Inconclusive checks in a row that pause the rollout for a human.",
    )
    prometheus: PrometheusSource = Field(
        default_factory=PrometheusSource, description="Where the metrics are."
    )


WebhookType = Literal[
    "pre-rollout", "rollout", "confirm-promotion", "post-rollout", "rollback", "event"
]
GATING_WEBHOOKS = frozenset({"pre-rollout", "rollout", "confirm-promotion"})


class Webhook(SpecModel):
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="The hook's name, in status and Events.",
    )
    type: WebhookType = Field(
        description="pre-rollout: must answer 2xx before the canary gets weight (else a "
        "failed check); rollout: called at every check, non-2xx is a failed check; "
        "confirm-promotion: an automatic promotion waits until it answers 2xx; "
        "post-rollout, rollback, event: notifications (best effort)."
    )
    url: str = Field(
        pattern=HTTP_URL_WITH_HOST,
        max_length=2048,
        description="http(s) URL called with a JSON POST; its host must be allowed by the "
        "operator's --webhook-allow (default: the cluster's Service DNS names).",
    )
    timeout: str = Field(
        default="10s", pattern=DURATION, max_length=32, description="How long a call may take."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Passed through in the payload's metadata."
    )
