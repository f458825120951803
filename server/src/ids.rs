//! Validation of identifiers and text a client sends. Identifiers are only
//! ever bound as SQL parameters and never used to build a path, but they
//! still get a strict shape so that logs, URLs and mentions stay sane.

use clawbot_connector::protocol::ErrorCode;

pub const MAX_ID_LEN: usize = 64;
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_CLIENT_ID_LEN: usize = 128;
pub const MAX_TAG_LEN: usize = 32;
pub const MAX_TAGS: usize = 32;

/// A validation failure: the stable code and what to tell the client.
pub type Invalid = (ErrorCode, String);

/// Agent and group ids: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit (ids like `clawdbot-Mac-mini.local` are common).
pub fn check_id(what: &str, id: &str) -> Result<(), Invalid> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err((
            ErrorCode::InvalidId,
            format!(
                "{what} must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-', \
                 starting with a letter or digit"
            ),
        ))
    }
}

/// Client message ids: 1 to 128 printable ASCII characters, no spaces.
pub fn check_client_id(id: &str) -> Result<(), Invalid> {
    if !id.is_empty() && id.len() <= MAX_CLIENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err((
            ErrorCode::InvalidId,
            format!("clientId must be 1 to {MAX_CLIENT_ID_LEN} printable ASCII characters"),
        ))
    }
}

/// Display names, roles and devices: any script, no control characters.
pub fn check_label(what: &str, text: &str) -> Result<(), Invalid> {
    if text.chars().count() <= MAX_NAME_CHARS && !text.chars().any(char::is_control) {
        Ok(())
    } else {
        Err((
            ErrorCode::InvalidFrame,
            format!(
                "{what} must be at most {MAX_NAME_CHARS} characters with no control characters"
            ),
        ))
    }
}

pub fn check_capabilities(tags: &[String]) -> Result<(), Invalid> {
    let valid = tags.len() <= MAX_TAGS
        && tags.iter().all(|tag| {
            !tag.is_empty()
                && tag.len() <= MAX_TAG_LEN
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        });
    if valid {
        Ok(())
    } else {
        Err((
            ErrorCode::InvalidFrame,
            format!(
                "capabilities must be at most {MAX_TAGS} tags of 1 to {MAX_TAG_LEN} characters \
                 of A-Z, a-z, 0-9, '.', '_', '-' or ':'"
            ),
        ))
    }
}

pub fn check_content(content: &str, max_bytes: usize) -> Result<(), Invalid> {
    if content.is_empty() {
        return Err((ErrorCode::InvalidFrame, "content must not be empty".into()));
    }
    if content.len() > max_bytes {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "content is {} bytes; the limit is {max_bytes}",
                content.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("id", "clawdbot-Mac-mini.local").is_ok());
        assert!(check_id("id", "group-1699999999999").is_ok());
        for bad in [
            "",
            "-x",
            "../etc",
            "a b",
            "x'; DROP",
            "老邢",
            &"a".repeat(65),
        ] {
            assert!(check_id("id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_allow_any_script() {
        assert!(check_label("name", "老邢").is_ok());
        assert!(check_label("name", "bad\nname").is_err());
    }
}
