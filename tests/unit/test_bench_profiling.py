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


def test_repeated_convergence_runs_are_summarized_by_median_and_spread() -> None:
    from bench.run import summarize

    runs = [
        {"n": 50, "operator_s": s, "ideal_s": i, "ideal_ratio": round(s / i, 2)}
        for s, i in ((3.0, 2.0), (5.0, 2.5), (4.0, 2.0))
    ] + [{"n": 200, "operator_s": 9.0, "ideal_s": 6.0, "ideal_ratio": 1.5}]
    fifty, two_hundred = summarize(runs)
    assert fifty["runs"] == 3 and fifty["operator_s"] == 4.0
    assert fifty["operator_s_spread"] == [3.0, 5.0]
    assert fifty["ideal_ratio"] == 2.0 and fifty["ideal_ratio_spread"] == [1.5, 2.0]
    assert two_hundred == {
        "n": 200, "runs": 1, "operator_s": 9.0, "operator_s_spread": [9.0, 9.0],
        "ideal_s": 6.0, "ideal_s_spread": [6.0, 6.0], "ideal_ratio": 1.5,
        "ideal_ratio_spread": [1.5, 1.5],
    }  # fmt: skip
