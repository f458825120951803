//! The one writer. Every change to the database goes through a single
//! thread that owns the write connection. It takes whatever jobs are waiting
//! (up to [`MAX_BATCH`]), runs each inside its own savepoint of one
//! transaction, and commits once: a burst of messages costs one fsync, not
//! one each. A job that fails rolls back its savepoint only, so nothing is
//! ever half-written and its neighbours still commit.
//!
//! Callers learn their result only after the commit is durable. A job may
//! also carry an `after` step that runs on the writer thread, in commit
//! order, right after the commit; the hub uses it to hand committed events to
//! live sessions, which is what keeps live delivery in sequence order.

use rusqlite::{Connection, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Jobs per transaction at most; bounds the latency one commit adds.
const MAX_BATCH: usize = 2048;
/// Jobs waiting for the writer before senders wait too (backpressure).
const QUEUE_DEPTH: usize = 16 * 1024;

type Completion = Box<dyn FnOnce(bool) + Send>;
/// A job runs in the batch's transaction, or gets `None` when that
/// transaction is already lost and it must fail without running.
type Job = Box<dyn FnOnce(Option<&mut Transaction<'_>>) -> Completion + Send>;

enum Command {
    Run(Job),
    /// Commit what is queued before this, then stop.
    Stop,
}

#[derive(Clone)]
pub struct Writer {
    commands: mpsc::Sender<Command>,
}

impl Writer {
    /// Starts the writer thread; it runs until [`Writer::stop`] or until every
    /// handle is dropped.
    pub fn start(connection: Connection) -> (Writer, std::thread::JoinHandle<()>) {
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(connection, receiver))
            .expect("spawning the writer thread");
        (Writer { commands }, thread)
    }

    /// Runs `change` in the next group commit and returns its result once
    /// that commit is durable.
    pub async fn write<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_then(change, |_| ()).await
    }

    /// Like [`Writer::write`], and runs `after` on the writer thread right
    /// after the commit, before any later commit's `after`.
    pub async fn write_then<T, F, A>(&self, change: F, after: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.submit_then(change, after).await?.await
    }

    /// Queues the change (waiting only while the writer's queue is full)
    /// and returns a future of its result. Changes run in the order they
    /// were submitted, so a connection can keep reading while its earlier
    /// messages commit, and still answer in order.
    pub async fn submit_then<T, F, A>(
        &self,
        change: F,
        after: A,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |transaction| {
            let outcome = match transaction {
                Some(transaction) => run_in_savepoint(transaction, change),
                None => Err(StoreError::CommitFailed),
            };
            Box::new(move |committed| {
                let outcome = match outcome {
                    Ok(value) if committed => {
                        after(&value);
                        Ok(value)
                    }
                    Ok(_) => Err(StoreError::CommitFailed),
                    Err(error) => Err(error),
                };
                let _ = reply.send(outcome);
            })
        });
        self.commands
            .send(Command::Run(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(async move { result.await.map_err(|_| StoreError::Closed)? })
    }

    /// Commits everything queued so far, then stops the thread.
    pub async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
    }
}

fn run_in_savepoint<T>(
    transaction: &mut Transaction<'_>,
    change: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut savepoint = transaction.savepoint()?;
    match change(&savepoint) {
        Ok(value) => {
            savepoint.commit()?;
            Ok(value)
        }
        Err(error) => {
            savepoint.rollback()?;
            Err(error)
        }
    }
}

fn run(mut connection: Connection, mut receiver: mpsc::Receiver<Command>) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = receiver.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::new();
        match first {
            Command::Run(job) => jobs.push(job),
            Command::Stop => break,
        }
        while jobs.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Command::Run(job)) => jobs.push(job),
                Ok(Command::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut transaction = match connection.transaction() {
            Ok(transaction) => transaction,
            Err(error) => {
                tracing::error!(%error, "cannot begin a transaction");
                // Dropping the jobs drops their reply senders: callers see
                // `Closed` and nothing was written.
                continue;
            }
        };
        // On some errors (disk full, I/O) SQLite rolls the whole
        // transaction back by itself. The jobs after that must not run:
        // each would start and commit a transaction of its own.
        let mut lost = false;
        let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
        for job in jobs {
            if lost {
                completions.push(job(None));
                continue;
            }
            completions.push(job(Some(&mut transaction)));
            lost = transaction.is_autocommit();
        }
        let committed = if lost {
            tracing::error!("SQLite rolled the batch back; nothing in it was written");
            false
        } else {
            match transaction.commit() {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "commit failed; the batch is rolled back");
                    false
                }
            }
        };
        for completion in completions {
            completion(committed);
        }
    }
    tracing::debug!("writer stopped");
}
