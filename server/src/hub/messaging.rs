//! Storing and routing group messages, mentions and DMs.

use std::sync::Arc;

use clawbot_connector::protocol::ErrorCode;

use super::Hub;
use crate::error::HubError;
use crate::ids;
use crate::store::event::{Event, EventKind};
use crate::store::messages::{self, NewEvent};
use crate::store::writer::Guard;
use crate::store::{agents, groups, now_iso, StoreError};

/// Who a message is from.
#[derive(Debug, Clone)]
pub struct Sender {
    pub id: String,
    pub name: String,
}

/// A send whose write is queued; it resolves once committed.
pub type PendingPost =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Posted, HubError>> + Send>>;

/// The outcome of a send, for the sender's confirmation.
#[derive(Debug)]
pub struct Posted {
    pub event: Arc<Event>,
    /// The client id was seen before; nothing new was stored.
    pub duplicate: bool,
    pub unknown_mentions: Vec<String>,
}

impl Hub {
    /// Stores a group message and a mention for each agent it names, then
    /// routes them. Returns once the commit is durable.
    pub async fn post_group_message(
        &self,
        from: &Sender,
        group_id: &str,
        content: String,
        client_id: Option<String>,
    ) -> Result<Posted, HubError> {
        self.submit_group_message(from, group_id, content, client_id)
            .await?
            .await
    }

    /// Like [`Hub::post_group_message`], but returns as soon as the write is
    /// queued: the returned future resolves after the commit.
    pub async fn submit_group_message(
        &self,
        from: &Sender,
        group_id: &str,
        content: String,
        client_id: Option<String>,
    ) -> Result<PendingPost, HubError> {
        self.check_message(("groupId", group_id), &content, &client_id)?;
        let resolved = self.resolve_mentions(&content);
        let mentioned: Vec<String> = resolved
            .agents
            .into_iter()
            .filter(|agent| agent != &from.id)
            .collect();
        let mentions_anyone = !mentioned.is_empty();
        let from = from.clone();
        let group_id = group_id.to_owned();
        let hub = self.clone();
        let store = move |connection: &rusqlite::Connection| {
            if !groups::exists(connection, &group_id)? {
                return Err(StoreError::rejected(
                    ErrorCode::UnknownGroup,
                    format!("there is no group '{group_id}'; join or create it first"),
                ));
            }
            let same = Resend {
                kind: EventKind::Message,
                target: &group_id,
                content: &content,
            };
            if let Some(existing) = find_duplicate(connection, &from.id, &client_id, same)? {
                return Ok((vec![existing], true));
            }
            let now = now_iso();
            let message = messages::insert(
                connection,
                NewEvent {
                    kind: EventKind::Message,
                    from_id: from.id.clone(),
                    from_name: from.name.clone(),
                    group_id: Some(group_id.clone()),
                    recipient: None,
                    content: content.clone(),
                    client_id,
                    ref_id: None,
                    created_at: now.clone(),
                },
            )?;
            let mut events = vec![Arc::clone(&message)];
            for agent_id in mentioned {
                events.push(messages::insert(
                    connection,
                    NewEvent {
                        kind: EventKind::Mention,
                        from_id: from.id.clone(),
                        from_name: from.name.clone(),
                        group_id: Some(group_id.clone()),
                        recipient: Some(agent_id),
                        content: content.clone(),
                        client_id: None,
                        ref_id: Some(message.id.clone()),
                        created_at: now.clone(),
                    },
                )?);
            }
            Ok((events, false))
        };
        let dispatch = move |(events, duplicate): &(Vec<Arc<Event>>, bool)| {
            if !duplicate {
                hub.dispatch(events);
            }
        };
        // A message that mentions nobody is one INSERT.
        let guard = if mentions_anyone {
            Guard::Savepoint
        } else {
            Guard::SingleStatement
        };
        let committed = self
            .store()
            .writer
            .submit_reply_first(guard, store, dispatch)
            .await?;
        let unknown_mentions = resolved.unknown;
        Ok(Box::pin(async move {
            let (events, duplicate) = committed.await?;
            Ok(Posted {
                event: events.into_iter().next().expect("a message was stored"),
                duplicate,
                unknown_mentions,
            })
        }))
    }

