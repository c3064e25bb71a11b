"""`python -m modelpilot_dev demo` (`make demo`): arguments for the demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelpilot_dev import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelpilot_dev demo",
        description="Start the local control plane with kwok's CPU and GPU nodes, the "
        "simulated KServe and gateway, and the operator; roll the iris model from the "
        "model store from v1 to v2 and promote it; stop everything. Needs the control-plane "
        "tools (`make tools`); builds the model store when it is missing.",
    )
    parser.add_argument("--store-root", type=Path, help="model store (default: model-store/)")
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="skip the real predictions from KServe's model server before the rollout",
    )
    args = parser.parse_args(argv)
    return demo.main(store_root=args.store_root, serve=not args.no_serve)
