#!/usr/bin/env python3
"""What this machine can physically do, without any hub: the floors under
the fan-out and commit targets of references/BENCHMARKS.md.

1. Fan-out floor: one process pinned to core 0 writes one 200-byte frame to
   each of N loopback TCP sockets (TCP_NODELAY, as the hub's), while a
   reader pinned to core 1 drains them. On loopback the sender's system
   call also runs the receiving side of TCP, so this is the least CPU one
   core spends to hand one message to N connected members.
2. Commit floor: append 100 bytes to a file and fsync it, as a WAL commit
   with synchronous=FULL does at least once per commit.

Usage: bench/floor/loopback_floor.py [--sockets 1000] [--rounds 50]
"""

import argparse
import os
import selectors
import socket
import statistics
import tempfile
import time


def fan_out_floor(count: int, rounds: int) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    port = listener.getsockname()[1]
    readers, writers = [], []
    for _ in range(count):
        reader = socket.create_connection(("127.0.0.1", port))
        writer, _ = listener.accept()
        writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        readers.append(reader)
        writers.append(writer)
    child = os.fork()
    if child == 0:
        os.sched_setaffinity(0, {1})
        selector = selectors.DefaultSelector()
        for reader in readers:
            reader.setblocking(False)
            selector.register(reader, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                try:
                    key.fileobj.recv(65536)
                except BlockingIOError:
                    pass
    os.sched_setaffinity(0, {0})
    frame = b"x" * 200
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for writer in writers:
            writer.send(frame)
        times.append(time.perf_counter() - started)
        # Let the reader drain, so each round starts from idle sockets.
        time.sleep(0.02)
    os.kill(child, 9)
    os.waitpid(child, 0)
    median = statistics.median(times)
    print(
        f"fan-out floor: one 200-byte frame to each of {count} loopback sockets "
        f"from one core: median {median * 1e3:.2f} ms, best {min(times) * 1e3:.2f} ms "
        f"({median / count * 1e6:.1f} us per socket, {count / median:,.0f} sends/s)"
    )


def commit_floor(rounds: int) -> None:
    with tempfile.NamedTemporaryFile(dir=os.getcwd()) as file:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            os.write(file.fileno(), b"x" * 100)
            os.fsync(file.fileno())
            times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"commit floor: append + fsync: median {statistics.median(times) * 1e3:.3f} ms, "
        f"p99 {times[int(len(times) * 0.99) - 1] * 1e3:.3f} ms ({rounds} rounds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    fan_out_floor(args.sockets, args.rounds)
    commit_floor(args.rounds * 10)


if __name__ == "__main__":
    main()
