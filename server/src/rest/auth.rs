//! Who a REST request speaks for, and what that allows.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use clawbot_connector::protocol::ErrorCode;

use crate::auth::Principal;
use crate::error::HubError;
use crate::hub::Hub;
use crate::store::tokens;

/// The token of `Authorization: Bearer <token>`, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The authenticated caller of a REST request.
pub struct Caller(pub Principal);

impl FromRequestParts<Hub> for Caller {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers);
        hub.auth()
            .authenticate(token.as_deref())
            .await
            .map(Caller)
            .map_err(|error| HubError::new(error.code(), error.message()))
    }
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), HubError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(HubError::new(
                ErrorCode::Forbidden,
                "this needs the admin token",
            ))
        }
    }

    /// Whether the caller may read and act as `agent_id`: the admin, the
    /// agent itself, or (in `--open` mode) anyone while nobody has claimed it.
    pub async fn require_agent(&self, hub: &Hub, agent_id: &str) -> Result<(), HubError> {
        match &self.0 {
            Principal::Admin => Ok(()),
            Principal::Agent(owner) if owner == agent_id => Ok(()),
            Principal::Anonymous => {
                let id = agent_id.to_owned();
                let claimed = hub
                    .store()
                    .read_here(move |connection| tokens::is_claimed(connection, &id))
                    .await?;
                if claimed {
                    Err(HubError::new(
                        ErrorCode::Unauthorized,
                        format!("agent '{agent_id}' is claimed; send its token"),
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(HubError::new(
                ErrorCode::Forbidden,
                format!("this token may not act as or read for agent '{agent_id}'"),
            )),
        }
    }

    /// The agent a write speaks for: an agent token's own id, or the id the
    /// body names when the caller may act as it.
    pub async fn acting_agent(&self, hub: &Hub, named: Option<&str>) -> Result<String, HubError> {
        let agent_id = match (&self.0, named) {
            (Principal::Agent(owner), None) => owner.clone(),
            (_, Some(named)) => named.to_owned(),
            (_, None) => {
                return Err(HubError::new(
                    ErrorCode::InvalidArgument,
                    "say which agent this is from",
                ))
            }
        };
        self.require_agent(hub, &agent_id).await?;
        Ok(agent_id)
    }
}
