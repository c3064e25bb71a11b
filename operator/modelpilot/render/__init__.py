"""Pure rendering: ManagedModel + render state -> KServe, HPA and Gateway API manifests."""

from modelpilot.render.engine import RenderError
from modelpilot.render.manifests import (
    Rendered,
    ServingPlan,
    UnservableModel,
    mirror_object_name,
    plan_serving,
    render_autoscaler,
    render_inference_service,
    render_mirror,
    render_model,
    render_route,
)
from modelpilot.render.state import RenderState, VersionState, default_render_state, parse_weights

__all__ = [
    "RenderError",
    "RenderState",
    "Rendered",
    "ServingPlan",
    "UnservableModel",
    "VersionState",
    "default_render_state",
    "mirror_object_name",
    "parse_weights",
    "plan_serving",
    "render_autoscaler",
    "render_inference_service",
    "render_mirror",
    "render_model",
    "render_route",
]
