//! Wire types shared by the hub and every client.
//!
//! Frames are JSON text, one object per WebSocket message, discriminated by
//! `type`. Field names are camelCase, exactly as the original Node.js hub sent
//! them, so clients written for it keep working. Protocol v2 only *adds*
//! fields and frame types; a legacy client ignores what it does not know.
//!
//! `references/PROTOCOL.md` documents every frame; keep the two in step.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version a client asks for in `register.protocol`.
/// Absent means the original (legacy) protocol.
pub const PROTOCOL_V2: u32 = 2;

/// The group every original client talked in.
pub const DEFAULT_GROUP: &str = "clawdbots";

/// Close code sent when a connection is replaced by a newer register of the
/// same agent id.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code sent when a client's outgoing queue overflowed because it
/// stopped reading. The client should reconnect and resume from its cursor.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code sent when the hub heard nothing from a client (not even a pong)
/// within the idle timeout.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4002;
/// Close code sent when a frame exceeds the hard frame-size cap (RFC 6455).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code sent when the hub shuts down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Every `type` a client may send. Anything else gets `unknown_type`.
pub const CLIENT_FRAME_TYPES: &[&str] = &[
    "register",
    "join_group",
    "leave_group",
    "message",
    "direct_message",
    "heartbeat",
    "ack",
    "assign_task",
    "task_accept",
    "task_progress",
    "task_complete",
    "task_fail",
    "task_cancel",
];

/// How an agent describes itself in `register`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
    /// Free tags such as `xcode` or `gpu`, used to route tasks.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Anything else the client sent; the original kept extra fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AgentInfo {
    /// An agent with just an id; the hub uses the id as its name.
    pub fn new(id: impl Into<String>) -> Self {
        AgentInfo {
            id: id.into(),
            name: None,
            role: None,
            device: None,
            capabilities: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// Frames a client sends to the hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    #[serde(rename_all = "camelCase")]
    Register {
        agent: AgentInfo,
        /// `2` for protocol v2; absent for legacy clients.
        #[serde(default)]
        protocol: Option<u32>,
        /// v2: the last sequence number this client processed; the hub
        /// resumes right after it.
        #[serde(default)]
        last_seq: Option<i64>,
        /// v2: `true` to be told who is online: `agent_list` right after
        /// `registered`, then a `presence` frame whenever agents come or
        /// go. Absent or `false`: neither (ask `GET /api/agents` instead).
        /// Legacy clients always get `agent_list`, as from the original.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<bool>,
    },
    #[serde(rename_all = "camelCase")]
    JoinGroup {
        group_id: String,
    },
    #[serde(rename_all = "camelCase")]
    LeaveGroup {
        group_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Message {
        group_id: String,
        content: String,
        /// Ignored, as in the original: the hub stamps its own time.
        #[serde(default)]
        timestamp: Option<Value>,
        /// v2: a client-chosen id that makes a resend idempotent.
        #[serde(default)]
        client_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    DirectMessage {
        to: String,
        content: String,
        #[serde(default)]
        timestamp: Option<Value>,
        #[serde(default)]
        client_id: Option<String>,
    },
    Heartbeat {},
    /// v2: everything up to and including `seq` has been processed.
    Ack {
        seq: i64,
    },
    /// Creates a task for one agent (`assigneeId`) or for any agent with a
    /// capability. Answered by `task_state`.
    AssignTask(AssignTask),
    /// The assignee takes the task on.
    #[serde(rename_all = "camelCase")]
    TaskAccept {
        task_id: String,
    },
    /// The assignee reports progress (0 to 100) and a note.
    #[serde(rename_all = "camelCase")]
    TaskProgress {
        task_id: String,
        percent: u8,
        #[serde(default)]
        note: String,
    },
    /// The assignee finished; `result` is any JSON.
    #[serde(rename_all = "camelCase")]
    TaskComplete {
        task_id: String,
        #[serde(default)]
        result: Value,
    },
    /// The assignee gives up with an error.
    #[serde(rename_all = "camelCase")]
    TaskFail {
        task_id: String,
        error: String,
    },
    /// The assigner (or the admin) withdraws the task.
    #[serde(rename_all = "camelCase")]
    TaskCancel {
        task_id: String,
    },
}

/// What `assign_task` (and `POST /api/tasks`) carries. The original REST
/// body's fields (`title, description, assignerId, assigneeId, groupId,
/// priority`) keep their names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssignTask {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Structured input for the assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// A string (`low`, `normal`, `high`, ...) or a number; default `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Value>,
    /// ISO 8601; past it the task times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// A named agent...
    #[serde(default, alias = "to", skip_serializing_if = "Option::is_none")]
    pub assignee_id: Option<String>,
    /// ...or any online agent with this capability (the least busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The same key from the same assigner returns the same task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How many agents a capability task may be offered to; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Who assigns; implied by an agent's own token or connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigner_id: Option<String>,
}

/// Where a task is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for an eligible agent to come online.
    Pending,
    Assigned,
    Accepted,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    /// Given up after its maximum attempts.
    Dead,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Pending,
        TaskStatus::Assigned,
        TaskStatus::Accepted,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::TimedOut,
        TaskStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Assigned => "assigned",
            TaskStatus::Accepted => "accepted",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Cancelled
                | TaskStatus::TimedOut
                | TaskStatus::Dead
        )
    }

    /// Held by an agent: counts toward how busy it is, and holds a lease.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            TaskStatus::Assigned | TaskStatus::Accepted | TaskStatus::InProgress
        )
    }
}

