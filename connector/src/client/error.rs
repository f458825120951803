//! What can go wrong for a client, as one typed error.

use crate::protocol::ErrorCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The hub URL cannot be used (bad scheme, no host).
    #[error("invalid hub URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The hub could not be reached (refused, unresolvable, timed out).
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The hub refused the token.
    #[error("the hub refused the token (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// The hub answered a request with an error frame or REST error.
    #[error("the hub refused: {message} ({code:?})")]
    Rejected { code: ErrorCode, message: String },
    /// The connection dropped before the hub answered (the client retries
    /// sends by itself; this is for requests that cannot be retried).
    #[error("the connection to the hub was lost")]
    Disconnected,
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// The hub broke the protocol (an unexpected or unreadable frame).
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether retrying the same thing later can succeed.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidUrl { .. }
                | ClientError::Unauthorized { .. }
                | ClientError::Closed
                | ClientError::Rejected { .. }
        )
    }
}
