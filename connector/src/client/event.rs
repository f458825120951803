//! What a client hands the application.

use serde_json::Value;

use crate::protocol::{AgentSummary, DirectMessage, GroupMessage, Mention, TaskChange, TaskView};

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Registered (again); `resumed_from` is the seq delivery resumes after.
    Connected {
        agent_id: String,
        resumed_from: i64,
    },
    /// The connection dropped; the client is reconnecting by itself.
    Disconnected {
        reason: String,
    },
    Message(GroupMessage),
    DirectMessage(DirectMessage),
    Mention(Mention),
    TaskAssigned {
        seq: i64,
        task: Value,
    },
    /// A task this agent assigned or holds changed.
    TaskUpdate {
        seq: i64,
        task: Box<TaskView>,
        change: TaskChange,
    },
    /// A group notice such as "<name> joined the group".
    System {
        group_id: String,
        content: String,
        timestamp: String,
    },
    /// Who is online now.
    AgentList(Vec<AgentSummary>),
}

impl Event {
    /// The sequence number of a stored event; `None` for notices.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Event::Message(m) => Some(m.seq),
            Event::DirectMessage(m) => Some(m.seq),
            Event::Mention(m) => Some(m.seq),
            Event::TaskAssigned { seq, .. } | Event::TaskUpdate { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}
