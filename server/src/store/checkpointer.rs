//! Moves WAL checkpoints off the writer thread, and keeps the WAL from
//! growing without end under constant load.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past
//! 1,000 pages: that commit then also copies pages into the database file
//! and waits for its `fsync`, and every message in the batch waits with it
//! (14% of the writer's time in the profiles of references/BENCHMARKS.md).
//! Here the writer never checkpoints by itself; this thread does, on its
//! own connection, a few times a second.
//!
//! SQLite starts the WAL afresh only when a write transaction begins with
//! every frame already copied and no reader in the log. Under constant load
//! the writer always begins with the frames it committed while the last
//! checkpoint ran still to copy, so the log grew for as long as the load
//! lasted: 430 MB in a 5 s run at 25,000 DMs/s. A RESTART checkpoint from
//! this thread has to wait for a gap between the writer's transactions, and
//! SQLite's busy handler polls for it in sleeps of milliseconds while the
//! writer takes the lock back within microseconds: it won only once the
//! load stopped, and then copied hundreds of megabytes. So past
//! [`RESTART_AFTER_PAGES`] this thread asks the writer instead, which
//! copies the last few frames itself between two batches
//! ([`copy_the_rest`]), and its next transaction starts the log afresh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is copied back into the database.
const INTERVAL: Duration = Duration::from_millis(100);
/// Past this many pages in the WAL (16 MiB at the default page size) the
/// writer is asked to let the log start afresh.
const RESTART_AFTER_PAGES: i64 = 4096;
/// ...but only when this thread's pass left at most this many pages to
/// copy (a reader holding an old snapshot, or a disk slower than the
/// writes, can leave more): the writer's copy must stay short.
const LEFT_FOR_THE_WRITER: i64 = 512;

/// Checkpoints until `stop` is dropped or signalled, then once more in full
/// so a clean shutdown leaves an empty WAL. Sets `restart_wanted` when the
/// writer should call [`copy_the_rest`].
pub fn run(connection: Connection, stop: Receiver<()>, restart_wanted: Arc<AtomicBool>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        if let Err(error) = pass(&connection, RESTART_AFTER_PAGES, &restart_wanted) {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
    if let Err(error) = checkpoint(&connection, "TRUNCATE") {
        tracing::warn!(%error, "final WAL checkpoint failed");
    }
}

/// One checkpoint that waits for nobody; asks for a restart when the log
/// holds more than `restart_after` pages.
fn pass(
    connection: &Connection,
    restart_after: i64,
    restart_wanted: &AtomicBool,
) -> rusqlite::Result<()> {
    let (pages, copied) = checkpoint(connection, "PASSIVE")?;
    if pages > restart_after && pages - copied <= LEFT_FOR_THE_WRITER {
        restart_wanted.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// On the writer's connection, between two of its transactions: copies
/// what the checkpointer has not copied yet (a few frames), so that the
/// writer's next transaction begins with the whole log copied and SQLite
/// starts it afresh. Waits for nobody: with a reader still in the log it
/// copies what it can and the log goes on, until the next request.
pub fn copy_the_rest(connection: &Connection) -> rusqlite::Result<()> {
    checkpoint(connection, "PASSIVE").map(|_| ())
}

/// Runs one checkpoint; returns the pages in the WAL and how many of them
/// are now copied into the database.
fn checkpoint(connection: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        let connection = Connection::open(path).unwrap();
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        connection
            .pragma_update(None, "wal_autocheckpoint", 0)
            .unwrap();
        connection
    }

    /// Rows of about a page each.
    fn insert(connection: &Connection, rows: i64) {
        connection
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO t SELECT randomblob(3000) FROM n",
                [rows],
            )
            .unwrap();
    }

    /// The writer commits while the checkpointer copies, as it always does
    /// under load: the log then grows with each write, until the writer
    /// copies the rest itself.
    #[test]
    fn the_log_restarts_once_the_writer_has_copied_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let writer = open(&path);
        let checkpointer = open(&path);
        let wal_bytes = || {
            std::fs::metadata(dir.path().join("db.sqlite3-wal"))
                .unwrap()
                .len()
        };
        writer.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        insert(&writer, 50);
        let wanted = AtomicBool::new(false);
        // The checkpointer copies while a batch is open.
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        insert(&writer, 10);
        pass(&checkpointer, 40, &wanted).unwrap();
        assert!(
            wanted.load(Ordering::Relaxed),
            "more than 40 pages: restart asked"
        );
        writer.execute_batch("COMMIT").unwrap();
        let before = wal_bytes();
        insert(&writer, 20);
        assert!(wal_bytes() > before, "the log goes on growing");
        copy_the_rest(&writer).unwrap();
        let before = wal_bytes();
        insert(&writer, 20);
        assert_eq!(
            wal_bytes(),
            before,
            "the log started afresh at its beginning"
        );
    }
}
