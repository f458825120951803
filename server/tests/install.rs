//! What the hub serves to machines that join: the installer, filled in,
//! and the wheels with their checksums. (The installer itself is run for
//! real by the Python tests.)

mod common;

use common::{TestHub, ADMIN};

async fn text(hub: &TestHub, path: &str) -> (u16, String) {
    let response = hub
        .rest
        .get(format!("{}{path}", hub.http))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_installer_is_filled_in_with_the_hub_url_and_only_a_join_token() {
    let hub = TestHub::start().await;
    let (status, script) = text(&hub, "/install-clawbot.sh").await;
    assert_eq!(status, 200);
    assert!(script.starts_with("#!/usr/bin/env bash"));
    assert!(
        script.contains(&format!("CLAWBOT_HUB_URL:-{}}}", hub.http)),
        "hub URL not filled in"
    );
    assert!(
        script.contains("CLAWBOT_TOKEN:-}"),
        "no token without asking"
    );
    assert!(!script.contains("@@"));

    let join = hub.join_token().await;
    let (status, script) = text(&hub, &format!("/install-clawbot.sh?token={join}")).await;
    assert_eq!(status, 200);
    assert!(script.contains(&format!("CLAWBOT_TOKEN:-{join}}}")));

    // Never the admin token, nor an agent's credential, nor garbage.
    let agent = hub.agent_token("mini").await;
    for token in [ADMIN, agent.as_str()] {
        let (status, body) = text(&hub, &format!("/install-clawbot.sh?token={token}")).await;
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains(token));
    }
    assert_eq!(
        text(&hub, "/install-clawbot.sh?token=cbn_nope").await.0,
        401
    );
}

#[tokio::test]
async fn a_public_url_overrides_the_host_header() {
    let hub =
        TestHub::start_with(&["--token", ADMIN, "--public-url", "https://hub.example.com/"]).await;
    let (_, script) = text(&hub, "/install-clawbot.sh").await;
    assert!(script.contains("CLAWBOT_HUB_URL:-https://hub.example.com}"));
}

#[tokio::test]
async fn downloads_serve_wheels_with_checksums_and_nothing_else() {
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(
        downloads
            .path()
            .join("clawbot_connector-0.1.0-cp39-abi3-linux_x86_64.whl"),
        b"wheel bytes",
    )
    .unwrap();
    std::fs::write(downloads.path().join("notes.txt"), b"not offered").unwrap();
    let hub = TestHub::start_with(&[
        "--token",
        ADMIN,
        "--downloads-dir",
        downloads.path().to_str().unwrap(),
    ])
    .await;
    let (status, sums) = text(&hub, "/downloads/SHA256SUMS").await;
    assert_eq!(status, 200);
    let line = sums.lines().next().unwrap();
    let (sum, name) = line.split_once("  ").unwrap();
    assert_eq!(name, "clawbot_connector-0.1.0-cp39-abi3-linux_x86_64.whl");
    use sha2::Digest;
    assert_eq!(sum, hex::encode(sha2::Sha256::digest(b"wheel bytes")));
    assert_eq!(sums.lines().count(), 1, "only wheels are offered: {sums}");
    let (status, body) = text(&hub, &format!("/downloads/{name}")).await;
    assert_eq!((status, body.as_str()), (200, "wheel bytes"));
    for path in [
        "/downloads/notes.txt",
        "/downloads/..%2Fhub.sqlite3",
        "/downloads/.hidden.whl",
        "/downloads/nope.whl",
    ] {
        assert_eq!(text(&hub, path).await.0, 404, "{path}");
    }
}
