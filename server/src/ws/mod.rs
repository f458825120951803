//! The WebSocket side: the upgrade (with its token check), the connection's
//! read and write loops, and one handler per client frame type.

mod connection;
mod handlers;
mod parse;
mod replies;

use std::collections::HashMap;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::error::HubError;
use crate::hub::Hub;
use crate::rest::auth::bearer_token;

/// `GET /` on the WebSocket port and `GET /ws` on the HTTP port.
///
/// The token comes from `Authorization: Bearer` or, for clients that cannot
/// set headers, `?token=`. A missing or unknown token is refused before the
/// upgrade with 401 and a JSON error.
pub async fn upgrade(
    State(hub): State<Hub>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let token = bearer_token(&headers).or_else(|| query.get("token").cloned());
    let principal = match hub.auth().authenticate(token.as_deref()).await {
        Ok(principal) => principal,
        Err(error) => return HubError::new(error.code(), error.message()).into_response(),
    };
    let limit = hub.config().max_frame_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| connection::run(hub, socket, principal))
}
