//! The one error type of hub operations, shared by the WebSocket and REST
//! sides: a stable code and a message for people. Internal details are
//! logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawbot_connector::protocol::{ErrorBody, ErrorCode, ServerFrame};

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct HubError {
    pub code: ErrorCode,
    pub message: String,
}

impl HubError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HubError {
            code,
            message: message.into(),
        }
    }

    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::error(self.code, self.message.clone())
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidFrame
            | ErrorCode::UnknownType
            | ErrorCode::InvalidId
            | ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::NotRegistered | ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::AgentClaimed => StatusCode::FORBIDDEN,
            ErrorCode::UnknownGroup | ErrorCode::UnknownAgent | ErrorCode::NotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::Conflict | ErrorCode::InvalidTransition => StatusCode::CONFLICT,
            ErrorCode::UnknownCapability => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for HubError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(code, message) => HubError { code, message },
            other => {
                tracing::error!(error = %other, "store failure");
                HubError::new(
                    ErrorCode::Internal,
                    "the hub could not store this; nothing was changed",
                )
            }
        }
    }
}

impl From<crate::ids::Invalid> for HubError {
    fn from((code, message): crate::ids::Invalid) -> Self {
        HubError { code, message }
    }
}

/// REST errors are `{"error": {"code", "message"}}` with a matching status.
impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body =
            serde_json::json!({ "error": ErrorBody { code: self.code, message: self.message } });
        (status, Json(body)).into_response()
    }
}
