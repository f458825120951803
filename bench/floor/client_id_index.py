#!/usr/bin/env python3
"""How many pages a commit writes for the hub's index of client ids.

The hub keeps a unique index of (sender, clientId) over its events. This
stores DMs the way its writer does (ten to a transaction, in WAL mode, an
8 MiB cache, 100 senders taking turns) with only that index besides the
table's own, and counts the WAL frames (pages) written, for either column
order and for random (UUIDv4) or time-ordered (UUIDv7-like) ids. No disk
syncs: this counts pages and the CPU spent on them, not the disk's time.

    python3 bench/floor/client_id_index.py [rows] [directory]
"""

import os
import sqlite3
import sys
import tempfile
import time
import uuid

ROWS_PER_COMMIT = 10
SENDERS = 100


def random_ids():
    while True:
        yield str(uuid.uuid4())


def ordered_ids():
    """UUIDv7's layout: 48 bits of milliseconds, then a counter where v7
    has random bits, so that ids made in one millisecond still sort in the
    order they were made (as the uuid crate's now_v7 guarantees)."""
    counter = 0
    while True:
        counter += 1
        value = (int(time.time() * 1000) << 80) | (0x7 << 76) | (counter & ((1 << 76) - 1))
        yield str(uuid.UUID(int=value))


def run(directory, columns, ids, rows):
    path = os.path.join(directory, "client_id_index.sqlite3")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("PRAGMA cache_size=-8192")
    connection.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
        " from_id TEXT NOT NULL, content TEXT NOT NULL, client_id TEXT)"
    )
    connection.execute(
        f"CREATE UNIQUE INDEX events_client_id ON events ({columns}) WHERE client_id IS NOT NULL"
    )
    frames = 0
    started = time.process_time()
    for commit in range(rows // ROWS_PER_COMMIT):
        connection.execute("BEGIN IMMEDIATE")
        for k in range(ROWS_PER_COMMIT):
            seq = commit * ROWS_PER_COMMIT + k
            connection.execute(
                "INSERT INTO events (id, from_id, content, client_id) VALUES (?, ?, ?, ?)",
                (f"{seq:036d}", f"sender-{seq % SENDERS:03d}", "x" * 64, next(ids)),
            )
        connection.execute("COMMIT")
        # Count the WAL's frames every 1,000 commits, then empty it.
        if commit % 1000 == 999:
            frames += connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cpu = time.process_time() - started
    commits = rows // ROWS_PER_COMMIT
    connection.close()
    return frames / commits, cpu


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as directory:
        print(f"{rows:,} rows, {ROWS_PER_COMMIT} to a commit, {SENDERS} senders taking turns")
        for columns in ("from_id, client_id", "client_id, from_id"):
            for name, ids in (("random", random_ids()), ("ordered", ordered_ids())):
                pages, cpu = run(directory, columns, ids, rows)
                print(f"index ({columns}), {name:7} ids: {pages:5.1f} pages a commit, {cpu:5.1f} s CPU")


if __name__ == "__main__":
    main()
