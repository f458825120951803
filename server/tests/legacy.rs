//! Clients written for the original hub work unchanged: the same frames,
//! the same fields, the same REST shapes, minus its defects.

mod common;

use common::{TestHub, ADMIN};
use futures_util::SinkExt;
use serde_json::json;

#[tokio::test]
async fn register_gets_registered_then_agent_list() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("alice").await;
    let mut alice = hub.connect(Some(&token)).await;
    alice
        .send(json!({"type": "register", "agent": {"id": "alice", "name": "Alice", "role": "dev", "device": "mac"}}))
        .await;
    let registered = alice.next().await;
    assert_eq!(registered["type"], "registered");
    assert_eq!(registered["agentId"], "alice");
    assert!(registered["serverTime"].as_str().unwrap().ends_with('Z'));
    let list = alice.next().await;
    assert_eq!(list["type"], "agent_list");
    let agents = list["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["id"], "alice");
    assert_eq!(agents[0]["name"], "Alice");
    assert_eq!(agents[0]["role"], "dev");
    assert_eq!(agents[0]["status"], "online");
}

#[tokio::test]
async fn group_message_reaches_every_member_including_the_sender() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let mut bob = hub.legacy("bob", "Bob").await;
    alice.join("clawdbots").await;
    bob.join("clawdbots").await;
    // Alice hears that Bob joined.
    let system = alice.expect("system").await;
    assert_eq!(system["content"], "Bob joined the group");
    assert_eq!(system["groupId"], "clawdbots");

    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "hello all", "timestamp": "ignored"}))
        .await;
    // The sender hears `sent` and its own copy in either order (PROTOCOL
    // 4.5); usually `sent` first.
    let mut sent = None;
    let mut own_copy = None;
    while sent.is_none() || own_copy.is_none() {
        let frame = alice.next().await;
        match frame["type"].as_str() {
            Some("sent") => sent = Some(frame),
            Some("message") => own_copy = Some(frame),
            Some("agent_list" | "presence") => {}
            _ => panic!("expected 'sent' or alice's own message, got {frame}"),
        }
    }
    for message in [own_copy.unwrap(), bob.expect("message").await] {
        assert_eq!(message["from"], "alice");
        assert_eq!(message["fromName"], "Alice");
        assert_eq!(message["groupId"], "clawdbots");
        assert_eq!(message["content"], "hello all");
        // The same 36-character UUID form as the original's v4 ids, but
        // time-ordered (v7): see store::messages::insert.
        assert_eq!(uuid_version(message["id"].as_str().unwrap()), Some(7));
        assert_ne!(message["timestamp"], "ignored");
    }
    // The sender's confirmation is an addition legacy clients may ignore.
    assert!(sent.unwrap()["seq"].as_i64().unwrap() > 0);
}

fn uuid_version(id: &str) -> Option<u32> {
    let parts: Vec<&str> = id.split('-').collect();
    (parts.len() == 5).then(|| parts[2].chars().next().unwrap().to_digit(16).unwrap())
}

#[tokio::test]
async fn direct_message_and_heartbeat() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let mut bob = hub.legacy("bob", "Bob").await;
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "psst"}))
        .await;
    let dm = bob.expect("direct_message").await;
    assert_eq!(dm["from"], "alice");
    assert_eq!(dm["fromName"], "Alice");
    assert_eq!(dm["to"], "bob");
    assert_eq!(dm["content"], "psst");
    assert!(dm["id"].is_string());
    alice.expect("sent").await;
    bob.send(json!({"type": "heartbeat"})).await;
    let ack = bob.expect("heartbeat_ack").await;
    assert!(ack["timestamp"].is_string());
}

#[tokio::test]
async fn mentions_by_id_and_name_reach_members_and_non_members() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let mut xing = hub.legacy("xing", "老邢").await;
    let mut rev = hub.legacy("code-rev", "Code Reviewer").await;
    alice.join("dev").await;
    // xing is in the group; rev is not.
    xing.join("dev").await;
    alice
        .send(json!({"type": "message", "groupId": "dev",
            "content": "@老邢 and @code reviewer: see mail x@example.com and @nobody"}))
        .await;
    let sent = alice.expect_sent().await;
    assert_eq!(sent["unknownMentions"], json!(["nobody"]));

    let message = xing.expect("message").await;
    let mention = xing.expect("mention").await;
    assert_eq!(mention["from"], "alice");
    assert_eq!(mention["fromName"], "Alice");
    assert_eq!(mention["groupId"], "dev");
    assert_eq!(mention["content"], message["content"]);
    assert_eq!(mention["messageId"], message["id"]);

    let mention = rev.expect("mention").await;
    assert_eq!(mention["groupId"], "dev");
    // Nothing else reached rev: the next frame is the heartbeat ack.
    rev.ping_pong().await;
}

