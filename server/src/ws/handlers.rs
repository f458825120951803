//! What the hub does with each frame a client sends.

use std::sync::Arc;

use clawbot_connector::protocol::{AgentInfo, ClientFrame, ErrorCode, ServerFrame, PROTOCOL_V2};

use super::parse::parse;
use super::replies::Replies;
use crate::auth::{self, Principal};
use crate::error::HubError;
use crate::hub::messaging::{PendingPost, Sender};
use crate::hub::outbox::Outbox;
use crate::hub::session::{catch_up, Session};
use crate::hub::tasks::{Actor, TaskOp};
use crate::hub::{render, Hub};
use crate::ids;
use crate::store::tokens::{self, TokenKind};
use crate::store::{agents, messages, now_iso, StoreError};

/// The state of one connection as frames arrive.
pub struct Connection {
    hub: Hub,
    principal: Principal,
    outbox: Arc<Outbox>,
    conn_id: u64,
    /// Set by a successful `register`.
    session: Option<Arc<Session>>,
    /// Answers, in the order of the frames they answer.
    replies: Replies,
}

impl Connection {
    pub fn new(hub: Hub, principal: Principal, outbox: Arc<Outbox>) -> Self {
        let conn_id = hub.next_conn_id();
        Connection {
            hub,
            principal,
            replies: Replies::new(Arc::clone(&outbox)),
            outbox,
            conn_id,
            session: None,
        }
    }

