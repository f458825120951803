"""Round trips through the Python SDK: the Python half of the SDK benchmark
(issue 6, scenario 6; ``scripts/bench-sdk`` runs it).

The same workload as the Rust connector's ``sdk-roundtrip``
(``bench/src/bin/sdk-roundtrip.rs``), through the public API only
(``connect_to_network``, ``send_direct_message``, ``@on_direct_message``):

1. **sequential**: one direct message at a time from agent A to agent B. A
   *round trip* is one ``await bot.send_direct_message(...)``, from the call
   until it returns with the hub's confirmation that the message is stored;
   *delivery* is from the same call until B's ``on_direct_message`` handler
   runs.
2. **pipelined**: ``--in-flight`` sends outstanding at once on A's one
   connection (as many tasks, each awaiting its send), to agent C, which is
   offline (so the hub only stores): confirmations per second.
3. **pipelined, delivered**: the same to B, online in this process:
   deliveries per second that reached B's handler.

Each phase has a warm-up that is not counted. CPU per round trip is read
from ``/proc`` for this process (all threads, the extension's included) and
for the hub, over the measured window only. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

from clawbot_connector import ClawBotConnector, Message, connect_to_network


def cpu_seconds(pid: Optional[int] = None) -> float:
    """User + system CPU seconds of a process (all threads), from /proc,
    read the same way as the Rust half reads it."""
    with open(f"/proc/{pid or 'self'}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime, in USER_HZ (100 on the Linux ABIs that matter here).
    return (int(fields[11]) + int(fields[12])) / 100.0


class CpuMark:
    """CPU seconds of this process and of the hub at one moment."""

    def __init__(self, hub_pid: Optional[int]) -> None:
        self.at = time.perf_counter()
        self.own = cpu_seconds()
        self.hub = cpu_seconds(hub_pid) if hub_pid else None

    def since(self, start: "CpuMark", operations: int) -> Dict[str, Any]:
        window = self.at - start.at

        def per_op(seconds: float) -> float:
            return seconds * 1e6 / max(operations, 1)

        return {
            "window_s": window,
            "client_cpu_us_per_op": per_op(self.own - start.own),
            "hub_cpu_us_per_op": (
                per_op(self.hub - start.hub) if self.hub is not None and start.hub is not None else None
            ),
            "client_core_pct": 100.0 * (self.own - start.own) / window,
        }


def percentile_ms(sorted_ns: List[int], quantile: float) -> float:
    """Nearest rank, as the Rust half computes it."""
    if not sorted_ns:
        return math.nan
    rank = min(max(math.ceil(quantile * len(sorted_ns)), 1), len(sorted_ns))
    return sorted_ns[rank - 1] / 1e6


def sequential_content(number: int, size: int) -> str:
    return f"seq {number} ".ljust(size, "x")


class Receiver:
    """Agent B's handler: counts deliveries and timestamps the sequential
    phase's messages."""

    def __init__(self) -> None:
        self.delivered = 0
        self.expected: Optional[str] = None
        self.arrival: Optional["asyncio.Future[int]"] = None

    def on_direct_message(self, msg: Message) -> None:
        self.delivered += 1
        if self.arrival is not None and msg.content == self.expected and not self.arrival.done():
            self.arrival.set_result(time.perf_counter_ns())


