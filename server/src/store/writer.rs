//! The one writer. Every change to the database goes through a single
//! thread that owns the write connection. It takes whatever jobs are waiting
//! (up to [`MAX_BATCH`]), runs each inside its own savepoint of one
//! transaction, and commits once: a burst of messages costs one fsync, not
//! one each. A job that fails rolls back its savepoint only, so nothing is
//! ever half-written and its neighbours still commit.
//!
//! Callers learn their result only after the commit is durable. A job may
//! also carry an `after` step that runs on the writer thread, in commit
//! order, right after the commit (before or after its caller hears, as the
//! caller chooses); the hub uses it to hand committed events to live
//! sessions, which is what keeps live delivery in sequence order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::commit_window::CommitWindow;
use super::slow_commits::{self, SlowCommits};
use super::StoreError;

/// Jobs per transaction at most; bounds the latency one commit adds.
const MAX_BATCH: usize = 2048;
/// Jobs waiting for the writer before senders wait too (backpressure).
const QUEUE_DEPTH: usize = 16 * 1024;

/// Upkeep the writer does around every batch's commit: work that is
/// cheaper once per batch than once per job.
pub trait Upkeep: Send + 'static {
    /// Runs in the batch's transaction after its jobs. On an error it must
    /// have undone what it wrote; the error is logged and the batch
    /// commits without it.
    fn before_commit(&mut self, connection: &Connection) -> Result<(), StoreError>;
    /// Whether the batch committed (false too when it was lost before
    /// `before_commit` could run).
    fn after_commit(&mut self, committed: bool);
}

/// No upkeep.
impl Upkeep for () {
    fn before_commit(&mut self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }

    fn after_commit(&mut self, _: bool) {}
}

