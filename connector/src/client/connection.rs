//! The task that owns the WebSocket: connect, register, rejoin, resend,
//! deliver, acknowledge, and reconnect with backoff when anything breaks.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{lock, ClientConfig, ClientError, Command, Event, Request, Shared};
use crate::protocol::{
    AgentStatus, AgentSummary, ClientFrame, ErrorCode, ServerFrame, PROTOCOL_V2,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How often a changed "processed" mark is acknowledged to the hub.
const ACK_INTERVAL: Duration = Duration::from_millis(100);

/// Why a connected session ended.
enum Ended {
    Closed,
    Lost(String),
}

pub(super) async fn run(
    shared: Arc<Shared>,
    config: ClientConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    first: oneshot::Sender<Result<(), ClientError>>,
) {
    let mut first = Some(first);
    // Requests not yet answered, oldest first; kept across reconnects.
    let mut pending: VecDeque<Request> = VecDeque::new();
    // The highest seq handed to the application.
    let mut delivered: Option<i64> = config.last_seq;
    let mut backoff = new_backoff(&config);
    loop {
        match connect_once(&shared, &config, delivered).await {
            Ok((socket, resumed_from)) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                backoff = new_backoff(&config);
                delivered = Some(delivered.unwrap_or(resumed_from).max(resumed_from));
                shared.connected.send_replace(true);
                let _ = events
                    .send(Event::Connected {
                        agent_id: shared.agent_id.clone(),
                        resumed_from,
                    })
                    .await;
                let mut session = Session {
                    shared: &shared,
                    config: &config,
                    socket,
                    in_flight: VecDeque::new(),
                    events: &events,
                    delivered: delivered.unwrap_or(0),
                    acked: resumed_from,
                };
                let ended = session.run(&mut commands, &mut pending).await;
                delivered = Some(session.delivered);
                // Unanswered requests go back to the front, in order, to be
                // sent again on the next connection.
                while let Some(request) = session.in_flight.pop_back() {
                    pending.push_front(request);
                }
                shared.connected.send_replace(false);
                match ended {
                    Ended::Closed => break,
                    Ended::Lost(reason) => {
                        tracing::warn!(%reason, "connection to the hub lost; reconnecting");
                        let _ = events.send(Event::Disconnected { reason }).await;
                    }
                }
            }
            Err(error) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(error));
                    return;
                }
                tracing::warn!(%error, "reconnect failed; retrying");
            }
        }
        let delay = backoff.next().unwrap_or(config.max_backoff);
        let wake = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                command = commands.recv() => match command {
                    Some(Command::Request(request)) => pending.push_back(*request),
                    Some(Command::Close(done)) => {
                        fail_all(&mut pending, ClientError::Closed);
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }
    fail_all(&mut pending, ClientError::Closed);
}

fn new_backoff(config: &ClientConfig) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(config.min_backoff)
        .with_max_delay(config.max_backoff)
        .without_max_times()
        .build()
}

fn fail_all(pending: &mut VecDeque<Request>, error: ClientError) {
    for request in pending.drain(..) {
        if let Some(reply) = request.reply {
            reply.send(Err(error.clone()));
        }
    }
}

/// Opens the socket and registers; returns it with the seq delivery resumes
/// after.
async fn connect_once(
    shared: &Shared,
    config: &ClientConfig,
    last_seq: Option<i64>,
) -> Result<(Socket, i64), ClientError> {
    let url = config.ws_url()?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if let Some(token) = lock(&shared.token).clone() {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Unauthorized {
                status: 0,
                message: "the token has characters a header cannot carry".into(),
            })?;
        request.headers_mut().insert("Authorization", value);
    }
    // Small frames, sent at once: no Nagle delay (the last argument).
    let connecting =
        tokio_tungstenite::connect_async_with_config(request, Some(websocket_config()), true);
    let (mut socket, _) = tokio::time::timeout(config.connect_timeout, connecting)
        .await
        .map_err(|_| ClientError::Unreachable {
            url: url.to_string(),
            reason: "timed out".into(),
        })?
        .map_err(|error| handshake_error(&url, error))?;
    let register = ClientFrame::Register {
        agent: config.agent.clone(),
        protocol: Some(PROTOCOL_V2),
        last_seq,
        presence: Some(config.presence),
    };
    send(&mut socket, &register).await?;
    let deadline = Instant::now() + config.connect_timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, read_frame(&mut socket))
            .await
            .map_err(|_| ClientError::Unreachable {
                url: url.to_string(),
                reason: "no answer to register".into(),
            })??;
        match frame {
            ServerFrame::Registered {
                resume_from,
                credential,
                ..
            } => {
                if let Some(credential) = credential {
                    *lock(&shared.token) = Some(credential);
                }
                return Ok((socket, resume_from));
            }
            ServerFrame::Error(body) => {
                return Err(ClientError::Rejected {
                    code: body.code,
                    message: body.message,
                })
            }
            // Presence may come first; anything else waits for the session.
            _ => continue,
        }
    }
}

