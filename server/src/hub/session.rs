//! A registered agent's live connection, and its catch-up from the store.

use std::sync::Arc;

use clawbot_connector::protocol::{ServerFrame, PROTOCOL_V2};

use super::outbox::{Outbox, Outgoing};
use super::{render, Hub};
use crate::store::event::Event;
use crate::store::messages;

/// Events read from the store per catch-up step.
const CATCH_UP_PAGE: usize = 1000;
/// A page small enough to read without leaving the calling task.
const SMALL_CATCH_UP_PAGE: usize = 64;
/// Events per legacy `offline_messages` frame.
const OFFLINE_BATCH: usize = 500;
/// Content bytes per legacy batch (the frame is split further by size
/// when written).
const OFFLINE_BATCH_BYTES: usize = 512 * 1024;

pub struct Session {
    /// Distinguishes this connection from a later one of the same agent, so
    /// that closing an old socket never removes its replacement.
    pub conn_id: u64,
    pub agent_id: String,
    pub name: String,
    /// 1 for legacy clients, 2 for v2.
    pub protocol: u32,
    pub outbox: Arc<Outbox>,
    /// The newest seq when the agent registered: what is newer arrived
    /// while it was online, and reaches a legacy client as ordinary frames
    /// rather than in `offline_messages`.
    pub registered_at_seq: i64,
    /// Gets presence broadcasts: every legacy client (the whole
    /// `agent_list`, as the original sent it), and v2 clients that asked
    /// for it in `register` (`presence` frames with the changes).
    pub follows_presence: bool,
}

impl Session {
    pub fn is_v2(&self) -> bool {
        self.protocol >= PROTOCOL_V2
    }

    /// What the agent's stored cursor may advance to: what the client
    /// confirmed (see [`Outbox::confirm`]).
    pub fn cursor(&self) -> i64 {
        self.outbox.confirmed_seq()
    }
}

/// Sends everything stored for the session after its start cursor, page by
/// page, then switches it to live delivery. Legacy clients get the backlog
/// in `offline_messages` frames; v2 clients get each event as its own frame
/// and then `caught_up`.
pub async fn catch_up(hub: Hub, session: Arc<Session>) {
    let outbox = &session.outbox;
    let mut after = outbox.sent_seq();
    // Legacy clients get what waited for them in as few `offline_messages`
    // frames as the original sent (one, usually): their first read is a
    // full page.
    let mut expect_little = session.is_v2();
    loop {
        if outbox.is_closed() {
            return;
        }
        wait_for_room(outbox).await;
        let agent_id = session.agent_id.clone();
        // A page fills at most a quarter of the outbox, leaving room for
        // replies and presence while it drains.
        let full_page = CATCH_UP_PAGE.min((outbox.capacity() / 4).max(1));
        // Most sessions have little or nothing waiting: the first read, and
        // the read after a page that was not full, ask for a small page on
        // the calling task (no hand-off to a blocking thread); only a
        // backlog that fills it is read in full pages on blocking threads.
        let page = if expect_little {
            let page_size = SMALL_CATCH_UP_PAGE.min(full_page);
            hub.store()
                .read_here(move |connection| {
                    messages::backlog(connection, &agent_id, after, page_size)
                })
                .await
                .map(|page| (page_size, page))
        } else {
            hub.store()
                .read(move |connection| messages::backlog(connection, &agent_id, after, full_page))
                .await
                .map(|page| (full_page, page))
        };
        let page = match page {
            Ok((asked, page)) => {
                expect_little = page.len() < asked;
                page
            }
            Err(error) => {
                tracing::error!(%error, agent = %session.agent_id, "catch-up read failed");
                outbox.close(1011, "internal error");
                return;
            }
        };
        if let Some(last) = page.last() {
            after = last.seq;
            // Items go in one at a time, each only when the outbox has room
            // (by count and by bytes), so large events cannot pile up.
            for item in backlog_items(page, session.is_v2(), session.registered_at_seq) {
                wait_for_room(outbox).await;
                if outbox.is_closed() {
                    return;
                }
                outbox.push_backlog(item);
            }
            continue;
        }
        let caught_up = session
            .is_v2()
            .then(|| render(&ServerFrame::CaughtUp { seq: after }));
        if outbox.try_go_live(caught_up) {
            return;
        }
    }
}

/// A page as outbox items: one per event for v2 clients; for legacy
/// clients, what was stored before they registered goes in
/// `offline_messages` batches of at most [`OFFLINE_BATCH`] events and about
/// [`OFFLINE_BATCH_BYTES`] of content, and what came after as ordinary
/// frames.
fn backlog_items(page: Vec<Arc<Event>>, v2: bool, registered_at_seq: i64) -> Vec<Outgoing> {
    if v2 {
        return page.into_iter().map(Outgoing::Event).collect();
    }
    let mut items = Vec::new();
    let mut batch: Vec<Arc<Event>> = Vec::new();
    let mut bytes = 0;
    for event in page {
        if event.seq > registered_at_seq {
            if !batch.is_empty() {
                items.push(Outgoing::OfflineBatch(std::mem::take(&mut batch)));
                bytes = 0;
            }
            items.push(Outgoing::Event(event));
            continue;
        }
        if !batch.is_empty()
            && (batch.len() >= OFFLINE_BATCH || bytes + event.content.len() > OFFLINE_BATCH_BYTES)
        {
            items.push(Outgoing::OfflineBatch(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += event.content.len();
        batch.push(event);
    }
    if !batch.is_empty() {
        items.push(Outgoing::OfflineBatch(batch));
    }
    items
}

/// Waits until at most half the outbox is in use, so a long backlog streams
/// at the client's pace instead of filling memory.
async fn wait_for_room(outbox: &Outbox) {
    loop {
        let drained = outbox.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if outbox.has_room() || outbox.is_closed() {
            return;
        }
        tokio::select! {
            () = drained => {}
            () = outbox.closing.cancelled() => return,
        }
    }
}
