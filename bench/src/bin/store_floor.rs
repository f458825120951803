//! `clawbot-store-floor`: the hub's store alone under a DM load, with no
//! sockets, frames, JSON or tokens: what storing DMs costs the hub's core.
//!
//! Target 1 asks one core, the hub's, for 25,000 persisted DMs/s with p99
//! at most 5 ms. `bench/floor/dm_floor.c` measures the network's half of
//! that with a 100-byte log record for a store; this measures the other
//! half. Each DM goes through the hub's own writer as the hub's DM path
//! hands it over (one job that needs no savepoint: the client-id lookup,
//! then the event's INSERT; the writer's upkeep of `addressed` around each
//! commit), at a fixed rate from a runtime like the hub's, and each DM's
//! commit is timed from when it was due. Pin it to the core a hub would
//! have:
//!
//! ```sh
//! taskset -c 0 clawbot-store-floor --data-dir /work/store-floor --rate 25000
//! ```
//!
//! The figures: commit latency, and the CPU of each of the process's
//! threads over the measured part, as a share of one core.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use clawbot_bench::cli::ClientIds;
use clawbot_bench::schedule::{per_second, Clock, Pacing, Schedule};
use clawbot_bench::stats::{storage_written, SharedLatency};
use clawbot_hub::config::Synchronous;
use clawbot_hub::store::event::EventKind;
use clawbot_hub::store::messages::{self, NewEvent};
use clawbot_hub::store::writer::Guard;
use clawbot_hub::store::{now_iso, Store};

#[derive(Parser)]
#[command(
    version,
    about = "Store DMs through the hub's own writer at a fixed rate, with no network, and report commit latency and CPU per thread"
)]
struct Args {
    /// A directory for the database; created, and refused if it already
    /// holds a hub's database (this would fill it with bench rows).
    #[arg(long)]
    data_dir: PathBuf,
    /// DMs per second.
    #[arg(long, default_value_t = 25_000.0)]
    rate: f64,
    /// Seconds stored but not measured first.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Sender/recipient pairs, each sender writing to its own recipient
    /// (as `clawbot-bench dm --pairs`).
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Bytes of content per DM.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The `clientId` on each DM (the connectors send ordered ones).
    #[arg(long, value_enum, default_value_t = ClientIds::Ordered)]
    client_ids: ClientIds,
    #[arg(long, value_enum, default_value_t = Synchronous::Full)]
    synchronous: Synchronous,
    /// As the hub's `--commit-window-us`.
    #[arg(long, default_value_t = 1000)]
    commit_window_us: u64,
}

/// The hub's allocator, so that the job closures, events and replies
/// cost what they cost there. (SQLite allocates through the C library's
/// malloc in both.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rate > 0.0, "--rate must be positive");
    ensure!(args.pairs > 0, "--pairs must be at least 1");
    ensure!(
        args.warmup >= 0.0 && args.duration > 0.0,
        "--warmup must be at least 0 and --duration more than 0"
    );
    ensure!(
        !args.data_dir.join("hub.sqlite3").exists(),
        "{} already holds a hub database; give an empty directory",
        args.data_dir.display()
    );
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // The hub's runtime: one worker per core it may use (one under
    // `taskset -c 0`).
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let opened = Store::open(
        &args.data_dir,
        args.synchronous,
        Duration::from_micros(args.commit_window_us),
    )?;
    let writer = opened.store.writer.clone();
    let clock = Clock::new();
    // Sleep pacing: a spinning sender would count its spinning as the
    // store's CPU. DMs then leave in bursts of up to a millisecond's worth,
    // as they reach a busy hub anyway.
    let schedule = Schedule::new(
        clock,
        Pacing::Sleep,
        Duration::from_millis(10),
        args.rate,
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
    );
    let latency = SharedLatency::new(None);
    let content = "x".repeat(args.size);
    let mut measure_start = None;
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..schedule.total_items {
        schedule.wait_for(i).await;
        if i == schedule.warmup_items {
            measure_start = Some(Snapshot::take(clock.now_ns()));
        }
        let pair = i as usize % args.pairs;
        let (from, to) = (format!("floor-s{pair}"), format!("floor-r{pair}"));
        let (content, client_id) = (content.clone(), args.client_ids.next());
        let committed = writer
            .submit_reply_first(
                Guard::SingleStatement,
                move |connection| {
                    if let Some(client_id) = &client_id {
                        if messages::find_by_client_id(connection, &from, client_id)?.is_some() {
                            return Ok(());
                        }
                    }
                    messages::insert(
                        connection,
                        NewEvent {
                            kind: EventKind::DirectMessage,
                            from_name: from.clone(),
                            from_id: from,
                            group_id: None,
                            recipient: Some(to),
                            content,
                            client_id,
                            ref_id: None,
                            created_at: now_iso(),
                        },
                    )
                    .map(|_| ())
                },
                |_| (),
            )
            .await?;
        let (latency, measured) = (latency.clone(), schedule.is_measured(i));
        pending.spawn(async move {
            let stored = committed.await;
            if measured {
                let late = schedule.late_by(i, clock.now_ns());
                latency.lock().record_ns(late);
            }
            stored.map(|_| ())
        });
        // Collect what has finished now and then, so the set stays small.
        while let Some(done) = pending.try_join_next() {
            done??;
        }
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    let end = Snapshot::take(clock.now_ns());
    let start = measure_start.context("no measured DM")?;
    writer.stop().await;
    opened
        .writer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    report(&args, &schedule, &latency, &start, &end);
    Ok(())
}