fn handshake_error(url: &url::Url, error: tokio_tungstenite::tungstenite::Error) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Http(response) if matches!(response.status().as_u16(), 401 | 403) => {
            let message = response
                .body()
                .as_ref()
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
                .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "token refused".into());
            ClientError::Unauthorized {
                status: response.status().as_u16(),
                message,
            }
        }
        Error::Url(reason) => ClientError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        },
        other => ClientError::Unreachable {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

async fn send(socket: &mut Socket, frame: &ClientFrame) -> Result<(), ClientError> {
    let text = serde_json::to_string(frame).expect("frames always serialize");
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| ClientError::Unreachable {
            url: String::new(),
            reason: e.to_string(),
        })
}

async fn read_frame(socket: &mut Socket) -> Result<ServerFrame, ClientError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text)
                    .map_err(|e| ClientError::Protocol(format!("unreadable frame: {e}")))
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame
                    .map(|f| format!("closed by the hub ({}: {})", u16::from(f.code), f.reason))
                    .unwrap_or_else(|| "closed by the hub".into());
                return Err(ClientError::Unreachable {
                    url: String::new(),
                    reason,
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                return Err(ClientError::Unreachable {
                    url: String::new(),
                    reason: error.to_string(),
                })
            }
            None => {
                return Err(ClientError::Unreachable {
                    url: String::new(),
                    reason: "the connection ended".into(),
                })
            }
        }
    }
}

/// One connected period.
struct Session<'a> {
    shared: &'a Shared,
    config: &'a ClientConfig,
    socket: Socket,
    /// Requests written on this connection, waiting for their answer; the
    /// hub answers each in order.
    in_flight: VecDeque<Request>,
    events: &'a mpsc::Sender<Event>,
    delivered: i64,
    acked: i64,
}