    pub fn agent_id(&self) -> Option<&str> {
        self.session
            .as_ref()
            .map(|session| session.agent_id.as_str())
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Called once the socket is gone.
    pub async fn finish(self) {
        if let Some(session) = &self.session {
            self.hub.detach(session).await;
        }
    }

    fn reply(&self, frame: &ServerFrame) {
        self.replies.ready(render(frame));
    }

    pub fn reply_error(&self, error: &HubError) {
        self.reply(&error.to_frame());
    }

    pub async fn handle_text(&mut self, text: &str) {
        let result = match parse(text) {
            Err(error) => Err(error),
            Ok(ClientFrame::Register {
                agent,
                protocol,
                last_seq,
                presence,
            }) => self.register(agent, protocol, last_seq, presence).await,
            Ok(frame) => match self.session.clone() {
                None => Err(HubError::new(
                    ErrorCode::NotRegistered,
                    "send 'register' before anything else",
                )),
                Some(session) => self.handle_registered(&session, frame).await,
            },
        };
        if let Err(error) = result {
            self.reply_error(&error);
        }
    }

    async fn register(
        &mut self,
        agent: AgentInfo,
        protocol: Option<u32>,
        last_seq: Option<i64>,
        presence: Option<bool>,
    ) -> Result<(), HubError> {
        if let Some(session) = &self.session {
            return Err(HubError::new(
                ErrorCode::InvalidFrame,
                format!(
                    "this connection is already registered as '{}'; open a new connection to register again",
                    session.agent_id
                ),
            ));
        }
        ids::check_id("agent.id", &agent.id)?;
        let name = agent
            .name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or(&agent.id)
            .to_owned();
        ids::check_label("agent.name", &name)?;
        ids::check_label("agent.role", agent.role.as_deref().unwrap_or(""))?;
        ids::check_label("agent.device", agent.device.as_deref().unwrap_or(""))?;
        ids::check_capabilities(&agent.capabilities)?;
        if let Principal::Agent(owner) = &self.principal {
            if owner != &agent.id {
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "this token is the credential of agent '{owner}', not '{}'",
                        agent.id
                    ),
                ));
            }
        }
        if let Some(other) = self.hub.name_is_anothers_id(&agent.id, &name) {
            return Err(HubError::new(
                ErrorCode::Conflict,
                format!("the name '{name}' is the id of agent '{other}'; choose another"),
            ));
        }
        // Anything below 2 (or nothing) is the original protocol.
        let protocol = if protocol.unwrap_or(1) >= PROTOCOL_V2 {
            PROTOCOL_V2
        } else {
            1
        };
        let v2 = protocol == PROTOCOL_V2;
        let principal = self.principal.clone();
        let profile = agent.clone();
        let registered_name = name.clone();
        let (record, credential, head) = self
            .hub
            .store()
            .writer
            .write(move |connection| {
                let claims = matches!(principal, Principal::Admin | Principal::Join);
                let owns = matches!(principal, Principal::Agent(_));
                if !owns && tokens::is_claimed(connection, &profile.id)? {
                    return Err(StoreError::rejected(
                        ErrorCode::AgentClaimed,
                        format!(
                            "agent id '{}' is claimed; connect with that agent's own token",
                            profile.id
                        ),
                    ));
                }
                if claims && !v2 {
                    // A legacy client would drop the credential a claim
                    // issues and be locked out of its own id on reconnect.
                    return Err(StoreError::rejected(
                        ErrorCode::Forbidden,
                        format!(
                            "clients of the original protocol must connect with the agent's own token; \
                             the admin can make one with POST /api/tokens {{\"kind\":\"agent\",\"agentId\":\"{}\"}}",
                            profile.id
                        ),
                    ));
                }
                let record = agents::upsert(connection, &profile, &registered_name, &now_iso())?;
                if claims || owns {
                    agents::mark_claimed(connection, &profile.id)?;
                }
                let credential = if claims {
                    let (token, _) = auth::mint(
                        connection,
                        TokenKind::Agent,
                        Some(&profile.id),
                        "issued at first register",
                    )?;
                    Some(token)
                } else {
                    None
                };
                Ok((record, credential, messages::head_seq(connection)?))
            })
            .await?;
        self.hub.remember_agent(&record);
        // Where the new connection starts depends on what the old one
        // confirmed, unless a v2 client says where it left off.
        if !(v2 && last_seq.is_some()) {
            self.hub.retire(&record.id).await;
        }

        let session = Arc::new(Session {
            conn_id: self.conn_id,
            agent_id: record.id.clone(),
            name: record.name.clone(),
            protocol,
            outbox: Arc::clone(&self.outbox),
            registered_at_seq: head,
            // Legacy clients depend on `agent_list`; v2 clients opt in.
            follows_presence: !v2 || presence == Some(true),
        });
        let unsaved_cursor = self.hub.attach(Arc::clone(&session));
        // Resume where the agent left off: a v2 client says where; for a
        // legacy client it is what was delivered, including by a connection
        // that this one replaces or that just ended, whose cursor may not be
        // saved yet.
        let resume_from = match (protocol, last_seq) {
            (PROTOCOL_V2, Some(seq)) => seq.clamp(0, head),
            _ => unsaved_cursor.max(record.cursor_seq),
        };
        self.outbox.start_at(resume_from);
        if protocol < PROTOCOL_V2 {
            self.outbox
                .checkpoints
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.reply(&ServerFrame::Registered {
            agent_id: record.id.clone(),
            server_time: now_iso(),
            protocol,
            resume_from,
            credential,
        });
        // Who is online, now rather than at the next presence broadcast;
        // later broadcasts change this list. Rendering it costs O(online),
        // which is why only followers get it.
        if session.follows_presence {
            self.replies.ready(self.hub.agent_list_frame());
        }
        tracing::info!(agent = %record.id, protocol, resume_from, "registered");
        // Catch-up starts only once `registered` is in the outbox.
        let (hub, catching_up) = (self.hub.clone(), Arc::clone(&session));
        self.replies.then(Box::new(move || {
            tokio::spawn(catch_up(hub, catching_up));
        }));
        self.session = Some(session);
        Ok(())
    }

    async fn handle_registered(
        &self,
        session: &Session,
        frame: ClientFrame,
    ) -> Result<(), HubError> {
        let sender = Sender {
            id: session.agent_id.clone(),
            name: session.name.clone(),
        };
        match frame {
            ClientFrame::Register { .. } => unreachable!("handled before registration"),
            ClientFrame::JoinGroup { group_id } => {
                self.hub
                    .join_group(&session.agent_id, &session.name, &group_id)
                    .await?;
                if session.is_v2() {
                    self.reply(&ServerFrame::Joined { group_id });
                }
            }
            ClientFrame::LeaveGroup { group_id } => {
                self.hub.leave_group(&session.agent_id, &group_id).await?;
                if session.is_v2() {
                    self.reply(&ServerFrame::Left { group_id });
                }
            }
            ClientFrame::Message {
                group_id,
                content,
                client_id,
                ..
            } => {
                let pending = self
                    .hub
                    .submit_group_message(&sender, &group_id, content, client_id)
                    .await?;
                self.confirm_later(pending);
            }
            ClientFrame::DirectMessage {
                to,
                content,
                client_id,
                ..
            } => {
                let pending = self
                    .hub
                    .submit_direct_message(&sender, &to, content, client_id)
                    .await?;
                self.confirm_later(pending);
            }
            ClientFrame::Heartbeat {} => self.reply(&ServerFrame::HeartbeatAck {
                timestamp: now_iso(),
            }),
            ClientFrame::Ack { seq } => session.outbox.confirm(seq),
            ClientFrame::AssignTask(request) => {
                if request
                    .assigner_id
                    .as_ref()
                    .is_some_and(|assigner| assigner != &session.agent_id)
                {
                    return Err(HubError::new(
                        ErrorCode::Forbidden,
                        "assignerId must be the registered agent",
                    ));
                }
                let body = match serde_json::to_value(&request) {
                    Ok(serde_json::Value::Object(body)) => body,
                    _ => serde_json::Map::new(),
                };
                let (task, _) = self
                    .hub
                    .create_task(Some(session.agent_id.clone()), request, body)
                    .await?;
                self.reply(&ServerFrame::TaskState { task });
            }
            ClientFrame::TaskAccept { task_id } => {
                self.task_op(session, &task_id, TaskOp::Accept).await?
            }
            ClientFrame::TaskProgress {
                task_id,
                percent,
                note,
            } => {
                self.task_op(session, &task_id, TaskOp::Progress { percent, note })
                    .await?
            }
            ClientFrame::TaskComplete { task_id, result } => {
                self.task_op(session, &task_id, TaskOp::Complete { result })
                    .await?
            }
            ClientFrame::TaskFail { task_id, error } => {
                self.task_op(session, &task_id, TaskOp::Fail { error })
                    .await?
            }
            ClientFrame::TaskCancel { task_id } => {
                self.task_op(session, &task_id, TaskOp::Cancel).await?
            }
        }
        Ok(())
    }

    async fn task_op(&self, session: &Session, task_id: &str, op: TaskOp) -> Result<(), HubError> {
        let task = self
            .hub
            .change_task(Actor::Agent(session.agent_id.clone()), task_id, op)
            .await?;
        self.reply(&ServerFrame::TaskState { task });
        Ok(())
    }

    /// The sender's confirmation (or error), sent once the commit is done;
    /// the connection reads on meanwhile, and replies keep their order.
    fn confirm_later(&self, pending: PendingPost) {
        self.replies.later(Box::pin(async move {
            let frame = match pending.await {
                Ok(posted) => ServerFrame::Sent {
                    id: posted.event.id.clone(),
                    seq: posted.event.seq,
                    client_id: posted.event.client_id.clone(),
                    duplicate: posted.duplicate,
                    unknown_mentions: posted.unknown_mentions,
                },
                Err(error) => error.to_frame(),
            };
            render(&frame)
        }));
    }
}
