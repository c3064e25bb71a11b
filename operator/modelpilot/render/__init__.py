"""Pure rendering: ManagedModel + render state -> KServe, HPA and Gateway API manifests."""

from modelpilot.render.engine import RenderError
from modelpilot.render.manifests import (
    Rendered,
    UnservableModel,
    render_autoscaler,
    render_inference_service,
    render_model,
    render_route,
)
from modelpilot.render.state import RenderState, VersionState, default_render_state, parse_weights

__all__ = [
    "RenderError",
    "RenderState",
    "Rendered",
    "UnservableModel",
    "VersionState",
    "default_render_state",
    "parse_weights",
    "render_autoscaler",
    "render_inference_service",
    "render_model",
    "render_route",
]
