//! Turning a text frame into a [`ClientFrame`], with an error code that says
//! exactly what was wrong: not JSON, an unknown `type`, or bad fields.

use clawbot_connector::protocol::{ClientFrame, ErrorCode, CLIENT_FRAME_TYPES};
use serde_json::Value;

use crate::error::HubError;

pub fn parse(text: &str) -> Result<ClientFrame, HubError> {
    // Nearly every frame is valid: parse it straight into its type, and
    // only for a bad one take the slower way that names what is wrong.
    match serde_json::from_str(text) {
        Ok(frame) => Ok(frame),
        Err(_) => diagnose(text),
    }
}

/// Parses a frame that failed to parse directly, step by step, for an
/// error with the right code.
fn diagnose(text: &str) -> Result<ClientFrame, HubError> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        HubError::new(ErrorCode::InvalidJson, format!("not valid JSON: {error}"))
    })?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err(HubError::new(
            ErrorCode::InvalidFrame,
            "a frame must be a JSON object with a string 'type'",
        ));
    };
    if !CLIENT_FRAME_TYPES.contains(&kind) {
        return Err(HubError::new(
            ErrorCode::UnknownType,
            format!("unknown frame type '{}'", truncate(kind, 40)),
        ));
    }
    let kind = kind.to_owned();
    serde_json::from_value(value).map_err(|error| {
        HubError::new(
            ErrorCode::InvalidFrame,
            format!("bad '{kind}' frame: {error}"),
        )
    })
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse(text).unwrap_err().code
    }

    #[test]
    fn error_codes() {
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidFrame);
        assert_eq!(code(r#"{"type":"fly"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"message","groupId":"g"}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code(r#"{"type":"message","groupId":7,"content":"x"}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(code(r#"{"type":"register"}"#), ErrorCode::InvalidFrame);
    }

    #[test]
    fn legacy_message_with_timestamp() {
        let frame =
            parse(r#"{"type":"message","groupId":"g","content":"hi","timestamp":"2024-01-01"}"#);
        assert!(frame.is_ok());
    }
}