/// A task as clients see it. `created_at` keeps the original's name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub payload: Option<Value>,
    pub priority: String,
    pub status: TaskStatus,
    pub assigner_id: Option<String>,
    pub assignee_id: Option<String>,
    pub capability: Option<String>,
    pub group_id: Option<String>,
    /// How many times it has been assigned.
    pub attempts: u32,
    pub max_attempts: u32,
    pub deadline: Option<String>,
    pub progress: Option<TaskProgress>,
    pub result: Option<Value>,
    pub error: Option<String>,
    #[serde(rename = "created_at")]
    pub created_at: String,
    pub updated_at: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskProgress {
    pub percent: u8,
    pub note: String,
}

/// One transition, as stored in a task's history and pushed to both sides.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskChange {
    pub status: TaskStatus,
    /// The agent that made the change, `admin`, or `hub` (deadlines,
    /// leases, reassignment).
    pub actor: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One agent as `agent_list` and `GET /api/agents` show it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentSummary {
    pub id: String,
    pub name: String,
    pub role: String,
    pub device: String,
    pub status: AgentStatus,
    pub capabilities: Vec<String>,
    /// ISO 8601; when the agent was last connected (now, if online).
    pub last_seen: String,
    /// ISO 8601; when the agent first registered (the original's `joinedAt`).
    pub joined_at: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Offline,
}

