//! `history`: pages of a group's history over REST at a fixed request rate.
//!
//! The group is first filled over the WebSocket (`--prefill` messages from
//! `--prefill-connections` senders in parallel; nobody is a member, so the
//! hub only stores). Then requests for `limit` messages are due at a fixed
//! rate, each at a random place in the history (`before=<seq>`), so the
//! database cannot serve them all from the few pages it touched last. A
//! pool of `--connections` workers sends them; a request due while all are
//! busy waits, and the wait counts as latency. Each answer must be a full
//! page. With `--newest` every request asks for the newest page instead:
//! the original hub knows no `before` (nor `limit`: it always answers the
//! newest 50), so only that compares the two hubs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use futures_util::{future, SinkExt};
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{secs, Ctx};
use crate::cli::HistoryArgs;
use crate::pipeline::{self, Filled};
use crate::report::{Report, Throughput};
use crate::schedule::per_second;
use crate::stats::{CpuMeter, SharedErrors, SharedLatency};
use crate::target::{Target, BIG_READ_BUFFER};
use crate::ws::{self, content, group_message_frame, join_group_frame, leave_group_frame};

/// Which page each request asks for.
#[derive(Debug, Clone, Copy)]
enum Pages {
    /// `before` drawn uniformly from this range (inclusive), so that each
    /// page is full.
    Random { low: i64, high: i64 },
    /// No query: the newest page (hubs without seqs, or a group too small).
    Newest,
}

pub async fn run(ctx: &Ctx, args: &HistoryArgs) -> Result<Report> {
    ensure!(args.rate > 0.0, "--rate must be positive");
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(
        (1..=500).contains(&args.page_size),
        "--page-size must be 1 to 500"
    );
    let group = args.group.clone().unwrap_or_else(|| ctx.id("hist"));
    let mut errors = crate::stats::Errors::default();
    let mut seqs = None;
    if args.prefill > 0 {
        let filled = prefill(ctx, args, &group).await?;
        errors.merge(&filled.errors);
        seqs = filled.seqs;
    } else if let Some(range) = seq_range(&ctx.target, &group).await {
        seqs = Some(range);
    }
    let page = args.page_size as i64;
    let pages = match seqs {
        _ if args.newest => Pages::Newest,
        Some((low, high)) if high - low + 1 >= page => Pages::Random {
            low: low + page,
            high: high + 1,
        },
        _ => Pages::Newest,
    };

    let timing = &args.timing;
    let schedule = ctx.schedule(args.rate, timing);
    let clock = ctx.clock;
    let latency = SharedLatency::default();
    let shared_errors = SharedErrors::default();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for worker in 0..args.connections {
        let (target, latency, errors, next) = (
            ctx.target.clone(),
            latency.clone(),
            shared_errors.clone(),
            Arc::clone(&next),
        );
        let base = target.http_url(&format!("/api/groups/{group}/messages?limit={page}"));
        let expected = args.page_size;
        workers.spawn(async move {
            let mut random = XorShift::new(worker as u64);
            let (mut measured, mut last_ns) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= schedule.total_items {
                    break;
                }
                schedule.wait_for(i).await;
                let url = match pages {
                    Pages::Random { low, high } => {
                        let span = (high - low + 1) as u64;
                        format!("{base}&before={}", low + (random.next() % span) as i64)
                    }
                    Pages::Newest => base.clone(),
                };
                let outcome = fetch_page(&target, &url, expected, pages).await;
                let now = clock.now_ns();
                if let Err(kind) = outcome {
                    errors.add(kind, 1);
                } else if schedule.is_measured(i) {
                    latency.lock().record_ns(schedule.late_by(i, now));
                    measured += 1;
                    last_ns = now;
                }
            }
            (measured, last_ns)
        });
    }

    tokio::time::sleep_until(clock.instant(schedule.measure_start_ns())).await;
    let meter = CpuMeter::start(ctx.target.hub_pid(), clock.now_ns());
    tokio::time::sleep_until(clock.instant(schedule.measure_end_ns())).await;
    let cpu = meter.stop(clock.now_ns());
    let (mut answered, mut last_ns) = (0u64, 0u64);
    while let Some(result) = workers.join_next().await {
        let (measured, last) = result?;
        answered += measured;
        last_ns = last_ns.max(last);
    }

    let mut report = Report::new(
        "history",
        ctx.target.protocol().name(),
        format!(
            "{} req/s, {} per page, {} conns, {}+{}",
            args.rate,
            args.page_size,
            args.connections,
            secs(timing.warmup),
            secs(timing.duration)
        ),
    );
    report.throughput = Some(Throughput {
        achieved: per_second(answered, schedule.measure_start_ns(), last_ns),
        offered: Some(schedule.rate()),
        unit: "req/s".to_owned(),
    });
    report.latency("page", latency.summary());
    if let Some((low, high)) = seqs {
        report.figure("seq span", (high - low + 1) as f64, "events");
    }
    if matches!(pages, Pages::Newest) {
        report.figure("newest page only", 1.0, "");
    }
    report.errors = errors;
    report.errors.merge(&shared_errors.take());
    report.cpu(cpu);
    Ok(report.finish())
}

