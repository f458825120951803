//! Start-up settings, liveness, and graceful shutdown.

mod common;

use common::{TestHub, ADMIN};
use serde_json::json;

#[tokio::test]
async fn sigterm_closes_sockets_with_going_away_and_keeps_everything() {
    let mut hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;
    for n in 0..50 {
        alice
            .send(json!({"type": "message", "groupId": "clawdbots", "content": format!("m{n}")}))
            .await;
    }
    for _ in 0..50 {
        alice.expect_sent().await;
    }
    let pid = hub.pid();
    // Alice reads while the hub shuts down, as a live client does: the hub
    // waits for her answer to its close frame. Read only after the hub
    // has exited, the close frame could be lost to the reset that her
    // queued pong meets.
    let (status, close) = tokio::join!(hub.terminate(), alice.expect_close());
    assert!(status.success(), "exit status {status:?} (pid {pid})");
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(
        !hub.log().contains("did not close in time"),
        "the hub waited for a connection"
    );
    assert!(hub.log().contains("everything acknowledged is committed"));
    hub.restart().await;
    let history = hub
        .admin_get("/api/groups/clawdbots/messages?limit=500")
        .await;
    assert_eq!(history.as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_dropped() {
    let hub = TestHub::start_with(&[
        "--token",
        ADMIN,
        "--ping-interval-secs",
        "1",
        "--idle-timeout-secs",
        "2",
    ])
    .await;
    let mut watcher = hub.legacy("watcher", "Watcher").await;
    let token = hub.agent_token("silent").await;
    // A raw TCP client that completes the handshake, registers, and then
    // never reads again, so it never answers a ping.
    let mut silent = hub.connect(Some(&token)).await;
    silent
        .send(json!({"type": "register", "agent": {"id": "silent"}}))
        .await;
    let _frozen = silent; // kept open, never polled
                          // The watcher sees silent come and then go, with no heartbeat from anyone.
    for online in [2, 1] {
        loop {
            let list = watcher.next().await;
            if list["type"] == "agent_list" && list["agents"].as_array().unwrap().len() == online {
                break;
            }
            // Keep the watcher itself alive.
            watcher.send(json!({"type": "heartbeat"})).await;
        }
    }
    assert!(hub.log().contains("idle timeout"));
    let agent = hub.admin_get("/api/agents/silent").await;
    assert_eq!(agent["status"], "offline");
}

#[tokio::test]
async fn settings_come_from_a_toml_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(
        &file,
        "token = \"from-file\"\nmax_body_bytes = 10\nopen = false\n",
    )
    .unwrap();
    let hub =
        TestHub::start_with(&["--config", file.to_str().unwrap(), "--max-body-bytes", "20"]).await;
    let mut alice = {
        let (status, body) = hub
            .post(
                "/api/tokens",
                Some("from-file"),
                &json!({"kind": "agent", "agentId": "alice"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let mut client = hub.connect(body["token"].as_str()).await;
        client
            .send(json!({"type": "register", "agent": {"id": "alice"}}))
            .await;
        client.expect("registered").await;
        client
    };
    alice.join("clawdbots").await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "x".repeat(20)}))
        .await;
    alice.expect_sent().await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "x".repeat(21)}))
        .await;
    alice.expect_error("too_large").await;
}

#[tokio::test]
async fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(&file, "prot = 1\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clawbot-hub"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--port",
            "0",
            "--ws-port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hub.toml") && stderr.contains("prot"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_commit_window_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clawbot-hub"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--port", "0", "--ws-port", "0", "--bind", "127.0.0.1"])
        .args(["--commit-window-us", "100001"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("commit window is at most 100000 microseconds"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_wal_is_copied_into_the_database_while_the_hub_runs() {
    // The writer never checkpoints (a background thread does), so without
    // that thread the database file would never grow and the WAL would.
    let hub = TestHub::start().await;
    let database = hub.data_dir().join("hub.sqlite3");
    let size_at_start = std::fs::metadata(&database).unwrap().len();
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;
    let text = "x".repeat(2000);
    for _ in 0..200 {
        alice
            .send(json!({"type": "message", "groupId": "clawdbots", "content": text}))
            .await;
    }
    for _ in 0..200 {
        alice.expect_sent().await;
    }
    // No event announces a checkpoint; poll the file for a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let size = std::fs::metadata(&database).unwrap().len();
        if size > size_at_start + 200 * 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes (started at {size_at_start})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
