//! An async client for the hub.
//!
//! [`connect`] returns once the agent is registered: a cloneable [`Client`]
//! handle for sending, and an [`Events`] stream the application drives.
//! Behind them one task keeps the connection: it reconnects with
//! exponential backoff and jitter, rejoins groups, resumes from the last
//! sequence number it delivered, resends what the hub had not confirmed
//! (client ids make that idempotent), acknowledges what the application has
//! taken, and never hands the application the same event twice or out of
//! order.
//!
//! Sending while disconnected queues the request; it is sent once the
//! connection is back, and the call returns when the hub confirms it.

mod config;
mod connection;
mod error;
mod event;
mod rest;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

pub use config::{ClientConfig, DEFAULT_SERVER_URL};
pub use error::ClientError;
pub use event::Event;
pub use rest::HistoryPage;

use crate::protocol::{AgentSummary, AssignTask, ClientFrame, ServerFrame, TaskView};

/// Events buffered between the connection task and the application.
const EVENT_BUFFER: usize = 4096;

/// The hub's confirmation of a stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub id: String,
    pub seq: i64,
    pub client_id: Option<String>,
    /// The hub had it already (a resend); nothing new was stored.
    pub duplicate: bool,
    /// `@names` that matched no agent.
    pub unknown_mentions: Vec<String>,
}

/// Where the hub's answer to a request goes.
enum Reply {
    /// A `request` call awaiting it.
    Channel(oneshot::Sender<Result<ServerFrame, ClientError>>),
    /// A function the connection task calls with it: the `*_then` methods,
    /// which spare bindings a task and a channel per request.
    Callback(Box<dyn FnOnce(Result<ServerFrame, ClientError>) + Send>),
}

impl Reply {
    fn send(self, answer: Result<ServerFrame, ClientError>) {
        match self {
            // Nobody awaits it any more: nothing to do.
            Reply::Channel(sender) => drop(sender.send(answer)),
            Reply::Callback(callback) => callback(answer),
        }
    }
}

/// A request the connection task sends and retries until the hub answers.
struct Request {
    frame: ClientFrame,
    reply: Option<Reply>,
}

enum Command {
    /// Boxed: a request (a task, say) is much larger than a close.
    Request(Box<Request>),
    Close(oneshot::Sender<()>),
}

/// State shared by the handle, the event stream and the connection task.
struct Shared {
    agent_id: String,
    /// The token in use: after a claim, the agent's own credential.
    token: Mutex<Option<String>>,
    /// Groups to rejoin after a reconnect.
    groups: Mutex<BTreeSet<String>>,
    /// The highest seq the application has taken and so processed.
    processed: AtomicI64,
    online: Mutex<Vec<AgentSummary>>,
    connected: watch::Sender<bool>,
    rest: rest::Rest,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cloneable handle to one agent's connection.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

/// The events for the application, in order and once each.
pub struct Events {
    receiver: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    /// The seq of the last event returned; taking the next one marks it
    /// processed.
    taken: Option<i64>,
}

/// Connects, registers, joins `config.groups`, and returns once they are joined.
/// Fails fast if the URL is bad, the hub is unreachable, or it refuses the
/// token or the agent id; after that, the client reconnects by itself.
pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
    install_tls_provider();
    config.ws_url()?;
    let rest = rest::Rest::new(config.rest_url()?);
    let (connected, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        agent_id: config.agent.id.clone(),
        token: Mutex::new(config.token.clone()),
        // Filled by the joins below, so reconnects rejoin them.
        groups: Mutex::new(BTreeSet::new()),
        processed: AtomicI64::new(config.last_seq.unwrap_or(0)),
        online: Mutex::new(Vec::new()),
        connected,
        rest,
    });
    let groups = config.groups.clone();
    let (commands, command_receiver) = mpsc::unbounded_channel();
    let (event_sender, receiver) = mpsc::channel(EVENT_BUFFER);
    let (first, first_result) = oneshot::channel();
    let timeout = config.connect_timeout;
    let url = config.server_url.clone();
    tokio::spawn(connection::run(
        Arc::clone(&shared),
        config,
        command_receiver,
        event_sender,
        first,
    ));
    match tokio::time::timeout(timeout, first_result).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => return Err(error),
        Ok(Err(_)) => return Err(ClientError::Closed),
        Err(_) => {
            let _ = commands.send(Command::Close(oneshot::channel().0));
            return Err(ClientError::Unreachable {
                url,
                reason: format!("no registration within {timeout:?}"),
            });
        }
    }
    let client = Client {
        commands,
        shared: Arc::clone(&shared),
    };
    // Return only once the groups are joined, so that nothing sent after
    // `connect` can reach a group before this agent is in it.
    for group in &groups {
        if let Err(error) = client.join_group(group).await {
            client.close().await;
            return Err(error);
        }
    }
    Ok((
        client,
        Events {
            receiver,
            shared,
            taken: None,
        },
    ))
}

impl Client {
    pub fn agent_id(&self) -> &str {
        &self.shared.agent_id
    }

