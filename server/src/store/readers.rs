//! A fixed pool of read-only connections used from blocking threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;

pub struct Readers {
    /// Each connection is used by one blocking thread at a time; a std mutex
    /// is right because it is never held across an `.await`.
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new(connections: Vec<Connection>) -> Self {
        Readers {
            connections: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub async fn read<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || readers.with_connection(query))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `query` on the calling thread if a connection is free, else on
    /// a blocking thread like [`Readers::read`]. For short reads bounded by
    /// an index (a page of history, a token, a row): the hand-off to a
    /// blocking thread and back costs two context switches and wake-ups,
    /// more than such a read itself, and on the hub's one core that was the
    /// largest cost of a history request after allocation.
    pub async fn read_here<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match self.try_run_here(query) {
            Ok(result) => result,
            Err(query) => self.read(query).await,
        }
    }

    /// Runs `query` on a free connection now, or hands it back.
    fn try_run_here<T, F>(&self, query: F) -> Result<Result<T, StoreError>, F>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        match self
            .connections
            .iter()
            .find_map(|connection| connection.try_lock().ok())
        {
            Some(connection) => Ok(query(&connection)),
            None => Err(query),
        }
    }

    fn with_connection<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        // Take the first idle connection; wait on our turn's one otherwise.
        for offset in 0..count {
            if let Ok(connection) = self.connections[(start + offset) % count].try_lock() {
                return query(&connection);
            }
        }
        let connection = self.connections[start]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        query(&connection)
    }
}