/// A group chat message (`type: "message"`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupMessage {
    pub id: String,
    pub seq: i64,
    pub from: String,
    pub from_name: String,
    pub group_id: String,
    pub content: String,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A direct message (`type: "direct_message"`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirectMessage {
    pub id: String,
    pub seq: i64,
    pub from: String,
    pub from_name: String,
    pub to: String,
    pub content: String,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A mention of the receiving agent in a group message (`type: "mention"`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mention {
    pub id: String,
    pub seq: i64,
    pub from: String,
    pub from_name: String,
    pub group_id: String,
    pub content: String,
    pub timestamp: String,
    /// The `id` of the group message that carried the mention.
    pub message_id: String,
}

/// Frames the hub sends to a client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    #[serde(rename_all = "camelCase")]
    Registered {
        agent_id: String,
        server_time: String,
        /// The protocol version the hub will speak on this connection.
        protocol: u32,
        /// v2: the hub will send everything after this sequence number.
        resume_from: i64,
        /// Present once, when this register claimed the agent id with a
        /// join or admin token: the agent's own credential. Store it and use
        /// it as the token from now on; it is never shown again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    AgentList {
        agents: Vec<AgentSummary>,
    },
    /// v2, to clients that registered with `presence: true`: the agents
    /// whose presence changed since the previous `presence` frame, each as
    /// it is now (`status` `online` or `offline`). Applied in order to the
    /// `agent_list` received at register, it keeps that list current.
    Presence {
        agents: Vec<AgentSummary>,
    },
    /// Legacy clients: what they missed while offline, oldest first.
    OfflineMessages {
        messages: Vec<Value>,
    },
    #[serde(rename_all = "camelCase")]
    System {
        content: String,
        group_id: String,
        timestamp: String,
    },
    Message(GroupMessage),
    Mention(Mention),
    DirectMessage(DirectMessage),
    /// A task for the receiving agent (its body as in the original, plus
    /// the [`TaskView`] fields).
    #[serde(rename_all = "camelCase")]
    TaskAssigned {
        seq: i64,
        task: Value,
    },
    /// A task the receiving agent assigned or holds changed.
    TaskUpdate {
        seq: i64,
        task: TaskView,
        change: TaskChange,
    },
    /// The answer to every task request: the task as it is now.
    TaskState {
        task: TaskView,
    },
    HeartbeatAck {
        timestamp: String,
    },
    /// The sender's confirmation: the message is durably stored as `seq`.
    #[serde(rename_all = "camelCase")]
    Sent {
        id: String,
        seq: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// True when `clientId` was seen before: nothing new was stored.
        duplicate: bool,
        /// `@names` in the message that matched no agent.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unknown_mentions: Vec<String>,
    },
    /// v2: the backlog has been sent; what follows is live.
    CaughtUp {
        seq: i64,
    },
    /// v2: membership changed as asked.
    #[serde(rename_all = "camelCase")]
    Joined {
        group_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Left {
        group_id: String,
    },
    Error(ErrorBody),
}

/// The body of an `error` frame and of every REST error (`{"error": ...}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// Stable, machine-readable; see [`ErrorCode`].
    pub code: ErrorCode,
    /// For people; wording may change.
    pub message: String,
}

/// Every error code the hub can answer with. Codes never change meaning.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame or body is not JSON.
    InvalidJson,
    /// A known frame type with missing or mistyped fields.
    InvalidFrame,
    /// A frame `type` the hub does not know.
    UnknownType,
    /// A frame other than `register` before `register`.
    NotRegistered,
    /// An id (agent, group, client id) too long, empty or with bad characters.
    InvalidId,
    /// A body or content over the configured limit.
    TooLarge,
    /// No token, or a token the hub does not know.
    Unauthorized,
    /// The token is valid but does not allow this.
    Forbidden,
    /// The agent id is claimed by another credential.
    AgentClaimed,
    UnknownGroup,
    UnknownAgent,
    NotFound,
    /// The thing to create exists already, or an id is reused for
    /// something else.
    Conflict,
    /// REST: the endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    /// A task operation not allowed in the task's current state (complete
    /// before accept, anything after a terminal state).
    InvalidTransition,
    /// No online agent has the asked capability, and none ever registered
    /// with it.
    UnknownCapability,
    /// A query parameter or field value out of range.
    InvalidArgument,
    /// Something failed inside the hub; details are in its log.
    Internal,
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(ErrorBody {
            code,
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_register_parses_with_extra_fields() {
        let frame: ClientFrame = serde_json::from_str(
            r#"{"type":"register","agent":{"id":"a","name":"A","role":"dev","device":"mac","os":"darwin"}}"#,
        )
        .unwrap();
        let ClientFrame::Register {
            agent, protocol, ..
        } = frame
        else {
            panic!("not a register")
        };
        assert_eq!(protocol, None);
        assert_eq!(agent.extra.get("os"), Some(&Value::from("darwin")));
    }

    #[test]
    fn heartbeat_needs_no_fields() {
        let frame: ClientFrame = serde_json::from_str(r#"{"type":"heartbeat"}"#).unwrap();
        assert_eq!(frame, ClientFrame::Heartbeat {});
    }

    #[test]
    fn server_frames_use_the_original_field_names() {
        let frame = ServerFrame::Message(GroupMessage {
            id: "m".into(),
            seq: 7,
            from: "a".into(),
            from_name: "A".into(),
            group_id: "g".into(),
            content: "hi".into(),
            timestamp: "t".into(),
            client_id: None,
        });
        let json = serde_json::to_value(&frame).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["fromName"], "A");
        assert_eq!(json["groupId"], "g");
        assert!(json.get("clientId").is_none());
    }
}
