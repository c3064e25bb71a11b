"""Time the pure renderer alone: one two-version model, every child, many times.

python -m bench.render [--repeat 300]
"""

from __future__ import annotations

import argparse
import time

from bench.scenarios import model_doc
from modelpilot.api import parse_managed_model
from modelpilot.render import default_render_state, render_model
from modelpilot.runtimes import default_runtimes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    model = parse_managed_model(model_doc("bench", "bench"))
    state, runtimes = default_render_state(model), default_runtimes()
    render_model(model, state, runtimes)  # templates compiled once, as in the operator
    started = time.perf_counter()
    for _ in range(args.repeat):
        render_model(model, state, runtimes)
    per_render = (time.perf_counter() - started) / args.repeat
    print(f"render_model (2 versions, 5 children): {per_render * 1000:.2f} ms per call")


if __name__ == "__main__":
    main()
