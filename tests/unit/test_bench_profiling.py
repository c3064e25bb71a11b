"""The bench's py-spy summary: inclusive shares (a recursive function counted once per
stack) for the package's own functions, then self shares of the leaves."""

from __future__ import annotations

from pathlib import Path

from bench.profiling import summary


def test_summary_counts_each_function_once_per_stack(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "main (app.py:1);walk (pkg/tree.py:10);walk (pkg/tree.py:12) 3\n"
        "main (app.py:1);read (pkg/io.py:5) 1\n"
    )
    shares = {frame: share for share, frame in summary(stacks, within="pkg/")}
    assert shares == {
        "walk (pkg/tree.py)": 75.0,
        "read (pkg/io.py)": 25.0,
        "self: walk (pkg/tree.py)": 75.0,
        "self: read (pkg/io.py)": 25.0,
    }
