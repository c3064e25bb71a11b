"""`modelpilot demo`: a canary rollout v1 -> v2 on the local control plane."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="a canary rollout v1 -> v2 on the local control plane (no Docker)",
        description="Start the local control plane with kwok's CPU and GPU nodes, the "
        "simulated KServe and gateway, and the operator; roll the iris model from the "
        "model store from v1 to v2 and promote it; stop everything. Needs the control-plane "
        "tools (`make tools`); builds the model store when it is missing.",
    )
    demo.add_argument("--store-root", type=Path, help="model store (default: model-store/)")
    demo.add_argument(
        "--no-serve",
        action="store_true",
        help="skip the real predictions from KServe's model server before the rollout",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from modelpilot.demo import main

    return main(store_root=args.store_root, serve=not args.no_serve)
