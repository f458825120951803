//! The command line. Options that say *where* the load goes and *how* to
//! speak are global (they may come before or after the subcommand); each
//! scenario has its own subcommand with its own load shape.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::schedule::Pacing;

/// Open-loop load generator for ClawBot Network hubs: this hub or the
/// original Node.js one. Loopback only, unless `--allow-host` says otherwise.
#[derive(Debug, Parser)]
#[command(name = "clawbot-bench", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct HubArgs {
    /// The hub's WebSocket URL (ws:// only).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:3002")]
    pub ws_url: String,
    /// The hub's REST base URL (http:// only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:3001")]
    pub http_url: String,
    /// The hub's admin token. Used to mint one agent token per simulated
    /// agent (POST /api/tokens) and for REST reads.
    #[arg(
        long,
        global = true,
        env = "CLAWBOT_BENCH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The hub needs no tokens (the original hub, or this one with --open):
    /// mint nothing and connect anonymously.
    #[arg(long, global = true)]
    pub open_hub: bool,
    /// Also allow this host as a target (for hubs in test network
    /// namespaces). May be repeated. Without it only 127.0.0.0/8, ::1 and
    /// localhost are accepted.
    #[arg(long, global = true, value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Which protocol the simulated agents speak.
    #[arg(long, global = true, value_enum, default_value_t = Protocol::V2)]
    pub protocol: Protocol,
    /// The hub's process id, to report its CPU use (and RSS for `idle`)
    /// from /proc. Only meaningful for a hub on this machine.
    #[arg(long, global = true)]
    pub hub_pid: Option<u32>,
    /// Print the result as one JSON line on stdout (the human line then
    /// goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Prefix for agent and group ids; defaults to one derived from the
    /// clock so that runs against the same hub do not collide.
    #[arg(long, global = true)]
    pub run_id: Option<String>,
    /// How senders wait for due times: `spin` is precise to microseconds
    /// but keeps the generator core busy; `sleep` is up to ~1 ms late.
    #[arg(long, global = true, value_enum, default_value_t = Pacing::Spin)]
    pub pacing: Pacing,
    /// Runtime worker threads; default: the CPUs this process may use
    /// (1 when pinned with `taskset -c 1`).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Which hub this is ("ours", "original", ...), recorded in the result
    /// so that `report --compare` can set results of different hubs side
    /// by side.
    #[arg(long, global = true, value_name = "NAME")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// The original frames: no `protocol` field in `register`.
    Legacy,
    /// `"protocol": 2`: sequence numbers, `caught_up`, cumulative acks.
    V2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Legacy => "legacy",
            Protocol::V2 => "v2",
        }
    }
}

/// The `clientId` the generator puts on each DM. The hub keeps a unique
/// index of (sender, clientId), so where each new one lands in it decides
/// how many pages a commit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientIds {
    /// No `clientId`, as every figure in references/BENCHMARKS.md before
    /// session 9.
    None,
    /// A random UUIDv4 on each DM: what the Rust connector and the Python
    /// SDK sent until session 9.
    Random,
    /// A UUIDv7, ordered by time: what they send now.
    Ordered,
}

