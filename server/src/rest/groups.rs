//! `/api/groups`: creating and listing groups, their history, and posting to
//! them over REST.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Json, Path, Query};
use super::pagination::Page;
use super::rows::RawJson;
use crate::auth::Principal;
use crate::error::HubError;
use crate::hub::messaging::Sender;
use crate::hub::Hub;
use crate::ids;
use crate::store::groups::{self, GroupRecord};
use crate::store::{messages, now_iso, StoreError};
use clawbot_connector::protocol::ErrorCode;

/// `GET /api/groups`: every group (the original's snake_case rows).
#[utoipa::path(get, path = "/api/groups", tag = "groups",
    responses((status = 200, body = [GroupRecord])))]
pub async fn list(
    State(hub): State<Hub>,
    _caller: Caller,
) -> Result<Json<Vec<GroupRecord>>, HubError> {
    Ok(Json(hub.store().read(groups::list).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub owner_id: Option<String>,
    /// Optional id; by default `group-<random>`.
    pub id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub owner_id: Option<String>,
}

/// `POST /api/groups`: the original's body `{name, description, ownerId}`.
#[utoipa::path(post, path = "/api/groups", tag = "groups", request_body = CreateGroup,
    responses((status = 201, body = CreatedGroup), (status = 409, body = super::ErrorResponse)))]
pub async fn create(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<CreateGroup>,
) -> Result<(StatusCode, Json<CreatedGroup>), HubError> {
    if caller.0 == Principal::Join {
        return Err(HubError::new(
            ErrorCode::Forbidden,
            "a join token cannot create groups",
        ));
    }
    let id = body
        .id
        .clone()
        .unwrap_or_else(|| format!("group-{}", uuid::Uuid::new_v4().simple()));
    ids::check_id("id", &id)?;
    ids::check_label("name", &body.name)?;
    if body.name.trim().is_empty() {
        return Err(HubError::new(
            ErrorCode::InvalidArgument,
            "name must not be empty",
        ));
    }
    if body.description.len() > hub.config().max_body_bytes {
        return Err(HubError::new(
            ErrorCode::TooLarge,
            "description is over the size limit",
        ));
    }
    if let Some(owner) = &body.owner_id {
        ids::check_id("ownerId", owner)?;
    }
    let record = GroupRecord {
        id: id.clone(),
        name: body.name.clone(),
        description: body.description.clone(),
        owner_id: body.owner_id.clone(),
        created_at: now_iso(),
    };
    let created = hub
        .store()
        .writer
        .write(move |connection| groups::create(connection, &record))
        .await?;
    if !created {
        return Err(HubError::new(
            ErrorCode::Conflict,
            format!("group '{id}' exists already"),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedGroup {
            id,
            name: body.name,
            description: body.description,
            owner_id: body.owner_id,
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupDetail {
    #[serde(flatten)]
    pub group: GroupRecord,
    pub members: Vec<String>,
}

/// `GET /api/groups/:id`: a group and its members.
#[utoipa::path(get, path = "/api/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "group id")),
    responses((status = 200, body = GroupDetail), (status = 404, body = super::ErrorResponse)))]
pub async fn get(
    State(hub): State<Hub>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<GroupDetail>, HubError> {
    let wanted = id.clone();
    let found = hub
        .store()
        .read(move |connection| {
            Ok(match groups::get(connection, &wanted)? {
                Some(group) => Some((group, groups::members(connection, &wanted)?)),
                None => None,
            })
        })
        .await?;
    let (group, members) = found.ok_or_else(|| {
        HubError::new(ErrorCode::UnknownGroup, format!("there is no group '{id}'"))
    })?;
    Ok(Json(GroupDetail { group, members }))
}

/// `GET /api/groups/:id/messages`: a page of history, oldest first, in the
/// original's row shape plus `seq`. Without `before`/`after`, the latest.
#[utoipa::path(get, path = "/api/groups/{id}/messages", tag = "groups",
    params(("id" = String, Path, description = "group id"), Page),
    responses((status = 200, description = "message rows", body = [Object]),
              (status = 404, body = super::ErrorResponse)))]
pub async fn history(
    State(hub): State<Hub>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<RawJson, HubError> {
    let limit = page.limit()?;
    let (rows, _) = hub
        .store()
        .read_here(move |connection| {
            if !groups::exists(connection, &id)? {
                return Err(StoreError::rejected(
                    ErrorCode::UnknownGroup,
                    format!("there is no group '{id}'"),
                ));
            }
            messages::group_history_json(connection, &id, page.before, page.after, limit)
        })
        .await?;
    Ok(RawJson::new(rows))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostMessage {
    pub content: String,
    /// The sending agent; implied by an agent token.
    pub from: Option<String>,
    /// Makes a retry idempotent.
    pub client_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostedMessage {
    pub id: String,
    pub seq: i64,
    pub group_id: String,
    pub from: String,
    pub content: String,
    pub timestamp: String,
    pub duplicate: bool,
    pub unknown_mentions: Vec<String>,
}

/// `POST /api/groups/:id/messages`: posts as an agent, exactly as if it had
/// sent a `message` frame (stored, delivered, mentions resolved).
#[utoipa::path(post, path = "/api/groups/{id}/messages", tag = "groups",
    params(("id" = String, Path, description = "group id")), request_body = PostMessage,
    responses((status = 201, body = PostedMessage), (status = 404, body = super::ErrorResponse)))]
pub async fn post(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PostMessage>,
) -> Result<(StatusCode, Json<PostedMessage>), HubError> {
    let agent_id = caller.acting_agent(&hub, body.from.as_deref()).await?;
    let name = hub
        .agent_name(&agent_id)
        .ok_or_else(|| HubError::new(ErrorCode::UnknownAgent, format!("no agent '{agent_id}'")))?;
    let posted = hub
        .post_group_message(
            &Sender { id: agent_id, name },
            &id,
            body.content,
            body.client_id,
        )
        .await?;
    let event = posted.event;
    let status = if posted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(PostedMessage {
            id: event.id.clone(),
            seq: event.seq,
            group_id: event.group_id.clone().unwrap_or_default(),
            from: event.from_id.clone(),
            content: event.content.clone(),
            timestamp: event.created_at.clone(),
            duplicate: posted.duplicate,
            unknown_mentions: posted.unknown_mentions,
        }),
    ))
}
