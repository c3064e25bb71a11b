"""The text `modelpilot status` prints: phase, weights, versions, a progress bar across
the steps, recent Events. Pure: objects in, text out."""

from __future__ import annotations

from typing import Any

BAR_WIDTH = 30


def progress_bar(steps: list[int], weight: int, phase: str | None) -> str:
    """`[#####|-----|-----]` with a mark per step; filled up to the canary's weight."""
    filled = round(BAR_WIDTH * weight / 100)
    cells = ["#" if i < filled else "-" for i in range(BAR_WIDTH)]
    for step in steps:
        cells[min(BAR_WIDTH - 1, round(BAR_WIDTH * step / 100))] = "|"
    done = sum(1 for s in steps if s <= weight)
    return f"[{''.join(cells)}] {weight}% (step {done}/{len(steps)}, {phase})"


def render_status(model: dict[str, Any], events: list[dict[str, Any]]) -> str:
    meta, spec = model["metadata"], model.get("spec") or {}
    status = model.get("status") or {}
    lines = [
        f"ManagedModel {meta.get('namespace')}/{meta['name']}",
        f"  phase:    {status.get('phase', 'Unknown')}",
        f"  stable:   {status.get('stableVersion') or '-'}",
        f"  target:   {(spec.get('rollout') or {}).get('target') or '-'}",
    ]
    if status.get("canaryVersion"):
        steps = (spec.get("rollout") or {}).get("stepWeights") or [10, 25, 50]
        lines.append(f"  canary:   {status['canaryVersion']}")
        lines.append(
            "  progress: "
            + progress_bar(steps, int(status.get("canaryWeight") or 0), status.get("phase"))
        )
    weights = status.get("weights") or {}
    lines.append(
        "  weights:  " + (", ".join(f"{v}={w}%" for v, w in weights.items()) or "(no route yet)")
    )
    if status.get("url"):
        lines.append(f"  url:      {status['url']}")
    lines.append("  versions:")
    for version in status.get("versions") or []:
        state = (
            "stopped"
            if version.get("stopped")
            else ("ready" if version.get("ready") else "not ready")
        )
        note = f"  {version['message']}" if version.get("message") else ""
        lines.append(f"    {version['name']:<16} {state:<10} {version.get('runtime', '')}{note}")
    for cond in status.get("conditions") or []:
        message = f": {cond['message']}" if cond.get("message") else ""
        lines.append(f"  {cond['type']}={cond['status']} ({cond.get('reason', '')}){message}")
    command = status.get("lastCommand")
    if command:
        lines.append(
            f"  last command: {command['name']} {command.get('version', '')} -> "
            f"{command.get('outcome', '')}"
        )
    recent = sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")[-8:]
    if recent:
        lines.append("  events:")
        for event in recent:
            when = (event.get("lastTimestamp") or event.get("eventTime") or "")[11:19]
            lines.append(
                f"    {when} {event.get('type', ''):<7} {event.get('reason', ''):<18} "
                f"{event.get('message', '')}"
            )
    return "\n".join(lines) + "\n"
