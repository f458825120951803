//! Frames on the wire.
//!
//! We build only the few client frames the scenarios send, and read server
//! frames through [`Probe`], which borrows the handful of fields we look at
//! and skips the rest without allocating: at a million frames a second the
//! generator's own parsing must not be what is measured.
//!
//! Every message we send carries its schedule index in `content` as
//! `b:<index>` followed by padding, because the original hub echoes
//! nothing else we could use (it knows no `clientId`).

use std::borrow::Cow;
use std::pin::pin;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clawbot_connector::protocol::{AgentInfo, PROTOCOL_V2};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use crate::cli::Protocol;
use crate::target::Ws;

/// A v2 receiver acknowledges after this many events (and once at the
/// end): often enough that the hub's cursor keeps up, rarely enough that
/// acks are not a load of their own.
const ACK_EVERY: u32 = 256;

/// `register` as the original sent it, plus `protocol` for v2 only: a legacy
/// client sends no `protocol` field at all. v2 connections do not ask for
/// presence (`presence` left out): nothing the scenarios measure needs it,
/// and following it would cost the hub O(N) frames per arrival.
#[derive(Serialize)]
struct RegisterFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    agent: &'a AgentInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<u32>,
}

pub fn register_frame(agent_id: &str, protocol: Protocol) -> String {
    let mut agent = AgentInfo::new(agent_id);
    agent.name = Some(agent_id.to_owned());
    agent.role = Some("bench".to_owned());
    agent.device = Some("clawbot-bench".to_owned());
    let frame = RegisterFrame {
        kind: "register",
        agent: &agent,
        protocol: (protocol == Protocol::V2).then_some(PROTOCOL_V2),
    };
    serde_json::to_string(&frame).expect("a register frame serializes")
}

/// Message content for schedule item `index`: the marker, padded with
/// dots to `size` bytes (longer if the marker alone is longer). Plain
/// ASCII, so it needs no JSON escaping and no `@` mentions are scanned.
pub fn content(index: u64, size: usize) -> String {
    let mut text = format!("b:{index}");
    if text.len() < size {
        text.push(' ');
        text.extend(std::iter::repeat_n('.', size - text.len()));
    }
    text
}

