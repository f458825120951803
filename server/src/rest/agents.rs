//! `/api/agents`: who exists, who is online, and each agent's own DMs and
//! inbox.

use axum::extract::State;
use axum::http::StatusCode;
use clawbot_connector::protocol::{AgentSummary, ErrorCode};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Json, Path, Query};
use super::pagination::Page;
use super::rows::{self, RawJson};
use crate::error::HubError;
use crate::hub::Hub;
use crate::store::{agents, messages};

/// `GET /api/agents`: every known agent, online or offline, by id.
#[utoipa::path(get, path = "/api/agents", tag = "agents",
    responses((status = 200, body = [AgentSummary]), (status = 401, body = super::ErrorResponse)))]
pub async fn list(State(hub): State<Hub>, _caller: Caller) -> Json<Vec<AgentSummary>> {
    Json(hub.agent_summaries())
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDetail {
    #[serde(flatten)]
    pub agent: AgentSummary,
    /// The groups it is a member of.
    pub groups: Vec<String>,
}

/// `GET /api/agents/:id`: one agent with its groups.
#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentDetail), (status = 404, body = super::ErrorResponse)))]
pub async fn get(
    State(hub): State<Hub>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AgentDetail>, HubError> {
    let agent = hub
        .agent_summary(&id)
        .ok_or_else(|| HubError::new(ErrorCode::UnknownAgent, format!("no agent '{id}'")))?;
    let groups = hub
        .store()
        .read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT group_id FROM memberships WHERE agent_id = ?1 ORDER BY group_id",
            )?;
            let rows = statement.query_map([&id], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await?;
    Ok(Json(AgentDetail { agent, groups }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// Start after this sequence number; default: after what was marked read.
    pub after: Option<i64>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
}

/// `GET /api/agents/:id/inbox`: DMs and mentions addressed to the agent that
/// it has not marked read, oldest first, as the frames it would receive.
/// Only the agent itself (or the admin) may read it.
#[utoipa::path(get, path = "/api/agents/{id}/inbox", tag = "agents",
    params(("id" = String, Path, description = "agent id"), InboxQuery),
    responses((status = 200, description = "direct_message and mention frames", body = [Object]),
              (status = 403, body = super::ErrorResponse)))]
pub async fn inbox(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<InboxQuery>,
) -> Result<RawJson, HubError> {
    caller.require_agent(&hub, &id).await?;
    let limit = Page {
        before: None,
        after: None,
        limit: query.limit,
    }
    .limit()?;
    let events = hub
        .store()
        .read_here(move |connection| {
            let agent = agents::get(connection, &id)?.ok_or_else(|| {
                crate::store::StoreError::rejected(
                    ErrorCode::UnknownAgent,
                    format!("no agent '{id}'"),
                )
            })?;
            let after = query.after.unwrap_or(agent.inbox_read_seq);
            messages::inbox(connection, &id, after, limit)
        })
        .await?;
    Ok(rows::frames(&events))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MarkRead {
    /// Everything up to and including this sequence number is read.
    pub seq: i64,
}

/// `POST /api/agents/:id/inbox/read`: marks the inbox read up to `seq`.
#[utoipa::path(post, path = "/api/agents/{id}/inbox/read", tag = "agents",
    params(("id" = String, Path, description = "agent id")), request_body = MarkRead,
    responses((status = 204, description = "marked")))]
pub async fn mark_inbox_read(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<MarkRead>,
) -> Result<StatusCode, HubError> {
    caller.require_agent(&hub, &id).await?;
    hub.store()
        .writer
        .write(move |connection| {
            if !agents::exists(connection, &id)? {
                return Err(crate::store::StoreError::rejected(
                    ErrorCode::UnknownAgent,
                    format!("no agent '{id}'"),
                ));
            }
            // Marking beyond the newest event would hide what comes later.
            let head = messages::head_seq(connection)?;
            agents::advance_inbox_read(connection, &id, body.seq.min(head))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DmQuery {
    /// Only the conversation with this agent.
    pub with: Option<String>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
}

/// `GET /api/agents/:id/messages`: the agent's DMs, sent and received,
/// oldest first, paged by sequence number.
#[utoipa::path(get, path = "/api/agents/{id}/messages", tag = "agents",
    params(("id" = String, Path, description = "agent id"), DmQuery),
    responses((status = 200, description = "direct_message frames", body = [Object]),
              (status = 403, body = super::ErrorResponse)))]
pub async fn direct_messages(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<DmQuery>,
) -> Result<RawJson, HubError> {
    caller.require_agent(&hub, &id).await?;
    let page = Page {
        before: query.before,
        after: query.after,
        limit: query.limit,
    };
    let limit = page.limit()?;
    let events = hub
        .store()
        .read_here(move |connection| {
            messages::dm_history(
                connection,
                &id,
                query.with.as_deref(),
                page.before,
                page.after,
                limit,
            )
        })
        .await?;
    Ok(rows::frames(&events))
}
