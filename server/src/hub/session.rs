//! A registered agent's live connection, and its catch-up from the store.

use std::sync::Arc;

use clawbot_connector::protocol::{ServerFrame, PROTOCOL_V2};

use super::outbox::{Outbox, Outgoing};
use super::Hub;
use crate::store::messages;

/// Events read from the store per catch-up step.
const CATCH_UP_PAGE: usize = 1000;
/// Events per legacy `offline_messages` frame.
const OFFLINE_BATCH: usize = 500;

pub struct Session {
    /// Distinguishes this connection from a later one of the same agent, so
    /// that closing an old socket never removes its replacement.
    pub conn_id: u64,
    pub agent_id: String,
    pub name: String,
    /// 1 for legacy clients, 2 for v2.
    pub protocol: u32,
    pub outbox: Arc<Outbox>,
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
    loop {
        if outbox.is_closed() {
            return;
        }
        wait_for_room(outbox).await;
        let agent_id = session.agent_id.clone();
        // A page fills at most a quarter of the outbox, leaving room for
        // replies and presence while it drains.
        let page_size = CATCH_UP_PAGE.min((outbox.capacity() / 4).max(1));
        let page = hub
            .store()
            .read(move |connection| messages::backlog(connection, &agent_id, after, page_size))
            .await;
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, agent = %session.agent_id, "catch-up read failed");
                outbox.close(1011, "internal error");
                return;
            }
        };
        if let Some(last) = page.last() {
            after = last.seq;
            if session.is_v2() {
                for event in page {
                    outbox.push_backlog(Outgoing::Event(event));
                }
            } else {
                let mut page = page;
                while !page.is_empty() {
                    let rest = page.split_off(page.len().min(OFFLINE_BATCH));
                    outbox.push_backlog(Outgoing::OfflineBatch(page));
                    page = rest;
                }
            }
            continue;
        }
        let caught_up = session
            .is_v2()
            .then(|| hub.render(&ServerFrame::CaughtUp { seq: after }));
        if outbox.try_go_live(caught_up) {
            return;
        }
    }
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