/// CPU time of each of this process's threads, by name, and the bytes it
/// has written to storage, at one moment.
struct Snapshot {
    ns: u64,
    cpu_seconds: BTreeMap<String, f64>,
    written: u64,
}

impl Snapshot {
    fn take(ns: u64) -> Snapshot {
        let mut cpu_seconds = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let read = |file: &str| std::fs::read_to_string(task.path().join(file)).ok();
                let (Some(name), Some(stat)) = (read("comm"), read("stat")) else {
                    continue;
                };
                if let Some(seconds) = thread_cpu_seconds(&stat) {
                    *cpu_seconds.entry(name.trim().to_owned()).or_default() += seconds;
                }
            }
        }
        Snapshot {
            ns,
            cpu_seconds,
            written: storage_written(std::process::id()).unwrap_or(0),
        }
    }
}

/// utime + stime of `/proc/self/task/<tid>/stat`, in seconds (USER_HZ is
/// 100 on the Linux ABIs we run on).
fn thread_cpu_seconds(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn report(
    args: &Args,
    schedule: &Schedule,
    latency: &SharedLatency,
    start: &Snapshot,
    end: &Snapshot,
) {
    let seconds = end.ns.saturating_sub(start.ns) as f64 / 1e9;
    let measured = schedule.measured_items();
    let stored_per_second = per_second(measured, start.ns, end.ns);
    let mut line = format!(
        "store-floor: {} DMs/s offered, {stored_per_second:.0} stored/s, {} B, {} pairs, client ids {:?}, synchronous {:?}, window {} µs",
        args.rate, args.size, args.pairs, args.client_ids, args.synchronous, args.commit_window_us
    );
    if let Some(summary) = latency.summary() {
        line += &format!(
            "; commit p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} ms (n={})",
            summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.max_ms, summary.count
        );
    }
    let mut total = 0.0;
    let mut threads = Vec::new();
    for (name, seconds_at_end) in &end.cpu_seconds {
        let used = seconds_at_end - start.cpu_seconds.get(name).copied().unwrap_or(0.0);
        total += used;
        threads.push(format!("{name} {:.0}%", 100.0 * used / seconds));
    }
    line += &format!(
        "; cpu {:.0}% of a core ({:.1} µs a DM): {}",
        100.0 * total / seconds,
        1e6 * total / measured as f64,
        threads.join(", ")
    );
    let written = end.written.saturating_sub(start.written) as f64;
    line += &format!(
        "; written {:.1} MB/s ({:.0} B a DM)",
        written / seconds / 1e6,
        written / measured as f64
    );
    println!("{line}");
}
