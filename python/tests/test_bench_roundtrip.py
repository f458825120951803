"""Smoke pass of the SDK benchmark (``scripts/bench-sdk``): both halves,
the Python SDK's ``python/bench/roundtrip.py`` and the Rust connector's
``sdk-roundtrip``, for well under a second per phase against the real hub.
It proves the tools run the whole workload and report it; it never asserts
speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from conftest import ADMIN, ROOT, TOOL_ENV, Hub, hub_binary

SHORT = ["--warmup", "0.1", "--duration", "0.3", "--in-flight", "16"]


def rust_client() -> Path:
    """`sdk-roundtrip` from the hub's target directory (`cargo test` builds
    it), else built there."""
    binary = hub_binary().parent / "sdk-roundtrip"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-p", "clawbot-bench", "--bin", "sdk-roundtrip"],
                       cwd=ROOT, check=True, env=TOOL_ENV)
        binary = ROOT / "target" / "debug" / "sdk-roundtrip"
    return binary


def run(command: List[str], hub: Hub) -> Dict[str, Any]:
    assert hub.process is not None
    done = subprocess.run(
        [*command, "--ws-url", hub.ws, "--token", ADMIN, "--hub-pid", str(hub.process.pid), *SHORT],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check(result: Dict[str, Any]) -> None:
    sequential = result["sequential"]
    assert sequential["count"] > 0
    assert 0 < sequential["sent_p50_ms"] <= sequential["sent_p99_ms"]
    assert 0 < sequential["delivered_p50_ms"] <= sequential["delivered_p99_ms"]
    assert result["pipelined"]["confirmed_per_s"] > 0
    # Sent to an agent that is offline: stored, never delivered live.
    assert result["pipelined"]["delivered_per_s"] == 0
    assert result["pipelined_delivered"]["delivered_per_s"] > 0


def test_both_halves_of_the_sdk_benchmark_run_the_whole_workload(hub):
    python = run([sys.executable, str(ROOT / "python" / "bench" / "roundtrip.py")], hub)
    assert python["client"] == "python"
    check(python)
    rust = run([str(rust_client())], hub)
    assert rust["client"] == "rust"
    check(rust)
    # The table takes both.
    report = subprocess.run(
        [sys.executable, str(ROOT / "python" / "bench" / "report.py"), "/dev/stdin"],
        input=f"{json.dumps(rust)}\n{json.dumps(python)}\n", capture_output=True, text=True, check=True,
    )
    assert "round trip p50" in report.stdout and "python / rust" in report.stdout
