//! Protocol v2 delivery: sequence numbers, confirmations after commit,
//! idempotent resends, acknowledgements and exact resume, crashes, restarts
//! and slow consumers.

mod common;

use common::{Client, TestHub, ADMIN};
use serde_json::{json, Value};

fn seq(frame: &Value) -> i64 {
    frame["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no seq in {frame}"))
}

#[tokio::test]
async fn every_stored_event_has_a_strictly_increasing_seq() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    alice
        .send(json!({"type": "join_group", "groupId": "g"}))
        .await;
    alice.expect("joined").await;
    let mut last = 0;
    for n in 0..20 {
        let sent = alice.say("g", &format!("m{n}")).await;
        assert!(seq(&sent) > last);
        last = seq(&sent);
    }
}

#[tokio::test]
async fn resend_with_the_same_client_id_is_stored_once() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let mut bob = hub.v2("bob", "Bob").await;
    bob.backlog().await;
    for _ in 0..2 {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": "once", "clientId": "c-1"}))
            .await;
    }
    let first = alice.expect("sent").await;
    let second = alice.expect("sent").await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(seq(&first), seq(&second));
    assert_eq!(first["clientId"], "c-1");
    let dm = bob.expect("direct_message").await;
    assert_eq!(dm["clientId"], "c-1");
    bob.ping_pong().await; // and no second copy before the ack
    let bob_token = bob.token.clone().unwrap();
    let history = hub
        .get("/api/agents/bob/messages", Some(&bob_token))
        .await
        .1;
    assert_eq!(history.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn resume_from_last_seq_gets_exactly_what_was_missed() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let mut bob = hub.v2("bob", "Bob").await;
    bob.backlog().await;
    for client in [&mut alice, &mut bob] {
        client
            .send(json!({"type": "join_group", "groupId": "g"}))
            .await;
        client.expect("joined").await;
    }
    for n in 0..5 {
        alice.say("g", &format!("m{n}")).await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(bob.expect("message").await);
    }
    // Bob processed m0..m2 only, acknowledges m2, and drops.
    let processed = seq(&got[2]);
    bob.send(json!({"type": "ack", "seq": processed})).await;
    bob.ping_pong().await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    for n in 5..7 {
        alice.say("g", &format!("m{n}")).await;
    }
    let mut bob = hub.connect(Some(&token)).await;
    let registered = bob.register_v2("bob", "Bob", Some(processed)).await;
    assert_eq!(registered["resumeFrom"], processed);
    let (backlog, caught_up) = bob.backlog().await;
    let contents: Vec<&str> = backlog
        .iter()
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m3", "m4", "m5", "m6"]);
    assert_eq!(caught_up, seq(backlog.last().unwrap()));
}

#[tokio::test]
async fn stored_cursor_follows_acks_when_the_client_does_not_say() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let mut bob = hub.v2("bob", "Bob").await;
    bob.backlog().await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": format!("d{n}")}))
            .await;
        seqs.push(seq(&alice.expect("sent").await));
    }
    for _ in 0..3 {
        bob.expect("direct_message").await;
    }
    bob.send(json!({"type": "ack", "seq": seqs[0]})).await;
    bob.ping_pong().await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    let mut bob = hub.connect(Some(&token)).await;
    bob.register_v2("bob", "Bob", None).await;
    let (backlog, _) = bob.backlog().await;
    let contents: Vec<&str> = backlog
        .iter()
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["d1", "d2"]);
}

#[tokio::test]
async fn confirmed_message_survives_sigkill_and_reaches_the_recipient_after_restart() {
    let mut hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let bob_token = hub.agent_token("bob").await;
    {
        let mut bob = hub.connect(Some(&bob_token)).await;
        bob.register_v2("bob", "Bob", None).await;
        bob.backlog().await;
        bob.send(json!({"type": "join_group", "groupId": "g"}))
            .await;
        bob.expect("joined").await;
    }
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "survive"}))
        .await;
    let dm_seq = seq(&alice.expect("sent").await);
    alice
        .send(json!({"type": "message", "groupId": "g", "content": "group survive"}))
        .await;
    let group_seq = seq(&alice.expect_sent().await);
    // Confirmed means committed: kill with no chance to flush.
    hub.kill().await;
    hub.restart().await;

    let mut bob = hub.connect(Some(&bob_token)).await;
    bob.register_v2("bob", "Bob", None).await;
    let (backlog, _) = bob.backlog().await;
    let got: Vec<(i64, &str)> = backlog
        .iter()
        .map(|f| (seq(f), f["content"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(dm_seq, "survive"), (group_seq, "group survive")]);
}

#[tokio::test]
async fn membership_survives_restart() {
    let mut hub = TestHub::start().await;
    let bob_token = hub.agent_token("bob").await;
    let mut bob = hub.connect(Some(&bob_token)).await;
    bob.register_v2("bob", "Bob", None).await;
    bob.backlog().await;
    bob.send(json!({"type": "join_group", "groupId": "ops"}))
        .await;
    bob.expect("joined").await;
    drop(bob);
    hub.terminate().await;
    hub.restart().await;
    let detail = hub.admin_get("/api/groups/ops").await;
    assert_eq!(detail["members"], json!(["bob"]));
    // A live member after restart receives without joining again.
    let mut bob = hub.connect(Some(&bob_token)).await;
    bob.register_v2("bob", "Bob", None).await;
    bob.backlog().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    alice
        .send(json!({"type": "message", "groupId": "ops", "content": "after restart"}))
        .await;
    assert_eq!(bob.expect("message").await["content"], "after restart");
}

