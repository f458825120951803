//! Bad input gets an error with a stable code, changes nothing, and leaves
//! the connection usable; only a frame over the hard cap closes it (1009).

mod common;

use common::{TestHub, ADMIN};
use serde_json::json;

#[tokio::test]
async fn malformed_frames_get_stable_codes_and_the_connection_stays_usable() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("alice").await;
    let mut client = hub.connect(Some(&token)).await;

    // Before register.
    client
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "x"}))
        .await;
    client.expect_error("not_registered").await;
    client.send(json!({"type": "heartbeat"})).await;
    client.expect_error("not_registered").await;

    let cases = [
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1,2,3]", "invalid_frame"),
        (r#"{"no":"type"}"#, "invalid_frame"),
        (r#"{"type":42}"#, "invalid_frame"),
        (r#"{"type":"teleport"}"#, "unknown_type"),
        (r#"{"type":"register"}"#, "invalid_frame"),
        (
            r#"{"type":"register","agent":{"name":"no id"}}"#,
            "invalid_frame",
        ),
        (
            r#"{"type":"register","agent":{"id":"../../etc/passwd"}}"#,
            "invalid_id",
        ),
        (
            r#"{"type":"register","agent":{"id":"x'); DROP TABLE agents;--"}}"#,
            "invalid_id",
        ),
        (r#"{"type":"register","agent":{"id":""}}"#, "invalid_id"),
        (
            r#"{"type":"register","agent":{"id":"ok","capabilities":"gpu"}}"#,
            "invalid_frame",
        ),
        (
            r#"{"type":"register","agent":{"id":"ok","capabilities":["has space"]}}"#,
            "invalid_frame",
        ),
        (
            r#"{"type":"register","agent":{"id":"ok","name":"line\nbreak"}}"#,
            "invalid_frame",
        ),
    ];
    for (text, code) in cases {
        client.send_raw(text).await;
        let error = client.expect_error(code).await;
        assert!(!error["message"].as_str().unwrap().is_empty(), "{text}");
    }
    client
        .send(json!({"type": "register", "agent": {"id": "alice", "name": "Alice"}}))
        .await;
    client.expect("registered").await;

    let cases = [
        (
            json!({"type": "message", "groupId": "clawdbots"}),
            "invalid_frame",
        ),
        (
            json!({"type": "message", "groupId": 7, "content": "x"}),
            "invalid_frame",
        ),
        (
            json!({"type": "message", "groupId": "clawdbots", "content": ""}),
            "invalid_frame",
        ),
        (
            json!({"type": "message", "groupId": "no such group", "content": "x"}),
            "invalid_id",
        ),
        (
            json!({"type": "message", "groupId": "nosuchgroup", "content": "x"}),
            "unknown_group",
        ),
        (
            json!({"type": "direct_message", "to": "nobody", "content": "x"}),
            "unknown_agent",
        ),
        (
            json!({"type": "direct_message", "to": "alice", "content": "x", "clientId": "has space"}),
            "invalid_id",
        ),
        (
            json!({"type": "join_group", "groupId": "../x"}),
            "invalid_id",
        ),
        (json!({"type": "join_group"}), "invalid_frame"),
        (json!({"type": "ack", "seq": "ten"}), "invalid_frame"),
        (
            json!({"type": "register", "agent": {"id": "alice"}}),
            "invalid_frame",
        ),
    ];
    for (frame, code) in cases {
        client.send(frame.clone()).await;
        let error = client.expect_error(code).await;
        assert!(!error["message"].as_str().unwrap().is_empty(), "{frame}");
    }
    client.send(json!({"type": "binary?"})).await;
    client.expect_error("unknown_type").await;
    client
        .ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    client.expect_error("invalid_frame").await;

    // Nothing was stored by any of it.
    let history = hub.admin_get("/api/groups/clawdbots/messages").await;
    assert_eq!(history.as_array().unwrap().len(), 0);
    let groups = hub.admin_get("/api/groups").await;
    assert_eq!(groups.as_array().unwrap().len(), 1);
    // And the connection still works.
    client.join("clawdbots").await;
    client
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "fine"}))
        .await;
    client.expect_sent().await;
}

use futures_util::SinkExt;

