"""`python -m modelpilot_dev COMMAND [ARGS]`: the development entry points.

tools [--path NAME]     build the pinned control-plane tools (cached); print a path
cluster [OPTIONS]       the local cluster in the foreground (`make cluster`)
demo [OPTIONS]          a canary rollout v1 -> v2 on it (`make demo`)
standins KUBECONFIG     the KServe and gateway stand-ins alone, instant mode (bench)
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "tools": "modelpilot_dev.tools",
    "cluster": "modelpilot_dev.run_cluster",
    "demo": "modelpilot_dev.demo_main",
    "standins": "modelpilot_dev.standins_main",
    "busy": "modelpilot_dev.busy",
    "load": "modelpilot_dev.load",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