/// Finishes a job once its batch has ended: answers a reply-first caller
/// at once, and returns the work to run after every such caller in the
/// batch has its answer (`after` steps, and the answers of other callers,
/// each right after its own step).
type Completion = Box<dyn FnOnce(bool) -> Option<Deferred> + Send>;
type Deferred = Box<dyn FnOnce() + Send>;
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
    /// `checkpoints` is a second connection to the same database, for the
    /// checkpointer thread the writer starts and stops with itself.
    /// `upkeep` runs around every batch's commit. While the writer is
    /// busy, a batch begins no sooner than `commit_window` after the last
    /// busy batch began (see [`CommitWindow`]).
    pub fn start(
        connection: Connection,
        checkpoints: Connection,
        upkeep: impl Upkeep,
        commit_window: Duration,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let (stop, stopped) = std::sync::mpsc::channel();
                let restart_wanted = Arc::new(AtomicBool::new(false));
                let asks = Arc::clone(&restart_wanted);
                let checkpointer = std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || super::checkpointer::run(checkpoints, stopped, asks))
                    .expect("spawning the checkpointer thread");
                let window = CommitWindow::new(commit_window);
                run(connection, receiver, upkeep, window, &restart_wanted);
                // Last commit done: one final checkpoint, then the writer
                // thread (which the hub joins on shutdown) ends.
                drop(stop);
                let _ = checkpointer.join();
            })
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
        self.submit(Guard::Savepoint, change, after).await?.await
    }

    /// Queues the change (waiting only while the writer's queue is full)
    /// and returns a future of its result. Changes run in the order they
    /// were submitted, so a connection can keep reading while its earlier
    /// messages commit, and still answer in order. `guard` says how a
    /// failing change is kept from leaving half its writes behind.
    pub async fn submit<T, F, A>(
        &self,
        guard: Guard,
        change: F,
        after: A,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        // Deferred like every `after`, so that the steps of one batch run
        // in commit order whichever way their callers are answered; this
        // caller hears right after its own step.
        self.enqueue(guard, change, move |outcome, reply| {
            Some(Box::new(move || {
                if let Ok(value) = &outcome {
                    after(value);
                }
                let _ = reply.send(outcome);
            }) as Deferred)
        })
        .await
    }

    /// Like [`Writer::submit`], but the caller hears of the commit before
    /// `after` runs. Every job's `after` runs once the batch's reply-first
    /// callers have their answers, in commit order, on the writer thread and
    /// before the next batch (a [`Writer::submit`] caller hears right after
    /// its own step). For a message to a large group that means the
    /// sender's confirmation is not queued behind a thousand deliveries.
    pub async fn submit_reply_first<T, F, A>(
        &self,
        guard: Guard,
        change: F,
        after: A,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static, StoreError>
    where
        T: Clone + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.enqueue(guard, change, move |outcome, reply| {
            let kept = outcome.as_ref().ok().cloned();
            let _ = reply.send(outcome);
            kept.map(|value| Box::new(move || after(&value)) as Deferred)
        })
        .await
    }

    /// Queues `change`; `finish` gets its outcome once the batch has
    /// committed (or failed) and answers the caller through `reply`.
    async fn enqueue<T, F, D>(
        &self,
        guard: Guard,
        change: F,
        finish: D,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(
                Result<T, StoreError>,
                oneshot::Sender<Result<T, StoreError>>,
            ) -> Option<Deferred>
            + Send
            + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |transaction| {
            let outcome = match (transaction, guard) {
                (Some(transaction), Guard::Savepoint) => run_in_savepoint(transaction, change),
                (Some(transaction), Guard::SingleStatement) => change(transaction),
                (None, _) => Err(StoreError::CommitFailed),
            };
            Box::new(move |committed| {
                let outcome = match outcome {
                    Ok(_) if !committed => Err(StoreError::CommitFailed),
                    outcome => outcome,
                };
                finish(outcome, reply)
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

/// How a job is kept from leaving half its writes behind when it fails.
#[derive(Clone, Copy)]
pub enum Guard {
    /// The job runs in its own savepoint, rolled back if it fails.
    Savepoint,
    /// The job writes with at most one statement, so it needs no savepoint:
    /// SQLite undoes a failed statement by itself, and nothing before it
    /// wrote anything. That matters on the hot path: a savepoint makes
    /// SQLite copy every page the job touches (the row's and each index's)
    /// before changing it.
    SingleStatement,
}

/// Runs one job (or an [`Upkeep`] step) in a savepoint of the batch's
/// transaction: if it fails, nothing it wrote stays. The savepoint
/// statements are prepared once and reused: rusqlite's `Savepoint` formats
/// and parses them afresh for every job, which at tens of thousands of jobs
/// a second is a cost worth avoiding.
pub(super) fn run_in_savepoint<T>(
    connection: &Connection,
    change: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    connection.prepare_cached("SAVEPOINT job")?.execute([])?;
    match change(connection) {
        Ok(value) => {
            connection.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(error) => {
            connection.prepare_cached("ROLLBACK TO job")?.execute([])?;
            connection.prepare_cached("RELEASE job")?.execute([])?;
            Err(error)
        }
    }
}

fn run(
    mut connection: Connection,
    mut receiver: mpsc::Receiver<Command>,
    mut upkeep: impl Upkeep,
    mut window: CommitWindow,
    restart_wanted: &AtomicBool,
) {
    let mut stopping = false;
    let mut slow_commits = SlowCommits::new(Instant::now());
    while !stopping {
        // Between two batches, after the last one's callers have heard.
        if restart_wanted.swap(false, Ordering::Relaxed) {
            if let Err(error) = super::checkpointer::copy_the_rest(&connection) {
                tracing::warn!(%error, "WAL checkpoint before a restart failed");
            }
        }
        let Some(first) = receiver.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::new();
        match first {
            Command::Run(job) => jobs.push(job),
            Command::Stop => break,
        }
        window.wait();
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
        window.began(jobs.len());
        // IMMEDIATE: take the write lock before reading anything. A
        // deferred transaction reads first and asks for the lock later,
        // and a RESTART or TRUNCATE checkpoint in between (another
        // process's, such as an operator's `sqlite3`: this hub's own
        // checkpointer no longer runs one while the writer works) holds
        // the lock while it waits for readers, so each would wait for the
        // other until the busy timeout.
        let mut transaction =
            match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
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
        if !lost {
            if let Err(error) = upkeep.before_commit(&transaction) {
                tracing::warn!(%error, "upkeep before the commit failed");
            }
            lost = transaction.is_autocommit();
        }
        let mut slow_report = None;
        let committed = if lost {
            tracing::error!("SQLite rolled the batch back; nothing in it was written");
            false
        } else {
            let started = Instant::now();
            let result = transaction.commit();
            let ended = Instant::now();
            slow_report = slow_commits.commit_took(ended - started, ended);
            match result {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "commit failed; the batch is rolled back");
                    false
                }
            }
        };
        upkeep.after_commit(committed);
        let deferred: Vec<Deferred> = completions
            .into_iter()
            .filter_map(|completion| completion(committed))
            .collect();
        for work in deferred {
            work();
        }
        // After every caller has its answer: writing the log line must not
        // delay them.
        if let Some(report) = slow_report.take() {
            warn_slow_commits(&report);
        }
    }
    if let Some(report) = slow_commits.finish(Instant::now()) {
        warn_slow_commits(&report);
    }
    tracing::debug!("writer stopped");
}

fn warn_slow_commits(report: &slow_commits::Report) {
    tracing::warn!(
        slow = report.slow,
        commits = report.commits,
        seconds = report.over.as_secs(),
        worst_ms = (report.worst.as_secs_f64() * 10_000.0).round() / 10.0,
        "commits took over {} ms (writing and syncing the log); whatever was in them was \
         confirmed and delivered at least that late. Many a minute: the disk cannot keep up \
         (OPERATIONS.md, \"Logs\")",
        slow_commits::SLOW.as_millis()
    );
}

#[cfg(test)]
impl Writer {
    /// Occupies the writer thread with a job that waits for the returned
    /// sender; returns once that job is running, with the job's result.
    pub async fn hold(
        &self,
    ) -> (
        std::sync::mpsc::Sender<()>,
        impl std::future::Future<Output = Result<(), StoreError>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (entered, inside) = std::sync::mpsc::channel::<()>();
        let done = self
            .submit(
                Guard::SingleStatement,
                move |_| {
                    entered.send(()).unwrap();
                    held.recv().unwrap();
                    Ok(())
                },
                |_| (),
            )
            .await
            .unwrap();
        tokio::task::spawn_blocking(move || inside.recv().unwrap())
            .await
            .unwrap();
        (release, done)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Two jobs of one batch: the first answers its caller before its
    /// `after`, the second after. Their `after` steps must still run in
    /// commit order, or a recipient could see the second job's event first
    /// and then drop the first one as already sent.
    #[tokio::test]
    async fn after_steps_run_in_commit_order_whichever_way_callers_hear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.db");
        let (writer, thread) = Writer::start(
            Connection::open(&path).unwrap(),
            Connection::open(&path).unwrap(),
            (),
            Duration::ZERO,
        );
        // Hold the writer inside a first batch so that the next two jobs
        // queue up and are taken together.
        let (release, first) = writer.hold().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let log = |name: &'static str| {
            let order = Arc::clone(&order);
            move |_: &u8| order.lock().unwrap().push(name)
        };
        let reply_first = writer
            .submit_reply_first(Guard::SingleStatement, |_| Ok(1u8), log("reply first"))
            .await
            .unwrap();
        let after_first = writer
            .submit(Guard::SingleStatement, |_| Ok(2u8), log("after first"))
            .await
            .unwrap();
        release.send(()).unwrap();
        first.await.unwrap();
        assert_eq!(reply_first.await.unwrap(), 1);
        assert_eq!(after_first.await.unwrap(), 2);
        assert_eq!(*order.lock().unwrap(), ["reply first", "after first"]);
        writer.stop().await;
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    /// Counts the batches that committed.
    struct CountCommits(Arc<AtomicUsize>);

    impl Upkeep for CountCommits {
        fn before_commit(&mut self, _: &Connection) -> Result<(), StoreError> {
            Ok(())
        }

        fn after_commit(&mut self, committed: bool) {
            assert!(committed);
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A job that returns when it ran.
    fn ran_at(_: &Connection) -> Result<Instant, StoreError> {
        Ok(Instant::now())
    }

    /// Queues two jobs back to back; the returned future resolves, once
    /// both have committed, to when the first ran.
    async fn two_jobs(writer: &Writer) -> impl std::future::Future<Output = Instant> {
        let first = writer
            .submit(Guard::SingleStatement, ran_at, |_| ())
            .await
            .unwrap();
        let second = writer
            .submit(Guard::SingleStatement, ran_at, |_| ())
            .await
            .unwrap();
        async move {
            let ran = first.await.unwrap();
            second.await.unwrap();
            ran
        }
    }

    /// After a busy batch (two jobs or more), the next waits for the rest
    /// of the window, measured from when the busy one began, and a job
    /// submitted meanwhile commits with it.
    #[tokio::test]
    async fn after_a_busy_batch_the_next_waits_out_the_window_and_takes_the_latecomers() {
        const WINDOW: Duration = Duration::from_millis(300);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.db");
        let batches = Arc::new(AtomicUsize::new(0));
        let (writer, thread) = Writer::start(
            Connection::open(&path).unwrap(),
            Connection::open(&path).unwrap(),
            CountCommits(Arc::clone(&batches)),
            WINDOW,
        );
        // A lone job: its batch is not busy, the next one need not wait.
        writer.write(ran_at).await.unwrap();
        // Two jobs queued behind a held writer make one busy batch.
        let (release, held) = writer.hold().await;
        let busy = two_jobs(&writer).await;
        release.send(()).unwrap();
        held.await.unwrap();
        let busy_ran = busy.await;
        // Each of the next two pairs commits as one batch, a window after
        // the batch before it began (both instants are taken a little
        // after their batches began, hence the margin).
        let mut previous = busy_ran;
        for pair in 0..2 {
            let before = batches.load(Ordering::SeqCst);
            let ran = two_jobs(&writer).await.await;
            let gap = ran.duration_since(previous);
            assert!(
                gap >= WINDOW / 2,
                "pair {pair} began {gap:?} after the last batch"
            );
            assert_eq!(
                batches.load(Ordering::SeqCst),
                before + 1,
                "pair {pair}: the second job committed with the first"
            );
            previous = ran;
        }
        writer.stop().await;
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
}
