//! One WebSocket connection: a read loop that handles frames in order, and a
//! write task that owns the socket's sending half and drains the outbox.
//!
//! Frames a client sends are handled one after another, so a client's
//! messages are stored in the order it sent them. Frames queued for the
//! client are written in batches and flushed once per batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use clawbot_connector::protocol::{
    ClientFrame, ErrorCode, CLOSE_GOING_AWAY, CLOSE_IDLE_TIMEOUT, CLOSE_TOO_BIG,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::handlers::Connection;
use super::parse::parse;
use crate::auth::Principal;
use crate::error::HubError;
use crate::hub::outbox::{Outbox, Outgoing};
use crate::hub::Hub;

/// How long the writer may take to send a final close frame to a client
/// before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a connection closed for an oversized frame stays open so the
/// client can read the close frame.
const LINGER_AFTER_TOO_BIG: Duration = Duration::from_millis(500);
const TOO_BIG_REASON: &str = "frame too large";

/// Serves one upgraded connection until it ends.
///
/// Not an `async fn`: one keeps its arguments in its state for as long as
/// it runs, and the whole `WebSocket` (about 1 KB) would then sit in every
/// connection's task after it was split. Splitting first leaves only the
/// two small handles in the future.
pub fn run(
    hub: Hub,
    socket: WebSocket,
    principal: Principal,
) -> impl std::future::Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    serve(hub, sink, stream, principal)
}

async fn serve(
    hub: Hub,
    sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    principal: Principal,
) {
    let _tracked = hub.connections().token();
    let outbox = Outbox::new(hub.config().max_queue, hub.config().max_queue_bytes);
    // Spawned without binding it first: a future held in a local of this
    // function would keep its space in this task's state until the end.
    let writer = tokio::spawn(write_loop(hub.clone(), sink, Arc::clone(&outbox)));
    let mut connection = Connection::new(hub.clone(), principal, Arc::clone(&outbox));
    read_loop(&hub, &mut connection, &mut stream).await;
    outbox.reading_done.cancel();
    // Boxed: what happens at the end (waiting for the writer, lingering,
    // saving the cursor) would otherwise make every live connection's task
    // as large as its largest step.
    Box::pin(finish(connection, stream, outbox, writer)).await;
}

/// The reading side has ended: lets the writer send what it must, then
/// closes the socket and detaches the session.
async fn finish(
    connection: Connection,
    stream: SplitStream<WebSocket>,
    outbox: Arc<Outbox>,
    mut writer: tokio::task::JoinHandle<()>,
) {
    if !outbox.is_closed() {
        outbox.mark_gone();
    }
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    // Whatever way the writer ended, nothing waits on this outbox any more.
    outbox.mark_gone();
    let reason = outbox.close_reason().unwrap_or("closed by the client");
    if reason == TOO_BIG_REASON {
        // The rest of the oversized frame is still unread; dropping the
        // socket now would reset it and could destroy the close frame
        // before the client reads it.
        tokio::time::sleep(LINGER_AFTER_TOO_BIG).await;
    }
    drop(stream);
    tracing::info!(
        agent = connection.agent_id().unwrap_or("-"),
        reason,
        "disconnected"
    );
    connection.finish().await;
}

async fn read_loop(hub: &Hub, connection: &mut Connection, stream: &mut SplitStream<WebSocket>) {
    let idle_timeout = hub.config().idle_timeout;
    let closing = connection.outbox().closing.clone();
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(idle_timeout, stream.next()) => next,
            () = closing.cancelled() => {
                finish_closing(connection.outbox(), stream).await;
                return;
            }
        };
        let message = match next {
            Err(_) => {
                tracing::debug!("closing an idle connection");
                connection
                    .outbox()
                    .close(CLOSE_IDLE_TIMEOUT, "idle timeout");
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(error))) => {
                if is_too_big(&error) {
                    connection.outbox().close(CLOSE_TOO_BIG, TOO_BIG_REASON);
                } else {
                    tracing::debug!(%error, "WebSocket read failed");
                }
                return;
            }
            Ok(Some(Ok(message))) => message,
        };
        match message {
            // Boxed: handling a frame (a register above all) needs a few
            // KB of state, and kept inline it would sit in every idle
            // connection's task for as long as the connection lives.
            Message::Text(text) => Box::pin(connection.handle_text(&text)).await,
            Message::Binary(_) => connection.reply_error(&HubError::new(
                ErrorCode::InvalidFrame,
                "binary frames are not supported; send JSON text",
            )),
            Message::Close(_) => return,
            // The answer to a checkpoint ping: the client has read every
            // frame written before it.
            Message::Pong(payload) => confirm_checkpoint(connection.outbox(), &payload),
            // Pings are answered by the library.
            Message::Ping(_) => {}
        }
    }
}

fn confirm_checkpoint(outbox: &Outbox, payload: &[u8]) {
    if let Ok(seq) = <[u8; 8]>::try_from(payload) {
        outbox.confirm(i64::from_be_bytes(seq));
    }
}

