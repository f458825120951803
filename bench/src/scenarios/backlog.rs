//! `backlog`: messages queued for an offline agent, drained on reconnect.
//!
//! The recipient registers once (a DM may only name a known agent) and
//! leaves. Senders then queue `--messages` DMs for it, in parallel because
//! the hub confirms one connection's messages one at a time. Then the
//! recipient reconnects, and we time from its `register` until the last
//! queued message has arrived, checking that each arrived exactly once,
//! that each sender's messages kept their order, and (where the hub gives
//! seqs) that seqs only increase. v2 gets events one by one and then
//! `caught_up`; legacy gets `offline_messages` batches. The backlog counts
//! as queued once the hub has acknowledged every message and stopped
//! writing to storage (with `--hub-pid`; see `Ctx::wait_until_stored`).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures_util::{future, SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{settle, Ctx};
use crate::cli::{BacklogArgs, Protocol};
use crate::pipeline::{self, Filled};
use crate::report::{Report, Throughput};
use crate::stats::{CpuMeter, Errors};
use crate::target::{Ws, BIG_READ_BUFFER};
use crate::ws::{
    self, content, direct_message_frame, marker, probe_all, register_frame, Probe, Step,
};

pub async fn run(ctx: &Ctx, args: &BacklogArgs) -> Result<Report> {
    ensure!(args.messages > 0, "--messages must be at least 1");
    ensure!(args.senders > 0, "--senders must be at least 1");
    let protocol = ctx.target.protocol();
    let recipient = ctx.id("backlog-r");
    let sender_ids: Vec<String> = (0..args.senders)
        .map(|s| ctx.id(&format!("backlog-s{s}")))
        .collect();
    let mut senders = ctx.open_agents(&sender_ids, BIG_READ_BUFFER).await?;
    // Read the presence lists the senders' own registers caused: none of
    // them names the recipient, and an old one must not be taken for the
    // news that it left (the original would then deliver the backlog to
    // the closing socket, and lose it).
    settle(&mut senders).await?;
    let token = ctx.target.mint_agent_token(&recipient).await?;

    let mut ws = ctx
        .target
        .connect(token.as_deref(), BIG_READ_BUFFER)
        .await?;
    ws::register(&mut ws, &recipient, protocol).await?;
    ws.close(None).await.ok();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    if ctx.target.v2() {
        wait_until_offline_rest(ctx, &recipient).await;
    } else {
        wait_until_offline(&mut senders[0], &recipient).await;
    }

    let clock = ctx.clock;
    let fill_start = clock.now_ns();
    let k = args.messages;
    let count_of = |s: usize| (k + args.senders - 1 - s) / args.senders;
    let fills = future::try_join_all(senders.iter_mut().enumerate().map(|(s, ws)| {
        let recipient = &recipient;
        pipeline::send_all(ws, count_of(s), args.window, move |j| {
            direct_message_frame(
                recipient,
                &content((s + j * args.senders) as u64, args.size),
                None,
            )
        })
    }))
    .await
    .context("queueing the backlog")?;
    // Queued means stored: see `wait_until_stored`.
    let acknowledged_ns = clock.now_ns();
    let stored_ns = ctx
        .wait_until_stored()
        .await
        .map_or(acknowledged_ns, |ns| ns.max(acknowledged_ns));
    let fill_secs = (stored_ns - fill_start) as f64 / 1e9;
    let mut filled = Filled::default();
    for fill in &fills {
        filled.merge(fill);
    }
    eprintln!(
        "clawbot-bench: backlog: queued {} messages in {fill_secs:.2} s ({:.0} msg/s); draining",
        filled.sent,
        filled.sent as f64 / fill_secs
    );

    let mut ws = ctx
        .target
        .connect(token.as_deref(), BIG_READ_BUFFER)
        .await?;
    let meter = CpuMeter::start(ctx.target.hub_pid(), clock.now_ns());
    let mut drain = Drain::new(k, args.senders);
    let start_ns = clock.now_ns();
    ws.send(Message::text(register_frame(&recipient, protocol)))
        .await?;
    let deadline = Instant::now() + args.drain_timeout;
    let never = CancellationToken::new();
    let ended = ws::receive(
        &mut ws,
        protocol == Protocol::V2,
        deadline,
        &never,
        |text| drain.frame(text, clock.now_ns(), protocol),
    )
    .await;
    // A drain is short; a rough figure beats none.
    let cpu = meter.stop_within(clock.now_ns());
    drop(ws);
    drop(senders);

    let mut report = Report::new(
        "backlog",
        protocol.name(),
        format!(
            "{k} messages from {} senders, {} B",
            args.senders, args.size
        ),
    );
    report.errors = drain.errors;
    report.errors.merge(&filled.errors);
    if drain.got < k as u64 {
        report.errors.add("missing", k as u64 - drain.got);
        if let Some(kind) = ended.error_kind() {
            report.errors.add(kind, 1);
        }
    }
    let drained_secs = drain.last_ns.saturating_sub(start_ns) as f64 / 1e9;
    if drain.got > 0 {
        report.throughput = Some(Throughput {
            achieved: drain.got as f64 / drained_secs.max(1e-9),
            offered: None,
            unit: "msg/s drained".to_owned(),
        });
        report.figure("drained all in", drained_secs, "s");
    }
    if let Some(caught_up_ns) = drain.caught_up_ns {
        report.figure(
            "caught_up after",
            caught_up_ns.saturating_sub(start_ns) as f64 / 1e9,
            "s",
        );
    }
    report.figure("queued in", fill_secs, "s");
    report.figure("queue rate", filled.sent as f64 / fill_secs, "msg/s");
    report.cpu(cpu);
    Ok(report.finish())
}

