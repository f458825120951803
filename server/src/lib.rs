//! The ClawBot Network hub.
//!
//! # Layout
//!
//! - [`config`]: flags, environment and TOML file, merged into [`Config`].
//! - [`store`]: SQLite. One writer thread commits in groups
//!   ([`store::writer`]); reads run on a pool; one file per table.
//! - [`hub`]: live state. Sessions and their bounded outboxes, routing of
//!   committed events ([`Hub::dispatch`]), catch-up from the store, presence.
//!   The operations both sides share: messaging, membership, tasks.
//! - [`ws`]: the WebSocket side: upgrade and token check, the read and write
//!   loops of a connection, one handler per client frame.
//! - [`rest`]: the HTTP side: every route in [`rest::router`], OpenAPI.
//! - [`auth`], [`mentions`], [`ids`], [`error`]: tokens, `@name` matching,
//!   validation, and the one error type with stable codes.
//!
//! Wire types live in the `clawbot-connector` crate's `protocol` module,
//! shared with every client.

pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod ids;
pub mod mentions;
pub mod rest;
pub mod store;
pub mod ws;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use hub::Hub;

/// How long shutdown waits for connections to save their cursors.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The two listening sockets: REST (+ `/ws`) and the WebSocket port.
pub struct Listeners {
    pub http: TcpListener,
    pub ws: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        let http = listen(SocketAddr::new(config.bind, config.port))
            .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
        let ws = listen(SocketAddr::new(config.bind, config.ws_port))
            .with_context(|| format!("cannot listen on {}:{}", config.bind, config.ws_port))?;
        Ok(Listeners { http, ws })
    }
}

/// Connections the kernel may hold for us before we accept them. Tokio's
/// `TcpListener::bind` asks for 1,024; when a whole fleet reconnects at
/// once (after a hub restart, or 19,000 agents in the benchmark) the queue
/// overflows, the kernel drops SYNs, and each dropped client waits a
/// second or more to retry. The kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16 * 1024;

fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As TcpListener::bind does: a restarted hub can take its port back
    // while old connections are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Runs the hub until `shutdown` completes, then stops accepting, closes
/// every connection with 1001, commits what is pending, and returns.
/// `on_ready` gets the HTTP and WebSocket addresses once the hub serves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr, SocketAddr),
) -> anyhow::Result<()> {
    create_private_dir(&config.data_dir)?;
    let opened = store::Store::open(&config.data_dir, config.synchronous, config.commit_window)?;
    let store = opened.store;
    if config.admin_token.is_none() {
        if let Some(path) = auth::ensure_admin_token(&store, &config.data_dir).await? {
            tracing::warn!(
                "no admin token was configured, so one was created in {} (readable only by you); \
                 send it as 'Authorization: Bearer <token>', or set --token / CLAWBOT_TOKEN",
                path.display()
            );
        }
    }
    if config.open {
        tracing::warn!(
            "--open: clients without a token are accepted; use this only on a trusted network"
        );
    }
    let cancel = CancellationToken::new();
    let hub = Hub::start(config.clone(), store.clone(), cancel.clone()).await?;
    let (http_addr, ws_addr) = (listeners.http.local_addr()?, listeners.ws.local_addr()?);
    tracing::info!(http = %http_addr, ws = %ws_addr, data_dir = %config.data_dir.display(), "hub started");
    on_ready(http_addr, ws_addr);

    let ws_app = Router::new()
        .route("/", get(ws::upgrade))
        .fallback(get(ws::upgrade))
        .with_state(hub.clone());
    // Frames are small and latency matters: send each write at once
    // instead of letting Nagle's algorithm wait for the peer's ACK.
    let http_listener = listeners.http.tap_io(no_delay);
    let ws_listener = listeners.ws.tap_io(no_delay);
    let http = axum::serve(http_listener, rest::router(hub.clone()))
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    let ws =
        axum::serve(ws_listener, ws_app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    let signal = {
        let cancel = cancel.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            cancel.cancel();
            Ok::<(), std::io::Error>(())
        }
    };
    tokio::try_join!(http.into_future(), ws.into_future(), signal)?;

    // Connections close with 1001 on the cancel; wait for them to save
    // their cursors, then let the writer commit what is queued.
    hub.connections().close();
    if tokio::time::timeout(SHUTDOWN_GRACE, hub.connections().wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    store.writer.stop().await;
    tokio::task::spawn_blocking(move || opened.writer_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    tracing::info!("stopped; everything acknowledged is committed");
    Ok(())
}

fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// Creates the data directory readable by its owner only.
fn create_private_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))
}
