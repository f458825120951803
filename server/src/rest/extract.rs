//! Extractors whose rejections are our JSON errors, not axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use clawbot_connector::protocol::ErrorCode;

use crate::error::HubError;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(HubError))]
pub struct Json<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(HubError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(HubError))]
pub struct Path<T>(pub T);

impl From<JsonRejection> for HubError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection {
            JsonRejection::JsonSyntaxError(_) => ErrorCode::InvalidJson,
            JsonRejection::BytesRejection(_) => ErrorCode::TooLarge,
            _ => ErrorCode::InvalidArgument,
        };
        HubError::new(code, rejection.body_text())
    }
}

impl From<QueryRejection> for HubError {
    fn from(rejection: QueryRejection) -> Self {
        HubError::new(ErrorCode::InvalidArgument, rejection.body_text())
    }
}

impl From<PathRejection> for HubError {
    fn from(rejection: PathRejection) -> Self {
        HubError::new(ErrorCode::InvalidArgument, rejection.body_text())
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
