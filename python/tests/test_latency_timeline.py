"""``scripts/latency-timeline`` finds when the slow deliveries of a run
happened: how many, in which windows, in how many stretches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def run(path: Path, *args: str) -> list[str]:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "latency-timeline"), str(path), *args],
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_counts_slow_deliveries_and_the_stretches_they_come_in(tmp_path: Path) -> None:
    # One delivery a millisecond for a second, 0.5 ms each, but for two
    # bursts: 100-139 ms at 8 ms (two windows of 20 ms) and 600-609 ms at
    # 12 ms (half a window).
    lines = ["# due_ms latency_ms"]
    for due in range(1000):
        latency = 8.0 if 100 <= due < 140 else 12.0 if 600 <= due < 610 else 0.5
        lines.append(f"{due:.3f} {latency:.3f}")
    timeline = tmp_path / "timeline.txt"
    timeline.write_text("\n".join(lines) + "\n")

    out = run(timeline)
    assert out[0] == "1000 deliveries over 999.0 ms; 50 (5.00%) over 5 ms, in 3 of 50 windows of 20 ms", out
    assert out[1] == "2 slow stretches, 60 ms in all, the longest 40 ms (from 100 ms)", out
    worst = [line.split() for line in out[3:]]
    assert worst[:3] == [["100.0:", "20,", "20,", "8.00"], ["120.0:", "20,", "20,", "8.00"],
                         ["600.0:", "20,", "10,", "12.00"]], out

    # A higher threshold leaves only the second burst.
    out = run(timeline, "--over-ms", "10", "--top", "1")
    assert out[0].endswith("10 (1.00%) over 10 ms, in 1 of 50 windows of 20 ms"), out
    assert out[1] == "1 slow stretches, 20 ms in all, the longest 20 ms (from 600 ms)", out
    assert out[3:] == ["      600.0: 20, 10, 12.00"], out


def test_an_empty_timeline_is_an_error(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.txt"
    timeline.write_text("# due_ms latency_ms\n")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "latency-timeline"), str(timeline)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "no deliveries" in result.stderr
