//! Smoke pass: every scenario of `clawbot-bench`, about a second each at low
//! rates, against the real hub binary on port 0 with a temporary data
//! directory. These tests prove the tool works (it registers, sends,
//! receives, checks and reports without errors); they never assert speed.
//! `scripts/bench --smoke` runs the same pass by hand; keep the two alike.
//!
//! The hub binary is taken from `CLAWBOT_HUB_BIN`, else from the target
//! directory this test was built in (`target/<profile>/clawbot-hub`), built
//! with `cargo build -p clawbot-hub` first if it is not there.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "bench-smoke-admin-token";
/// A smoke run is a few seconds; anything near this is a hang.
const RUN_LIMIT: Duration = Duration::from_secs(120);

struct Hub {
    child: Child,
    http: String,
    ws: String,
    _dir: tempfile::TempDir,
}

impl Hub {
    fn start() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("hub.log")).unwrap();
        let mut child = Command::new(hub_binary())
            .args(["--bind", "127.0.0.1", "--port", "0", "--ws-port", "0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--token", ADMIN])
            .env_remove("CLAWBOT_TOKEN")
            .env_remove("CLAWBOT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting the hub");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(name))
                .unwrap_or_else(|| panic!("the hub did not announce itself: {line:?}"))
                .to_owned()
        };
        Hub {
            http: format!("http://{}", field("http=")),
            ws: format!("ws://{}", field("ws=")),
            child,
            _dir: dir,
        }
    }

    /// Runs `clawbot-bench --json <args>` against this hub.
    fn bench(&self, args: &[&str]) -> Output {
        let pid = self.child.id().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_clawbot-bench"))
            .args(["--ws-url", &self.ws, "--http-url", &self.http])
            .args(["--hub-pid", &pid, "--json"])
            .args(args)
            .env("CLAWBOT_BENCH_TOKEN", ADMIN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_with_limit(child)
    }

    /// Runs a scenario and checks that it reports success.
    fn smoke(&self, args: &[&str]) -> Value {
        let output = self.bench(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "clawbot-bench {args:?} failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        let report: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON line ({e}): {stdout}"));
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        report
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_limit(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("clawbot-bench ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The hub binary, built once if needed (tests run in parallel).
fn hub_binary() -> PathBuf {
    static BINARY: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut binary = BINARY.get_or_init(Default::default).lock().unwrap();
    binary
        .get_or_insert_with(|| {
            if let Some(path) = std::env::var_os("CLAWBOT_HUB_BIN") {
                return PathBuf::from(path);
            }
            // This test runs as <target dir>/<profile>/deps/smoke-<hash>.
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let hub = profile_dir.join("clawbot-hub");
            if !hub.exists() {
                build_hub(&profile_dir);
            }
            assert!(hub.exists(), "no hub binary at {}", hub.display());
            hub
        })
        .clone()
}

fn build_hub(profile_dir: &Path) {
    let target_dir = profile_dir.parent().unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "-p", "clawbot-hub", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("running cargo build");
    assert!(status.success(), "cargo build -p clawbot-hub failed");
}

/// Short runs: enough items to exercise warm-up and measurement.
const TIMING: [&str; 6] = [
    "--warmup",
    "0.3",
    "--duration",
    "1",
    "--drain-timeout",
    "10",
];

fn with_timing<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().copied().chain(TIMING).collect()
}

#[test]
fn dm_v2_and_legacy() {
    let hub = Hub::start();
    for protocol in ["v2", "legacy"] {
        let report = hub.smoke(&with_timing(&[
            "--protocol",
            protocol,
            "dm",
            "--pairs",
            "2",
            "--rate",
            "200",
        ]));
        assert_eq!(report["scenario"], "dm");
        assert_eq!(report["protocol"], protocol);
        assert!(report["latency"]["count"].as_u64().unwrap() > 0, "{report}");
        // Our hub confirms every message, legacy clients included.
        let names: Vec<&str> = report["other_latencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["name"].as_str())
            .collect();
        assert!(names.contains(&"sent"), "{report}");
    }
}

/// A small DM run (2 pairs, 200 messages/s) that writes its timeline to
/// `path`.
fn dm_with_timeline(path: &std::path::Path) -> Vec<&str> {
    with_timing(&[
        "dm",
        "--pairs",
        "2",
        "--rate",
        "200",
        "--timeline",
        path.to_str().unwrap(),
    ])
}

/// `--timeline` writes one line per measured delivery, in due order,
/// and its latencies are the ones the histogram summarised.
#[test]
fn dm_timeline_has_every_measured_delivery_in_due_order() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeline.txt");
    let report = hub.smoke(&dm_with_timeline(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# due_ms latency_ms"));
    let rows: Vec<(f64, f64)> = lines
        .map(|line| {
            let (due, latency) = line.split_once(' ').unwrap();
            (due.parse().unwrap(), latency.parse().unwrap())
        })
        .collect();
    // 200 messages/s for the measured second, every one delivered (the
    // smoke check requires no errors), and none of the warm-up's.
    assert_eq!(rows.len(), 200, "{report}");
    assert!(
        rows.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "not in due order: {text}"
    );
    // At 200 messages/s the measured part starts at 0 and steps by 5 ms.
    assert_eq!(rows[0].0, 0.0);
    assert_eq!(rows[1].0, 5.0);
    let worst = rows.iter().map(|row| row.1).fold(0.0, f64::max);
    let max_ms = report["latency"]["max_ms"].as_f64().unwrap();
    // The histogram keeps 3 significant digits of microseconds.
    assert!(
        (worst - max_ms).abs() <= max_ms * 0.001 + 0.001,
        "{worst} vs {max_ms}"
    );
}

/// A timeline that cannot be written fails the run at its start, with
/// the path named, rather than after the whole measured load.
#[test]
fn dm_timeline_path_that_cannot_be_written_fails_first() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("timeline.txt");
    let output = hub.bench(&dm_with_timeline(&path));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("creating the timeline file") && stderr.contains("no-such-dir"),
        "{stderr}"
    );
}

#[test]
fn fanout() {
    let hub = Hub::start();
    let report = hub.smoke(&with_timing(&["fanout", "--members", "10", "--rate", "20"]));
    assert!(report["latency"]["count"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn idle_reports_memory_per_connection() {
    let hub = Hub::start();
    let report = hub.smoke(&["idle", "--connections", "50", "--hold", "0.5"]);
    let figures = report["figures"].as_array().unwrap();
    let named = |name: &str| figures.iter().find(|f| f["name"] == name).cloned();
    assert!(named("registered all in").is_some(), "{report}");
    assert!(named("hub RSS per conn").is_some(), "{report}");
    assert_eq!(named("held").unwrap()["value"], 50.0, "{report}");
}

#[test]
fn backlog_v2_and_legacy() {
    let hub = Hub::start();
    for protocol in ["v2", "legacy"] {
        let report = hub.smoke(&[
            "--protocol",
            protocol,
            "backlog",
            "--messages",
            "600",
            "--senders",
            "3",
        ]);
        assert!(report["throughput"]["achieved"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn history_and_the_report_table() {
    let hub = Hub::start();
    let report = hub.smoke(&with_timing(&[
        "history",
        "--prefill",
        "500",
        "--rate",
        "100",
        "--connections",
        "4",
    ]));
    assert!(report["latency"]["count"].as_u64().unwrap() > 0, "{report}");

    // `report` turns JSON lines into one table; repeated runs of the same
    // scenario and load become one row of medians.
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("results.jsonl");
    std::fs::write(&lines, format!("{report}\n{report}\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_clawbot-bench"))
        .arg("report")
        .arg(&lines)
        .output()
        .unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("history [v2] ×2"));
}

#[test]
fn load_goes_to_loopback_only() {
    for url in ["ws://10.1.2.3:3002", "ws://example.com:3002"] {
        let output = Command::new(env!("CARGO_BIN_EXE_clawbot-bench"))
            .args(["--ws-url", url, "--token", "x", "dm"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("refusing"), "{stderr}");
    }
}
