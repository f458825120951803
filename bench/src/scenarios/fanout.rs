//! `fanout`: one sender posts to a group whose members are all connected.
//!
//! The sender is not a member, so every delivery is to a member. We measure
//! deliveries per second (messages times members) and, per message, the
//! time from its due time until the *last* member has it: a message has
//! reached the group only when it reached everyone. Each member also checks
//! that it gets every message once, in order.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::in_order::InOrder;
use super::{secs, settle, Ctx};
use crate::cli::FanoutArgs;
use crate::report::{Report, Throughput};
use crate::schedule::per_second;
use crate::stats::{CpuMeter, Latency, SharedErrors, SharedLatency};
use crate::target::BIG_READ_BUFFER;
use crate::ws::{self, content, group_message_frame, join_group_frame, marker, probe, Frame, Step};

pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> Result<Report> {
    ensure!(args.members > 0, "--members must be at least 1");
    ensure!(args.rate > 0.0, "--rate must be positive");
    let group = ctx.id("fan");
    let member_ids: Vec<String> = (0..args.members)
        .map(|k| ctx.id(&format!("fan-m{k}")))
        .collect();
    let mut members = ctx.open_agents(&member_ids, BIG_READ_BUFFER).await?;
    // The first join creates the group; the rest may then join together.
    join(&mut members[0], &group).await?;
    stream::iter(members[1..].iter_mut())
        .map(|ws| join(ws, &group))
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    let mut sender = ctx.open_agents(&[ctx.id("fan-s")], BIG_READ_BUFFER).await?;
    // Every join told every other member; let that pass before measuring.
    let settled = settle(&mut members).await? + settle(&mut sender).await?;
    eprintln!(
        "clawbot-bench: fanout set-up: {} members joined {group}; {:.1} MB of presence and join notices read",
        args.members,
        settled as f64 / 1e6
    );
    let sender = sender.pop().expect("one sender");

    let timing = &args.timing;
    let schedule = ctx.schedule(args.rate, timing);
    let clock = ctx.clock;
    let deadline = clock.instant(schedule.measure_end_ns()) + timing.drain_timeout;
    let total = schedule.total_items;
    let v2 = ctx.target.v2();
    // Per message: how many members have it, and when the first and the
    // last one got it.
    let copies: Arc<Vec<AtomicU32>> = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let first_arrival: Arc<Vec<AtomicU64>> =
        Arc::new((0..total).map(|_| AtomicU64::new(u64::MAX)).collect());
    let last_arrival: Arc<Vec<AtomicU64>> =
        Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let delivery = SharedLatency::default();
    let errors = SharedErrors::default();
    let stop = CancellationToken::new();

    let mut receiving = JoinSet::new();
    for mut ws in members {
        let (delivery, errors, stop) = (delivery.clone(), errors.clone(), stop.clone());
        let (copies, first_arrival, last_arrival) = (
            Arc::clone(&copies),
            Arc::clone(&first_arrival),
            Arc::clone(&last_arrival),
        );
        receiving.spawn(async move {
            let mut receipt = InOrder::new(total);
            let ended = ws::receive(&mut ws, v2, deadline, &stop, |text| {
                let probe = match probe(text) {
                    Ok(Frame::Parsed(probe)) if probe.kind == "message" => probe,
                    Ok(_) => return Step::more(),
                    Err(_) => {
                        errors.add("unparseable", 1);
                        return Step::more();
                    }
                };
                let Some(i) = probe.content.as_deref().and_then(marker) else {
                    return Step::more();
                };
                if i >= total {
                    return Step::more();
                }
                let now = clock.now_ns();
                if receipt.take(i, now, &schedule, &delivery, &errors) {
                    copies[i as usize].fetch_add(1, Ordering::Relaxed);
                    first_arrival[i as usize].fetch_min(now, Ordering::Relaxed);
                    last_arrival[i as usize].fetch_max(now, Ordering::Relaxed);
                }
                Step {
                    done: receipt.done(),
                    seq: probe.seq,
                }
            })
            .await;
            receipt.finish(&ended, &errors)
        });
    }

    let confirmation = SharedLatency::default();
    let lag = SharedLatency::default();
    let (mut sink, mut replies_in) = sender.split();
    let sending = {
        let (lag, errors, group) = (lag.clone(), errors.clone(), group.clone());
        let size = args.size;
        tokio::spawn(async move {
            let mut i = 0;
            while i < total {
                schedule.wait_for(i).await;
                let now = clock.now_ns();
                while i < total && schedule.due_ns(i) <= now {
                    if schedule.is_measured(i) {
                        lag.lock().record_ns(schedule.late_by(i, clock.now_ns()));
                    }
                    let frame = group_message_frame(&group, &content(i, size));
                    if sink.feed(Message::text(frame)).await.is_err() {
                        errors.add("send_failed", 1);
                        return sink;
                    }
                    i += 1;
                }
                if sink.flush().await.is_err() {
                    errors.add("send_failed", 1);
                    return sink;
                }
            }
            sink
        })
    };
    let stop_replies = CancellationToken::new();
    let confirmations_seen = Arc::new(AtomicU64::new(0));
    let replying = {
        let (confirmation, errors, stop) =
            (confirmation.clone(), errors.clone(), stop_replies.clone());
        let seen = Arc::clone(&confirmations_seen);
        tokio::spawn(async move {
            let mut replies = 0u64;
            let ended = ws::receive_half(&mut replies_in, deadline, &stop, |text| {
                let Ok(Frame::Parsed(probe)) = probe(text) else {
                    return Step::more();
                };
                match probe.kind.as_ref() {
                    "sent" => {
                        if schedule.is_measured(replies) {
                            confirmation
                                .lock()
                                .record_ns(schedule.late_by(replies, clock.now_ns()));
                        }
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    "error" => {
                        errors.add(format!("error:{}", probe.code.as_deref().unwrap_or("?")), 1)
                    }
                    _ => return Step::more(),
                }
                replies += 1;
                Step {
                    done: replies == total,
                    seq: None,
                }
            })
            .await;
            (replies, ended, replies_in)
        })
    };

    tokio::time::sleep_until(clock.instant(schedule.measure_start_ns())).await;
    let meter = CpuMeter::start(ctx.target.hub_pid(), clock.now_ns());
    tokio::time::sleep_until(clock.instant(schedule.measure_end_ns())).await;
    let cpu = meter.stop(clock.now_ns());

    let (mut delivered, mut last_delivery_ns) = (0u64, 0u64);
    while let Some(result) = receiving.join_next().await {
        let (measured, last_ns) = result?;
        delivered += measured;
        last_delivery_ns = last_delivery_ns.max(last_ns);
    }
    let sink = sending.await?;
    if confirmations_seen.load(Ordering::Relaxed) == 0 {
        // The original hub confirms nothing; do not wait for it.
        stop_replies.cancel();
    }
    let (replies, ended, replies_in) = replying.await?;
    if replies < total && !stop_replies.is_cancelled() {
        errors.add("missing_sent", total - replies);
        if let Some(kind) = ended.error_kind() {
            errors.add(kind, 1);
        }
    }
    stop.cancel();
    drop((sink, replies_in));

    // Time to the last member is the figure that counts; time to the first
    // shows how much of it is spent going through the members one by one
    // (on both sides: the generator reads them on one core too).
    let (mut everyone, mut anyone) = (Latency::new(), Latency::new());
    let members = args.members as u32;
    for i in schedule.warmup_items..total {
        let i = i as usize;
        if copies[i].load(Ordering::Relaxed) == members {
            let due = schedule.due_ns(i as u64);
            everyone.record_ns(last_arrival[i].load(Ordering::Relaxed).saturating_sub(due));
            anyone.record_ns(first_arrival[i].load(Ordering::Relaxed).saturating_sub(due));
        }
    }

    let mut report = Report::new(
        "fanout",
        ctx.target.protocol().name(),
        format!(
            "{} members, {} msg/s, {} B, {}+{}",
            args.members,
            args.rate,
            args.size,
            secs(timing.warmup),
            secs(timing.duration)
        ),
    );
    report.throughput = Some(Throughput {
        achieved: per_second(delivered, schedule.measure_start_ns(), last_delivery_ns),
        offered: Some(schedule.rate() * args.members as f64),
        unit: "deliveries/s".to_owned(),
    });
    report.latency("all members", everyone.summary());
    report.other_latency("first member", anyone.summary());
    report.other_latency("each delivery", delivery.summary());
    report.other_latency("sent", confirmation.summary());
    report.other_latency("send lag", lag.summary());
    report.errors = errors.take();
    report.cpu(cpu);
    Ok(report.finish())
}

/// Joins the group and waits until the hub has handled it (a heartbeat
/// round trip: legacy clients get no reply to `join_group`).
async fn join(ws: &mut crate::target::Ws, group: &str) -> Result<()> {
    ws.send(Message::text(join_group_frame(group))).await?;
    ws::round_trip(ws)
        .await
        .with_context(|| format!("joining {group}"))
}
