//! The answers to one connection's frames, in the order the frames came.
//!
//! A `message` or `direct_message` is answered only after its commit, but
//! the connection does not wait for that before reading the next frame:
//! the write is queued (the writer keeps submission order) and its answer
//! waits here. Every other answer queues behind it, so a client sees
//! `sent` for its first message before the `heartbeat_ack` it asked for
//! next. One task per connection works through the queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::hub::outbox::{Outbox, Rendered};

enum Reply {
    /// An answer known now.
    Ready(Rendered),
    /// An answer known once this resolves.
    Later(Pin<Box<dyn Future<Output = Rendered> + Send>>),
    /// Something to do once every earlier answer is in the outbox.
    Then(Box<dyn FnOnce() + Send>),
}

/// The sending side; dropping it ends the task once the queue is empty.
pub struct Replies {
    queue: mpsc::UnboundedSender<Reply>,
}

impl Replies {
    /// Starts the task that moves answers into `outbox`, in order.
    pub fn start(outbox: Arc<Outbox>) -> Self {
        let (queue, mut receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(reply) = receiver.recv().await {
                match reply {
                    Reply::Ready(frame) => outbox.push_frame(frame),
                    Reply::Later(answer) => outbox.push_frame(answer.await),
                    Reply::Then(action) => action(),
                }
            }
        });
        Replies { queue }
    }

    pub fn ready(&self, frame: Rendered) {
        let _ = self.queue.send(Reply::Ready(frame));
    }

    pub fn later(&self, answer: Pin<Box<dyn Future<Output = Rendered> + Send>>) {
        let _ = self.queue.send(Reply::Later(answer));
    }

    pub fn then(&self, action: Box<dyn FnOnce() + Send>) {
        let _ = self.queue.send(Reply::Then(action));
    }
}
