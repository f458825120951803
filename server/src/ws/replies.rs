//! The answers to one connection's frames, in the order the frames came.
//!
//! A `message` or `direct_message` is answered only after its commit, but
//! the connection does not wait for that before reading the next frame:
//! the write is queued (the writer keeps submission order) and its answer
//! waits here. Every other answer queues behind it, so a client sees
//! `sent` for its first message before the `heartbeat_ack` it asked for
//! next.
//!
//! Most of the time nothing is waiting, and an answer goes straight to the
//! outbox. Only while an answer is pending does a task work through the
//! queue, and it ends when the queue is empty: an idle connection holds no
//! task and no channel here (thousands of idle connections must stay
//! cheap).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hub::outbox::{Outbox, Rendered};

enum Reply {
    /// An answer known now.
    Ready(Rendered),
    /// An answer known once this resolves.
    Later(Pin<Box<dyn Future<Output = Rendered> + Send>>),
    /// Something to do once every earlier answer is in the outbox.
    Then(Box<dyn FnOnce() + Send>),
}

pub struct Replies {
    shared: Arc<Shared>,
}

struct Shared {
    outbox: Arc<Outbox>,
    /// Held only to queue or take one reply, never across an `.await`.
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Reply>,
    /// A task is working through `waiting` (or awaiting its last answer):
    /// new replies must queue behind it.
    draining: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Replies {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        Replies {
            shared: Arc::new(Shared {
                outbox,
                queue: Mutex::new(Queue::default()),
            }),
        }
    }

    pub fn ready(&self, frame: Rendered) {
        self.add(Reply::Ready(frame));
    }

    pub fn later(&self, answer: Pin<Box<dyn Future<Output = Rendered> + Send>>) {
        self.add(Reply::Later(answer));
    }

    pub fn then(&self, action: Box<dyn FnOnce() + Send>) {
        self.add(Reply::Then(action));
    }

    fn add(&self, reply: Reply) {
        let mut queue = self.shared.queue();
        if queue.draining {
            queue.waiting.push_back(reply);
            return;
        }
        match reply {
            // Nothing is ahead of it: straight through. Only the read loop
            // adds replies, and no task is draining, so nothing can come
            // between.
            Reply::Ready(frame) => {
                drop(queue);
                self.shared.outbox.push_frame(frame);
            }
            Reply::Then(action) => {
                drop(queue);
                action();
            }
            Reply::Later(_) => {
                queue.waiting.push_back(reply);
                queue.draining = true;
                drop(queue);
                tokio::spawn(drain(Arc::clone(&self.shared)));
            }
        }
    }
}

/// Moves answers into the outbox in order until none is left.
async fn drain(shared: Arc<Shared>) {
    loop {
        let reply = {
            let mut queue = shared.queue();
            match queue.waiting.pop_front() {
                Some(reply) => reply,
                None => {
                    queue.draining = false;
                    // Let go of what a burst made the queue hold.
                    queue.waiting = VecDeque::new();
                    return;
                }
            }
        };
        match reply {
            Reply::Ready(frame) => shared.outbox.push_frame(frame),
            Reply::Later(answer) => shared.outbox.push_frame(answer.await),
            Reply::Then(action) => action(),
        }
    }
}