#[tokio::test]
async fn content_over_the_limit_is_refused_and_a_huge_frame_closes_with_1009() {
    let hub = TestHub::start_with(&["--token", ADMIN, "--max-body-bytes", "1024"]).await;
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "x".repeat(1025)}))
        .await;
    alice.expect_error("too_large").await;
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": "x".repeat(1024)}))
        .await;
    alice.expect_sent().await;
    // The hard cap is well above the body limit; far over it, the hub closes.
    // (The send itself may fail once the hub has closed.)
    let _ = alice
        .ws
        .send(tokio_tungstenite::tungstenite::Message::text(
            "y".repeat(200 * 1024),
        ))
        .await;
    let close = alice.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    // The hub is fine.
    assert_eq!(hub.get("/api/health", None).await.0, 200);
    let mut again = hub.connect(Some(alice.token.as_deref().unwrap())).await;
    again
        .send(json!({"type": "register", "agent": {"id": "alice"}}))
        .await;
    again.expect("registered").await;
}

#[tokio::test]
async fn rest_errors_are_json_with_codes_and_change_nothing() {
    let hub = TestHub::start().await;
    let alice = hub.legacy("alice", "Alice").await;
    let token = alice.token.clone().unwrap();
    let raw = |body: &'static str| {
        hub.rest
            .post(format!("{}/api/groups", hub.http))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
    };
    let response = raw("{oops").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let response = raw(r#"{"description": "no name"}"#).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument");

    let checks = [
        (
            "/api/groups",
            json!({"name": "x", "id": "../bad"}),
            400,
            "invalid_id",
        ),
        (
            "/api/groups",
            json!({"name": "Dup", "id": "clawdbots"}),
            409,
            "conflict",
        ),
        (
            "/api/groups/nosuch/messages",
            json!({"content": "x"}),
            404,
            "unknown_group",
        ),
        (
            "/api/groups/clawdbots/messages",
            json!({"content": ""}),
            400,
            "invalid_frame",
        ),
        (
            "/api/tasks",
            json!({"description": "no title"}),
            400,
            "invalid_argument",
        ),
        (
            "/api/tasks",
            json!({"title": "t", "assigneeId": "ghost"}),
            404,
            "unknown_agent",
        ),
        (
            "/api/tasks",
            json!({"title": "t", "assigneeId": 5}),
            400,
            "invalid_argument",
        ),
        (
            "/api/tasks",
            json!({"title": ["t"]}),
            400,
            "invalid_argument",
        ),
    ];
    for (path, body, status, code) in checks {
        let (got, response) = hub.post(path, Some(&token), &body).await;
        assert_eq!(
            (got, response["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {body} -> {response}"
        );
    }
    for (path, status, code) in [
        (
            "/api/groups/clawdbots/messages?limit=0",
            400,
            "invalid_argument",
        ),
        (
            "/api/groups/clawdbots/messages?limit=501",
            400,
            "invalid_argument",
        ),
        (
            "/api/groups/clawdbots/messages?before=abc",
            400,
            "invalid_argument",
        ),
        ("/api/groups/nosuch/messages", 404, "unknown_group"),
        ("/api/agents/ghost", 404, "unknown_agent"),
        ("/api/tasks/task-nope", 404, "not_found"),
        ("/api/nothing-here", 404, "not_found"),
    ] {
        let (got, response) = hub.get(path, Some(&token)).await;
        assert_eq!(
            (got, response["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} -> {response}"
        );
    }
    // The admin may name any assigner, but only a well-formed id, with an
    // idempotency key (looked up by assigner) or without.
    for body in [
        json!({"title": "t", "assignerId": "has space"}),
        json!({"title": "t", "assignerId": "has space", "idempotencyKey": "k"}),
    ] {
        let (got, response) = hub.post("/api/tasks", Some(ADMIN), &body).await;
        assert_eq!(
            (got, response["error"]["code"].as_str()),
            (400, Some("invalid_id")),
            "{body} -> {response}"
        );
    }
    assert_eq!(
        hub.admin_get("/api/groups").await.as_array().unwrap().len(),
        1
    );
    assert_eq!(
        hub.admin_get("/api/tasks").await.as_array().unwrap().len(),
        0
    );
}