#[tokio::test]
async fn a_member_does_not_receive_what_was_sent_before_it_joined() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    alice
        .send(json!({"type": "join_group", "groupId": "g"}))
        .await;
    alice.expect("joined").await;
    alice.say("g", "before").await;
    let mut bob = hub.v2("bob", "Bob").await;
    bob.backlog().await;
    bob.send(json!({"type": "join_group", "groupId": "g"}))
        .await;
    bob.expect("joined").await;
    alice.say("g", "after").await;
    assert_eq!(bob.expect("message").await["content"], "after");
}

#[tokio::test]
async fn large_offline_backlog_arrives_in_order_without_gaps_or_doubles() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let bob = hub.v2("bob", "Bob").await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    let total = 3000;
    for n in 0..total {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": n.to_string()}))
            .await;
    }
    for _ in 0..total {
        alice.expect("sent").await;
    }
    let mut bob = hub.connect(Some(&token)).await;
    bob.register_v2("bob", "Bob", Some(0)).await;
    let (backlog, _) = bob.backlog().await;
    let contents: Vec<i64> = backlog
        .iter()
        .map(|f| f["content"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(contents, (0..total).collect::<Vec<_>>());
}

#[tokio::test]
async fn live_and_backlog_interleave_without_loss_during_catch_up() {
    // Messages keep arriving while a reconnecting agent catches up: every
    // one arrives once, in order, whether it came from the store or live.
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let bob = hub.v2("bob", "Bob").await;
    let token = bob.token.clone().unwrap();
    drop(bob);
    for n in 0..2000 {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": n.to_string()}))
            .await;
    }
    let mut bob = hub.connect(Some(&token)).await;
    bob.send(json!({"type": "register", "protocol": 2, "agent": {"id": "bob", "name": "Bob"}, "lastSeq": 0})).await;
    for n in 2000..3000 {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": n.to_string()}))
            .await;
    }
    let mut got = Vec::new();
    // caught_up comes once, wherever the backlog ends among the live ones.
    let mut caught_up = 0;
    while got.len() < 3000 || caught_up == 0 {
        let frame = bob.next().await;
        match frame["type"].as_str() {
            Some("direct_message") => {
                got.push(frame["content"].as_str().unwrap().parse::<i64>().unwrap())
            }
            Some("caught_up") => caught_up += 1,
            _ => {}
        }
    }
    assert_eq!(got, (0..3000).collect::<Vec<_>>());
    assert_eq!(caught_up, 1);
    bob.ping_pong().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_catches_up_later() {
    let hub = TestHub::start_with(&["--token", ADMIN, "--max-queue", "64"]).await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let mut bob = hub.v2("bob", "Bob").await;
    bob.backlog().await;
    let token = bob.token.clone().unwrap();
    // Bob stops reading; big messages fill the socket buffers, then the
    // 64-frame queue.
    let body = "x".repeat(60_000);
    let mut sent = 0;
    let mut closed = false;
    for _ in 0..2000 {
        alice
            .send(json!({"type": "direct_message", "to": "bob", "content": body}))
            .await;
        alice.expect("sent").await;
        sent += 1;
        let (_, agent) = hub.get("/api/agents/bob", Some(ADMIN)).await;
        if agent["status"] == "offline" {
            closed = true;
            break;
        }
    }
    assert!(closed, "bob was never disconnected");
    // The hub sent 4008 before dropping bob.
    let mut code = None;
    while let Some(message) = futures_util::StreamExt::next(&mut bob.ws).await {
        if let Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame))) = message {
            code = Some(u16::from(frame.code));
            break;
        }
    }
    if let Some(code) = code {
        assert_eq!(code, 4008);
    }
    // Back with a fresh connection, bob gets every message from the store.
    let mut bob = Client::connect_url(&format!("{}/?token={token}", hub.ws))
        .await
        .unwrap();
    bob.register_v2("bob", "Bob", Some(0)).await;
    let (backlog, _) = bob.backlog().await;
    assert_eq!(backlog.len(), sent);
    // The close frame may not get through a full socket; the log says why.
    assert!(hub.log().contains("slow consumer"), "{}", hub.log());
}

#[tokio::test]
async fn a_client_id_reused_for_a_different_message_is_a_conflict() {
    let hub = TestHub::start().await;
    let mut alice = hub.v2("alice", "Alice").await;
    alice.backlog().await;
    let bob = hub.v2("bob", "Bob").await;
    drop(bob);
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "one", "clientId": "x1"}))
        .await;
    alice.expect("sent").await;
    alice
        .send(json!({"type": "direct_message", "to": "bob", "content": "two", "clientId": "x1"}))
        .await;
    alice.expect_error("conflict").await;
    alice
        .send(json!({"type": "join_group", "groupId": "g"}))
        .await;
    alice.expect("joined").await;
    alice
        .send(json!({"type": "message", "groupId": "g", "content": "one", "clientId": "x1"}))
        .await;
    alice.expect_error("conflict").await;
}
