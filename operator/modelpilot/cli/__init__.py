"""The `modelpilot` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modelpilot import __version__
from modelpilot.cli import control, offline, run, store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelpilot",
        description="Ship ML model versions on Kubernetes: KServe InferenceServices, HPAs "
        "and a weighted Gateway API route per ManagedModel.",
    )
    parser.add_argument("--version", action="version", version=f"modelpilot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    offline.add_commands(commands)
    run.add_commands(commands)
    control.add_commands(commands)
    store.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `modelpilot render ... | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