impl ClientIds {
    /// A fresh `clientId`, if there is to be one.
    pub fn next(self) -> Option<String> {
        match self {
            ClientIds::None => None,
            ClientIds::Random => Some(uuid::Uuid::new_v4().to_string()),
            ClientIds::Ordered => Some(uuid::Uuid::now_v7().to_string()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Direct messages between sender/receiver pairs, persisted by the hub.
    /// Latency: scheduled send to recipient delivery, and to the sender's
    /// `sent` confirmation.
    Dm(DmArgs),
    /// One sender posting to a group whose members are all connected.
    /// Deliveries per second and the time until every member has a message.
    Fanout(FanoutArgs),
    /// Many registered connections doing nothing: time to register them
    /// all, and the hub's memory per connection (with --hub-pid).
    Idle(IdleArgs),
    /// Messages queued for an offline agent, then drained on reconnect:
    /// how long, and whether in order with nothing missing or doubled.
    Backlog(BacklogArgs),
    /// REST pages of group history at a fixed request rate, from a group
    /// prefilled over the WebSocket.
    History(HistoryArgs),
    /// Prints one table from JSON result lines (files written with --json);
    /// repeated runs of the same scenario and load become one row of
    /// medians.
    Report(ReportArgs),
}

/// How long the load runs. Warm-up load is sent exactly like the measured
/// load but not recorded, so connection set-up, presence broadcasts and cold
/// caches stay out of the figures.
#[derive(Debug, Clone, Args)]
pub struct Timing {
    /// Seconds of load before measuring.
    #[arg(long, value_parser = parse_secs, default_value = "2")]
    pub warmup: Duration,
    /// Seconds of measured load.
    #[arg(long, value_parser = parse_secs, default_value = "10")]
    pub duration: Duration,
    /// Seconds to wait after the last scheduled send for what is still in
    /// flight; anything later counts as missing.
    #[arg(long, value_parser = parse_secs, default_value = "10")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct DmArgs {
    /// Sender/receiver pairs, two connections each.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Messages per second, all pairs together.
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Bytes of content per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Also write every measured delivery to this file, one line each in
    /// the order they were due: `due_ms latency_ms`, due times counted from
    /// the start of the measured part. `scripts/latency-timeline` reads it
    /// to show when the slow ones happened.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// A `clientId` on every DM (v2; the original hub ignores it).
    #[arg(long, value_enum, default_value = "none")]
    pub client_ids: ClientIds,
    #[command(flatten)]
    pub timing: Timing,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Connected members of the group (the sender is not one of them).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Messages per second posted to the group.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Bytes of content per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    pub timing: Timing,
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connections to open and register.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connections being opened and registered at the same time.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds to keep them all open (and answering pings) before reading
    /// the hub's memory.
    #[arg(long, value_parser = parse_secs, default_value = "3")]
    pub hold: Duration,
    /// Give up registering after this many seconds.
    #[arg(long, value_parser = parse_secs, default_value = "120")]
    pub register_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct BacklogArgs {
    /// Messages queued for the offline agent.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Connections sending them in parallel (the hub confirms one
    /// connection's messages one at a time).
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// Unconfirmed messages each sender may have in flight.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Bytes of content per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Give up draining after this many seconds.
    #[arg(long, value_parser = parse_secs, default_value = "60")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Requests per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Requests in flight at most (each on its own keep-alive HTTP
    /// connection). A request due while all are busy waits, and that wait
    /// counts as latency.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Messages per page (`limit`).
    #[arg(long, default_value_t = 50)]
    pub page_size: usize,
    /// Messages to insert into the group over the WebSocket first.
    #[arg(long, default_value_t = 10_000)]
    pub prefill: usize,
    /// Connections inserting in parallel.
    #[arg(long, default_value_t = 32)]
    pub prefill_connections: usize,
    /// Unconfirmed messages each prefill connection may have in flight.
    #[arg(long, default_value_t = 256)]
    pub prefill_window: usize,
    /// Bytes of content per prefilled message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Read this existing group instead of a fresh one (combine with
    /// `--prefill 0` to reuse a group filled by an earlier run).
    #[arg(long)]
    pub group: Option<String>,
    /// Always ask for the newest page (no `before`), the only page the
    /// original hub can serve; for comparing the two hubs on equal terms.
    #[arg(long)]
    pub newest: bool,
    #[command(flatten)]
    pub timing: Timing,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Files of JSON result lines; `-` or nothing reads stdin.
    pub files: Vec<PathBuf>,
    /// A Markdown table instead of aligned text.
    #[arg(long)]
    pub markdown: bool,
    /// Set the results of each hub (see `--label`) side by side against
    /// the hub named here, one row per figure, with the ratio of each other
    /// hub's figure to this one's.
    #[arg(long, value_name = "BASELINE")]
    pub compare: Option<String>,
}

/// Seconds as a decimal number ("0.5", "10").
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is not a valid duration"))
}