/// The schedule index in a message's content, if it is one of ours.
pub fn marker(content: &str) -> Option<u64> {
    let digits = content.strip_prefix("b:")?;
    let end = digits.find(' ').unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// `direct_message` with our content, and a `clientId` if given. Ids and
/// content are plain ASCII without quotes or backslashes, so formatting is
/// safe and cheaper than a serializer on the hot path.
pub fn direct_message_frame(to: &str, content: &str, client_id: Option<&str>) -> String {
    match client_id {
        None => format!(r#"{{"type":"direct_message","to":"{to}","content":"{content}"}}"#),
        Some(id) => format!(
            r#"{{"type":"direct_message","to":"{to}","content":"{content}","clientId":"{id}"}}"#
        ),
    }
}

/// `message` to a group, with our content.
pub fn group_message_frame(group_id: &str, content: &str) -> String {
    format!(r#"{{"type":"message","groupId":"{group_id}","content":"{content}"}}"#)
}

pub fn join_group_frame(group_id: &str) -> String {
    format!(r#"{{"type":"join_group","groupId":"{group_id}"}}"#)
}

pub fn leave_group_frame(group_id: &str) -> String {
    format!(r#"{{"type":"leave_group","groupId":"{group_id}"}}"#)
}

pub const HEARTBEAT_FRAME: &str = r#"{"type":"heartbeat"}"#;

pub fn ack_frame(seq: i64) -> String {
    format!(r#"{{"type":"ack","seq":{seq}}}"#)
}

/// The fields of a server frame the scenarios look at; everything else is
/// skipped unparsed.
#[derive(Debug, Deserialize)]
pub struct Probe<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default)]
    pub seq: Option<i64>,
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    /// `error.code`
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// `error.message`
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
    /// `offline_messages.messages`: legacy catch-up batches.
    #[serde(default, borrow)]
    pub messages: Option<Vec<Probe<'a>>>,
    /// `agent_list.agents`, only parsed where presence matters.
    #[serde(default, borrow)]
    pub agents: Option<Vec<AgentProbe<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct AgentProbe<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

/// What a hub frame says, for the hot paths: agent lists (which can be
/// megabytes on a big hub and carry nothing we measure) are recognised by
/// their first bytes and never parsed.
pub enum Frame<'a> {
    AgentList,
    Parsed(Probe<'a>),
}

pub fn probe(text: &str) -> Result<Frame<'_>> {
    // Both hubs put `type` first; anything else is parsed in full.
    if text.starts_with(r#"{"type":"agent_list""#) {
        return Ok(Frame::AgentList);
    }
    serde_json::from_str(text)
        .map(Frame::Parsed)
        .map_err(|error| anyhow!("unparseable frame ({error}): {}", abbreviate(text)))
}

/// Parses a frame in full, agent lists included.
pub fn probe_all(text: &str) -> Result<Probe<'_>> {
    serde_json::from_str(text)
        .map_err(|error| anyhow!("unparseable frame ({error}): {}", abbreviate(text)))
}

pub fn abbreviate(text: &str) -> String {
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// An `error` frame as a readable error.
pub fn error_frame(probe: &Probe<'_>) -> anyhow::Error {
    anyhow!(
        "hub error {}: {}",
        probe.code.as_deref().unwrap_or("?"),
        probe.message.as_deref().unwrap_or("")
    )
}

/// Sends `register` and waits for `registered`; for v2, also for
/// `caught_up`, so that the connection is live when this returns. Returns
/// the number of stored events that came before `caught_up`.
pub async fn register(ws: &mut Ws, agent_id: &str, protocol: Protocol) -> Result<u64> {
    ws.send(Message::text(register_frame(agent_id, protocol)))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut registered = false;
    let mut backlog = 0;
    loop {
        let text = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => bail!("no 'registered' for {agent_id} within 30 s"),
            Ok(None) => bail!("the hub closed the connection of {agent_id} while registering"),
            Ok(Some(message)) => match message? {
                Message::Text(text) => text,
                Message::Close(frame) => {
                    bail!("the hub closed the connection of {agent_id}: {frame:?}")
                }
                _ => continue,
            },
        };
        let Frame::Parsed(probe) = probe(&text)? else {
            continue;
        };
        match probe.kind.as_ref() {
            "registered" => {
                registered = true;
                if protocol == Protocol::Legacy {
                    return Ok(backlog);
                }
            }
            "caught_up" if registered => return Ok(backlog),
            "error" => return Err(error_frame(&probe).context(format!("registering {agent_id}"))),
            "message" | "direct_message" | "mention" | "task_assigned" => backlog += 1,
            _ => {}
        }
    }
}

/// Sends a heartbeat and waits for its answer, skipping other frames.
/// Frames are handled in order, so this proves every frame sent before it
/// was handled. Works on both hubs.
pub async fn round_trip(ws: &mut Ws) -> Result<()> {
    ws.send(Message::text(HEARTBEAT_FRAME)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => bail!("no heartbeat_ack within 30 s"),
            Ok(None) => bail!("the hub closed the connection"),
            Ok(Some(message)) => {
                if let Message::Text(text) = message? {
                    if let Frame::Parsed(probe) = probe(&text)? {
                        match probe.kind.as_ref() {
                            "heartbeat_ack" => return Ok(()),
                            "error" => return Err(error_frame(&probe)),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

/// Reads and discards frames until none has come for `quiet`, or `limit`
/// has passed. Set-up (registers, joins) makes the hub broadcast presence to
/// everyone; reading that before the schedule starts keeps it out of the
/// measurement. Returns the bytes discarded.
pub async fn drain_quiet(ws: &mut Ws, quiet: Duration, limit: Duration) -> Result<u64> {
    let end = Instant::now() + limit;
    let mut bytes = 0u64;
    loop {
        let until = (Instant::now() + quiet).min(end);
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Ok(bytes),
            Ok(None) => bail!("the hub closed the connection"),
            Ok(Some(message)) => match message? {
                Message::Close(frame) => bail!("the hub closed the connection: {frame:?}"),
                message => bytes += message.len() as u64,
            },
        }
    }
}

/// What a frame handler tells the receive loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Step {
    /// Everything this connection waited for has arrived.
    pub done: bool,
    /// The seq of a stored event that was just processed (v2 acks it).
    pub seq: Option<i64>,
}

impl Step {
    pub fn more() -> Step {
        Step::default()
    }

    pub fn done() -> Step {
        Step {
            done: true,
            seq: None,
        }
    }

    pub fn with_seq(mut self, seq: Option<i64>) -> Step {
        self.seq = seq;
        self
    }
}

/// How a receive loop ended.
#[derive(Debug)]
pub enum Ended {
    /// The handler said it had everything.
    Done,
    /// The deadline passed first.
    Deadline,
    /// The run told it to stop.
    Stopped,
    /// The hub closed the connection (with this close code, if any).
    Closed(Option<u16>),
    /// The connection failed.
    Failed(String),
}

impl Ended {
    /// An error kind for tallies, or `None` for a clean end.
    pub fn error_kind(&self) -> Option<String> {
        match self {
            Ended::Done | Ended::Stopped => None,
            Ended::Deadline => Some("timeout".to_owned()),
            Ended::Closed(Some(code)) => Some(format!("closed:{code}")),
            Ended::Closed(None) => Some("closed".to_owned()),
            Ended::Failed(_) => Some("connection_failed".to_owned()),
        }
    }
}

/// Reads text frames from a whole connection until the handler is done, the
/// deadline passes or `stop` fires. On a v2 connection it acks what the
/// handler reports processed, every [`ACK_EVERY`] events and at the end.
pub async fn receive(
    ws: &mut Ws,
    v2: bool,
    deadline: Instant,
    stop: &CancellationToken,
    mut on_text: impl FnMut(&str) -> Step,
) -> Ended {
    let mut unacked = 0u32;
    let mut last_seq: Option<i64> = None;
    let ended = {
        let mut deadline = pin!(tokio::time::sleep_until(deadline));
        let mut stopped = pin!(stop.cancelled());
        loop {
            let message = tokio::select! {
                biased;
                message = ws.next() => message,
                () = &mut stopped => break Ended::Stopped,
                () = &mut deadline => break Ended::Deadline,
            };
            let step = match message {
                Some(Ok(Message::Text(text))) => on_text(&text),
                Some(Ok(Message::Close(frame))) => {
                    break Ended::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => break ended_by(error),
                None => break Ended::Closed(None),
            };
            if let Some(seq) = step.seq {
                last_seq = Some(seq);
                unacked += 1;
                if v2 && unacked >= ACK_EVERY {
                    unacked = 0;
                    if let Err(error) = ws.send(Message::text(ack_frame(seq))).await {
                        break ended_by(error);
                    }
                }
            }
            if step.done {
                break Ended::Done;
            }
        }
    };
    if let (true, Some(seq), true) = (v2, last_seq, unacked > 0) {
        // Best effort: the measurement is over either way.
        let _ = ws.send(Message::text(ack_frame(seq))).await;
    }
    ended
}

/// Like [`receive`], for the reading half of a split connection (no acks:
/// such halves belong to senders, which receive no events).
pub async fn receive_half<S>(
    stream: &mut S,
    deadline: Instant,
    stop: &CancellationToken,
    mut on_text: impl FnMut(&str) -> Step,
) -> Ended
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut deadline = pin!(tokio::time::sleep_until(deadline));
    let mut stopped = pin!(stop.cancelled());
    loop {
        let message = tokio::select! {
            biased;
            message = stream.next() => message,
            () = &mut stopped => return Ended::Stopped,
            () = &mut deadline => return Ended::Deadline,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                if on_text(&text).done {
                    return Ended::Done;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ended::Closed(frame.map(|f| u16::from(f.code)))
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return ended_by(error),
            None => return Ended::Closed(None),
        }
    }
}

fn ended_by(error: tungstenite::Error) -> Ended {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Ended::Closed(None)
        }
        error => Ended::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_carries_its_index_and_size() {
        let text = content(1234, 64);
        assert_eq!(text.len(), 64);
        assert_eq!(marker(&text), Some(1234));
        assert_eq!(marker(&content(7, 1)), Some(7));
        assert_eq!(marker("hello"), None);
        assert_eq!(marker("b:x"), None);
    }

    #[test]
    fn legacy_register_has_no_protocol_field() {
        let legacy: serde_json::Value =
            serde_json::from_str(&register_frame("a-1", Protocol::Legacy)).unwrap();
        assert_eq!(legacy["type"], "register");
        assert_eq!(legacy["agent"]["id"], "a-1");
        assert!(legacy.get("protocol").is_none());
        let v2: serde_json::Value =
            serde_json::from_str(&register_frame("a-1", Protocol::V2)).unwrap();
        assert_eq!(v2["protocol"], 2);
    }

    #[test]
    fn frames_we_build_are_valid_json() {
        for frame in [
            direct_message_frame("r-1", &content(3, 20), None),
            direct_message_frame("r-1", &content(3, 20), Some("c-1")),
            group_message_frame("g", &content(4, 20)),
            join_group_frame("g"),
            ack_frame(9),
        ] {
            let _: serde_json::Value = serde_json::from_str(&frame).unwrap();
        }
    }

    #[test]
    fn probes_skip_agent_lists_and_read_what_matters() {
        assert!(matches!(
            probe(r#"{"type":"agent_list","agents":[]}"#).unwrap(),
            Frame::AgentList
        ));
        let Frame::Parsed(dm) = probe(
            r#"{"type":"direct_message","id":"x","seq":42,"from":"s","fromName":"S","to":"r","content":"b:17 ...","timestamp":"t"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(dm.kind, "direct_message");
        assert_eq!(dm.seq, Some(42));
        assert_eq!(dm.content.as_deref().and_then(marker), Some(17));
        let Frame::Parsed(batch) = probe(
            r#"{"type":"offline_messages","messages":[{"type":"direct_message","content":"b:1"},{"type":"direct_message","content":"b:2"}]}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(batch.messages.unwrap().len(), 2);
        let escaped = probe_all(r#"{"type":"system","content":"say \"hi\""}"#).unwrap();
        assert_eq!(escaped.content.as_deref(), Some("say \"hi\""));
    }
}
