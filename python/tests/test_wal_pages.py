"""``scripts/wal-pages`` reads a live WAL and names the B-trees its pages
belong to, counting only the current generation of frames."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_counts_each_tables_pages_in_the_wal(tmp_path: Path) -> None:
    database = tmp_path / "hub.sqlite3"
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE big (x BLOB)")
    connection.execute("CREATE TABLE small (x INTEGER)")
    for _ in range(5):
        # Each batch writes three pages of big (and page 1, as the file
        # grows) and small's one page.
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO big VALUES (randomblob(3000))", [()] * 3)
        connection.execute("INSERT INTO small VALUES (1)")
        connection.execute("COMMIT")
    # Still open: closing the last connection would checkpoint the WAL away.
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "wal-pages"), str(database)],
                            capture_output=True, text=True, check=True)
    connection.close()
    lines = result.stdout.splitlines()
    # Two CREATE TABLEs and five batches; small's one page in each of the
    # six commits that touch it.
    assert " in 7 commits:" in lines[0], lines
    counts = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
    assert counts["small"] == 6, result.stdout
    assert counts["big"] >= 15, result.stdout
    assert sum(counts.values()) == int(lines[0].split()[0]), result.stdout