    /// The token in use: the agent's own credential once the hub issued one
    /// (store it, and connect with it next time).
    pub fn token(&self) -> Option<String> {
        lock(&self.shared.token).clone()
    }

    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    /// Waits until the connection is up (returns at once if it is).
    pub async fn wait_connected(&self) {
        let mut receiver = self.shared.connected.subscribe();
        let _ = receiver.wait_for(|up| *up).await;
    }

    /// The agents online, as the hub last said.
    pub fn online_agents(&self) -> Vec<AgentSummary> {
        lock(&self.shared.online).clone()
    }

    /// Queues `frame` for the connection task; the answer goes to `reply`.
    fn submit(&self, frame: ClientFrame, reply: Reply) {
        let request = Box::new(Request {
            frame,
            reply: Some(reply),
        });
        if let Err(mpsc::error::SendError(Command::Request(request))) =
            self.commands.send(Command::Request(request))
        {
            if let Some(reply) = request.reply {
                reply.send(Err(ClientError::Closed));
            }
        }
    }

    async fn request(&self, frame: ClientFrame) -> Result<ServerFrame, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.submit(frame, Reply::Channel(reply));
        rejected(answer.await.map_err(|_| ClientError::Closed)??)
    }

    async fn send_stored(&self, frame: ClientFrame) -> Result<Sent, ClientError> {
        stored(self.request(frame).await)
    }

    /// Queues a stored message; `done` gets the outcome (see
    /// [`Client::send_direct_message_then`]).
    fn send_stored_then(
        &self,
        frame: ClientFrame,
        done: impl FnOnce(Result<Sent, ClientError>) + Send + 'static,
    ) {
        self.submit(
            frame,
            Reply::Callback(Box::new(move |answer| {
                done(stored(answer.and_then(rejected)))
            })),
        );
    }

    /// Sends a group message; returns once the hub has stored it.
    pub async fn send_message(&self, group_id: &str, content: &str) -> Result<Sent, ClientError> {
        self.send_stored(message_frame(group_id, content)).await
    }

    /// Sends a direct message; returns once the hub has stored it.
    pub async fn send_direct_message(&self, to: &str, content: &str) -> Result<Sent, ClientError> {
        self.send_stored(direct_message_frame(to, content)).await
    }

    /// Like [`Client::send_message`], without awaiting: `done` gets what
    /// the call would have returned.
    pub fn send_message_then(
        &self,
        group_id: &str,
        content: &str,
        done: impl FnOnce(Result<Sent, ClientError>) + Send + 'static,
    ) {
        self.send_stored_then(message_frame(group_id, content), done);
    }

    /// Like [`Client::send_direct_message`], without awaiting: `done` gets
    /// what the call would have returned. It is called on the connection's
    /// task (or at once, if the client is closed), so it must be quick and
    /// must not block: hand the result on. For bindings that run their own
    /// event loop (the Python SDK): no task and no channel per message.
    pub fn send_direct_message_then(
        &self,
        to: &str,
        content: &str,
        done: impl FnOnce(Result<Sent, ClientError>) + Send + 'static,
    ) {
        self.send_stored_then(direct_message_frame(to, content), done);
    }

    /// Joins a group (the membership is stored by the hub and kept across
    /// reconnects and restarts).
    pub async fn join_group(&self, group_id: &str) -> Result<(), ClientError> {
        self.request(ClientFrame::JoinGroup {
            group_id: group_id.to_owned(),
        })
        .await?;
        lock(&self.shared.groups).insert(group_id.to_owned());
        Ok(())
    }

    pub async fn leave_group(&self, group_id: &str) -> Result<(), ClientError> {
        lock(&self.shared.groups).remove(group_id);
        self.request(ClientFrame::LeaveGroup {
            group_id: group_id.to_owned(),
        })
        .await?;
        Ok(())
    }

    async fn task_request(&self, frame: ClientFrame) -> Result<TaskView, ClientError> {
        match self.request(frame).await? {
            ServerFrame::TaskState { task } => Ok(task),
            other => Err(ClientError::Protocol(format!(
                "expected 'task_state', got {other:?}"
            ))),
        }
    }

    /// Creates a task (for `assignee_id` or any agent with `capability`).
    /// Give it an `idempotency_key` so a retry cannot create a second one.
    pub async fn assign_task(&self, task: AssignTask) -> Result<TaskView, ClientError> {
        self.task_request(ClientFrame::AssignTask(task)).await
    }

    pub async fn accept_task(&self, task_id: &str) -> Result<TaskView, ClientError> {
        self.task_request(ClientFrame::TaskAccept {
            task_id: task_id.to_owned(),
        })
        .await
    }

    pub async fn task_progress(
        &self,
        task_id: &str,
        percent: u8,
        note: &str,
    ) -> Result<TaskView, ClientError> {
        self.task_request(ClientFrame::TaskProgress {
            task_id: task_id.to_owned(),
            percent,
            note: note.to_owned(),
        })
        .await
    }

    pub async fn complete_task(
        &self,
        task_id: &str,
        result: serde_json::Value,
    ) -> Result<TaskView, ClientError> {
        self.task_request(ClientFrame::TaskComplete {
            task_id: task_id.to_owned(),
            result,
        })
        .await
    }

    pub async fn fail_task(&self, task_id: &str, error: &str) -> Result<TaskView, ClientError> {
        self.task_request(ClientFrame::TaskFail {
            task_id: task_id.to_owned(),
            error: error.to_owned(),
        })
        .await
    }

    pub async fn cancel_task(&self, task_id: &str) -> Result<TaskView, ClientError> {
        self.task_request(ClientFrame::TaskCancel {
            task_id: task_id.to_owned(),
        })
        .await
    }

    /// A page of a group's history over REST, oldest first.
    pub async fn history(
        &self,
        group_id: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        let token = self.token();
        self.shared
            .rest
            .history(token.as_deref(), group_id, before, after, limit)
            .await
    }

    /// Every known agent with its status, over REST.
    pub async fn agents(&self) -> Result<Vec<AgentSummary>, ClientError> {
        let token = self.token();
        self.shared.rest.agents(token.as_deref()).await
    }

    /// Any REST call the typed methods do not cover; `body` is sent as JSON.
    pub async fn rest_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let token = self.token();
        self.shared
            .rest
            .call(token.as_deref(), method, path, body)
            .await
    }

    /// Closes the connection; queued requests fail with `Closed`.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = finished.await;
        }
    }
}

