//! `sdk-roundtrip`: the Rust half of the SDK benchmark (issue 6, scenario 6).
//!
//! It drives the hub through the raw Rust connector (`clawbot_connector`)
//! with exactly the workload that `python/bench/roundtrip.py` runs through
//! the Python SDK, so that `scripts/bench-sdk` can put the two side by side:
//!
//! 1. **sequential**: one direct message at a time from agent A to agent B.
//!    A *round trip* is one `send_direct_message` call, from the call until
//!    it returns with the hub's `sent` confirmation (the message is stored);
//!    *delivery* is from the same call until B's event loop has the message.
//! 2. **pipelined**: `--in-flight` sends outstanding at once on A's one
//!    connection, to agent C, which is offline (so the hub only stores):
//!    confirmations per second.
//! 3. **pipelined, delivered**: the same to B, online in this process:
//!    deliveries per second that B's event loop took.
//!
//! Each phase has a warm-up that is not counted. CPU per round trip is read
//! from `/proc` for this process (all threads) and for the hub, over the
//! measured window only. Prints one JSON line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use clawbot_bench::stats::cpu_seconds;
use clawbot_connector::protocol::AgentInfo;
use clawbot_connector::{Client, ClientConfig, Event, Events};
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(about = "Round trips through the Rust connector (see scripts/bench-sdk)")]
struct Args {
    /// The hub's WebSocket URL.
    #[arg(long)]
    ws_url: String,
    /// The hub's admin token: each agent claims a fresh id with it.
    #[arg(long, env = "CLAWBOT_BENCH_TOKEN", hide_env_values = true)]
    token: String,
    /// The hub's pid, to read its CPU time from /proc.
    #[arg(long)]
    hub_pid: Option<u32>,
    /// Seconds of each phase that are run but not counted.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Seconds each phase is measured.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Sends outstanding at once in the pipelined phases.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Bytes of message content.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// A current-thread tokio runtime instead of the multi-threaded one
    /// (`#[tokio::main]`'s default, and what the Python extension uses).
    #[arg(long)]
    current_thread: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut builder = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build()?;
    let result = runtime.block_on(run(&args))?;
    println!("{result}");
    Ok(())
}

/// What the receiving agent's event loop saw.
struct Receiver {
    /// Direct messages taken so far.
    delivered: Arc<AtomicU64>,
    /// The sequential phase's message numbers, with when they were taken.
    arrivals: mpsc::UnboundedReceiver<(u64, Instant)>,
}

async fn run(args: &Args) -> Result<serde_json::Value> {
    let tag = format!("rt-rust-{}", std::process::id());
    let offline_id = format!("{tag}-c");
    let receiver_id = format!("{tag}-b");
    let (offline, _) = connect(args, &offline_id).await?;
    offline.close().await;
    let (receiver_client, receiver_events) = connect(args, &receiver_id).await?;
    let mut receiver = spawn_receiver(receiver_events);
    let (sender, sender_events) = connect(args, &format!("{tag}-a")).await?;
    // The sender hears presence too; its buffer must not fill up.
    tokio::spawn(drain(sender_events));

    let one_at_a_time = sequential(args, &sender, &receiver_id, &mut receiver).await?;
    let stored = pipelined(args, &sender, &offline_id, &receiver).await?;
    let delivered = pipelined(args, &sender, &receiver_id, &receiver).await?;
    sender.close().await;
    receiver_client.close().await;
    Ok(json!({
        "client": "rust",
        "runtime": if args.current_thread { "current_thread" } else { "multi_thread" },
        "size": args.size,
        "sequential": one_at_a_time,
        "pipelined": stored,
        "pipelined_delivered": delivered,
    }))
}

async fn connect(args: &Args, agent_id: &str) -> Result<(Client, Events)> {
    let mut config = ClientConfig::new(&args.ws_url, AgentInfo::new(agent_id));
    config.token = Some(args.token.clone());
    clawbot_connector::connect(config)
        .await
        .with_context(|| format!("connecting as {agent_id}"))
}

async fn drain(mut events: Events) {
    while events.recv().await.is_some() {}
}

fn spawn_receiver(mut events: Events) -> Receiver {
    let delivered = Arc::new(AtomicU64::new(0));
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let count = Arc::clone(&delivered);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::DirectMessage(message) = event {
                count.fetch_add(1, Ordering::Relaxed);
                if let Some(number) = sequence_number(&message.content) {
                    let _ = arrived.send((number, Instant::now()));
                }
            }
        }
    });
    Receiver {
        delivered,
        arrivals,
    }
}

/// `seq <n> xxx…`, padded to `size` bytes.
fn sequential_content(number: u64, size: usize) -> String {
    let mut content = format!("seq {number} ");
    while content.len() < size {
        content.push('x');
    }
    content
}