async def sequential(args: argparse.Namespace, sender: ClawBotConnector, receiver_id: str,
                     receiver: Receiver) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    measured_from = begin + args.warmup
    end = measured_from + args.duration
    sent_ns: List[int] = []
    delivered_ns: List[int] = []
    start_mark: Optional[CpuMark] = None
    number = 0
    while True:
        if time.perf_counter() >= end:
            break
        if start_mark is None and time.perf_counter() >= measured_from:
            start_mark = CpuMark(args.hub_pid)
        content = sequential_content(number, args.size)
        receiver.expected = content
        receiver.arrival = loop.create_future()
        started = time.perf_counter_ns()
        await sender.send_direct_message(receiver_id, content)
        confirmed = time.perf_counter_ns()
        arrived = await asyncio.wait_for(receiver.arrival, 30)
        if start_mark is not None:
            sent_ns.append(confirmed - started)
            delivered_ns.append(arrived - started)
        number += 1
    receiver.arrival = None
    end_mark = CpuMark(args.hub_pid)
    if start_mark is None:
        raise RuntimeError("no round trip in the measured window")
    sent_ns.sort()
    delivered_ns.sort()
    result = end_mark.since(start_mark, len(sent_ns))
    result.update(
        count=len(sent_ns),
        per_s=len(sent_ns) / (end_mark.at - start_mark.at),
        sent_p50_ms=percentile_ms(sent_ns, 0.50),
        sent_p99_ms=percentile_ms(sent_ns, 0.99),
        delivered_p50_ms=percentile_ms(delivered_ns, 0.50),
        delivered_p99_ms=percentile_ms(delivered_ns, 0.99),
    )
    return result


async def pipelined(args: argparse.Namespace, sender: ClawBotConnector, to: str,
                    receiver: Receiver) -> Dict[str, Any]:
    stop = False
    confirmed = 0
    content = "p" * args.size

    async def worker() -> None:
        nonlocal confirmed
        while not stop:
            await sender.send_direct_message(to, content)
            confirmed += 1

    workers = [asyncio.ensure_future(worker()) for _ in range(args.in_flight)]
    await asyncio.sleep(args.warmup)
    start_mark = CpuMark(args.hub_pid)
    confirmed_before, delivered_before = confirmed, receiver.delivered
    await asyncio.sleep(args.duration)
    confirmed_count = confirmed - confirmed_before
    delivered_count = receiver.delivered - delivered_before
    end_mark = CpuMark(args.hub_pid)
    stop = True
    await asyncio.gather(*workers)
    window = end_mark.at - start_mark.at
    # Per operation: per confirmation, or per delivery when delivering.
    result = end_mark.since(start_mark, delivered_count or confirmed_count)
    result.update(
        in_flight=args.in_flight,
        confirmed_per_s=confirmed_count / window,
        delivered_per_s=delivered_count / window,
    )
    return result


async def run(args: argparse.Namespace) -> Dict[str, Any]:
    tag = f"rt-python-{os.getpid()}"
    offline_id, receiver_id = f"{tag}-c", f"{tag}-b"

    def connect(agent_id: str) -> Any:
        # Everything explicit: no CLAWBOT_* variable or config file applies,
        # and no group, so presence notices stay out of the figures.
        return connect_to_network(server_url=args.ws_url, token=args.token, bot_id=agent_id,
                                  bot_name=agent_id, groups=[])

    offline = await connect(offline_id)
    await offline.disconnect()
    receiving_bot = await connect(receiver_id)
    receiver = Receiver()
    receiving_bot.on_direct_message(receiver.on_direct_message)
    sender = await connect(f"{tag}-a")

    result = {
        "client": "python",
        "python": sys.version.split()[0],
        "size": args.size,
        "sequential": await sequential(args, sender, receiver_id, receiver),
        "pipelined": await pipelined(args, sender, offline_id, receiver),
        "pipelined_delivered": await pipelined(args, sender, receiver_id, receiver),
    }
    await sender.disconnect()
    await receiving_bot.disconnect()
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws-url", required=True, help="the hub's WebSocket URL")
    parser.add_argument("--token", default=os.environ.get("CLAWBOT_BENCH_TOKEN"),
                        help="the hub's admin token (default: $CLAWBOT_BENCH_TOKEN)")
    parser.add_argument("--hub-pid", type=int, help="the hub's pid, to read its CPU time")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds run, not counted")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per phase")
    parser.add_argument("--in-flight", type=int, default=256, help="sends outstanding at once")
    parser.add_argument("--size", type=int, default=64, help="bytes of message content")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give --token or set CLAWBOT_BENCH_TOKEN")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    print(json.dumps(asyncio.run(run(parse_args(argv)))))


if __name__ == "__main__":
    main()