impl Events {
    /// The next event; `None` once the client is closed. Taking an event
    /// marks the previous one processed (acknowledged to the hub).
    pub async fn recv(&mut self) -> Option<Event> {
        self.mark_processed();
        let event = self.receiver.recv().await?;
        self.taken = event.seq();
        Some(event)
    }

    /// Like [`Events::recv`], but appends to `buffer` every event waiting,
    /// up to `limit`, or else the next one to come; returns how many (0
    /// once the client is closed). Taking them marks the events of the
    /// previous call processed. One wake-up for many events: bindings that
    /// hand events to another runtime pay that hand-off once per batch.
    pub async fn recv_many(&mut self, buffer: &mut Vec<Event>, limit: usize) -> usize {
        self.mark_processed();
        let start = buffer.len();
        let count = self.receiver.recv_many(buffer, limit).await;
        // Stored events come in seq order: the last seq is the highest.
        self.taken = buffer[start..].iter().rev().find_map(Event::seq);
        count
    }

    /// Like [`Events::recv`] for code outside an async runtime.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.mark_processed();
        let event = self.receiver.blocking_recv()?;
        self.taken = event.seq();
        Some(event)
    }

    /// Marks everything taken so far as processed.
    pub fn mark_processed(&mut self) {
        if let Some(seq) = self.taken.take() {
            self.shared.processed.fetch_max(seq, Ordering::Relaxed);
        }
    }

    /// The highest sequence number processed so far; pass it as
    /// `ClientConfig::last_seq` to resume in a later run.
    pub fn processed_seq(&self) -> i64 {
        self.shared.processed.load(Ordering::Relaxed)
    }
}

/// The hub's error frame as an error.
fn rejected(frame: ServerFrame) -> Result<ServerFrame, ClientError> {
    match frame {
        ServerFrame::Error(body) => Err(ClientError::Rejected {
            code: body.code,
            message: body.message,
        }),
        frame => Ok(frame),
    }
}

/// The answer to a stored message: its `sent` confirmation.
fn stored(answer: Result<ServerFrame, ClientError>) -> Result<Sent, ClientError> {
    match answer? {
        ServerFrame::Sent {
            id,
            seq,
            client_id,
            duplicate,
            unknown_mentions,
        } => Ok(Sent {
            id,
            seq,
            client_id,
            duplicate,
            unknown_mentions,
        }),
        other => Err(ClientError::Protocol(format!(
            "expected 'sent', got {other:?}"
        ))),
    }
}

/// wss:// and https:// use rustls with the ring provider: pure Rust and
/// assembly that builds anywhere the connector does (aws-lc would need
/// cmake on every Mac). Installing it twice is harmless.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A group message frame with a fresh client id, so a resend after a
/// reconnect is recognised by the hub.
fn message_frame(group_id: &str, content: &str) -> ClientFrame {
    ClientFrame::Message {
        group_id: group_id.to_owned(),
        content: content.to_owned(),
        timestamp: None,
        client_id: Some(new_client_id()),
    }
}

/// A direct message frame with a fresh client id (see [`message_frame`]).
fn direct_message_frame(to: &str, content: &str) -> ClientFrame {
    ClientFrame::DirectMessage {
        to: to.to_owned(),
        content: content.to_owned(),
        timestamp: None,
        client_id: Some(new_client_id()),
    }
}

/// Ordered by time (UUIDv7), so that the hub's unique index of (sender,
/// clientId) grows at its end instead of at a random page per message
/// (references/BENCHMARKS.md, "Client ids").
fn new_client_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each new client id sorts after the last, as text too: that order is
    /// what keeps the hub's index of them growing at its end.
    #[test]
    fn client_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| new_client_id()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
