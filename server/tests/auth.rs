//! Tokens by default, no impersonation, private DMs and inboxes, `--open`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Client, TestHub, ADMIN};
use serde_json::json;

#[tokio::test]
async fn without_a_token_nothing_but_health_answers() {
    let hub = TestHub::start().await;
    let refused = Client::connect_url(&format!("{}/", hub.ws)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let refused = Client::connect_url(&format!("{}/?token=wrong", hub.ws)).await;
    assert!(refused.is_err());
    for path in [
        "/api/agents",
        "/api/groups",
        "/api/tasks",
        "/api/groups/clawdbots/messages",
    ] {
        let (status, body) = hub.get(path, None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = hub.get(path, Some("cbn_not_a_real_token")).await;
        assert_eq!(status, 401, "{path}");
    }
    assert_eq!(hub.get("/api/health", None).await.0, 200);
    assert_eq!(hub.get("/api/openapi.json", None).await.0, 200);
}

#[tokio::test]
async fn first_start_creates_a_private_admin_token() {
    let hub = TestHub::start_with(&[]).await;
    let path = hub.data_dir().join("admin-token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(hub.get("/api/agents", Some(&token)).await.0, 200);
    // The log says where the token is, never what it is.
    assert!(hub.log().contains("admin-token"));
    assert!(!hub.log().contains(&token));
    // Only its hash is stored.
    let database = std::fs::read(hub.data_dir().join("hub.sqlite3")).unwrap();
    let wal = std::fs::read(hub.data_dir().join("hub.sqlite3-wal")).unwrap_or_default();
    for bytes in [database, wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

#[tokio::test]
async fn a_join_token_claims_a_new_id_and_cannot_take_over_a_claimed_one() {
    let hub = TestHub::start().await;
    let join = hub.join_token().await;
    let v2_register = |id: &str, name: &str| json!({"type": "register", "protocol": 2, "agent": {"id": id, "name": name}});
    let mut first = hub.connect(Some(&join)).await;
    first.send(v2_register("mac-mini", "Mini")).await;
    let registered = first.expect("registered").await;
    let credential = registered["credential"]
        .as_str()
        .expect("a credential")
        .to_owned();
    drop(first);

    // The join token alone no longer gets this id.
    let mut thief = hub.connect(Some(&join)).await;
    thief.send(v2_register("mac-mini", "Evil")).await;
    thief.expect_error("agent_claimed").await;
    // Nor does the admin token: nobody registers a claimed id without its credential.
    let mut admin = hub.connect(Some(ADMIN)).await;
    admin.send(v2_register("mac-mini", "Evil")).await;
    admin.expect_error("agent_claimed").await;
    // The connection stays usable: the thief may still claim another id.
    thief.send(v2_register("other", "Other")).await;
    thief.expect("registered").await;

    let mut owner = hub.connect(Some(&credential)).await;
    owner.send(v2_register("mac-mini", "Mini")).await;
    let registered = owner.expect("registered").await;
    assert!(registered.get("credential").is_none());
    // The name was not changed by the failed attempts.
    assert_eq!(hub.admin_get("/api/agents/mac-mini").await["name"], "Mini");

    // Revoking the agent's tokens does not make the id claimable again.
    for token in hub.admin_get("/api/tokens").await.as_array().unwrap() {
        if token["agentId"] == "mac-mini" {
            let id = token["id"].as_str().unwrap();
            let response = hub
                .rest
                .delete(format!("{}/api/tokens/{id}", hub.http))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 204);
        }
    }
    let mut thief = hub.connect(Some(&join)).await;
    thief.send(v2_register("mac-mini", "Evil")).await;
    thief.expect_error("agent_claimed").await;
}

#[tokio::test]
async fn a_legacy_client_with_a_shared_token_is_told_to_use_its_own() {
    // A legacy client would drop the credential a claim returns and be
    // locked out on its next reconnect; it is refused up front instead.
    let hub = TestHub::start().await;
    let join = hub.join_token().await;
    for token in [join.as_str(), ADMIN] {
        let mut client = hub.connect(Some(token)).await;
        client
            .send(json!({"type": "register", "agent": {"id": "legacy-bot"}}))
            .await;
        let error = client.expect_error("forbidden").await;
        assert!(error["message"].as_str().unwrap().contains("/api/tokens"));
    }
    assert_eq!(hub.get("/api/agents/legacy-bot", Some(ADMIN)).await.0, 404);
}

#[tokio::test]
async fn a_display_name_cannot_take_another_agents_mentions() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let mut bob = hub.legacy("bob", "Bob").await;
    let token = hub.agent_token("mallory").await;
    let mut mallory = hub.connect(Some(&token)).await;
    // A name may not be another agent's id, in any case...
    for name in ["bob", "BOB", "alice"] {
        mallory
            .send(json!({"type": "register", "agent": {"id": "mallory", "name": name}}))
            .await;
        mallory.expect_error("conflict").await;
    }
    mallory
        .send(json!({"type": "register", "agent": {"id": "mallory", "name": "Mallory"}}))
        .await;
    mallory.expect("registered").await;
    alice.join("clawdbots").await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "@bob hi"}))
        .await;
    alice.expect_sent().await;
    assert_eq!(bob.expect("mention").await["content"], "@bob hi");
}

