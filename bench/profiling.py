"""Sample the operator with py-spy while the bench runs, and summarise where it spent
its time: modelpilot's functions by inclusive share of the samples, then the leaf
functions by self share (folded per file and function, lines dropped)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path


class PySpy:
    """py-spy attached to a running process, writing collapsed stacks to a file. Only
    the thread holding the GIL is sampled: the operator's Python CPU. Without --gil,
    threads blocked in a socket read were sampled as busy (a third of the samples in
    SSLSocket.read, and the event loop's select), which is waiting, not CPU; C code
    that releases the GIL (TLS, the kernel) is left out instead, and is priced by
    `python -m bench.requests`."""

    def __init__(self, pid: int, output: Path, rate: int = 50) -> None:
        if shutil.which("py-spy") is None:
            raise SystemExit("--py-spy needs py-spy: pip install -e '.[dev]'")
        self.output = output
        self.process = subprocess.Popen(
            [
                *("py-spy", "record", "--pid", str(pid), "--rate", str(rate)),
                *("--format", "raw", "--output", str(output), "--nonblocking", "--gil"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        self.process.wait(timeout=60)


def summary(collapsed: Path, top: int = 25, within: str = "modelpilot/") -> list[tuple[float, str]]:
    """(percent of samples, 'function (file)'): the functions from files under `within`
    most often on a stack (inclusive), then the leaf functions where the samples were
    taken (self time, any file), each list sorted by share."""
    total = 0
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [_function(frame) for frame in stack.split(";")]
        for frame in set(frames):
            if within in frame:
                inclusive[frame] += samples
        leaves[f"self: {frames[-1]}"] += samples

    def share(n: int) -> float:
        return round(100 * n / total, 1)

    return [(share(n), f) for f, n in inclusive.most_common(top)] + [
        (share(n), f) for f, n in leaves.most_common(top)
    ]


def _function(frame: str) -> str:
    # "name (path/file.py:123)" -> "name (path/file.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name
