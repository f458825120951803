//! Durable storage in one SQLite file (WAL, `synchronous=FULL` by default).
//!
//! Writes go through the single [`writer::Writer`] thread, which commits in
//! groups; reads run on a small pool of read-only connections off that
//! thread, so a slow history query never delays a commit.

pub mod addressed;
pub mod agents;
mod checkpointer;
mod commit_window;
pub mod event;
pub mod groups;
pub mod messages;
mod readers;
mod schema;
mod slow_commits;
pub mod tasks;
pub mod tokens;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clawbot_connector::protocol::ErrorCode;
use rusqlite::{Connection, OpenFlags};

pub use readers::Readers;
pub use writer::Writer;

use crate::config::Synchronous;

/// Read connections; more would only contend for two cores.
const READERS: usize = 4;
/// The writer's page cache, of pages it keeps after its transactions.
/// Small on purpose: when a B-tree insert rebalances pages out of order,
/// SQLite parks one at the lock page's number (past the end of any file
/// under 1 GiB) and then, at commit, drops every cached page numbered past
/// the end of the file by walking the whole cache. With 64 MiB that walk
/// was a tenth of the writer's time (references/BENCHMARKS.md, "The
/// writer's page cache").
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// How many pages one transaction may change before SQLite writes some of
/// them to the WAL ahead of its commit: room for the biggest batch, beyond
/// [`WRITER_CACHE_KIB`]; they are let go of after the commit.
const WRITER_SPILL_PAGES: i64 = 16 * 1024;
/// The WAL file is cut back to this size when the log starts afresh after
/// growing past it. It stays near 16 MiB under load (the checkpointer's
/// restart threshold), but one big transaction (a migration that copies a
/// table, 2 GB for 10,000,000 events) would otherwise leave a file that
/// large on disk until the hub stops.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// How much of the database file each reader maps (SQLite caps it at its
/// compile-time limit, 2 GiB by default); pages past it are read into the
/// reader's page cache.
const READER_MMAP_BYTES: i64 = 1 << 31;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The change was refused for a reason the client should hear; nothing
    /// was written.
    #[error("{1}")]
    Rejected(ErrorCode, String),
    #[error("the commit failed; nothing was written")]
    CommitFailed,
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        StoreError::Rejected(code, message.into())
    }
}

/// The handle the rest of the hub uses; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub writer: Writer,
    pub readers: Arc<Readers>,
}

pub struct Opened {
    pub store: Store,
    /// Join it after [`Writer::stop`] to know every commit is done.
    pub writer_thread: std::thread::JoinHandle<()>,
}

/// Brings the schema up to date, saying so when it changes anything: some
/// migrations rewrite a table (migration 8 copies `events`), which on a
/// large database keeps the hub from listening for a while.
fn migrate(connection: &mut Connection) -> anyhow::Result<()> {
    let migrations = schema::migrations();
    let pending = migrations.pending_migrations(connection)?;
    let before = migrations.current_version(connection)?;
    if pending <= 0 || before == rusqlite_migration::SchemaVersion::NoneSet {
        // Up to date, a new database (nothing to wait for), or one from a
        // newer hub, which `to_latest` refuses.
        return Ok(migrations.to_latest(connection)?);
    }
    tracing::info!(from = %before, pending, "migrating the database schema (on a large database this can take minutes)");
    let started = std::time::Instant::now();
    migrations.to_latest(connection)?;
    tracing::info!(
        to = %migrations.current_version(connection)?,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "database schema migrated"
    );
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/hub.sqlite3` and migrates it.
    /// While the writer is busy, its batches begin at least
    /// `commit_window` apart (zero: as soon as the last commit returns).
    pub fn open(
        data_dir: &Path,
        synchronous: Synchronous,
        commit_window: Duration,
    ) -> anyhow::Result<Opened> {
        let path = data_dir.join("hub.sqlite3");
        let mut connection = Connection::open(&path)?;
        let sync = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", sync)?;
        connection.pragma_update(None, "busy_timeout", 5000)?;
        connection.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // Room for a whole batch's pages: when a big batch outgrew the
        // cache (the default 2 MiB), SQLite wrote some of them to the WAL
        // before the commit, and again if the batch changed them after.
        connection.pragma_update(None, "cache_spill", WRITER_SPILL_PAGES)?;
        connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        // The checkpointer thread checkpoints instead of the commit path.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        migrate(&mut connection)?;
        // Each job runs in a savepoint, and SQLite keeps a copy of every
        // page a savepoint changes so it can roll back: in memory, not in a
        // temporary file (a quarter of the writer's time when it was a
        // file). Only after migrating: with temporary storage in memory,
        // SQLite's sort for CREATE INDEX never spills to disk, and a
        // migration that rebuilds an index of a large table would hold
        // every key in RAM.
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        addressed::register_bucket_function(&connection)?;
        let indexer = addressed::Indexer::load(&connection, addressed::BATCH)?;
        let checkpoints = Connection::open(&path)?;
        checkpoints.pragma_update(None, "synchronous", sync)?;
        checkpoints.pragma_update(None, "busy_timeout", 5000)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                reader.pragma_update(None, "busy_timeout", 5000)?;
                // Read pages straight from the page cache of the kernel
                // instead of copying each into SQLite's own cache.
                reader.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
                addressed::register_bucket_function(&reader)?;
                Ok(reader)
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let (writer, writer_thread) =
            Writer::start(connection, checkpoints, indexer, commit_window);
        Ok(Opened {
            store: Store {
                writer,
                readers: Arc::new(Readers::new(readers)),
            },
            writer_thread,
        })
    }

    pub async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.read(query).await
    }

    /// A short read bounded by an index, run on the calling thread when a
    /// connection is free: see [`Readers::read_here`].
    pub async fn read_here<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.read_here(query).await
    }
}

/// Now, as the original hub wrote times: ISO 8601 UTC with milliseconds.
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that a newer hub has migrated is refused and left as it
    /// was; one this hub knows is brought up to date, and opens again.
    #[test]
    fn a_database_from_a_newer_hub_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.sqlite3");
        let mut connection = Connection::open(&path).unwrap();
        migrate(&mut connection).unwrap();
        migrate(&mut connection).unwrap();
        let latest: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        connection
            .pragma_update(None, "user_version", latest + 1)
            .unwrap();
        assert!(migrate(&mut connection).is_err());
        let after: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(after, latest + 1);
    }
}
