//! Sending a fixed number of messages over one connection as fast as the
//! hub takes them: for filling a backlog or a group's history before a
//! measurement, not for measuring.
//!
//! Flow control uses heartbeats rather than `sent`: after every half window
//! of messages we send a `heartbeat`, and we never have more than two such
//! chunks unanswered. The hub handles a connection's frames in order, so a
//! `heartbeat_ack` means everything before it was handled. That works on the
//! original hub too, which has no `sent` confirmations.

use anyhow::{bail, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::stats::Errors;
use crate::target::Ws;
use crate::ws::{probe, Frame, HEARTBEAT_FRAME};

/// How long one chunk may stay unanswered before the fill is abandoned.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Filled {
    /// Messages written to the socket.
    pub sent: u64,
    /// `sent` confirmations received (0 from a hub without them).
    pub confirmed: u64,
    /// The smallest and largest `seq` confirmed, if the hub gives seqs.
    pub seqs: Option<(i64, i64)>,
    pub errors: Errors,
}

impl Filled {
    pub fn merge(&mut self, other: &Filled) {
        self.sent += other.sent;
        self.confirmed += other.confirmed;
        self.seqs = match (self.seqs, other.seqs) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (one, other) => one.or(other),
        };
        self.errors.merge(&other.errors);
    }
}

/// Sends `count` frames made by `frame(i)` with at most about `window` of
/// them unhandled by the hub, and returns once the hub handled them all.
pub async fn send_all(
    ws: &mut Ws,
    count: usize,
    window: usize,
    mut frame: impl FnMut(usize) -> String,
) -> Result<Filled> {
    let chunk = (window / 2).max(1);
    let mut filled = Filled::default();
    let mut chunks_unanswered = 0usize;
    let mut next = 0usize;
    while next < count || chunks_unanswered > 0 {
        if next < count && chunks_unanswered < 2 {
            let end = (next + chunk).min(count);
            for i in next..end {
                ws.feed(Message::text(frame(i))).await?;
            }
            ws.feed(Message::text(HEARTBEAT_FRAME)).await?;
            ws.flush().await?;
            filled.sent += (end - next) as u64;
            next = end;
            chunks_unanswered += 1;
            continue;
        }
        await_heartbeat(ws, &mut filled).await?;
        chunks_unanswered -= 1;
    }
    Ok(filled)
}

/// Reads until a `heartbeat_ack`, tallying `sent` and `error` frames.
async fn await_heartbeat(ws: &mut Ws, filled: &mut Filled) -> Result<()> {
    let deadline = Instant::now() + CHUNK_TIMEOUT;
    loop {
        let message = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => bail!("the hub answered no heartbeat for {CHUNK_TIMEOUT:?}"),
            Ok(None) => bail!("the hub closed the connection while filling"),
            Ok(Some(message)) => message?,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                bail!("the hub closed the connection while filling: {frame:?}")
            }
            _ => continue,
        };
        let Frame::Parsed(probe) = probe(&text)? else {
            continue;
        };
        match probe.kind.as_ref() {
            "heartbeat_ack" => return Ok(()),
            "sent" => {
                filled.confirmed += 1;
                if let Some(seq) = probe.seq {
                    filled.seqs = Some(match filled.seqs {
                        Some((low, high)) => (low.min(seq), high.max(seq)),
                        None => (seq, seq),
                    });
                }
            }
            "error" => filled
                .errors
                .add(format!("error:{}", probe.code.as_deref().unwrap_or("?")), 1),
            _ => {}
        }
    }
}
