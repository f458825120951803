//! Who is online: legacy clients get the whole `agent_list` on every change,
//! as from the original hub; v2 clients get presence only if they ask for
//! it in `register`, and then only what changed.

mod common;

use common::{Client, TestHub};
use futures_util::future;
use serde_json::{json, Value};

/// A v2 client registered with `"presence": true`; returns it and the
/// `agent_list` it got right after `registered`.
async fn follower(hub: &TestHub, id: &str) -> (Client, Value) {
    let token = hub.agent_token(id).await;
    let mut client = hub.connect(Some(&token)).await;
    client.token = Some(token);
    client
        .send(json!({"type": "register", "protocol": 2, "presence": true,
            "agent": {"id": id, "name": id, "role": "watcher"}}))
        .await;
    let registered = client.next().await;
    assert_eq!(registered["type"], "registered", "{registered}");
    let list = client.next().await;
    assert_eq!(list["type"], "agent_list", "{list}");
    // Its own arrival may be announced before its (empty) backlog ends.
    loop {
        let frame = client.next().await;
        match frame["type"].as_str().unwrap_or_default() {
            "caught_up" => return (client, list),
            "presence" => {}
            _ => panic!("a new follower got {frame}"),
        }
    }
}

/// Reads `presence` frames until one shows `agent` with `status`; panics
/// on an `agent_list` (followers get the list only once, at register).
/// Returns how many `presence` frames were read.
async fn until_presence(client: &mut Client, agent: &str, status: &str) -> (Value, usize) {
    let mut frames = 0;
    loop {
        let frame = client.next().await;
        match frame["type"].as_str().unwrap_or_default() {
            "presence" => {
                frames += 1;
                let agents = frame["agents"].as_array().unwrap();
                if let Some(entry) = agents.iter().find(|a| a["id"] == agent) {
                    if entry["status"] == status {
                        return (entry.clone(), frames);
                    }
                }
            }
            _ => panic!("a presence follower got {frame}"),
        }
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn legacy_clients_get_the_whole_agent_list_on_every_change() {
    let hub = TestHub::start().await;
    let mut watcher = hub.legacy("watcher", "Watcher").await;
    let bob = hub.v2("bob", "Bob").await;
    // Bob came: the whole list, not a change. Anything else on a legacy
    // connection meanwhile is a failure.
    loop {
        let frame = watcher.next().await;
        assert_eq!(frame["type"], "agent_list", "{frame}");
        if ids(&frame) == ["bob", "watcher"] {
            let bob = &frame["agents"][0];
            assert_eq!(
                (&bob["name"], &bob["status"]),
                (&json!("Bob"), &json!("online"))
            );
            break;
        }
    }
    drop(bob);
    loop {
        let frame = watcher.next().await;
        assert_eq!(frame["type"], "agent_list", "{frame}");
        if ids(&frame) == ["watcher"] {
            break;
        }
    }
}

#[tokio::test]
async fn v2_followers_get_the_list_once_then_only_changes() {
    let hub = TestHub::start().await;
    let (mut watcher, list) = follower(&hub, "watcher").await;
    assert_eq!(ids(&list), ["watcher"]);

    let bob = hub.v2("bob", "Bob").await;
    let (entry, _) = until_presence(&mut watcher, "bob", "online").await;
    assert_eq!(entry["name"], "Bob");
    assert!(entry["lastSeen"].as_str().unwrap().ends_with('Z'));

    drop(bob);
    let (entry, _) = until_presence(&mut watcher, "bob", "offline").await;
    assert_eq!(entry["name"], "Bob");
    // Still a full summary, so a client can show when it was last seen.
    assert!(entry["lastSeen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(entry["joinedAt"].as_str().map(str::len), Some(24));
}

#[tokio::test]
async fn v2_clients_that_do_not_ask_get_no_presence_but_can_look_it_up() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("quiet").await;
    let mut quiet = hub.connect(Some(&token)).await;
    quiet
        .send(json!({"type": "register", "protocol": 2, "agent": {"id": "quiet"}}))
        .await;
    // No agent_list at register: registered, then straight to caught_up.
    assert_eq!(quiet.next().await["type"], "registered");
    assert_eq!(quiet.next().await["type"], "caught_up");

    // Someone comes and goes; a follower proves each broadcast happened.
    let (mut watcher, _) = follower(&hub, "watcher").await;
    let bob = hub.v2("bob", "Bob").await;
    until_presence(&mut watcher, "bob", "online").await;
    drop(bob);
    until_presence(&mut watcher, "bob", "offline").await;
    // The broadcasts are over; the quiet client's next frame is the answer
    // to its own heartbeat, nothing unsolicited before it.
    quiet.send(json!({"type": "heartbeat"})).await;
    let next = quiet.next().await;
    assert_eq!(next["type"], "heartbeat_ack", "{next}");

    // It can always ask.
    let (status, agents) = hub.get("/api/agents", Some(&token)).await;
    assert_eq!(status, 200);
    let status_of = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["status"].clone())
    };
    assert_eq!(status_of("quiet"), Some(json!("online")));
    assert_eq!(status_of("watcher"), Some(json!("online")));
    assert_eq!(status_of("bob"), Some(json!("offline")));
}

#[tokio::test]
async fn a_mass_connect_reaches_followers_in_a_few_gathered_frames() {
    let hub = TestHub::start().await;
    let (mut watcher, _) = follower(&hub, "watcher").await;
    const AGENTS: usize = 40;
    let names: Vec<String> = (0..AGENTS).map(|k| format!("crowd-{k:02}")).collect();
    let crowd = future::join_all(names.iter().map(|id| hub.v2(id, id))).await;
    // Every arrival is reported; count the frames until the last one.
    let mut seen = std::collections::HashSet::new();
    let mut frames = 0;
    while seen.len() < AGENTS {
        let frame = watcher.next().await;
        assert_eq!(frame["type"], "presence", "{frame}");
        frames += 1;
        for agent in frame["agents"].as_array().unwrap() {
            if agent["status"] == "online" && agent["id"] != "watcher" {
                seen.insert(agent["id"].as_str().unwrap().to_owned());
            }
        }
    }
    // One frame per ~100 ms of arrivals, not one per arrival.
    assert!(
        frames <= AGENTS / 2,
        "{frames} presence frames for {AGENTS} arrivals"
    );
    drop(crowd);
}

#[tokio::test]
async fn frames_far_larger_than_the_read_chunk_arrive_whole() {
    // Default limits: content up to 65,536 bytes, frames up to the hard cap
    // of 458,752 bytes; the hub reads sockets in much smaller chunks.
    let hub = TestHub::start().await;
    let mut alice = hub.legacy("alice", "Alice").await;
    alice.join("clawdbots").await;
    let content = "x".repeat(65_536);
    alice
        .send(json!({"type": "message", "groupId": "clawdbots", "content": content}))
        .await;
    let sent = alice.expect_sent().await;
    assert!(sent["seq"].as_i64().unwrap() > 0, "{sent}");
    let history = hub.admin_get("/api/groups/clawdbots/messages").await;
    assert_eq!(history[0]["content"].as_str().map(str::len), Some(65_536));

    // Just under the hard cap, padded with a field the hub ignores.
    let mut frame = json!({"type": "message", "groupId": "clawdbots", "content": "padded"});
    let overhead = frame.to_string().len() + r#","pad":"""#.len();
    frame["pad"] = json!("p".repeat(458_752 - overhead));
    assert_eq!(frame.to_string().len(), 458_752);
    alice.send(frame).await;
    let sent = alice.expect_sent().await;
    assert!(sent["seq"].as_i64().unwrap() > 0, "{sent}");
}
