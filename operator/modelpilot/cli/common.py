"""What every command shares: bad input becomes `error: ...` lines and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EXIT_INVALID = 2


class UsageProblem(Exception):
    """Bad input: printed as `error: ...` lines, exit 2, never a traceback."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except UsageProblem as problem:
            for line in problem.lines:
                print(f"error: {line}", file=sys.stderr)
            return EXIT_INVALID

    return run
