//! Moves WAL checkpoints off the writer thread.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past
//! 1,000 pages: that commit then also copies pages into the database file
//! and waits for its `fsync`, and every message in the batch waits with it
//! (14% of the writer's time in the profiles of references/BENCHMARKS.md).
//! Here the writer never checkpoints; this thread does, on its own
//! connection, a few times a second.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is copied back into the database.
const INTERVAL: Duration = Duration::from_millis(100);
/// A passive checkpoint never waits for the writer, so under constant load
/// it may never catch up with the end of the WAL, and the writer only
/// starts the WAL afresh once it has. Past this many pages (16 MiB at the
/// default page size) one checkpoint waits for a gap between commits and
/// restarts the log, so the file stays bounded.
const RESTART_AFTER_PAGES: i64 = 4096;

/// Checkpoints until `stop` is dropped or signalled, then once more in full
/// so a clean shutdown leaves an empty WAL.
pub fn run(connection: Connection, stop: Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        match checkpoint(&connection, "PASSIVE") {
            Ok(pages) if pages > RESTART_AFTER_PAGES => {
                if let Err(error) = checkpoint(&connection, "RESTART") {
                    tracing::warn!(%error, "WAL restart checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
        }
    }
    if let Err(error) = checkpoint(&connection, "TRUNCATE") {
        tracing::warn!(%error, "final WAL checkpoint failed");
    }
}

/// Runs one checkpoint; returns the pages in the WAL when it started.
fn checkpoint(connection: &Connection, mode: &str) -> rusqlite::Result<i64> {
    connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(1)
    })
}