#[tokio::test]
async fn offline_agent_gets_dms_mentions_and_group_messages_in_order_once() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let mut bob = hub.legacy("bob", "Bob").await;
    let bob_token = bob.token.clone().unwrap();
    alice.join("clawdbots").await;
    bob.join("clawdbots").await;
    drop(bob);

    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "one"}))
        .await;
    alice.expect_sent().await;
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "two"}))
        .await;
    alice.expect_sent().await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "three @bob"}))
        .await;
    alice.expect_sent().await;

    let mut bob = hub.legacy_again(&bob_token, "bob", "Bob").await;
    let offline = bob.expect("offline_messages").await;
    let messages = offline["messages"].as_array().unwrap();
    let summary: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("message".to_owned(), "one".to_owned()),
            ("direct_message".to_owned(), "two".to_owned()),
            ("message".to_owned(), "three @bob".to_owned()),
            ("mention".to_owned(), "three @bob".to_owned()),
        ]
    );
    let seqs: Vec<i64> = messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // A legacy client proves receipt by answering the hub's checkpoint
    // ping, which follows the batch (every WebSocket library answers pings).
    bob.answer_checkpoint().await;
    // Reconnecting again delivers nothing twice.
    drop(bob);
    let mut bob = hub.legacy_again(&bob_token, "bob", "Bob").await;
    bob.ping_pong().await;
}

#[tokio::test]
async fn a_checkpoint_answered_while_the_replacement_registers_still_counts() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let bob = hub.legacy("bob", "Bob").await;
    let bob_token = bob.token.clone().unwrap();
    drop(bob);
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "once"}))
        .await;
    alice.expect_sent().await;

    let mut old = hub.legacy_again(&bob_token, "bob", "Bob").await;
    assert_eq!(
        old.expect("offline_messages").await["messages"][0]["content"],
        "once"
    );
    // The checkpoint ping that follows the batch, answered only once the
    // hub has begun to close this connection for the new one: the pong
    // reaches the hub after the register, not before it.
    let checkpoint = old.checkpoint_ping().await;
    let mut new = hub.connect(Some(&bob_token)).await;
    new.send(json!({"type": "register", "agent": {"id": "bob", "name": "Bob"}}))
        .await;
    old.wait_for_bytes().await;
    old.answer_ping(checkpoint).await;
    let close = old.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4000);
    // Sends tungstenite's answer to the close frame, as a client that goes
    // on reading would.
    old.ws.flush().await.unwrap();

    new.expect("registered").await;
    // The old connection's pong proved "once" was read: it is not sent again.
    new.ping_pong().await;
}

#[tokio::test]
async fn second_register_replaces_the_first_connection_cleanly() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let token = hub.agent_token("bob").await;
    let mut old = hub.legacy_again(&token, "bob", "Bob").await;
    let mut new = hub.legacy_again(&token, "bob", "Bob").await;
    let close = old.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4000);

    // The old socket closing must not cut off the new one.
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "still there?"}))
        .await;
    assert_eq!(
        new.expect("direct_message").await["content"],
        "still there?"
    );
}

#[tokio::test]
async fn rest_endpoints_keep_the_original_shapes() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;

    let health = hub.get("/api/health", None).await.1;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agents"], 1);

    let agents = hub.admin_get("/api/agents").await;
    assert_eq!(agents[0]["id"], "alice");
    assert_eq!(agents[0]["status"], "online");
    assert!(agents[0]["joinedAt"].is_string());
    assert_eq!(agents[0]["device"], "ci");

    let (status, group) = hub
        .post(
            "/api/groups",
            Some(ADMIN),
            &json!({"name": "Ops", "description": "d", "ownerId": "alice"}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(group["id"].as_str().unwrap().starts_with("group-"));
    assert_eq!(group["ownerId"], "alice");
    let groups = hub.admin_get("/api/groups").await;
    let ids: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"clawdbots") && ids.contains(&group["id"].as_str().unwrap()));
    assert!(groups[0].get("owner_id").is_some() && groups[0].get("created_at").is_some());

    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "logged"}))
        .await;
    alice.expect_sent().await;
    let history = hub.admin_get("/api/groups/clawdbots/messages").await;
    let row = &history[0];
    for field in [
        "id",
        "type",
        "from_id",
        "from_name",
        "group_id",
        "content",
        "timestamp",
        "created_at",
    ] {
        assert!(row.get(field).is_some(), "missing {field}: {row}");
    }
    assert_eq!(row["from_id"], "alice");

    let (status, task) = hub
        .post("/api/tasks", Some(ADMIN), &json!({"title": "Deploy", "description": "v2",
            "assignerId": "alice", "assigneeId": "alice", "groupId": "clawdbots", "priority": "high"}))
        .await;
    assert_eq!(status, 201, "{task}");
    assert!(task["id"].as_str().unwrap().starts_with("task-"));
    assert!(task["created_at"].is_string());
    assert_eq!(task["title"], "Deploy");
    let assigned = alice.expect("task_assigned").await;
    assert_eq!(assigned["task"]["id"], task["id"]);
    assert_eq!(assigned["task"]["title"], "Deploy");
    let tasks = hub.admin_get("/api/tasks").await;
    assert_eq!(tasks[0]["assignee_id"], "alice");
    assert_eq!(tasks[0]["status"], "assigned");
    assert_eq!(tasks[0]["priority"], "high");
}

