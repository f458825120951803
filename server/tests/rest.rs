//! REST beyond the original: pagination, posting over REST, inbox, agents
//! with status, OpenAPI.

mod common;

use common::{TestHub, ADMIN};
use serde_json::{json, Value};

fn contents(page: &Value) -> Vec<String> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn group_history_pages_by_sequence_number() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;
    for n in 0..120 {
        alice
            .send(json!({"type": "message", "groupId": "clawdbots", "content": format!("m{n}")}))
            .await;
    }
    for _ in 0..120 {
        alice.expect_sent().await;
    }
    let expected =
        |range: std::ops::Range<usize>| range.map(|n| format!("m{n}")).collect::<Vec<_>>();
    // Default: the latest 50, oldest first.
    let latest = hub.admin_get("/api/groups/clawdbots/messages").await;
    assert_eq!(contents(&latest), expected(70..120));
    // Older: before the first seq of that page.
    let first_seq = latest[0]["seq"].as_i64().unwrap();
    let older = hub
        .admin_get(&format!(
            "/api/groups/clawdbots/messages?before={first_seq}&limit=60"
        ))
        .await;
    assert_eq!(contents(&older), expected(10..70));
    // Newer: after a seq, the first ones after it.
    let seq_of_m9 = {
        let page = hub
            .admin_get("/api/groups/clawdbots/messages?limit=500")
            .await;
        assert_eq!(page.as_array().unwrap().len(), 120);
        page[9]["seq"].as_i64().unwrap()
    };
    let newer = hub
        .admin_get(&format!(
            "/api/groups/clawdbots/messages?after={seq_of_m9}&limit=5"
        ))
        .await;
    assert_eq!(contents(&newer), expected(10..15));
}

#[tokio::test]
async fn posting_over_rest_is_delivered_like_a_frame() {
    let hub = TestHub::start().await;
    let mut bob = hub.legacy("bob", "Bob").await;
    bob.join("clawdbots").await;
    let alice = hub.legacy("alice", "Alice").await;
    let token = alice.token.clone().unwrap();
    let (status, posted) = hub
        .post(
            "/api/groups/clawdbots/messages",
            Some(&token),
            &json!({"content": "over REST @bob @ghost", "clientId": "r1"}),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["from"], "alice");
    assert_eq!(posted["unknownMentions"], json!(["ghost"]));
    let message = bob.expect("message").await;
    assert_eq!(message["content"], "over REST @bob @ghost");
    assert_eq!(message["fromName"], "Alice");
    assert_eq!(bob.expect("mention").await["messageId"], message["id"]);
    // Retrying the same client id stores nothing new.
    let (status, again) = hub
        .post(
            "/api/groups/clawdbots/messages",
            Some(&token),
            &json!({"content": "over REST @bob @ghost", "clientId": "r1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["seq"], posted["seq"]);
    assert_eq!(again["duplicate"], true);
    // The admin posts as a named agent.
    let (status, _) = hub
        .post(
            "/api/groups/clawdbots/messages",
            Some(ADMIN),
            &json!({"content": "ops", "from": "alice"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(bob.expect("message").await["content"], "ops");
}

#[tokio::test]
async fn inbox_lists_unread_dms_and_mentions_until_marked_read() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;
    let bob = hub.legacy("bob", "Bob").await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "dm"}))
        .await;
    alice.expect_sent().await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "hey @Bob"}))
        .await;
    alice.expect_sent().await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "no mention"}))
        .await;
    alice.expect_sent().await;

    let inbox = hub.get("/api/agents/bob/inbox", Some(&token)).await.1;
    let kinds: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["direct_message", "mention"]);
    let first = inbox[0]["seq"].as_i64().unwrap();
    let (status, _) = hub
        .post(
            "/api/agents/bob/inbox/read",
            Some(&token),
            &json!({"seq": first}),
        )
        .await;
    assert_eq!(status, 204);
    let inbox = hub.get("/api/agents/bob/inbox", Some(&token)).await.1;
    assert_eq!(contents(&inbox), ["hey @Bob"]);
}

#[tokio::test]
async fn agents_are_listed_online_and_offline_with_capabilities() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("gpu-box").await;
    let mut gpu = hub.connect(Some(&token)).await;
    gpu.send(json!({"type": "register", "protocol": 2, "presence": true,
        "agent": {"id": "gpu-box", "name": "GPU", "capabilities": ["gpu", "cuda"], "device": "linux"}}))
        .await;
    gpu.expect("registered").await;
    let alice = hub.legacy("alice", "Alice").await;
    // gpu-box follows presence: alice comes, then goes.
    let mut alice = Some(alice);
    for status in ["online", "offline"] {
        loop {
            let frame = gpu.next().await;
            let alice_now = frame["agents"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["id"] == "alice");
            if frame["type"] == "presence" && alice_now.is_some_and(|a| a["status"] == status) {
                break;
            }
        }
        drop(alice.take());
    }
    let agents = hub.admin_get("/api/agents").await;
    let by_id = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("alice")["status"], "offline");
    assert!(by_id("alice")["lastSeen"].is_string());
    assert_eq!(by_id("gpu-box")["status"], "online");
    assert_eq!(by_id("gpu-box")["capabilities"], json!(["gpu", "cuda"]));
    let one = hub.admin_get("/api/agents/gpu-box").await;
    assert_eq!(one["device"], "linux");
    assert_eq!(one["groups"], json!([]));
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let hub = TestHub::start().await;
    let (status, doc) = hub.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/agents",
        "/api/groups/{id}/messages",
        "/api/tasks",
        "/api/agents/{id}/inbox",
        "/api/tokens",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}
