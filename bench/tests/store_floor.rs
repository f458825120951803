//! Smoke pass of `clawbot-store-floor`: it stores every DM it schedules
//! through the hub's writer and reports; it refuses a directory that holds
//! a hub's database. It never asserts speed.

use std::process::{Command, Output};

fn store_floor(data_dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawbot-store-floor"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--rate", "1000", "--warmup", "0.2", "--duration", "0.5"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn every_measured_dm_is_committed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = store_floor(&data_dir, &["--client-ids", "ordered", "--pairs", "7"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 0.5 s at 1,000/s: 500 measured commits, each timed.
    assert!(stdout.contains("(n=500)"), "{stdout}");
    assert!(stdout.contains("sqlite-writer"), "{stdout}");
    // Warm-up and measured DMs alike are in the database, each once, with
    // its own client id, round-robin over the seven pairs.
    let database = rusqlite::Connection::open(data_dir.join("hub.sqlite3")).unwrap();
    let (stored, distinct_ids, senders): (i64, i64, i64) = database
        .query_row(
            "SELECT count(*), count(DISTINCT client_id), count(DISTINCT from_id)
             FROM events WHERE kind = 'direct_message'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((stored, distinct_ids, senders), (700, 700, 7));
}

#[test]
fn a_directory_with_a_hub_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hub.sqlite3"), b"").unwrap();
    let output = store_floor(dir.path(), &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already holds a hub database"), "{stderr}");
    assert_eq!(
        std::fs::metadata(dir.path().join("hub.sqlite3"))
            .unwrap()
            .len(),
        0,
        "left as it was"
    );
}
