"""`python -m modelpilot_dev busy [--burners N] -- COMMAND...`: run COMMAND while N
processes (default: one per core) spin on the CPU, the way a loaded CI machine starves
the operator, the stand-ins and the control plane. Races that a quiet machine hides show
up here. The burners stop when the command ends, however it ends."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys


def _spin() -> None:
    os.nice(5)  # busy, but the command still gets scheduled
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelpilot_dev busy", description=__doc__)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    burners = [
        multiprocessing.Process(target=_spin, daemon=True, name=f"burner-{i}")
        for i in range(args.burners)
    ]
    for burner in burners:
        burner.start()
    try:
        return subprocess.run(command, check=False).returncode
    finally:
        for burner in burners:
            burner.terminate()
        for burner in burners:
            burner.join(5)


if __name__ == "__main__":
    sys.exit(main())
