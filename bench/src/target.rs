//! Where the load goes, and the only code that opens connections to it.
//!
//! A load generator pointed at the wrong address is a denial-of-service
//! tool, so the hub's host must be loopback (127.0.0.0/8, ::1, or
//! `localhost` resolving to those) unless the user names it with
//! `--allow-host`. Names are resolved once, here, and every WebSocket and
//! HTTP connection goes to the address that was checked: a later lookup
//! cannot send the load elsewhere.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use url::{Host, Url};

use crate::cli::{HubArgs, Protocol};

pub type Ws = WebSocketStream<TcpStream>;

/// How long connecting, the upgrade, or one REST call may take during
/// set-up before the run is abandoned.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A read buffer for connections that carry a lot. Not the library's
/// default of 128 KiB: tungstenite zero-fills the whole chunk before every
/// read, however little arrives, and with one frame per read at 25,000
/// DMs/s that memset was 37% of the generator's CPU; its sends fell
/// milliseconds behind schedule (references/BENCHMARKS.md, "The floor of
/// target 1"). 16 KiB still takes a burst in few reads.
pub const BIG_READ_BUFFER: usize = 16 * 1024;
/// A read buffer for connections that mostly sit idle: thousands of them
/// should not cost the generator gigabytes.
pub const SMALL_READ_BUFFER: usize = 8 * 1024;

#[derive(Clone)]
pub struct Target {
    inner: Arc<Inner>,
}

struct Inner {
    ws_url: Url,
    ws_addr: SocketAddr,
    http_base: String,
    http: reqwest::Client,
    admin_token: Option<String>,
    open: bool,
    protocol: Protocol,
    hub_pid: Option<u32>,
    /// Connections opened so far: picks each one's source address.
    opened: AtomicUsize,
}

