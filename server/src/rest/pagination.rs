//! Cursor pagination by sequence number, shared by every history endpoint.

use clawbot_connector::protocol::ErrorCode;
use serde::Deserialize;

use crate::error::HubError;
use crate::store::messages::MAX_PAGE;

/// `?before=<seq>` for older pages, `?after=<seq>` for newer ones, and
/// `limit` (1 to 500, default 50). Pages are always oldest first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Only events with a smaller sequence number.
    pub before: Option<i64>,
    /// Only events with a larger sequence number (the first ones after it).
    pub after: Option<i64>,
    /// How many, 1 to 500; default 50.
    pub limit: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> Result<usize, HubError> {
        match self.limit {
            None => Ok(50),
            Some(limit) if (1..=MAX_PAGE as i64).contains(&limit) => Ok(limit as usize),
            Some(_) => Err(HubError::new(
                ErrorCode::InvalidArgument,
                format!("limit must be between 1 and {MAX_PAGE}"),
            )),
        }
    }
}