#[tokio::test]
async fn an_agent_token_registers_only_its_own_agent() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("alice").await;
    let mut client = hub.connect(Some(&token)).await;
    client
        .send(json!({"type": "register", "agent": {"id": "bob", "name": "Bob"}}))
        .await;
    client.expect_error("forbidden").await;
    client
        .send(json!({"type": "register", "agent": {"id": "alice", "name": "Alice"}}))
        .await;
    client.expect("registered").await;
}

#[tokio::test]
async fn the_token_may_come_in_the_authorization_header() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("alice").await;
    let mut client = Client::connect_with_header(&format!("{}/", hub.ws), &token).await;
    client
        .send(json!({"type": "register", "agent": {"id": "alice"}}))
        .await;
    client.expect("registered").await;
}

#[tokio::test]
async fn an_agent_reads_only_its_own_dms_and_inbox() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let bob = hub.legacy("bob", "Bob").await;
    let carol = hub.legacy("carol", "Carol").await;
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "secret"}))
        .await;
    alice.expect("sent").await;
    let bob_token = bob.token.clone().unwrap();
    let carol_token = carol.token.clone().unwrap();
    for path in ["/api/agents/bob/inbox", "/api/agents/bob/messages"] {
        let (status, body) = hub.get(path, Some(&carol_token)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, body) = hub.get(path, Some(&bob_token)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body[0]["content"], "secret");
    }
    let join = hub.join_token().await;
    assert_eq!(hub.get("/api/agents/bob/inbox", Some(&join)).await.0, 403);
    // Posting as someone else is refused too.
    let (status, body) = hub
        .post(
            "/api/groups/clawdbots/messages",
            Some(&carol_token),
            &json!({"content": "hi", "from": "bob"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn only_the_admin_manages_tokens() {
    let hub = TestHub::start().await;
    let alice = hub.agent_token("alice").await;
    let (status, _) = hub
        .post("/api/tokens", Some(&alice), &json!({"kind": "join"}))
        .await;
    assert_eq!(status, 403);
    let listed = hub.admin_get("/api/tokens").await;
    let text = listed.to_string();
    assert!(!text.contains(&alice), "secrets must never be listed");
    assert!(!text.contains("hash"));
    // Revoking a token stops it working.
    let id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agentId"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = hub
        .rest
        .delete(format!("{}/api/tokens/{id}", hub.http))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(hub.get("/api/agents", Some(&alice)).await.0, 401);
}

#[tokio::test]
async fn open_mode_accepts_legacy_clients_without_a_token_and_warns() {
    let hub = TestHub::start_with(&["--token", ADMIN, "--open"]).await;
    assert!(hub.log().contains("--open"));
    let mut anonymous = hub.connect(None).await;
    anonymous
        .send(json!({"type": "register", "agent": {"id": "lan-bot", "name": "LAN"}}))
        .await;
    let registered = anonymous.expect("registered").await;
    assert!(
        registered.get("credential").is_none(),
        "no claim without a token"
    );
    assert_eq!(hub.get("/api/agents", None).await.0, 200);
    // A claimed agent stays protected even in open mode.
    let token = hub.agent_token("claimed").await;
    let mut owner = hub.connect(Some(&token)).await;
    owner
        .send(json!({"type": "register", "agent": {"id": "claimed"}}))
        .await;
    owner.expect("registered").await;
    let mut other = hub.connect(None).await;
    other
        .send(json!({"type": "register", "agent": {"id": "claimed"}}))
        .await;
    other.expect_error("agent_claimed").await;
    assert_eq!(hub.get("/api/agents/claimed/inbox", None).await.0, 401);
}

#[tokio::test]
async fn a_configured_admin_token_replaces_the_generated_one() {
    let mut hub = TestHub::start_with(&[]).await;
    let generated = std::fs::read_to_string(hub.data_dir().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(hub.get("/api/tokens", Some(&generated)).await.0, 200);
    hub.terminate().await;
    hub.restart_with(&["--token", ADMIN]).await;
    assert_eq!(hub.get("/api/tokens", Some(ADMIN)).await.0, 200);
    assert_eq!(hub.get("/api/tokens", Some(&generated)).await.0, 401);
}
