//! Settings: command-line flags, their environment variables, and an
//! optional TOML file. Flags and environment win over the file; the file wins
//! over the defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// The ClawBot Network hub: WebSocket + REST, SQLite embedded.
#[derive(Debug, Parser, Default)]
#[command(name = "clawbot-hub", version, about)]
pub struct Cli {
    /// HTTP/REST port (WebSocket also at /ws on this port). Default 3001.
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// WebSocket port, path `/`, as the original hub. Default 3002.
    #[arg(long, env = "WS_PORT")]
    pub ws_port: Option<u16>,
    /// Address to listen on. Default 0.0.0.0.
    #[arg(long, env = "CLAWBOT_BIND")]
    pub bind: Option<IpAddr>,
    /// Where the SQLite database and the generated admin token live.
    #[arg(long, env = "CLAWBOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The admin token. When absent, one is generated on first start and
    /// stored in `<data dir>/admin-token`.
    #[arg(long, env = "CLAWBOT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Accept clients without a token (trusted LANs only).
    #[arg(long, env = "CLAWBOT_OPEN")]
    pub open: bool,
    /// A TOML file with any of these settings (snake_case keys).
    #[arg(long, env = "CLAWBOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest message content, in bytes. Default 65536.
    #[arg(long, env = "CLAWBOT_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds between WebSocket pings the hub sends. Default 20.
    #[arg(long, env = "CLAWBOT_PING_INTERVAL_SECS")]
    pub ping_interval_secs: Option<u64>,
    /// Seconds of silence (no frame, no pong) before the hub drops a
    /// connection. Default 60.
    #[arg(long, env = "CLAWBOT_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Frames queued for one client before it is disconnected as too slow.
    /// Default 8192.
    #[arg(long, env = "CLAWBOT_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Bytes queued for one client before it is disconnected as too slow.
    /// Default 33554432 (32 MiB).
    #[arg(long, env = "CLAWBOT_MAX_QUEUE_BYTES")]
    pub max_queue_bytes: Option<usize>,
    /// The URL machines use to reach this hub (e.g. behind a proxy:
    /// https://hub.example.com); the installer is filled in with it.
    /// Default: taken from each request's Host header.
    #[arg(long, env = "CLAWBOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where the wheels offered at /downloads/ are. Default
    /// `<data dir>/downloads`.
    #[arg(long, env = "CLAWBOT_DOWNLOADS_DIR")]
    pub downloads_dir: Option<PathBuf>,
    /// SQLite `synchronous` setting: full (default) or normal.
    #[arg(long, env = "CLAWBOT_SYNCHRONOUS")]
    pub synchronous: Option<Synchronous>,
    /// While the hub stores messages faster than one commit at a time, the
    /// least time between the starts of two commits, in microseconds: each
    /// commit then carries more messages and the disk gets fewer syncs. An
    /// agent alone on the hub never waits for it. 0 turns it off; at most
    /// 100000. Default 1000.
    #[arg(long, env = "CLAWBOT_COMMIT_WINDOW_US")]
    pub commit_window_us: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    port: Option<u16>,
    ws_port: Option<u16>,
    bind: Option<IpAddr>,
    data_dir: Option<PathBuf>,
    token: Option<String>,
    open: Option<bool>,
    max_body_bytes: Option<usize>,
    ping_interval_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_queue: Option<usize>,
    max_queue_bytes: Option<usize>,
    public_url: Option<String>,
    downloads_dir: Option<PathBuf>,
    synchronous: Option<Synchronous>,
    commit_window_us: Option<u64>,
}

/// The longest commit window accepted: every message stored under load may
/// wait that long before its commit begins.
const MAX_COMMIT_WINDOW: Duration = Duration::from_millis(100);

/// Settings after flags, environment, file and defaults are merged.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub ws_port: u16,
    pub bind: IpAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub open: bool,
    pub max_body_bytes: usize,
    /// Frames larger than this close the connection with 1009. Derived from
    /// `max_body_bytes` so that a frame carrying a maximal body and its JSON
    /// escaping still fits.
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub max_queue: usize,
    pub max_queue_bytes: usize,
    pub public_url: Option<String>,
    pub downloads_dir: PathBuf,
    pub synchronous: Synchronous,
    pub commit_window: Duration,
}