impl Session<'_> {
    async fn run(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        pending: &mut VecDeque<Request>,
    ) -> Ended {
        // Rejoin, then resend whatever was not confirmed, in order.
        let groups: Vec<String> = lock(&self.shared.groups).iter().cloned().collect();
        for group_id in groups {
            if let Err(error) = self
                .write(Request {
                    frame: ClientFrame::JoinGroup { group_id },
                    reply: None,
                })
                .await
            {
                return Ended::Lost(error.to_string());
            }
        }
        while let Some(request) = pending.pop_front() {
            if let Err(error) = self.write(request).await {
                return Ended::Lost(error.to_string());
            }
        }
        let mut ack_timer = tokio::time::interval(ACK_INTERVAL);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                message = self.socket.next() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if let Err(error) = self.handle_text(&text).await {
                                return Ended::Lost(error.to_string());
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return Ended::Lost(frame
                                .map(|f| format!("closed by the hub ({}: {})", u16::from(f.code), f.reason))
                                .unwrap_or_else(|| "closed by the hub".into()));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Ended::Lost(error.to_string()),
                        None => return Ended::Lost("the connection ended".into()),
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Request(request)) => {
                        if let Err(error) = self.write(*request).await {
                            return Ended::Lost(error.to_string());
                        }
                    }
                    Some(Command::Close(done)) => {
                        self.acknowledge().await.ok();
                        let _ = self.socket.close(None).await;
                        let mut in_flight = std::mem::take(&mut self.in_flight);
                        fail_all(&mut in_flight, ClientError::Closed);
                        fail_all(pending, ClientError::Closed);
                        let _ = done.send(());
                        return Ended::Closed;
                    }
                    None => {
                        let _ = self.socket.close(None).await;
                        return Ended::Closed;
                    }
                },
                _ = ack_timer.tick() => {
                    if let Err(error) = self.acknowledge().await {
                        return Ended::Lost(error.to_string());
                    }
                }
                () = tokio::time::sleep_until(last_heard + self.config.idle_timeout) => {
                    return Ended::Lost(format!("nothing heard from the hub in {:?}", self.config.idle_timeout));
                }
            }
        }
    }

    async fn write(&mut self, request: Request) -> Result<(), ClientError> {
        let result = send(&mut self.socket, &request.frame).await;
        // Even if the write failed the request is kept: it is resent.
        self.in_flight.push_back(request);
        result
    }

    async fn acknowledge(&mut self) -> Result<(), ClientError> {
        let processed = self
            .shared
            .processed
            .load(Ordering::Relaxed)
            .min(self.delivered);
        if processed > self.acked {
            send(&mut self.socket, &ClientFrame::Ack { seq: processed }).await?;
            self.acked = processed;
        }
        Ok(())
    }

    async fn handle_text(&mut self, text: &str) -> Result<(), ClientError> {
        let frame: ServerFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(error) => {
                // A newer hub may send frames this client does not know.
                tracing::debug!(%error, "ignoring an unknown frame");
                return Ok(());
            }
        };
        let event = match frame {
            ServerFrame::Sent { .. }
            | ServerFrame::Joined { .. }
            | ServerFrame::Left { .. }
            | ServerFrame::HeartbeatAck { .. }
            | ServerFrame::TaskState { .. }
            | ServerFrame::Error(_) => {
                self.answer(frame);
                return Ok(());
            }
            ServerFrame::Message(message) => Event::Message(message),
            ServerFrame::DirectMessage(message) => Event::DirectMessage(message),
            ServerFrame::Mention(mention) => Event::Mention(mention),
            ServerFrame::TaskAssigned { seq, task } => Event::TaskAssigned { seq, task },
            ServerFrame::TaskUpdate { seq, task, change } => Event::TaskUpdate {
                seq,
                task: Box::new(task),
                change,
            },
            ServerFrame::System {
                content,
                group_id,
                timestamp,
            } => Event::System {
                group_id,
                content,
                timestamp,
            },
            ServerFrame::AgentList { agents } => {
                *lock(&self.shared.online) = agents.clone();
                Event::AgentList(agents)
            }
            // The application still sees the whole list, now current.
            ServerFrame::Presence { agents: changed } => {
                let mut online = lock(&self.shared.online);
                apply_presence(&mut online, changed);
                Event::AgentList(online.clone())
            }
            ServerFrame::OfflineMessages { .. }
            | ServerFrame::Registered { .. }
            | ServerFrame::CaughtUp { .. } => return Ok(()),
        };
        if let Some(seq) = event.seq() {
            // Redelivery after a reconnect: already handed over.
            if seq <= self.delivered {
                return Ok(());
            }
            self.delivered = seq;
        }
        self.events
            .send(event)
            .await
            .map_err(|_| ClientError::Closed)
    }

    fn answer(&mut self, frame: ServerFrame) {
        let Some(request) = self.in_flight.pop_front() else {
            if let ServerFrame::Error(body) = &frame {
                tracing::warn!(code = ?body.code, message = %body.message, "error from the hub");
            }
            return;
        };
        if let (ServerFrame::Error(body), None) = (&frame, &request.reply) {
            // An internal request (a rejoin) failed; nobody awaits it.
            if body.code != ErrorCode::Internal {
                tracing::warn!(code = ?body.code, message = %body.message, "rejoin refused");
            }
        }
        if let Some(reply) = request.reply {
            reply.send(Ok(frame));
        }
    }
}

/// Brings the online list up to date with a `presence` frame: each changed
/// agent replaces its old entry, and only online ones stay.
fn apply_presence(online: &mut Vec<AgentSummary>, changed: Vec<AgentSummary>) {
    let ids: std::collections::HashSet<&str> = changed.iter().map(|c| c.id.as_str()).collect();
    online.retain(|agent| !ids.contains(agent.id.as_str()));
    drop(ids);
    online.extend(
        changed
            .into_iter()
            .filter(|agent| agent.status == AgentStatus::Online),
    );
    online.sort_by(|a, b| a.id.cmp(&b.id));
}

/// How much the WebSocket library reads from the socket at a time: it
/// zero-fills this whole chunk before every read, however little arrives.
/// Its default, 128 KiB, cost a load generator built on the same library
/// a third of its CPU when frames came one per read (references/
/// BENCHMARKS.md, "The floor of target 1"). 16 KiB still takes a catch-up
/// burst in few reads; a bigger frame arrives whole either way.
const READ_CHUNK_BYTES: usize = 16 * 1024;

fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_CHUNK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunk is what connections are opened with, not only a constant:
    /// the library's default would zero-fill 128 KiB before every read.
    #[test]
    fn connections_read_in_chunks_of_read_chunk_bytes() {
        assert_eq!(websocket_config().read_buffer_size, READ_CHUNK_BYTES);
        assert_ne!(
            WebSocketConfig::default().read_buffer_size,
            READ_CHUNK_BYTES
        );
    }
}