    /// Stores a DM to a known agent and routes it.
    pub async fn send_direct_message(
        &self,
        from: &Sender,
        to: &str,
        content: String,
        client_id: Option<String>,
    ) -> Result<Posted, HubError> {
        self.submit_direct_message(from, to, content, client_id)
            .await?
            .await
    }

    /// Like [`Hub::send_direct_message`], returning once the write is queued.
    pub async fn submit_direct_message(
        &self,
        from: &Sender,
        to: &str,
        content: String,
        client_id: Option<String>,
    ) -> Result<PendingPost, HubError> {
        self.check_message(("to", to), &content, &client_id)?;
        let from = from.clone();
        let to = to.to_owned();
        let hub = self.clone();
        // Asked here, off the writer thread: the writer's lookup of the
        // recipient was 9% of its time under a DM load, and it is needed
        // only for an agent this hub has not seen register.
        let known = self.is_known_agent(&to);
        // One INSERT: no savepoint needed.
        let committed = self
            .store()
            .writer
            .submit_reply_first(
                Guard::SingleStatement,
                move |connection| {
                    if !known && !agents::exists(connection, &to)? {
                        return Err(StoreError::rejected(
                            ErrorCode::UnknownAgent,
                            format!("no agent '{to}' has ever registered"),
                        ));
                    }
                    let same = Resend {
                        kind: EventKind::DirectMessage,
                        target: &to,
                        content: &content,
                    };
                    if let Some(existing) = find_duplicate(connection, &from.id, &client_id, same)?
                    {
                        return Ok((existing, true));
                    }
                    let event = messages::insert(
                        connection,
                        NewEvent {
                            kind: EventKind::DirectMessage,
                            from_id: from.id,
                            from_name: from.name,
                            group_id: None,
                            recipient: Some(to),
                            content,
                            client_id,
                            ref_id: None,
                            created_at: now_iso(),
                        },
                    )?;
                    Ok((event, false))
                },
                move |(event, duplicate)| {
                    if !duplicate {
                        hub.dispatch(std::slice::from_ref(event));
                    }
                },
            )
            .await?;
        Ok(Box::pin(async move {
            let (event, duplicate) = committed.await?;
            Ok(Posted {
                event,
                duplicate,
                unknown_mentions: Vec::new(),
            })
        }))
    }
}

impl Hub {
    /// The checks every message passes before it is queued: where it goes,
    /// its size, and the shape of its client id.
    fn check_message(
        &self,
        (what, target): (&str, &str),
        content: &str,
        client_id: &Option<String>,
    ) -> Result<(), HubError> {
        ids::check_id(what, target)?;
        ids::check_content(content, self.config().max_body_bytes)?;
        if let Some(client_id) = client_id {
            ids::check_client_id(client_id)?;
        }
        Ok(())
    }
}

/// What a resend must match to count as the same message.
struct Resend<'a> {
    kind: EventKind,
    /// The group of a message, the recipient of a DM.
    target: &'a str,
    content: &'a str,
}

/// The event this sender already stored under `client_id`, if any. A
/// client id reused for a different message is a conflict, not a silent
/// duplicate.
fn find_duplicate(
    connection: &rusqlite::Connection,
    from_id: &str,
    client_id: &Option<String>,
    resend: Resend<'_>,
) -> Result<Option<Arc<Event>>, StoreError> {
    let Some(client_id) = client_id else {
        return Ok(None);
    };
    let Some(existing) = messages::find_by_client_id(connection, from_id, client_id)? else {
        return Ok(None);
    };
    let target = match existing.kind {
        EventKind::DirectMessage => existing.recipient.as_deref(),
        _ => existing.group_id.as_deref(),
    };
    if existing.kind != resend.kind
        || target != Some(resend.target)
        || existing.content != resend.content
    {
        return Err(StoreError::rejected(
            ErrorCode::Conflict,
            format!("clientId '{client_id}' was already used for a different message"),
        ));
    }
    Ok(Some(Arc::new(existing)))
}
