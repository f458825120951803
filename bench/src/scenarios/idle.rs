//! `idle`: many registered connections that send nothing.
//!
//! Each connection is opened with its own agent token and registered, a
//! bounded number at a time; then all of them stay open, reading (which
//! answers the hub's pings) but sending nothing, for `--hold` seconds. We
//! report how long it took until every one was registered and, with
//! `--hub-pid`, how much the hub's resident memory grew per connection.
//!
//! A legacy connection is told whenever anyone comes or goes
//! (`agent_list`, the whole list of online agents), so registering N legacy
//! agents makes a hub send O(N²) bytes; v2 connections here do not ask for
//! presence and get none. The report includes how much the generator had
//! to read, which shows that cost.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{secs, Ctx};
use crate::cli::IdleArgs;
use crate::report::Report;
use crate::stats::{rss_kib, CpuMeter, SharedErrors};
use crate::target::SMALL_READ_BUFFER;
use crate::ws::{self, Step};

pub async fn run(ctx: &Ctx, args: &IdleArgs) -> Result<Report> {
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let n = args.connections;
    let ids: Vec<String> = (0..n).map(|k| ctx.id(&format!("idle-{k}"))).collect();
    let clock = ctx.clock;
    let minting_start = clock.now_ns();
    let tokens = ctx
        .target
        .mint_agent_tokens(&ids)
        .await
        .context("minting agent tokens")?;
    let minting_secs = (clock.now_ns() - minting_start) as f64 / 1e9;

    let hub_pid = ctx.target.hub_pid();
    let rss_before = hub_pid.and_then(rss_kib);
    let protocol = ctx.target.protocol();
    let errors = SharedErrors::default();
    let settled = Arc::new(AtomicUsize::new(0));
    let registered = Arc::new(AtomicUsize::new(0));
    let last_registered_ns = Arc::new(AtomicU64::new(0));
    let bytes_read = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let stop = CancellationToken::new();
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));

    let start_ns = clock.now_ns();
    let meter = CpuMeter::start(hub_pid, start_ns);
    // Nothing should end these connections before `stop`: reading has no
    // deadline of its own beyond a generous bound.
    let far = clock.instant(start_ns) + args.register_timeout + args.hold * 2;
    let mut connections = JoinSet::new();
    for (id, token) in ids.into_iter().zip(tokens) {
        let target = ctx.target.clone();
        let (errors, stop, gate) = (errors.clone(), stop.clone(), Arc::clone(&gate));
        let (settled, registered, wake) = (
            Arc::clone(&settled),
            Arc::clone(&registered),
            Arc::clone(&wake),
        );
        let (last_registered_ns, bytes_read) =
            (Arc::clone(&last_registered_ns), Arc::clone(&bytes_read));
        let first_failure = Arc::clone(&first_failure);
        connections.spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = async {
                let mut ws = target.connect(token.as_deref(), SMALL_READ_BUFFER).await?;
                ws::register(&mut ws, &id, protocol).await?;
                anyhow::Ok(ws)
            }
            .await;
            drop(permit);
            let mut ws = match opened {
                Ok(ws) => {
                    last_registered_ns.fetch_max(clock.now_ns(), Ordering::Relaxed);
                    registered.fetch_add(1, Ordering::Relaxed);
                    ws
                }
                Err(error) => {
                    errors.add("register_failed", 1);
                    first_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| format!("{error:#}"));
                    settled.fetch_add(1, Ordering::Relaxed);
                    wake.notify_one();
                    return None;
                }
            };
            settled.fetch_add(1, Ordering::Relaxed);
            wake.notify_one();
            let ended = ws::receive(&mut ws, false, far, &stop, |text| {
                bytes_read.fetch_add(text.len() as u64, Ordering::Relaxed);
                Step::more()
            })
            .await;
            match ended.error_kind() {
                // The hub ended an idle connection: it was not held.
                Some(kind) => {
                    errors.add(kind, 1);
                    None
                }
                None => Some(ws),
            }
        });
    }

    let register_deadline = clock.instant(start_ns) + args.register_timeout;
    while settled.load(Ordering::Relaxed) < n {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep_until(register_deadline) => {
                errors.add("register_timeout", (n - settled.load(Ordering::Relaxed)) as u64);
                break;
            }
        }
    }
    let all_registered_secs = (last_registered_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns)) as f64
        / 1e9;
    let registered_count = registered.load(Ordering::Relaxed);
    eprintln!(
        "clawbot-bench: idle: {registered_count} of {n} registered in {all_registered_secs:.2} s; holding {}",
        secs(args.hold)
    );
    if let Some(failure) = first_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        eprintln!("clawbot-bench: idle: first failure: {failure}");
    }

    tokio::time::sleep(args.hold).await;
    let rss_after = hub_pid.and_then(rss_kib);
    let online = online_count(ctx).await;
    let cpu = meter.stop(clock.now_ns());
    stop.cancel();
    let mut sockets = Vec::with_capacity(n);
    while let Some(result) = connections.join_next().await {
        sockets.extend(result?);
    }
    let held = sockets.len();
    drop(sockets);

    let mut report = Report::new(
        "idle",
        protocol.name(),
        format!(
            "{n} connections, {} at a time, hold {}",
            args.concurrency,
            secs(args.hold)
        ),
    );
    report.figure("registered all in", all_registered_secs, "s");
    report.figure("held", held as f64, "conns");
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.figure("hub RSS", after as f64 / 1024.0, "MiB");
        report.figure(
            "hub RSS per conn",
            after.saturating_sub(before) as f64 / n as f64,
            "KiB",
        );
    }
    if let Some(online) = online {
        report.figure("online per /api/health", online as f64, "agents");
        if online < held {
            report.errors.add("not_online", (held - online) as u64);
        }
    }
    report.figure(
        "agent lists etc. read",
        bytes_read.load(Ordering::Relaxed) as f64 / 1e6,
        "MB",
    );
    report.figure("token minting", minting_secs, "s");
    report.errors.merge(&errors.take());
    report.cpu(cpu);
    Ok(report.finish())
}

/// The hub's count of online agents, if it reports one.
async fn online_count(ctx: &Ctx) -> Option<usize> {
    #[derive(Deserialize)]
    struct Health {
        agents: usize,
    }
    let response = ctx
        .target
        .http()
        .get(ctx.target.http_url("/api/health"))
        .send()
        .await
        .ok()?;
    let health: Health = serde_json::from_str(&response.text().await.ok()?).ok()?;
    Some(health.agents)
}
