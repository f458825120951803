"""The table of ``scripts/bench-sdk``: JSON lines of ``roundtrip.py`` and of
the Rust ``sdk-roundtrip`` in, one row per figure out, Rust beside Python
with their ratio. Repeated runs become medians."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any, Dict, List, Optional, Tuple

#: (label, phase, key, unit)
ROWS: List[Tuple[str, str, str, str]] = [
    ("round trip p50 (sequential)", "sequential", "sent_p50_ms", "ms"),
    ("round trip p99 (sequential)", "sequential", "sent_p99_ms", "ms"),
    ("delivery p50 (sequential)", "sequential", "delivered_p50_ms", "ms"),
    ("delivery p99 (sequential)", "sequential", "delivered_p99_ms", "ms"),
    ("client CPU per round trip (sequential)", "sequential", "client_cpu_us_per_op", "µs"),
    ("hub CPU per round trip (sequential)", "sequential", "hub_cpu_us_per_op", "µs"),
    ("round trips/s, pipelined, stored only", "pipelined", "confirmed_per_s", "/s"),
    ("client CPU per round trip (pipelined)", "pipelined", "client_cpu_us_per_op", "µs"),
    ("client core busy (pipelined)", "pipelined", "client_core_pct", "%"),
    ("hub CPU per round trip (pipelined)", "pipelined", "hub_cpu_us_per_op", "µs"),
    ("deliveries/s, pipelined to an online agent", "pipelined_delivered", "delivered_per_s", "/s"),
    ("client CPU per delivery (send + receive)", "pipelined_delivered", "client_cpu_us_per_op", "µs"),
    ("client core busy (pipelined, delivered)", "pipelined_delivered", "client_core_pct", "%"),
]


def median(runs: List[Dict[str, Any]], phase: str, key: str) -> Optional[float]:
    values = [run[phase][key] for run in runs if run.get(phase, {}).get(key) is not None]
    return statistics.median(values) if values else None


def number(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(lines: List[Dict[str, Any]], markdown: bool, clients: Tuple[str, str] = ("rust", "python")) -> str:
    base, other = clients
    rust = [line for line in lines if line["client"] == base]
    python = [line for line in lines if line["client"] == other]
    header = ["figure", f"{base} (×{len(rust)})", f"{other} (×{len(python)})", f"{other} / {base}"]
    rows = []
    for label, phase, key, unit in ROWS:
        r, p = median(rust, phase, key), median(python, phase, key)
        ratio = f"{p / r:.2f}" if r and p is not None else "—"
        rows.append([f"{label}, {unit}", number(r), number(p), ratio])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                  for i, (cell, width) in enumerate(zip(row, widths)))
        for row in [header] + rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a file of JSON lines")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--clients", nargs=2, default=["rust", "python"], metavar=("BASE", "OTHER"),
                        help="the two `client` values to compare (default: rust python)")
    args = parser.parse_args()
    with open(args.results) as results:
        lines = [json.loads(line) for line in results if line.strip()]
    print(table(lines, args.markdown, tuple(args.clients)))


if __name__ == "__main__":
    main()