/// Waits (at most a few seconds) until `GET /api/agents/{agent}` says it is
/// offline, so that the DMs that follow are queued, not delivered. v2
/// connections here do not follow presence, so they are not told.
async fn wait_until_offline_rest(ctx: &Ctx, agent: &str) {
    #[derive(serde::Deserialize)]
    struct Agent {
        status: String,
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let response = ctx
            .target
            .http()
            .get(ctx.target.http_url(&format!("/api/agents/{agent}")))
            .bearer_auth(ctx.target.admin_token().unwrap_or_default())
            .send()
            .await;
        if let Ok(response) = response {
            let body = response.text().await.unwrap_or_default();
            if let Ok(agent) = serde_json::from_str::<Agent>(&body) {
                if agent.status == "offline" {
                    return;
                }
            }
        }
        // Polling: the hub has no event to wait for on a connection that
        // does not follow presence.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("clawbot-bench: backlog: {agent} still online after 5 s; going on");
}

/// Legacy: waits (at most a few seconds) until the hub says `agent` is
/// offline in an `agent_list`, so that the DMs that follow are queued, not
/// delivered.
async fn wait_until_offline(ws: &mut Ws, agent: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(probe) = probe_all(&text) else {
            continue;
        };
        if let Some(agents) = &probe.agents {
            if agents.iter().all(|a| a.id != agent) {
                return;
            }
        }
    }
    eprintln!("clawbot-bench: backlog: saw no agent_list without {agent}; going on");
}

/// The recipient's bookkeeping while draining.
struct Drain {
    expected: u64,
    senders: usize,
    got: u64,
    seen: Vec<bool>,
    last_of_sender: Vec<Option<u64>>,
    last_seq: Option<i64>,
    last_ns: u64,
    caught_up_ns: Option<u64>,
    errors: Errors,
}

impl Drain {
    fn new(expected: usize, senders: usize) -> Drain {
        Drain {
            expected: expected as u64,
            senders,
            got: 0,
            seen: vec![false; expected],
            last_of_sender: vec![None; senders],
            last_seq: None,
            last_ns: 0,
            caught_up_ns: None,
            errors: Errors::default(),
        }
    }

    fn frame(&mut self, text: &str, now_ns: u64, protocol: Protocol) -> Step {
        let probe = match probe_all(text) {
            Ok(probe) => probe,
            Err(_) => {
                self.errors.add("unparseable", 1);
                return Step::more();
            }
        };
        let mut seq = None;
        match probe.kind.as_ref() {
            "direct_message" => seq = self.message(&probe, now_ns),
            "offline_messages" => {
                for message in probe.messages.iter().flatten() {
                    if message.kind == "direct_message" {
                        seq = self.message(message, now_ns).or(seq);
                    }
                }
            }
            "caught_up" => self.caught_up_ns = Some(now_ns),
            "error" => self
                .errors
                .add(format!("error:{}", probe.code.as_deref().unwrap_or("?")), 1),
            _ => {}
        }
        let complete = self.got == self.expected
            && (protocol == Protocol::Legacy || self.caught_up_ns.is_some());
        Step {
            done: complete,
            seq,
        }
    }

    /// One queued message; returns its seq for acknowledging.
    fn message(&mut self, probe: &Probe<'_>, now_ns: u64) -> Option<i64> {
        let i = probe.content.as_deref().and_then(marker)?;
        if i >= self.expected {
            return probe.seq;
        }
        if let (Some(seq), Some(last)) = (probe.seq, self.last_seq) {
            if seq <= last {
                self.errors.add("seq_not_increasing", 1);
            }
        }
        self.last_seq = probe.seq.or(self.last_seq);
        if std::mem::replace(&mut self.seen[i as usize], true) {
            self.errors.add("duplicate", 1);
            return probe.seq;
        }
        let sender = i as usize % self.senders;
        if self.last_of_sender[sender].is_some_and(|last| i < last) {
            self.errors.add("out_of_order", 1);
        }
        self.last_of_sender[sender] = Some(i);
        self.got += 1;
        self.last_ns = now_ns;
        probe.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm(i: u64, seq: i64) -> String {
        format!(
            r#"{{"type":"direct_message","seq":{seq},"content":"{}"}}"#,
            content(i, 8)
        )
    }

    #[test]
    fn drain_finds_doubles_gaps_and_disorder() {
        let mut drain = Drain::new(4, 2);
        drain.frame(&dm(0, 10), 1, Protocol::Legacy);
        drain.frame(&dm(2, 11), 2, Protocol::Legacy);
        drain.frame(&dm(2, 12), 3, Protocol::Legacy);
        drain.frame(&dm(1, 9), 4, Protocol::Legacy);
        assert_eq!(drain.got, 3);
        assert_eq!(drain.errors.0.get("duplicate"), Some(&1));
        assert_eq!(drain.errors.0.get("seq_not_increasing"), Some(&1));
        let step = drain.frame(
            &format!(
                r#"{{"type":"offline_messages","messages":[{}]}}"#,
                dm(3, 13)
            ),
            5,
            Protocol::Legacy,
        );
        assert!(step.done);
        assert_eq!(drain.last_ns, 5);
    }

    #[test]
    fn v2_drain_waits_for_caught_up() {
        let mut drain = Drain::new(1, 1);
        assert!(!drain.frame(&dm(0, 1), 1, Protocol::V2).done);
        assert!(
            drain
                .frame(r#"{"type":"caught_up","seq":1}"#, 2, Protocol::V2)
                .done
        );
        assert!(drain.errors.0.is_empty());
    }
}
