//! History responses written straight from stored events (group pages are
//! written by the store, from the rows: `messages::group_history_json`).
//!
//! Going through `serde_json::Value` (a map per row, a `String` per field)
//! was the largest cost of a history request; these write the same JSON
//! without building it twice.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::store::event::Event;

/// A JSON body rendered already.
pub struct RawJson(String);

impl RawJson {
    pub fn new(json: String) -> Self {
        RawJson(json)
    }
}

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// Events as the frames a client would receive, in one JSON array. Each
/// event's frame is rendered once and shared with live delivery.
pub fn frames(events: &[Arc<Event>]) -> RawJson {
    let mut body = String::with_capacity(2 + events.len() * 256);
    body.push('[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(event.frame_text().as_str());
    }
    body.push(']');
    RawJson(body)
}
