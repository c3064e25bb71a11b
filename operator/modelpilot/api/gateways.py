"""The Gateway API implementations modelpilot knows, and what each does with a route.

Gateway API leaves much to the implementation: a route the apiserver accepts and the
gateway marks Accepted can still break traffic (Traefik v3.6 answers 500 to every
request of a rule with a RequestMirror filter, and ignores a filter on a single
backendRef). Mirroring (shadow traffic) differs most: Envoy Gateway and Istio take the
standard RequestMirror filter; Traefik mirrors through its own TraefikService, which the
route names as its backend; an unknown gateway gets no mirror at all. The operator is
told which gateway it routes through (`--gateway-flavor`) and renders only what that
gateway carries; the analysis picks its queries by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# How a gateway copies requests to a shadow: Gateway API's RequestMirror filter on the
# route's rule, or a Traefik TraefikService (spec.mirroring) as the rule's backend.
Mirror = Literal["RequestMirror", "TraefikService"]

GatewayFlavor = Literal["generic", "traefik", "envoy-gateway", "istio"]
GATEWAY_FLAVORS: tuple[str, ...] = get_args(GatewayFlavor)


@dataclass(frozen=True)
class GatewayTraits:
    # How requests are copied to a shadow; None: the gateway may break on a mirror.
    mirror: Mirror | None
    # A filter on one backendRef is applied (not silently dropped).
    backend_filters: bool
    # Per-backend metrics need a filter on every backendRef: Envoy Gateway merges a
    # rule's backends into one cluster (one set of stats) unless a backendRef carries
    # a filter, which gives it a cluster (and stats) of its own.
    split_backends_for_metrics: bool


TRAITS: dict[str, GatewayTraits] = {
    # Unknown gateway: only what the Gateway API's core conformance promises.
    "generic": GatewayTraits(mirror=None, backend_filters=False, split_backends_for_metrics=False),
    "traefik": GatewayTraits(
        mirror="TraefikService", backend_filters=False, split_backends_for_metrics=False
    ),
    "envoy-gateway": GatewayTraits(
        mirror="RequestMirror", backend_filters=True, split_backends_for_metrics=True
    ),
    "istio": GatewayTraits(
        mirror="RequestMirror", backend_filters=True, split_backends_for_metrics=False
    ),
}


def traits_of(flavor: str) -> GatewayTraits:
    try:
        return TRAITS[flavor]
    except KeyError:
        raise ValueError(
            f"unknown gateway flavor {flavor!r}; use one of {', '.join(GATEWAY_FLAVORS)}"
        ) from None