fn sequence_number(content: &str) -> Option<u64> {
    content
        .strip_prefix("seq ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// CPU seconds of this process and of the hub at one moment.
#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    own: f64,
    hub: Option<f64>,
}

impl CpuMark {
    fn now(hub_pid: Option<u32>) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            own: cpu_seconds(None).unwrap_or(f64::NAN),
            hub: hub_pid.and_then(|pid| cpu_seconds(Some(pid))),
        }
    }

    /// Seconds of the window, and microseconds of CPU per operation for
    /// this process and the hub.
    fn since(&self, start: &CpuMark, operations: u64) -> serde_json::Value {
        let per_op = |seconds: f64| seconds * 1e6 / operations.max(1) as f64;
        let window = (self.at - start.at).as_secs_f64();
        json!({
            "window_s": window,
            "client_cpu_us_per_op": per_op(self.own - start.own),
            "hub_cpu_us_per_op": match (self.hub, start.hub) {
                (Some(end), Some(begin)) => Some(per_op(end - begin)),
                _ => None,
            },
            "client_core_pct": 100.0 * (self.own - start.own) / window,
        })
    }
}

/// The value below which `quantile` of `sorted` lie (nearest rank).
fn percentile_us(sorted: &[u64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

async fn sequential(
    args: &Args,
    sender: &Client,
    receiver_id: &str,
    receiver: &mut Receiver,
) -> Result<serde_json::Value> {
    let begin = Instant::now();
    let measured_from = begin + Duration::from_secs_f64(args.warmup);
    let end = measured_from + Duration::from_secs_f64(args.duration);
    let mut sent_ns = Vec::new();
    let mut delivered_ns = Vec::new();
    let mut start_mark = None;
    let mut number = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        if started >= measured_from && start_mark.is_none() {
            start_mark = Some(CpuMark::now(args.hub_pid));
        }
        sender
            .send_direct_message(receiver_id, &sequential_content(number, args.size))
            .await
            .context("sequential send")?;
        let confirmed = Instant::now();
        let arrived = loop {
            match receiver.arrivals.recv().await {
                Some((got, at)) if got == number => break at,
                Some(_) => continue,
                None => bail!("the receiver stopped"),
            }
        };
        if start_mark.is_some() {
            sent_ns.push((confirmed - started).as_nanos() as u64);
            delivered_ns.push((arrived - started).as_nanos() as u64);
        }
        number += 1;
    }
    let end_mark = CpuMark::now(args.hub_pid);
    let start_mark = start_mark.context("no round trip in the measured window")?;
    sent_ns.sort_unstable();
    delivered_ns.sort_unstable();
    let count = sent_ns.len() as u64;
    let mut result = end_mark.since(&start_mark, count);
    result["count"] = json!(count);
    result["per_s"] = json!(count as f64 / (end_mark.at - start_mark.at).as_secs_f64());
    result["sent_p50_ms"] = json!(percentile_us(&sent_ns, 0.50) / 1000.0);
    result["sent_p99_ms"] = json!(percentile_us(&sent_ns, 0.99) / 1000.0);
    result["delivered_p50_ms"] = json!(percentile_us(&delivered_ns, 0.50) / 1000.0);
    result["delivered_p99_ms"] = json!(percentile_us(&delivered_ns, 0.99) / 1000.0);
    Ok(result)
}

/// `--in-flight` senders on the one connection for warm-up plus duration;
/// counts confirmations, and deliveries to the receiver, in the window.
async fn pipelined(
    args: &Args,
    sender: &Client,
    to: &str,
    receiver: &Receiver,
) -> Result<serde_json::Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let content = "p".repeat(args.size);
    let mut workers = Vec::new();
    for _ in 0..args.in_flight {
        let (sender, to, content) = (sender.clone(), to.to_owned(), content.clone());
        let (stop, confirmed) = (Arc::clone(&stop), Arc::clone(&confirmed));
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sender.send_direct_message(&to, &content).await?;
                confirmed.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let start_mark = CpuMark::now(args.hub_pid);
    let (confirmed_before, delivered_before) = (
        confirmed.load(Ordering::Relaxed),
        receiver.delivered.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let confirmed_count = confirmed.load(Ordering::Relaxed) - confirmed_before;
    let delivered_count = receiver.delivered.load(Ordering::Relaxed) - delivered_before;
    let end_mark = CpuMark::now(args.hub_pid);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await?.context("pipelined send")?;
    }
    let window = (end_mark.at - start_mark.at).as_secs_f64();
    // Per operation: per confirmation, or per delivery when delivering.
    let operations = if delivered_count > 0 {
        delivered_count
    } else {
        confirmed_count
    };
    let mut result = end_mark.since(&start_mark, operations);
    result["in_flight"] = json!(args.in_flight);
    result["confirmed_per_s"] = json!(confirmed_count as f64 / window);
    result["delivered_per_s"] = json!(delivered_count as f64 / window);
    Ok(result)
}
