"""`make demo` end to end: its own control plane, real predictions, the rollout, the stop.

Marked `cluster` (it needs the control-plane tools, like the cluster tier); it skips only
when the tools are not built and Go is missing, never under CI=true.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest

from modelpilot_dev import demo, tools

pytestmark = pytest.mark.cluster


def _skip_without_tools() -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if tools.missing() and tools.go_binary() is None and not in_ci:
        pytest.skip("the demo needs the control-plane tools (go not found to build them)")


def test_demo_rolls_v1_to_v2_rolls_back_a_broken_v3_and_stops_everything(
    store_root: Path,
) -> None:
    import psutil

    _skip_without_tools()
    tools.ensure_all(log=lambda _line: None)
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    out = io.StringIO()
    started = time.monotonic()
    assert demo.main(store_root=store_root, out=out) == 0, out.getvalue()
    elapsed = time.monotonic() - started
    text, _, act2 = out.getvalue().partition("==> act 2:")
    assert act2, out.getvalue()

    # It says what is real and what is simulated, shows real predictions, every step of
    # the rollout, and what clients saw through the real gateway: no request failed.
    assert "REAL: the gateway (Traefik" in text and "SIMULATED: KServe's controller" in text
    assert re.search(r"clients: v1 \d+ \(\d+\.\d%\) v2 \d+ \(\d+\.\d%\)  errors 0", text)
    assert not re.search(r"errors [1-9]", text)
    assert re.search(r'\{"predictions": \[0, \d, 2\]\}   -> setosa, \w+, virginica', text)
    for line in (
        r"Stable\s+v1=100%",
        r"Progressing\s+v1=75%, v2=25%",
        r"Progressing\s+v1=50%, v2=50%",
        r"WaitingPromotion\s+v1=50%, v2=50%",
        r"Stable\s+v2=100%",
        r"v1 stopped",
    ):
        assert re.search(line, text), line
    order = [text.index(s) for s in ("$ kubectl apply", "$ kubectl patch", "$ modelpilot promote")]
    assert order == sorted(order)
    assert "managedmodel/iris annotated modelpilot.io/promote=v2" in text
    assert re.search(r"iris\s+v2\s+Stable\s+\d/2", text)  # kubectl get mm after act 1

    # Act 2: the broken v3 fails real requests at its first step, the analysis rolls it
    # back by itself, and the errors stop.
    during, _, after = act2.partition("v3 rolled back by its analysis")
    assert re.search(r"Progressing\s+v2=80%, v3=20%", during)
    assert re.search(r"clients: v2 \d+ \(\d+\.\d%\) v3 \d+ \(\d+\.\d%\)  errors [1-9]", during)
    assert re.search(r"Failed\s+v2=100%", during)
    assert re.search(r"clients: v2 \d+ \(100\.0%\)  errors 0", after)
    assert re.search(r"success\s+Failed\s+[\d.]+\s+-\s+success [\d.]+ < min 95", after)
    assert re.search(r"iris\s+v2\s+v3\s+0\s+Failed\s+2/3", after)
    assert "done in" in after and "v3 was rolled back by its analysis" in after

    # Nothing it started is left running.
    left = {child.pid for child in psutil.Process().children(recursive=True)} - before
    assert not [p for p in left if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    print(f"demo took {elapsed:.0f}s")