#[tokio::test]
async fn task_for_an_offline_agent_arrives_on_reconnect() {
    let hub = TestHub::start().await;
    let bob = hub.legacy("bob", "Bob").await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    let (status, task) = hub
        .post(
            "/api/tasks",
            Some(ADMIN),
            &json!({"title": "Build", "assigneeId": "bob"}),
        )
        .await;
    assert_eq!(status, 201);
    let mut bob = hub.legacy_again(&token, "bob", "Bob").await;
    let offline = bob.expect("offline_messages").await;
    assert_eq!(offline["messages"][0]["type"], "task_assigned");
    assert_eq!(offline["messages"][0]["task"]["id"], task["id"]);
}

#[tokio::test]
async fn websocket_also_on_the_http_port_at_ws() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("alice").await;
    let url = format!("{}/ws", hub.http.replacen("http://", "ws://", 1));
    let mut client = common::Client::connect_with_header(&url, &token).await;
    client
        .send(json!({"type": "register", "agent": {"id": "alice", "name": "A"}}))
        .await;
    client.expect("registered").await;
}

#[tokio::test]
async fn frames_a_legacy_client_never_read_are_sent_again_after_it_reconnects() {
    // A laptop's connection dies silently: the hub wrote frames into the
    // socket, but the client never read them. A legacy client cannot
    // acknowledge, so only its answer to the hub's checkpoint ping counts.
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let bob = hub.legacy("bob", "Bob").await;
    let token = bob.token.clone().unwrap();
    let mut bob = bob;
    bob.join("clawdbots").await;
    alice.join("clawdbots").await;
    // From here bob reads nothing (so answers no ping) and then vanishes.
    for n in 0..20 {
        alice
            .send(json!({"type": "message", "groupId": "clawdbots", "content": format!("m{n}")}))
            .await;
        alice.expect_sent().await;
    }
    drop(bob);
    let mut bob = hub.legacy_again(&token, "bob", "Bob").await;
    let mut contents = Vec::new();
    while contents.len() < 20 {
        let offline = bob.expect("offline_messages").await;
        for message in offline["messages"].as_array().unwrap() {
            contents.push(message["content"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        contents,
        (0..20).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn offline_batches_stay_under_the_original_clients_frame_limit() {
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    let bob = hub.legacy("bob", "Bob").await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    let body = "x".repeat(4000);
    for _ in 0..400 {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": body}))
            .await;
    }
    for _ in 0..400 {
        alice.expect("sent").await;
    }
    let mut bob = hub.legacy_again(&token, "bob", "Bob").await;
    let mut received = 0;
    while received < 400 {
        let message =
            tokio::time::timeout(common::WAIT, futures_util::StreamExt::next(&mut bob.ws))
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            // The original Python client (websockets) refuses frames over 1 MiB.
            assert!(text.len() < 1024 * 1024, "a {} byte frame", text.len());
            let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "offline_messages" {
                received += frame["messages"].as_array().unwrap().len();
            }
        }
    }
    assert_eq!(received, 400);
}

#[tokio::test]
async fn the_original_clients_task_body_works_in_open_mode() {
    let hub = TestHub::start_with(&["--token", ADMIN, "--open"]).await;
    let mut worker = hub.connect(None).await;
    worker
        .send(json!({"type": "register", "agent": {"id": "worker"}}))
        .await;
    worker.expect("registered").await;
    // The original python_client.create_task sends no assignerId.
    let (status, task) = hub
        .post(
            "/api/tasks",
            None,
            &json!({"title": "Build", "description": "", "assigneeId": "worker"}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(
        worker.expect("task_assigned").await["task"]["title"],
        "Build"
    );
}
