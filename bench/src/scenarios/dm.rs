//! `dm`: direct messages between sender/receiver pairs.
//!
//! Item `i` of the schedule is sent by sender `i % pairs` to its receiver.
//! We measure, from the time the item was due:
//! - delivery: until the receiver has the `direct_message`;
//! - `sent`: until the sender has its confirmation (the hub sends it after
//!   the commit, so this is the durable-write latency). Replies come in the
//!   order the frames were sent, so the j-th reply answers the j-th message;
//!   the original hub sends no `sent`, and then there is no such figure.
//!
//! Each receiver checks that its messages arrive once each and in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::in_order::InOrder;
use super::{secs, settle, Ctx};
use crate::cli::DmArgs;
use crate::report::{Report, Throughput};
use crate::schedule::per_second;
use crate::stats::{CpuMeter, SharedErrors, SharedLatency};
use crate::target::BIG_READ_BUFFER;
use crate::ws::{self, content, direct_message_frame, marker, probe, Frame, Step};

pub async fn run(ctx: &Ctx, args: &DmArgs) -> Result<Report> {
    ensure!(args.pairs > 0, "--pairs must be at least 1");
    ensure!(args.rate > 0.0, "--rate must be positive");
    // Opened now: a path that cannot be written fails before the run, not
    // after it.
    let timeline_file = match &args.timeline {
        Some(path) => Some((
            path,
            std::fs::File::create(path)
                .with_context(|| format!("creating the timeline file {}", path.display()))?,
        )),
        None => None,
    };
    let pairs = args.pairs as u64;
    let receiver_ids: Vec<String> = (0..pairs).map(|k| ctx.id(&format!("dm-r{k}"))).collect();
    let sender_ids: Vec<String> = (0..pairs).map(|k| ctx.id(&format!("dm-s{k}"))).collect();
    // Receivers first: a DM may only name an agent that has registered.
    let mut receivers = ctx.open_agents(&receiver_ids, BIG_READ_BUFFER).await?;
    let mut senders = ctx.open_agents(&sender_ids, BIG_READ_BUFFER).await?;
    tokio::try_join!(settle(&mut receivers), settle(&mut senders))?;

    let timing = &args.timing;
    let schedule = ctx.schedule(args.rate, timing);
    let clock = ctx.clock;
    let deadline = clock.instant(schedule.measure_end_ns()) + timing.drain_timeout;
    let v2 = ctx.target.v2();
    let delivery = SharedLatency::new(
        args.timeline
            .is_some()
            .then(|| schedule.measured_items() as usize),
    );
    let confirmation = SharedLatency::default();
    let lag = SharedLatency::default();
    let errors = SharedErrors::default();
    let confirmations_seen = Arc::new(AtomicU64::new(0));
    // Items of pair k: k, k + pairs, k + 2 * pairs, ... below the total.
    let items_of = |k: u64| (schedule.total_items + pairs - 1 - k) / pairs;

    let stop = CancellationToken::new();
    let mut receiving = JoinSet::new();
    for (k, mut ws) in (0..pairs).zip(receivers) {
        let (delivery, errors, stop) = (delivery.clone(), errors.clone(), stop.clone());
        let expected = items_of(k);
        receiving.spawn(async move {
            let mut receipt = InOrder::new(expected);
            let ended = ws::receive(&mut ws, v2, deadline, &stop, |text| {
                let probe = match probe(text) {
                    Ok(Frame::Parsed(probe)) => probe,
                    Ok(Frame::AgentList) => return Step::more(),
                    Err(_) => {
                        errors.add("unparseable", 1);
                        return Step::more();
                    }
                };
                match probe.kind.as_ref() {
                    "direct_message" => {}
                    "error" => {
                        errors.add(format!("error:{}", probe.code.as_deref().unwrap_or("?")), 1);
                        return Step::more();
                    }
                    _ => return Step::more(),
                }
                let Some(i) = probe.content.as_deref().and_then(marker) else {
                    return Step::more();
                };
                receipt.take(i, clock.now_ns(), &schedule, &delivery, &errors);
                Step {
                    done: receipt.done(),
                    seq: probe.seq,
                }
            })
            .await;
            receipt.finish(&ended, &errors)
        });
    }

    let stop_replies = CancellationToken::new();
    let mut sending = JoinSet::new();
    let mut replying = JoinSet::new();
    for ((k, ws), to) in (0..pairs).zip(senders).zip(receiver_ids) {
        let (mut sink, mut stream) = ws.split();
        let count = items_of(k);
        let (lag, send_errors) = (lag.clone(), errors.clone());
        let (size, client_ids) = (args.size, args.client_ids);
        sending.spawn(async move {
            let mut j = 0;
            while j < count {
                schedule.wait_for(k + j * pairs).await;
                // Send everything that is due, then flush once: a client
                // that fell behind catches up in one write.
                let now = clock.now_ns();
                while j < count && schedule.due_ns(k + j * pairs) <= now {
                    let i = k + j * pairs;
                    let client_id = client_ids.next();
                    let frame = direct_message_frame(&to, &content(i, size), client_id.as_deref());
                    if schedule.is_measured(i) {
                        lag.lock().record_ns(schedule.late_by(i, clock.now_ns()));
                    }
                    if sink.feed(Message::text(frame)).await.is_err() {
                        send_errors.add("send_failed", 1);
                        return sink;
                    }
                    j += 1;
                }
                if sink.flush().await.is_err() {
                    send_errors.add("send_failed", 1);
                    return sink;
                }
            }
            sink
        });
        let (confirmation, reply_errors, seen) = (
            confirmation.clone(),
            errors.clone(),
            Arc::clone(&confirmations_seen),
        );
        let stop = stop_replies.clone();
        replying.spawn(async move {
            let mut replies = 0u64;
            let ended = ws::receive_half(&mut stream, deadline, &stop, |text| {
                let Ok(Frame::Parsed(probe)) = probe(text) else {
                    return Step::more();
                };
                match probe.kind.as_ref() {
                    "sent" => {
                        let i = k + replies * pairs;
                        if schedule.is_measured(i) {
                            confirmation
                                .lock()
                                .record_ns(schedule.late_by(i, clock.now_ns()));
                        }
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    "error" => reply_errors
                        .add(format!("error:{}", probe.code.as_deref().unwrap_or("?")), 1),
                    _ => return Step::more(),
                }
                replies += 1;
                Step {
                    done: replies == count,
                    seq: None,
                }
            })
            .await;
            (replies, count, ended, stream)
        });
    }

    // CPU is measured over the measured part of the schedule only.
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
    let mut sinks = Vec::new();
    while let Some(sink) = sending.join_next().await {
        sinks.push(sink?);
    }
    // A hub that confirms nothing (the original) is not failing; one that
    // confirms some messages must confirm them all.
    if confirmations_seen.load(Ordering::Relaxed) == 0 {
        stop_replies.cancel();
    }
    let mut halves = Vec::new();
    while let Some(result) = replying.join_next().await {
        let (replies, count, ended, stream) = result?;
        if replies < count && !stop_replies.is_cancelled() {
            errors.add("missing_sent", count - replies);
            if let Some(kind) = ended.error_kind() {
                errors.add(kind, 1);
            }
        }
        halves.push(stream);
    }
    stop.cancel();
    drop((sinks, halves));

    let mut report = Report::new(
        "dm",
        ctx.target.protocol().name(),
        format!(
            "{} pairs, {} msg/s, {} B, {}+{}",
            args.pairs,
            args.rate,
            args.size,
            secs(timing.warmup),
            secs(timing.duration)
        ),
    );
    report.throughput = Some(Throughput {
        achieved: per_second(delivered, schedule.measure_start_ns(), last_delivery_ns),
        offered: Some(schedule.rate()),
        unit: "msg/s".to_owned(),
    });
    if let Some((path, file)) = timeline_file {
        delivery
            .lock()
            .write_timeline(
                &mut std::io::BufWriter::new(file),
                schedule.measure_start_ns(),
            )
            .with_context(|| format!("writing the timeline to {}", path.display()))?;
    }
    report.latency("delivery", delivery.summary());
    report.other_latency("sent", confirmation.summary());
    report.other_latency("send lag", lag.summary());
    report.errors = errors.take();
    report.cpu(cpu);
    Ok(report.finish())
}