impl Config {
    /// Defaults suitable for tests: loopback, port 0, the given data dir.
    pub fn for_tests(data_dir: &Path) -> Self {
        let mut config = Cli::default().resolve_with(FileConfig::default());
        config.bind = IpAddr::from([127, 0, 0, 1]);
        config.port = 0;
        config.ws_port = 0;
        config.data_dir = data_dir.to_path_buf();
        config
    }
}

impl Cli {
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let config = self.resolve_with(file);
        if let Some(url) = &config.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                anyhow::bail!("--public-url must start with http:// or https://");
            }
        }
        if config.ping_interval.is_zero()
            || config.max_queue == 0
            || config.max_body_bytes == 0
            || config.max_queue_bytes < config.max_frame_bytes
        {
            anyhow::bail!(
                "ping interval, max queue and max body bytes must be greater than zero, \
                 and max queue bytes at least the largest frame"
            );
        }
        if config.commit_window > MAX_COMMIT_WINDOW {
            anyhow::bail!(
                "the commit window is at most {} microseconds: every message \
                 stored under load may wait that long",
                MAX_COMMIT_WINDOW.as_micros()
            );
        }
        if config.idle_timeout <= config.ping_interval {
            anyhow::bail!("idle timeout must be longer than the ping interval");
        }
        Ok(config)
    }

    fn resolve_with(self, file: FileConfig) -> Config {
        let max_body_bytes = self
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(64 * 1024);
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir);
        Config {
            port: self.port.or(file.port).unwrap_or(3001),
            ws_port: self.ws_port.or(file.ws_port).unwrap_or(3002),
            bind: self
                .bind
                .or(file.bind)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            downloads_dir: self
                .downloads_dir
                .or(file.downloads_dir)
                .unwrap_or_else(|| data_dir.join("downloads")),
            data_dir,
            public_url: self
                .public_url
                .or(file.public_url)
                .map(|url| url.trim_end_matches('/').to_owned()),
            admin_token: self.token.or(file.token).filter(|t| !t.is_empty()),
            open: self.open || file.open.unwrap_or(false),
            max_body_bytes,
            max_frame_bytes: max_body_bytes * 6 + 64 * 1024,
            ping_interval: Duration::from_secs(
                self.ping_interval_secs
                    .or(file.ping_interval_secs)
                    .unwrap_or(20),
            ),
            idle_timeout: Duration::from_secs(
                self.idle_timeout_secs
                    .or(file.idle_timeout_secs)
                    .unwrap_or(60),
            ),
            max_queue: self.max_queue.or(file.max_queue).unwrap_or(8192),
            max_queue_bytes: self
                .max_queue_bytes
                .or(file.max_queue_bytes)
                .unwrap_or(32 * 1024 * 1024),
            synchronous: self
                .synchronous
                .or(file.synchronous)
                .unwrap_or(Synchronous::Full),
            commit_window: Duration::from_micros(
                self.commit_window_us
                    .or(file.commit_window_us)
                    .unwrap_or(1000),
            ),
        }
    }
}

/// `$XDG_DATA_HOME/clawbot-hub`, else `~/.local/share/clawbot-hub`, else
/// `./clawbot-data` when there is no home directory.
fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("clawbot-hub");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/clawbot-hub");
    }
    PathBuf::from("clawbot-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_window_comes_from_the_flag_then_the_file_then_the_default() {
        let window = |flag: Option<u64>, file: Option<u64>| {
            let cli = Cli {
                commit_window_us: flag,
                ..Cli::default()
            };
            let file = FileConfig {
                commit_window_us: file,
                ..FileConfig::default()
            };
            cli.resolve_with(file).commit_window
        };
        assert_eq!(window(None, None), Duration::from_millis(1));
        assert_eq!(window(None, Some(250)), Duration::from_micros(250));
        assert_eq!(window(Some(0), Some(250)), Duration::ZERO);
    }

    #[test]
    fn a_commit_window_of_100_ms_is_the_longest_accepted() {
        let resolve = |micros: u64| {
            Cli {
                commit_window_us: Some(micros),
                ..Cli::default()
            }
            .resolve()
        };
        assert_eq!(
            resolve(100_000).unwrap().commit_window,
            Duration::from_millis(100)
        );
        let error = resolve(100_001).unwrap_err().to_string();
        assert!(error.contains("at most 100000 microseconds"), "{error}");
    }
}
