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

/// How much the WebSocket library reads from the socket at a time. It
/// allocates this much per connection up front and keeps it, so it is the
/// largest fixed cost of an idle connection (the default is 128 KiB). It is
/// only the chunk size: a bigger frame still arrives whole (the buffer
/// grows to the frame's declared length, up to the hard cap), in more
/// reads.
const READ_CHUNK_BYTES: usize = 2 * 1024;
/// Frames are gathered up to this many bytes before a write to the
/// socket (the write loop also flushes after each batch). The library's
/// buffer grows only as far as it is used, so this bounds what a
/// connection keeps after a burst, at the cost of one system call per
/// this many bytes.
const WRITE_CHUNK_BYTES: usize = 8 * 1024;

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
        .read_buffer_size(READ_CHUNK_BYTES)
        .write_buffer_size(WRITE_CHUNK_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        // The connection gets a task of its own, sized for what it holds
        // while it lives; the task axum runs this in (sized for the
        // handshake, over a KB) ends at once.
        .on_upgrade(move |socket| {
            tokio::spawn(connection::run(hub, socket, principal));
            std::future::ready(())
        })
}
