"""``scripts/latency-timeline`` finds when the slow deliveries of a run
happened: how many, in which windows, in how many stretches, and which
windows were worst."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SCRIPT = str(ROOT / "scripts" / "latency-timeline")


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, SCRIPT, str(path), *args], capture_output=True, text=True)


def lines(path: Path, *args: str) -> list[str]:
    result = run(path, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def timeline(tmp_path: Path, latency_at) -> Path:
    """One delivery a millisecond for a second, latencies from `latency_at`."""
    path = tmp_path / "timeline.txt"
    rows = [f"{due:.3f} {latency_at(due):.3f}" for due in range(1000)]
    path.write_text("# due_ms latency_ms\n" + "\n".join(rows) + "\n")
    return path


def bursts(due: int) -> float:
    # Windows of 20 ms: 5 and 6 slow (8 ms), 8 slow after one fast window
    # (6 ms), 30 half slow (12 ms); one delivery exactly at the threshold.
    if 100 <= due < 140:
        return 8.0
    if 160 <= due < 165:
        return 6.0
    if 600 <= due < 610:
        return 12.0
    if due == 700:
        return 5.0
    return 0.5


def test_counts_slow_deliveries_and_the_stretches_they_come_in(tmp_path: Path) -> None:
    out = lines(timeline(tmp_path, bursts))
    assert out[0] == ("1000 deliveries due within 999.0 ms; 55 (5.50%) took over 5 ms, "
                      "in 4 of 50 windows of 20 ms"), out
    # 5-6 and 8 are apart by one fast window: two stretches, not one.
    assert out[1] == "3 slow stretches, 80 ms of slow windows, the longest 40 ms (from 100 ms)", out
    assert out[3:] == ["      100.0: 20, 20, 8.000", "      120.0: 20, 20, 8.000",
                       "      160.0: 20, 5, 6.000", "      600.0: 20, 10, 12.000"], out


def test_the_worst_windows_are_those_with_the_longest_latency(tmp_path: Path) -> None:
    # Two of four slow windows: 600 (12 ms) and one of the 8 ms ones; not
    # 160, which has fewer slow deliveries but is not among the worst.
    out = lines(timeline(tmp_path, bursts), "--top", "2")
    assert len(out) == 5, out
    assert out[4] == "      600.0: 20, 10, 12.000", out
    assert out[3] in ("      100.0: 20, 20, 8.000", "      120.0: 20, 20, 8.000"), out


def test_a_higher_threshold_leaves_only_the_worst_burst(tmp_path: Path) -> None:
    out = lines(timeline(tmp_path, bursts), "--over-ms", "10", "--top", "1")
    assert out[0].endswith("10 (1.00%) took over 10 ms, in 1 of 50 windows of 20 ms"), out
    assert out[1] == "1 slow stretch, 20 ms of slow windows, the longest 20 ms (from 600 ms)", out
    assert out[3:] == ["      600.0: 20, 10, 12.000"], out


def test_bad_input_is_refused_with_a_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# due_ms latency_ms\n")
    for path, args, message in [
        (empty, (), "no deliveries"),
        (tmp_path / "missing.txt", (), "No such file"),
        (empty, ("--window-ms", "0"), "--window-ms must be positive"),
        (empty, ("--top", "-1"), "--top must not be negative"),
    ]:
        result = run(path, *args)
        assert result.returncode != 0, (path, args)
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