/// The hub has sent (or is sending) a close frame: read on until the
/// client answers it, so that closing the socket with its answer still
/// unread does not reset the connection and destroy the close frame before
/// the client reads it. A client that does not answer gets [`CLOSE_GRACE`].
///
/// Confirmations read meanwhile still count: a client that answered a
/// checkpoint (or acked) just before it reconnected must not get those
/// frames again on the connection that replaced this one.
async fn finish_closing(outbox: &Outbox, stream: &mut SplitStream<WebSocket>) {
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, stream.next()).await {
        match message {
            Message::Close(_) => break,
            Message::Pong(payload) => confirm_checkpoint(outbox, &payload),
            Message::Text(text) => {
                if let Ok(ClientFrame::Ack { seq }) = parse(&text) {
                    outbox.confirm(seq);
                }
            }
            _ => {}
        }
    }
}

fn is_too_big(error: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(inner) = source {
        if let Some(tungstenite) = inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return matches!(
                tungstenite,
                tokio_tungstenite::tungstenite::Error::Capacity(_)
            );
        }
        source = inner.source();
    }
    error.to_string().contains("Space limit exceeded") || error.to_string().contains("too long")
}

async fn write_loop(hub: Hub, mut sink: SplitSink<WebSocket, Message>, outbox: Arc<Outbox>) {
    let mut ping = tokio::time::interval(hub.config().ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let shutdown = hub.shutdown_token().clone();
    let closing = outbox.closing.clone();
    // The highest seq a checkpoint ping was sent after.
    let mut checkpoint = 0;
    loop {
        tokio::select! {
            () = outbox.wake.notified() => {}
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
            () = shutdown.cancelled() => {
                let _ = send_close(&mut sink, CLOSE_GOING_AWAY, "hub shutting down").await;
                break;
            }
            // Ending: send the close frame if one is queued, else stop.
            () = closing.cancelled() => {
                if outbox.queued() == 0 {
                    break;
                }
            }
        }
        match write_batch(&mut sink, &outbox).await {
            Ok(Written::More(seq))
                if seq > checkpoint && outbox.checkpoints.load(Ordering::Relaxed) =>
            {
                // Everything up to `seq` is written; the pong to this ping
                // proves the client read it (see `Outbox::confirm`).
                checkpoint = seq;
                if sink
                    .send(Message::Ping(seq.to_be_bytes().to_vec().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(Written::More(_)) => {}
            Ok(Written::Closed) | Err(_) => break,
        }
    }
    outbox.mark_gone();
}

enum Written {
    /// The batch is written; events up to this seq have been sent.
    More(i64),
    /// A close frame was sent; the connection is finished.
    Closed,
}

/// Writes everything queued and flushes once.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    outbox: &Outbox,
) -> Result<Written, axum::Error> {
    let items = outbox.take_all();
    let mut last_seq = outbox.sent_seq();
    for item in items {
        match item {
            Outgoing::Event(event) => {
                // Catch-up and live delivery can both hold an event that
                // committed while catch-up was reading; send it once.
                if event.seq <= last_seq {
                    continue;
                }
                sink.feed(Message::Text(event.frame_text())).await?;
                last_seq = event.seq;
            }
            Outgoing::OfflineBatch(events) => {
                let fresh: Vec<_> = events.into_iter().filter(|e| e.seq > last_seq).collect();
                let Some(last) = fresh.last() else { continue };
                last_seq = last.seq;
                for frame in offline_messages_frames(&fresh) {
                    sink.feed(Message::Text(frame)).await?;
                }
            }
            Outgoing::Frame(text) => sink.feed(Message::Text(text)).await?,
            Outgoing::Close(code, reason) => {
                outbox.set_sent_seq(last_seq);
                sink.flush().await?;
                send_close(sink, code, reason).await?;
                return Ok(Written::Closed);
            }
        }
    }
    // Handed to the socket: a v2 client may acknowledge these as soon as it
    // reads them, possibly before the flush returns.
    outbox.set_sent_seq(last_seq);
    sink.flush().await?;
    outbox.drained.notify_waiters();
    Ok(Written::More(last_seq))
}

/// The largest `offline_messages` frame the hub builds. The original
/// Python client refuses frames over 1 MiB (the `websockets` default).
const OFFLINE_FRAME_BYTES: usize = 512 * 1024;

/// `{"type":"offline_messages","messages":[...]}` frames built from the
/// events' already-rendered JSON, each under [`OFFLINE_FRAME_BYTES`] unless
/// a single event is larger.
fn offline_messages_frames(events: &[Arc<crate::store::event::Event>]) -> Vec<Utf8Bytes> {
    const HEAD: &str = r#"{"type":"offline_messages","messages":["#;
    let mut frames = Vec::new();
    let mut text = String::from(HEAD);
    for event in events {
        let rendered = event.frame_text();
        if text.len() > HEAD.len() && text.len() + rendered.len() + 2 > OFFLINE_FRAME_BYTES {
            text.push_str("]}");
            frames.push(std::mem::replace(&mut text, String::from(HEAD)).into());
        }
        if text.len() > HEAD.len() {
            text.push(',');
        }
        text.push_str(rendered.as_str());
    }
    text.push_str("]}");
    frames.push(text.into());
    frames
}

async fn send_close(
    sink: &mut SplitSink<WebSocket, Message>,
    code: u16,
    reason: &'static str,
) -> Result<(), axum::Error> {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    sink.send(Message::Close(Some(frame))).await
}
