//! How to reach the hub and who to be there.

use std::time::Duration;

use url::Url;

use super::error::ClientError;
use crate::protocol::AgentInfo;

/// Where the hub listens when nothing else is said: this machine, never a
/// remote address.
pub const DEFAULT_SERVER_URL: &str = "ws://127.0.0.1:3002";

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:3002`, or `ws(s)://host/ws` behind a single-port proxy.
    pub server_url: String,
    /// REST base URL; derived from `server_url` when absent (see
    /// [`ClientConfig::rest_url`]).
    pub rest_url: Option<String>,
    /// An agent token, join token or admin token.
    pub token: Option<String>,
    pub agent: AgentInfo,
    /// Groups to join on connect and after every reconnect.
    pub groups: Vec<String>,
    /// Resume after this sequence number on the first connect (from a
    /// previous run); later reconnects resume from what was delivered.
    pub last_seq: Option<i64>,
    /// Whether to follow who is online ([`crate::client::Client::online_agents`]
    /// and `Event::AgentList`). On by default. Each change costs the hub a
    /// frame to every follower, so agents on a big hub that do not care
    /// who is online should turn it off (and ask `GET /api/agents` when
    /// they need to know).
    pub presence: bool,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// The connection is considered dead after this long without any frame
    /// (the hub pings every 20 s by default).
    pub idle_timeout: Duration,
    /// Bounds of the reconnect backoff (exponential, with jitter).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl ClientConfig {
    pub fn new(server_url: impl Into<String>, agent: AgentInfo) -> Self {
        ClientConfig {
            server_url: server_url.into(),
            rest_url: None,
            token: None,
            agent,
            groups: Vec::new(),
            last_seq: None,
            presence: true,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The WebSocket URL, checked.
    pub fn ws_url(&self) -> Result<Url, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: self.server_url.clone(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(&self.server_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(invalid("the scheme must be ws:// or wss://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("there is no host"));
        }
        Ok(url)
    }

    /// The REST base URL: `rest_url` if set; otherwise the WebSocket URL
    /// with http(s), and port 3002 mapped to 3001 (the hub's two default
    /// ports) or a trailing `/ws` dropped (single-port proxies).
    pub fn rest_url(&self) -> Result<Url, ClientError> {
        if let Some(rest) = &self.rest_url {
            return Url::parse(rest).map_err(|e| ClientError::InvalidUrl {
                url: rest.clone(),
                reason: e.to_string(),
            });
        }
        let ws = self.ws_url()?;
        let scheme = if ws.scheme() == "wss" {
            "https"
        } else {
            "http"
        };
        // IPv6 hosts come back bracketed, ready to put in a URL.
        let host = ws.host_str().unwrap_or_default();
        let path = ws.path().trim_end_matches('/');
        let port = match (ws.port(), path.ends_with("/ws")) {
            (Some(3002), false) => Some(3001),
            (port, _) => port,
        };
        let base_path = path.strip_suffix("/ws").unwrap_or("");
        let text = match port {
            Some(port) => format!("{scheme}://{host}:{port}{base_path}/"),
            None => format!("{scheme}://{host}{base_path}/"),
        };
        Url::parse(&text).map_err(|e| ClientError::InvalidUrl {
            url: text,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(server: &str) -> String {
        ClientConfig::new(server, AgentInfo::new("a"))
            .rest_url()
            .unwrap()
            .to_string()
    }

    #[test]
    fn rest_url_follows_the_hub_layout() {
        assert_eq!(rest("ws://10.0.0.5:3002"), "http://10.0.0.5:3001/");
        assert_eq!(rest("wss://hub.example.com/ws"), "https://hub.example.com/");
        assert_eq!(rest("ws://127.0.0.1:4001/ws"), "http://127.0.0.1:4001/");
        assert_eq!(rest("ws://[::1]:3002/"), "http://[::1]:3001/");
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["http://x:3002", "not a url", "ws://"] {
            assert!(
                ClientConfig::new(url, AgentInfo::new("a"))
                    .ws_url()
                    .is_err(),
                "{url}"
            );
        }
    }
}
