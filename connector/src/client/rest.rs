//! The hub's REST API, for what the WebSocket does not carry: history and
//! the list of all agents.

use serde_json::Value;
use url::Url;

use super::ClientError;
use crate::protocol::{AgentSummary, ErrorBody, GroupMessage};

pub(super) struct Rest {
    base: Url,
    http: reqwest::Client,
}

/// A page of group history, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub messages: Vec<GroupMessage>,
}

impl HistoryPage {
    /// The seq to pass as `before` for the page older than this one.
    pub fn oldest_seq(&self) -> Option<i64> {
        self.messages.first().map(|m| m.seq)
    }
}

impl Rest {
    pub fn new(base: Url) -> Self {
        Rest {
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url =
            self.base
                .join(path.trim_start_matches('/'))
                .map_err(|e| ClientError::InvalidUrl {
                    url: path.to_owned(),
                    reason: e.to_string(),
                })?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|e| ClientError::Protocol(format!("unreadable REST answer: {e}")));
        }
        let error: Option<ErrorBody> = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| serde_json::from_value(body["error"].clone()).ok());
        Err(match (status.as_u16(), error) {
            (401, error) => ClientError::Unauthorized {
                status: 401,
                message: error.map(|e| e.message).unwrap_or(text),
            },
            (_, Some(error)) => ClientError::Rejected {
                code: error.code,
                message: error.message,
            },
            (status, None) => ClientError::Protocol(format!("HTTP {status}: {text}")),
        })
    }

    pub async fn history(
        &self,
        token: Option<&str>,
        group_id: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        let mut query = Vec::new();
        if let Some(before) = before {
            query.push(format!("before={before}"));
        }
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let path = format!(
            "api/groups/{}/messages?{}",
            url::form_urlencoded::byte_serialize(group_id.as_bytes()).collect::<String>(),
            query.join("&")
        );
        let rows = self.call(token, "GET", &path, None).await?;
        let messages = rows
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| GroupMessage {
                id: text(row, "id"),
                seq: row["seq"].as_i64().unwrap_or_default(),
                from: text(row, "from_id"),
                from_name: text(row, "from_name"),
                group_id: text(row, "group_id"),
                content: text(row, "content"),
                timestamp: text(row, "timestamp"),
                client_id: None,
            })
            .collect();
        Ok(HistoryPage { messages })
    }

    pub async fn agents(&self, token: Option<&str>) -> Result<Vec<AgentSummary>, ClientError> {
        let value = self.call(token, "GET", "api/agents", None).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

fn text(row: &Value, key: &str) -> String {
    row[key].as_str().unwrap_or_default().to_owned()
}