/// Fills the group over the WebSocket, several connections in parallel.
async fn prefill(ctx: &Ctx, args: &HistoryArgs, group: &str) -> Result<Filled> {
    let senders = args.prefill_connections.clamp(1, args.prefill);
    let ids: Vec<String> = (0..senders)
        .map(|c| ctx.id(&format!("hist-p{c}")))
        .collect();
    let mut connections = ctx.open_agents(&ids, BIG_READ_BUFFER).await?;
    // Joining creates the group; leaving again means the hub only stores
    // the messages, with nobody to deliver them to.
    let first = &mut connections[0];
    first.send(Message::text(join_group_frame(group))).await?;
    first.send(Message::text(leave_group_frame(group))).await?;
    ws::round_trip(first)
        .await
        .with_context(|| format!("creating group {group}"))?;

    let start = ctx.clock.now_ns();
    let count_of = |c: usize| (args.prefill + senders - 1 - c) / senders;
    let fills = future::try_join_all(connections.iter_mut().enumerate().map(|(c, ws)| {
        pipeline::send_all(ws, count_of(c), args.prefill_window, move |j| {
            group_message_frame(group, &content((c + j * senders) as u64, args.size))
        })
    }))
    .await
    .context("prefilling the group")?;
    let acknowledged_ns = ctx.clock.now_ns();
    let stored_ns = ctx
        .wait_until_stored()
        .await
        .map_or(acknowledged_ns, |ns| ns.max(acknowledged_ns));
    let elapsed = (stored_ns - start) as f64 / 1e9;
    let mut filled = Filled::default();
    for fill in &fills {
        filled.merge(fill);
    }
    eprintln!(
        "clawbot-bench: history: prefilled {group} with {} messages in {elapsed:.1} s ({:.0} msg/s)",
        filled.sent,
        filled.sent as f64 / elapsed
    );
    Ok(filled)
}

/// The seqs of an existing group's oldest and newest messages.
async fn seq_range(target: &Target, group: &str) -> Option<(i64, i64)> {
    #[derive(Deserialize)]
    struct Row {
        seq: i64,
    }
    let first = |query: &'static str| async move {
        let url = target.http_url(&format!("/api/groups/{group}/messages?{query}"));
        let mut request = target.http().get(url);
        if let Some(token) = target.admin_token() {
            request = request.bearer_auth(token);
        }
        let text = request.send().await.ok()?.text().await.ok()?;
        let rows: Vec<Row> = serde_json::from_str(&text).ok()?;
        rows.first().map(|row| row.seq)
    };
    Some((first("after=0&limit=1").await?, first("limit=1").await?))
}

/// One request; `Err` names what was wrong with the answer.
async fn fetch_page(
    target: &Target,
    url: &str,
    expected: usize,
    pages: Pages,
) -> Result<(), String> {
    let mut request = target.http().get(url);
    if let Some(token) = target.admin_token() {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|_| "request_failed".to_owned())?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|_| "request_failed".to_owned())?;
    if status != 200 {
        return Err(format!("http_{status}"));
    }
    // Count the rows without building them.
    let rows: Vec<IgnoredAny> =
        serde_json::from_slice(&body).map_err(|_| "unparseable".to_owned())?;
    let full = match pages {
        Pages::Random { .. } => rows.len() == expected,
        Pages::Newest => !rows.is_empty() && rows.len() <= expected,
    };
    if full {
        Ok(())
    } else {
        Err("short_page".to_owned())
    }
}

/// A tiny PRNG for page positions: reproducible per worker, no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
