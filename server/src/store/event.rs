//! A stored event: one row of the `events` table, and how it looks on the
//! wire. An event is shared (`Arc`) by every session it is delivered to, and
//! its JSON is rendered once, however many sessions send it.

use std::sync::OnceLock;

use clawbot_connector::protocol::{
    DirectMessage, GroupMessage, Mention, ServerFrame, TaskChange, TaskView,
};
use serde_json::Value;

use crate::hub::outbox::Rendered;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Message,
    DirectMessage,
    Mention,
    TaskAssigned,
    /// A change of a task, addressed to its assigner or assignee; the
    /// content is `{"task": ..., "change": ...}`.
    TaskUpdate,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::DirectMessage => "direct_message",
            EventKind::Mention => "mention",
            EventKind::TaskAssigned => "task_assigned",
            EventKind::TaskUpdate => "task_update",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "message" => EventKind::Message,
            "direct_message" => EventKind::DirectMessage,
            "mention" => EventKind::Mention,
            "task_assigned" => EventKind::TaskAssigned,
            "task_update" => EventKind::TaskUpdate,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub struct Event {
    pub seq: i64,
    pub id: String,
    pub kind: EventKind,
    pub from_id: String,
    pub from_name: String,
    /// The group of a message or mention.
    pub group_id: Option<String>,
    /// The addressee of a DM, mention or task.
    pub recipient: Option<String>,
    /// The text; for a task, the task as JSON.
    pub content: String,
    pub client_id: Option<String>,
    /// For a mention: the id of the group message that carried it.
    pub ref_id: Option<String>,
    pub created_at: String,
    /// The frame's JSON text, rendered on first use and shared by every
    /// session that sends it.
    rendered: OnceLock<Rendered>,
}

impl Event {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: i64,
        id: String,
        kind: EventKind,
        from_id: String,
        from_name: String,
        group_id: Option<String>,
        recipient: Option<String>,
        content: String,
        client_id: Option<String>,
        ref_id: Option<String>,
        created_at: String,
    ) -> Self {
        Event {
            seq,
            id,
            kind,
            from_id,
            from_name,
            group_id,
            recipient,
            content,
            client_id,
            ref_id,
            created_at,
            rendered: OnceLock::new(),
        }
    }

    /// Reads a row selected with [`Event::COLUMNS`].
    pub fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let kind: String = row.get(2)?;
        Ok(Event::new(
            row.get(0)?,
            row.get(1)?,
            EventKind::parse(&kind).unwrap_or(EventKind::Message),
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
        ))
    }

    pub const COLUMNS: &'static str = "seq, id, kind, from_id, from_name, group_id, recipient, \
         content, client_id, ref_id, created_at";

    pub fn to_frame(&self) -> ServerFrame {
        let group_id = self.group_id.clone().unwrap_or_default();
        let recipient = self.recipient.clone().unwrap_or_default();
        match self.kind {
            EventKind::Message => ServerFrame::Message(GroupMessage {
                id: self.id.clone(),
                seq: self.seq,
                from: self.from_id.clone(),
                from_name: self.from_name.clone(),
                group_id,
                content: self.content.clone(),
                timestamp: self.created_at.clone(),
                client_id: self.client_id.clone(),
            }),
            EventKind::DirectMessage => ServerFrame::DirectMessage(DirectMessage {
                id: self.id.clone(),
                seq: self.seq,
                from: self.from_id.clone(),
                from_name: self.from_name.clone(),
                to: recipient,
                content: self.content.clone(),
                timestamp: self.created_at.clone(),
                client_id: self.client_id.clone(),
            }),
            EventKind::Mention => ServerFrame::Mention(Mention {
                id: self.id.clone(),
                seq: self.seq,
                from: self.from_id.clone(),
                from_name: self.from_name.clone(),
                group_id,
                content: self.content.clone(),
                timestamp: self.created_at.clone(),
                message_id: self.ref_id.clone().unwrap_or_default(),
            }),
            EventKind::TaskAssigned => ServerFrame::TaskAssigned {
                seq: self.seq,
                task: serde_json::from_str(&self.content).unwrap_or(Value::Null),
            },
            EventKind::TaskUpdate => {
                #[derive(serde::Deserialize)]
                struct Stored {
                    task: TaskView,
                    change: TaskChange,
                }
                match serde_json::from_str::<Stored>(&self.content) {
                    Ok(stored) => ServerFrame::TaskUpdate {
                        seq: self.seq,
                        task: stored.task,
                        change: stored.change,
                    },
                    Err(_) => ServerFrame::error(
                        clawbot_connector::protocol::ErrorCode::Internal,
                        "an unreadable task update",
                    ),
                }
            }
        }
    }

    /// The frame as JSON text, rendered once and then shared.
    pub fn frame_text(&self) -> Rendered {
        self.rendered
            .get_or_init(|| crate::hub::render(&self.to_frame()))
            .clone()
    }
}
