//! History responses written straight from stored events.
//!
//! Going through `serde_json::Value` (a map per row, a `String` per field)
//! was the largest cost of a history request; these write the same JSON
//! without building it twice.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::event::Event;

/// A JSON body rendered already.
pub struct RawJson(String);

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

/// The original hub's row shape for a group message, plus `seq`.
#[derive(Serialize)]
struct GroupRow<'a> {
    id: &'a str,
    seq: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    from_id: &'a str,
    from_name: &'a str,
    group_id: Option<&'a str>,
    content: &'a str,
    timestamp: &'a str,
    created_at: &'a str,
}

/// Group messages as the original's history rows.
pub fn group_rows(events: &[Arc<Event>]) -> RawJson {
    let rows: Vec<GroupRow<'_>> = events
        .iter()
        .map(|event| GroupRow {
            id: &event.id,
            seq: event.seq,
            kind: "message",
            from_id: &event.from_id,
            from_name: &event.from_name,
            group_id: event.group_id.as_deref(),
            content: &event.content,
            timestamp: &event.created_at,
            created_at: &event.created_at,
        })
        .collect();
    RawJson(serde_json::to_string(&rows).expect("rows always serialize"))
}
