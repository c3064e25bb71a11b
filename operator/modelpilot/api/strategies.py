"""spec.rollout.strategy and the request matches A/B tests and blue/green previews use.

A shadow copies a share of the stable version's requests to the candidate and discards
its answers; how a gateway mirrors is its own business (api/gateways.py).

Matches are Gateway API HTTPRoute matches (headers and query parameters, exact or a
regular expression), so they work on any conformant gateway. A cookie is a header match
on `Cookie` with a regular expression.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelpilot.api.spec_base import SpecModel, rules

Strategy = Literal["Canary", "ABTest", "Shadow", "BlueGreen"]
MAX_MATCHES = 7  # a route rule holds 8 matches; a pin rule adds its own to each
# RFC 7230 token characters, as Gateway API's HTTPHeaderName.
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"

# An invalid regular expression makes both `matches` calls fail, so the rule errors and
# the apiserver refuses the object; a valid one makes exactly one of them true.
_VALID_REGEX = (
    "self.type != 'RegularExpression' || ''.matches(self.value) || !''.matches(self.value)",
    "value must be a valid regular expression (RE2 syntax)",
)


class HeaderMatch(SpecModel):
    model_config = SpecModel.model_config | {"json_schema_extra": rules(_VALID_REGEX)}

    name: str = Field(min_length=1, max_length=256, pattern=HEADER_NAME, description="Header name.")
    value: str = Field(min_length=1, max_length=4096, description="Value or pattern.")
    type: Literal["Exact", "RegularExpression"] = Field(
        default="Exact", description="Exact, or RegularExpression (RE2)."
    )


class QueryParamMatch(SpecModel):
    model_config = SpecModel.model_config | {"json_schema_extra": rules(_VALID_REGEX)}

    name: str = Field(
        min_length=1, max_length=256, pattern=HEADER_NAME, description="Query parameter."
    )
    value: str = Field(min_length=1, max_length=1024, description="Value or pattern.")
    type: Literal["Exact", "RegularExpression"] = Field(
        default="Exact", description="Exact, or RegularExpression (RE2)."
    )


class RequestMatch(SpecModel):
    model_config = SpecModel.model_config | {
        "json_schema_extra": rules(
            (
                "size(self.headers) + size(self.queryParams) > 0",
                "a match needs at least one header or query parameter",
            )
        )
    }

    # Plain defaults (not factories) so the CRD carries them and CEL can read them.
    headers: list[HeaderMatch] = Field(
        default=[], max_length=8, description="Headers that must all match."
    )
    query_params: list[QueryParamMatch] = Field(
        default=[], max_length=8, description="Query parameters that must all match."
    )
