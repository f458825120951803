//! The scenarios, one per file, and what they share: the run's context and
//! opening many registered agents at once.
//!
//! Every scenario returns a [`Report`](crate::report::Report); set-up
//! failures (the hub refuses a token, a connection cannot be opened) are
//! errors instead, because then there is nothing to measure.

pub mod backlog;
pub mod dm;
pub mod fanout;
pub mod history;
pub mod idle;
mod in_order;

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{future, stream, StreamExt, TryStreamExt};

use crate::cli::Timing;
use crate::schedule::{Clock, Pacing, Schedule};
use crate::stats::{storage_written, CpuMeter};
use crate::target::{Target, Ws};
use crate::ws;

/// Connections being opened and registered at once during set-up.
const SETUP_CONCURRENCY: usize = 64;

pub struct Ctx {
    pub target: Target,
    pub clock: Clock,
    pub pacing: Pacing,
    /// Prefix of every agent and group id this run creates.
    pub run_id: String,
}

impl Ctx {
    pub fn new(target: Target, run_id: Option<String>, pacing: Pacing) -> Ctx {
        Ctx {
            target,
            clock: Clock::new(),
            pacing,
            run_id: run_id.unwrap_or_else(default_run_id),
        }
    }

    /// The schedule of a fixed-rate run that starts in a moment (time for
    /// every task to be waiting when the first item is due).
    pub fn schedule(&self, rate: f64, timing: &Timing) -> Schedule {
        const LEAD: Duration = Duration::from_millis(200);
        Schedule::new(
            self.clock,
            self.pacing,
            LEAD,
            rate,
            timing.warmup,
            timing.duration,
        )
    }

    /// Waits until the hub (if its pid is known) is idle: a scenario that
    /// overloaded it leaves frames in its sockets and jobs in its queues for
    /// a while after the generator left, and the next measurement must not
    /// pay for them.
    pub async fn wait_for_quiet_hub(&self) {
        const WINDOW: Duration = Duration::from_millis(250);
        const QUIET_PERCENT: f64 = 10.0;
        const LIMIT: Duration = Duration::from_secs(180);
        let Some(pid) = self.target.hub_pid() else {
            return;
        };
        let start = tokio::time::Instant::now();
        let mut quiet_windows = 0;
        while quiet_windows < 2 && start.elapsed() < LIMIT {
            let meter = CpuMeter::start(Some(pid), self.clock.now_ns());
            tokio::time::sleep(WINDOW).await;
            let busy = meter.stop_within(self.clock.now_ns()).hub.unwrap_or(0.0);
            quiet_windows = if busy < QUIET_PERCENT {
                quiet_windows + 1
            } else {
                0
            };
        }
        let waited = start.elapsed();
        if waited > Duration::from_secs(2) {
            eprintln!(
                "clawbot-bench: waited {:.1} s for the hub to go idle",
                waited.as_secs_f64()
            );
        }
    }

    /// Waits until the hub (if its pid is known) has written nothing to
    /// storage for a moment, and returns when it last did (clock ns).
    ///
    /// Filling a backlog or a history uses `heartbeat_ack` as the sign that
    /// the hub has handled the frames before it. Ours handles a
    /// connection's frames in order, so it is; the original handles each
    /// frame in its own async callback and answers a heartbeat while the
    /// messages before it still wait for SQLite. Draining or reading before
    /// they are stored would measure a half-filled hub (and the original
    /// deletes a backlog it is still writing), so after a fill we also wait
    /// for its writes to stop.
    pub async fn wait_until_stored(&self) -> Option<u64> {
        const POLL: Duration = Duration::from_millis(50);
        const QUIET: Duration = Duration::from_secs(1);
        const LIMIT: Duration = Duration::from_secs(600);
        let pid = self.target.hub_pid()?;
        let mut written = storage_written(pid)?;
        let start = tokio::time::Instant::now();
        let mut last_change = start;
        let mut last_change_ns = self.clock.now_ns();
        while last_change.elapsed() < QUIET && start.elapsed() < LIMIT {
            tokio::time::sleep(POLL).await;
            let now = storage_written(pid)?;
            if now != written {
                written = now;
                last_change = tokio::time::Instant::now();
                last_change_ns = self.clock.now_ns();
            }
        }
        if start.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "clawbot-bench: the hub went on writing for {:.1} s after acknowledging the fill",
                (last_change - start).as_secs_f64()
            );
        }
        Some(last_change_ns)
    }

    /// A fresh id for this run: `<run id>-<name>`.
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.run_id)
    }

    /// Mints a token for each agent, connects and registers them all (a
    /// few at a time), and returns the live connections in the same order.
    pub async fn open_agents(&self, agent_ids: &[String], read_buffer: usize) -> Result<Vec<Ws>> {
        let tokens = self
            .target
            .mint_agent_tokens(agent_ids)
            .await
            .context("minting agent tokens")?;
        let protocol = self.target.protocol();
        stream::iter(agent_ids.iter().zip(tokens))
            .map(|(id, token)| async move {
                let mut ws = self.target.connect(token.as_deref(), read_buffer).await?;
                ws::register(&mut ws, id, protocol).await?;
                anyhow::Ok(ws)
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }
}

/// Reads every connection until the hub has been quiet on all of them for
/// a moment (see [`ws::drain_quiet`]); returns the bytes read.
pub async fn settle(connections: &mut [Ws]) -> Result<u64> {
    const QUIET: Duration = Duration::from_millis(300);
    const LIMIT: Duration = Duration::from_secs(60);
    let drained = future::try_join_all(
        connections
            .iter_mut()
            .map(|ws| ws::drain_quiet(ws, QUIET, LIMIT)),
    )
    .await
    .context("settling after set-up")?;
    Ok(drained.iter().sum())
}

/// `b` and the time in base 36: short, valid as an id prefix, and unique
/// enough between runs against one hub.
fn default_run_id() -> String {
    let mut millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut digits = Vec::new();
    while millis > 0 {
        digits.push(char::from_digit((millis % 36) as u32, 36).unwrap_or('0'));
        millis /= 36;
    }
    digits.reverse();
    format!("b{}", digits.into_iter().collect::<String>())
}

/// Seconds with a unit, for load descriptions.
pub fn secs(duration: std::time::Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}
