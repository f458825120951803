//! What is waiting to be written to one WebSocket connection.
//!
//! The outbox is the only way frames reach a socket: replies, live events,
//! the catch-up backlog and presence. It is bounded: a client that stops
//! reading fills it, and the next live frame closes the connection with
//! [`CLOSE_SLOW_CONSUMER`] instead of growing the hub's memory. The client
//! then catches up from its cursor when it comes back.
//!
//! While a session catches up from the database it takes no live events;
//! the dispatcher only notes that it `missed` some, and catch-up reads again
//! before it goes live. Live events arrive in sequence order because the
//! writer thread dispatches them in commit order.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use clawbot_connector::protocol::CLOSE_SLOW_CONSUMER;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::event::Event;

/// A frame rendered once; clones share the bytes.
pub type Rendered = axum::extract::ws::Utf8Bytes;

pub enum Outgoing {
    /// A stored event, sent as its own frame.
    Event(Arc<Event>),
    /// Legacy catch-up: stored events in one `offline_messages` frame.
    OfflineBatch(Vec<Arc<Event>>),
    /// Any other frame, already rendered (shared by every recipient).
    Frame(Rendered),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

pub struct Outbox {
    /// Held only to push or take items, never across an `.await`, so a std
    /// mutex is cheaper than an async one.
    state: Mutex<State>,
    /// Wakes the connection's writer task.
    pub wake: Notify,
    /// Wakes catch-up when the writer has emptied the queue.
    pub drained: Notify,
    /// Whether the writer follows each batch of events with a checkpoint
    /// ping (legacy clients, which do not acknowledge).
    pub checkpoints: AtomicBool,
    /// Cancelled when the connection must end; the reading side listens so
    /// that a writer stuck on a client that does not read cannot keep the
    /// connection alive.
    pub closing: CancellationToken,
    /// Cancelled when the connection has stopped reading: what its client
    /// confirms (acks, pongs) is all counted by then.
    pub reading_done: CancellationToken,
    capacity: usize,
    /// The most bytes (roughly: content plus framing) the queue may hold.
    max_bytes: usize,
}

/// What one queued item costs against the byte cap.
fn weight(item: &Outgoing) -> usize {
    const FRAMING: usize = 256;
    match item {
        Outgoing::Event(event) => event.content.len() + FRAMING,
        Outgoing::OfflineBatch(events) => events.iter().map(|e| e.content.len() + FRAMING).sum(),
        Outgoing::Frame(text) => text.len(),
        Outgoing::Close(..) => 0,
    }
}

struct State {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    catching_up: bool,
    missed: bool,
    closed: bool,
    /// The highest sequence number handed to the socket.
    sent_seq: i64,
    /// The highest sequence number the client proved it received: a v2
    /// client by `ack`, a legacy client by answering a ping that followed
    /// the frame. Only this moves the agent's stored cursor, so frames lost
    /// in a dead connection's buffers are sent again.
    confirmed_seq: i64,
    /// Why the hub closed the connection, for the log.
    close_reason: Option<&'static str>,
}

impl Outbox {
    pub fn new(capacity: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                catching_up: true,
                missed: false,
                closed: false,
                sent_seq: 0,
                confirmed_seq: 0,
                close_reason: None,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            checkpoints: AtomicBool::new(false),
            closing: CancellationToken::new(),
            reading_done: CancellationToken::new(),
            capacity,
            max_bytes,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-made;
        // carry on with what is there.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a reply or presence frame, whatever the catch-up state.
    pub fn push_frame(&self, frame: Rendered) {
        self.push(Outgoing::Frame(frame));
    }

    /// Queues a live event, or notes it was missed during catch-up.
    pub fn offer_event(&self, event: &Arc<Event>) {
        {
            let mut state = self.state();
            if state.catching_up {
                state.missed = true;
                return;
            }
            if event.seq <= state.sent_seq {
                return;
            }
        }
        self.push(Outgoing::Event(Arc::clone(event)));
    }

    fn push(&self, item: Outgoing) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        let weight = weight(&item);
        if state.queue.len() >= self.capacity || state.queued_bytes + weight > self.max_bytes {
            Self::close_locked(&mut state, CLOSE_SLOW_CONSUMER, "slow consumer: queue full");
            self.closing.cancel();
        } else {
            state.queued_bytes += weight;
            state.queue.push_back(item);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Catch-up output: bypasses the cap, because catch-up waits for the
    /// queue to drain before it reads more.
    pub fn push_backlog(&self, item: Outgoing) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.queued_bytes += weight(&item);
        state.queue.push_back(item);
        drop(state);
        self.wake.notify_one();
    }

    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Whether at most half the queue (by count and by bytes) is in use:
    /// catch-up adds a page only then.
    pub fn has_room(&self) -> bool {
        let state = self.state();
        state.queue.len() <= self.capacity / 2 && state.queued_bytes <= self.max_bytes / 2
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ends catch-up if nothing was missed since the last read, queueing
    /// `last_frame` (if any) ahead of every live event; otherwise clears the
    /// flag and returns false so the caller reads again.
    pub fn try_go_live(&self, last_frame: Option<Rendered>) -> bool {
        let mut state = self.state();
        if state.missed {
            state.missed = false;
            return false;
        }
        state.catching_up = false;
        if let (Some(frame), false) = (last_frame, state.closed) {
            state.queue.push_back(Outgoing::Frame(frame));
        }
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Drops everything queued and closes with `code`.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        Self::close_locked(&mut state, code, reason);
        drop(state);
        self.wake.notify_one();
        self.closing.cancel();
    }

    fn close_locked(state: &mut State, code: u16, reason: &'static str) {
        state.closed = true;
        state.close_reason = Some(reason);
        state.queue.clear();
        state.queued_bytes = 0;
        state.queue.push_back(Outgoing::Close(code, reason));
    }

    /// Why the hub closed this connection, if it did.
    pub fn close_reason(&self) -> Option<&'static str> {
        self.state().close_reason
    }

    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Marks the outbox closed without a close frame (the socket is gone).
    pub fn mark_gone(&self) {
        let mut state = self.state();
        state.closed = true;
        state.queue.clear();
        state.queued_bytes = 0;
        drop(state);
        self.drained.notify_waiters();
        self.wake.notify_one();
        self.closing.cancel();
    }

    /// Everything queued, for the writer task to send.
    pub fn take_all(&self) -> VecDeque<Outgoing> {
        let mut state = self.state();
        state.queued_bytes = 0;
        std::mem::take(&mut state.queue)
    }

    pub fn sent_seq(&self) -> i64 {
        self.state().sent_seq
    }

    pub fn set_sent_seq(&self, seq: i64) {
        let mut state = self.state();
        state.sent_seq = state.sent_seq.max(seq);
    }

    /// Records that the client has everything up to `seq` (an `ack`, or the
    /// pong of a checkpoint ping); a client cannot confirm what it was never
    /// sent.
    pub fn confirm(&self, seq: i64) {
        let mut state = self.state();
        let seq = seq.min(state.sent_seq);
        state.confirmed_seq = state.confirmed_seq.max(seq);
    }

    pub fn confirmed_seq(&self) -> i64 {
        self.state().confirmed_seq
    }

    /// Where delivery starts: nothing at or below `seq` is sent again.
    pub fn start_at(&self, seq: i64) {
        let mut state = self.state();
        state.sent_seq = seq;
        state.confirmed_seq = seq;
    }
}