impl Target {
    /// Checks both URLs and builds the HTTP client. Fails for any host that
    /// is not loopback or explicitly allowed.
    pub async fn new(args: &HubArgs) -> Result<Target> {
        let ws_url = Url::parse(&args.ws_url).context("--ws-url")?;
        if ws_url.scheme() != "ws" {
            bail!("--ws-url must be ws://... (TLS is not supported for load tests)");
        }
        let http_url = Url::parse(&args.http_url).context("--http-url")?;
        if http_url.scheme() != "http" {
            bail!("--http-url must be http://...");
        }
        let ws_addr = checked_addr(&ws_url, &args.allow_host).await?;
        let http_addr = checked_addr(&http_url, &args.allow_host).await?;

        let mut http = reqwest::Client::builder()
            .no_proxy()
            .timeout(SETUP_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        if let Some(Host::Domain(name)) = http_url.host() {
            // Pin the name to the address that passed the check.
            http = http.resolve(name, http_addr);
        }
        if args.token.is_none() && !args.open_hub {
            bail!("give the hub's admin token (--token or CLAWBOT_BENCH_TOKEN), or --open-hub for a hub without tokens");
        }
        Ok(Target {
            inner: Arc::new(Inner {
                ws_url,
                ws_addr,
                http_base: http_url.as_str().trim_end_matches('/').to_owned(),
                http: http.build().context("building the HTTP client")?,
                admin_token: args.token.clone().filter(|_| !args.open_hub),
                open: args.open_hub,
                protocol: args.protocol,
                hub_pid: args.hub_pid,
                opened: AtomicUsize::new(0),
            }),
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.inner.protocol
    }

    pub fn v2(&self) -> bool {
        self.inner.protocol == Protocol::V2
    }

    pub fn hub_pid(&self) -> Option<u32> {
        self.inner.hub_pid
    }

    /// The shared HTTP client (keep-alive pool to the checked address).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `base + path`, for REST calls.
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.http_base)
    }

    /// The admin token for REST reads, if the hub uses tokens.
    pub fn admin_token(&self) -> Option<&str> {
        self.inner.admin_token.as_deref()
    }

    /// Mints an agent token for `agent_id` (none for an open hub).
    pub async fn mint_agent_token(&self, agent_id: &str) -> Result<Option<String>> {
        if self.inner.open {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Minted {
            token: String,
        }
        let body = serde_json::json!({"kind": "agent", "agentId": agent_id, "label": "bench"});
        let response = self
            .inner
            .http
            .post(self.http_url("/api/tokens"))
            .bearer_auth(self.admin_token().unwrap_or_default())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .context("POST /api/tokens")?;
        let status = response.status();
        let text = response.text().await.context("reading POST /api/tokens")?;
        if status.as_u16() != 201 {
            bail!("POST /api/tokens for '{agent_id}' answered {status}: {text}");
        }
        let minted: Minted = serde_json::from_str(&text)
            .with_context(|| format!("POST /api/tokens answered {text}"))?;
        Ok(Some(minted.token))
    }

    /// Mints tokens for many agents, a few requests at a time, in order.
    pub async fn mint_agent_tokens(&self, agent_ids: &[String]) -> Result<Vec<Option<String>>> {
        // Enough in flight for the hub to batch its commits; more only
        // queues inside the hub.
        const IN_FLIGHT: usize = 64;
        stream::iter(agent_ids)
            .map(|id| self.mint_agent_token(id))
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// A TCP connection to the hub. Towards an IPv4 loopback hub each one
    /// comes from the next of 250 loopback source addresses: from one
    /// address, the kernel searches the 28,000 ephemeral ports for a free
    /// one on every connect, and with ~19,000 connections open that search
    /// took 80% of the generator's core (`__inet_hash_connect`), which then
    /// looked like a hub slow to register.
    async fn open_tcp(&self) -> std::io::Result<TcpStream> {
        let target = self.inner.ws_addr;
        let SocketAddr::V4(v4) = target else {
            return TcpStream::connect(target).await;
        };
        if !v4.ip().is_loopback() {
            return TcpStream::connect(target).await;
        }
        let n = self.inner.opened.fetch_add(1, Ordering::Relaxed);
        let source = std::net::Ipv4Addr::new(127, 0, 1, 1 + (n % 250) as u8);
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(target).await
    }

    /// Opens a WebSocket to the checked address, with the token in the
    /// `Authorization` header (kept out of URLs and so out of logs).
    pub async fn connect(&self, token: Option<&str>, read_buffer: usize) -> Result<Ws> {
        let connecting = async {
            let tcp = self
                .open_tcp()
                .await
                .with_context(|| format!("connecting to {}", self.inner.ws_addr))?;
            // Frames are small and latency is what we measure: no Nagle.
            tcp.set_nodelay(true)?;
            let mut request = self.inner.ws_url.as_str().into_client_request()?;
            if let Some(token) = token {
                request
                    .headers_mut()
                    .insert("Authorization", format!("Bearer {token}").parse()?);
            }
            let config = WebSocketConfig::default().read_buffer_size(read_buffer);
            let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .context("WebSocket upgrade")?;
            anyhow::Ok(ws)
        };
        tokio::time::timeout(SETUP_TIMEOUT, connecting)
            .await
            .map_err(|_| anyhow!("connecting took more than {SETUP_TIMEOUT:?}"))?
    }
}

/// The address to connect to for `url`, if its host may be loaded.
async fn checked_addr(url: &Url, allowed: &[String]) -> Result<SocketAddr> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| anyhow!("{url} has no port"))?;
    let host = url.host().ok_or_else(|| anyhow!("{url} has no host"))?;
    let host_text = match &host {
        Host::Domain(name) => name.to_string(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let explicitly_allowed = allowed.iter().any(|a| {
        a.trim_matches(|c| c == '[' || c == ']')
            .eq_ignore_ascii_case(&host_text)
    });
    let candidates: Vec<SocketAddr> = match host {
        Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Host::Domain(name) => {
            if !explicitly_allowed && !name.eq_ignore_ascii_case("localhost") {
                bail!(refusal(&host_text));
            }
            tokio::net::lookup_host((name, port))
                .await
                .with_context(|| format!("resolving {name}"))?
                .collect()
        }
    };
    if explicitly_allowed {
        return candidates
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{host_text} resolves to nothing"));
    }
    // Only loopback addresses, even for `localhost`: a hosts file that maps
    // it elsewhere must not redirect the load.
    candidates
        .into_iter()
        .find(|addr| is_loopback(addr.ip()))
        .ok_or_else(|| anyhow!(refusal(&host_text)))
}

fn refusal(host: &str) -> String {
    format!(
        "refusing to send load to '{host}': only loopback (127.0.0.0/8, ::1, localhost) \
         is allowed; pass --allow-host {host} if it is a test host of your own"
    )
}

/// 127.0.0.0/8 or ::1.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(url: &str, allowed: &[&str]) -> Result<SocketAddr> {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        checked_addr(&Url::parse(url).unwrap(), &allowed).await
    }

    #[tokio::test]
    async fn loopback_hosts_are_accepted() {
        assert!(check("ws://127.0.0.1:3002", &[]).await.is_ok());
        assert!(check("ws://127.8.9.10:3002", &[]).await.is_ok());
        assert!(check("ws://[::1]:3002", &[]).await.is_ok());
        let local = check("http://localhost:3001", &[]).await.unwrap();
        assert!(is_loopback(local.ip()));
    }

    #[tokio::test]
    async fn other_hosts_are_refused_unless_allowed() {
        for url in [
            "ws://10.0.0.1:3002",
            "ws://192.168.1.5:3002",
            "ws://0.0.0.0:3002",
            "ws://[::ffff:127.0.0.1]:3002",
            "ws://[fe80::1]:3002",
            "http://example.com:3001",
            "ws://128.0.0.1:3002",
        ] {
            let error = check(url, &[]).await.unwrap_err().to_string();
            assert!(error.contains("refusing"), "{url}: {error}");
        }
        let allowed = check("ws://10.200.0.2:3002", &["10.200.0.2"])
            .await
            .unwrap();
        assert_eq!(allowed, "10.200.0.2:3002".parse().unwrap());
        assert!(check("ws://[fd00::2]:3002", &["[fd00::2]"]).await.is_ok());
    }
}
