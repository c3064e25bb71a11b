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


def _matches(spec: dict[str, Any], status: dict[str, Any]) -> str:
    """`(x-beta=yes | variant=b -> v2)`: the match rules in force and where they go."""
    if not status.get("matchedVersion"):
        return ""
    rules = []
    for match in (spec.get("rollout") or {}).get("match") or []:
        parts = [
            f"{c['name']}{'~' if c.get('type') == 'RegularExpression' else '='}{c['value']}"
            for c in [*(match.get("headers") or []), *(match.get("queryParams") or [])]
        ]
        rules.append(" & ".join(parts))
    return f" ({' | '.join(rules)} -> {status['matchedVersion']})"


def _mirror(status: dict[str, Any]) -> str:
    """`(a copy of 40% of v1's requests -> v2)`: a shadow in force."""
    if not status.get("mirroredVersion"):
        return ""
    return (
        f" (a copy of {status.get('mirrorPercent', 100)}% of {status.get('stableVersion')}'s "
        f"requests -> {status['mirroredVersion']}, answers discarded)"
    )


def _value(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_analysis(analysis: dict[str, Any] | None) -> list[str]:
    """The last check as a table: one row per metric (and gating webhook)."""
    if not analysis or not (analysis.get("lastCheckAt") or analysis.get("confirmation")):
        return []
    lines = [
        f"  analysis: last check {analysis.get('lastResult') or '-'} at "
        f"{analysis.get('weight', 0)}% ({analysis.get('lastCheckAt', '')}), "
        f"{_value(analysis.get('requests'))} canary requests"
        + (
            f" vs {_value(analysis['stableRequests'])} stable"
            if analysis.get("stableRequests") is not None
            else ""
        )
        + "; failed "
        f"{analysis.get('failedChecks', 0)}, inconclusive in a row "
        f"{analysis.get('inconclusiveChecks', 0)}"
        + ("; promoted by a human before it passed" if analysis.get("overridden") else "")
    ]
    metrics = analysis.get("metrics") or []
    if metrics:
        width = max(6, *(len(m["name"]) for m in metrics))
        lines.append(f"    {'METRIC':<{width}}  {'RESULT':<12}  {'CANARY':>9}  {'STABLE':>9}  WHY")
        for metric in metrics:
            lines.append(
                f"    {metric['name']:<{width}}  {metric['result']:<12}  "
                f"{_value(metric.get('canary')):>9}  {_value(metric.get('stable')):>9}  "
                f"{metric.get('message', '')}".rstrip()
            )
    if analysis.get("confirmation"):
        lines.append(f"    confirm-promotion: {analysis['confirmation']}")
    return lines


def render_registry(registry: dict[str, Any] | None) -> list[str]:
    """Where the alias pointed at the last poll, and why serving differs, if it does."""
    if not registry:
        return []
    alias = registry.get("aliasVersion")
    lines = [
        f"  registry: {registry.get('source') or '-'} -> "
        f"{f'v{alias}' if alias is not None else '?'} (last poll {registry.get('lastPoll') or '-'})"
    ]
    for key in ("error", "disagreement"):
        if registry.get(key):
            lines.append(f"    {registry[key]}")
    return lines


def render_status(model: dict[str, Any], events: list[dict[str, Any]]) -> str:
    meta, spec = model["metadata"], model.get("spec") or {}
    status = model.get("status") or {}
    lines = [
        f"ManagedModel {meta.get('namespace')}/{meta['name']}",
        f"  phase:    {status.get('phase', 'Unknown')}",
        f"  stable:   {status.get('stableVersion') or '-'}",
        f"  target:   {(spec.get('rollout') or {}).get('target') or '-'}",
    ]
    strategy = (spec.get("rollout") or {}).get("strategy") or "Canary"
    if strategy != "Canary":
        lines.append(f"  strategy: {strategy}" + _matches(spec, status) + _mirror(status))
    if status.get("canaryVersion"):
        lines.append(f"  canary:   {status['canaryVersion']}")
    walking = strategy == "Canary" or (strategy == "Shadow" and status.get("shadowPassedAt"))
    if status.get("canaryVersion") and walking:
        steps = (spec.get("rollout") or {}).get("stepWeights") or [10, 25, 50]
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
    lines += render_registry(status.get("registry"))
    lines += render_analysis(status.get("analysis"))
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
