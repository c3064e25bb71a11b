"""The bench's py-spy summary: inclusive shares, a recursive function counted once."""

from __future__ import annotations

from pathlib import Path

from bench.profiling import summary


def test_summary_counts_each_function_once_per_stack(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "main (app.py:1);walk (tree.py:10);walk (tree.py:12) 3\nmain (app.py:1);read (io.py:5) 1\n"
    )
    shares = dict((frame, share) for share, frame in summary(stacks))
    assert shares == {"main (app.py)": 100.0, "walk (tree.py)": 75.0, "read (io.py)": 25.0}
