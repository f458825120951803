//! `/api/tokens`: the admin mints join tokens and agent tokens, lists them
//! (never their secrets) and revokes them.

use axum::extract::State;
use axum::http::StatusCode;
use clawbot_connector::protocol::ErrorCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Json, Path};
use crate::auth;
use crate::error::HubError;
use crate::hub::Hub;
use crate::ids;
use crate::store::tokens::{self, TokenKind, TokenRecord};
use crate::store::StoreError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateToken {
    /// `join` (may register new agent ids) or `agent` (one agent's credential).
    pub kind: TokenKind,
    /// For `agent` tokens: the agent it belongs to.
    pub agent_id: Option<String>,
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The secret; shown only now.
    pub token: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// `POST /api/tokens` (admin): a new join or agent token.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = super::ErrorResponse)))]
pub async fn create(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), HubError> {
    caller.require_admin()?;
    ids::check_label("label", &body.label)?;
    let agent_id = match (body.kind, body.agent_id) {
        (TokenKind::Agent, Some(agent_id)) => {
            ids::check_id("agentId", &agent_id)?;
            Some(agent_id)
        }
        (TokenKind::Agent, None) => {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "an agent token needs agentId",
            ))
        }
        (TokenKind::Join, None) => None,
        (TokenKind::Join, Some(_)) => {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "a join token has no agentId",
            ))
        }
        (TokenKind::Admin, _) => {
            return Err(HubError::new(
                ErrorCode::InvalidArgument,
                "admin tokens are set with --token or generated at first start",
            ))
        }
    };
    let (token, record) = hub
        .store()
        .writer
        .write(move |connection| -> Result<_, StoreError> {
            if let Some(agent_id) = &agent_id {
                crate::store::agents::mark_claimed(connection, agent_id)?;
            }
            auth::mint(connection, body.kind, agent_id.as_deref(), &body.label)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, record })))
}

/// `GET /api/tokens` (admin): every token, without secrets.
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, body = [TokenRecord])))]
pub async fn list(
    State(hub): State<Hub>,
    caller: Caller,
) -> Result<Json<Vec<TokenRecord>>, HubError> {
    caller.require_admin()?;
    Ok(Json(hub.store().read(tokens::list).await?))
}

/// `DELETE /api/tokens/:id` (admin): revokes a token. Connections already
/// open stay open until they reconnect.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 404, body = super::ErrorResponse)))]
pub async fn revoke(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, HubError> {
    caller.require_admin()?;
    let wanted = id.clone();
    let deleted = hub
        .store()
        .writer
        .write(move |connection| tokens::delete(connection, &wanted))
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(HubError::new(
            ErrorCode::NotFound,
            format!("no token '{id}'"),
        ))
    }
}
