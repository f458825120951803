//! The Rust connector against the real hub: events with the right fields,
//! typed errors, and a hub crash in the middle of a conversation with
//! nothing lost or doubled.

mod common;

use std::time::Duration;

use clawbot_connector::protocol::{AgentInfo, ErrorCode};
use clawbot_connector::{connect, Client, ClientConfig, ClientError, Event, Events};
use common::{TestHub, ADMIN};

fn config(hub: &TestHub, id: &str, token: &str) -> ClientConfig {
    let mut agent = AgentInfo::new(id);
    agent.name = Some(format!("Agent {id}"));
    agent.capabilities = vec!["rust".into()];
    let mut config = ClientConfig::new(hub.ws.clone(), agent);
    // Port 0 gives unrelated ports, so the REST URL cannot be derived.
    config.rest_url = Some(hub.http.clone());
    config.token = Some(token.to_owned());
    config.min_backoff = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(500);
    config
}

async fn agent(hub: &TestHub, id: &str) -> (Client, Events) {
    let token = hub.agent_token(id).await;
    connect(config(hub, id, &token)).await.unwrap()
}

/// The next event that is not presence or a connection notice.
async fn next_stored(events: &mut Events) -> Event {
    loop {
        let event = tokio::time::timeout(common::WAIT, events.recv())
            .await
            .expect("no event in time")
            .expect("events ended");
        if event.seq().is_some() {
            return event;
        }
    }
}

#[tokio::test]
async fn messages_dms_and_mentions_arrive_as_typed_events() {
    let hub = TestHub::start().await;
    let (alice, _alice_events) = agent(&hub, "alice").await;
    let (bob, mut bob_events) = agent(&hub, "bob").await;
    alice.join_group("team").await.unwrap();
    bob.join_group("team").await.unwrap();

    let sent = alice.send_message("team", "hi @bob").await.unwrap();
    assert!(sent.seq > 0 && !sent.duplicate);
    let Event::Message(message) = next_stored(&mut bob_events).await else {
        panic!()
    };
    assert_eq!(
        (message.from.as_str(), message.from_name.as_str()),
        ("alice", "Agent alice")
    );
    assert_eq!(
        (message.group_id.as_str(), message.content.as_str()),
        ("team", "hi @bob")
    );
    assert_eq!(message.seq, sent.seq);
    let Event::Mention(mention) = next_stored(&mut bob_events).await else {
        panic!()
    };
    assert_eq!(mention.message_id, message.id);

    alice.send_direct_message("bob", "psst").await.unwrap();
    let Event::DirectMessage(dm) = next_stored(&mut bob_events).await else {
        panic!()
    };
    assert_eq!((dm.to.as_str(), dm.content.as_str()), ("bob", "psst"));

    let page = bob.history("team", None, None, Some(10)).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].content, "hi @bob");
    let agents = bob.agents().await.unwrap();
    assert_eq!(agents.len(), 2);
}

/// The connector reads the socket in chunks (16 KiB): a message several
/// chunks long still arrives whole, and so does a burst of small ones.
#[tokio::test]
async fn a_message_longer_than_a_read_and_a_burst_arrive_whole_and_in_order() {
    let hub = TestHub::start().await;
    let (alice, _alice_events) = agent(&hub, "alice").await;
    let (_bob, mut bob_events) = agent(&hub, "bob").await;
    let long: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    alice.send_direct_message("bob", &long).await.unwrap();
    let Event::DirectMessage(dm) = next_stored(&mut bob_events).await else {
        panic!()
    };
    assert_eq!(dm.content, long);

    let burst: Vec<String> = (0..500).map(|i| format!("burst {i}")).collect();
    let sends = burst
        .iter()
        .map(|content| alice.send_direct_message("bob", content));
    futures_util::future::try_join_all(sends).await.unwrap();
    let (mut contents, mut seqs) = (Vec::new(), Vec::new());
    while contents.len() < burst.len() {
        let Event::DirectMessage(dm) = next_stored(&mut bob_events).await else {
            panic!()
        };
        contents.push(dm.content);
        seqs.push(dm.seq);
    }
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "in seq order"
    );
    contents.sort();
    let mut expected = burst.clone();
    expected.sort();
    assert_eq!(contents, expected, "each once");
}

#[tokio::test]
async fn errors_are_typed() {
    let hub = TestHub::start().await;
    let token = hub.agent_token("alice").await;

    let error = connect(config(&hub, "alice", "cbn_wrong"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, ClientError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );

    let mut bad = config(&hub, "alice", &token);
    bad.server_url = "http://127.0.0.1:1".into();
    assert!(matches!(
        connect(bad).await.err().unwrap(),
        ClientError::InvalidUrl { .. }
    ));

    let mut down = config(&hub, "alice", &token);
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    down.server_url = format!("ws://127.0.0.1:{free_port}");
    assert!(matches!(
        connect(down).await.err().unwrap(),
        ClientError::Unreachable { .. }
    ));

    // wss:// is supported: against a plain socket the TLS handshake fails
    // (not "TLS support not compiled in").
    let mut tls = config(&hub, "alice", &token);
    tls.server_url = hub.ws.replacen("ws://", "wss://", 1);
    let error = connect(tls).await.err().unwrap();
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("not compiled"), "{error}");

    let error = connect(config(&hub, "bob", &token)).await.err().unwrap();
    assert!(
        matches!(
            error,
            ClientError::Rejected {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{error:?}"
    );

    let (alice, _events) = connect(config(&hub, "alice", &token)).await.unwrap();
    let error = alice.send_message("no-such-group", "x").await.unwrap_err();
    assert!(matches!(
        error,
        ClientError::Rejected {
            code: ErrorCode::UnknownGroup,
            ..
        }
    ));
    // The connection is still fine.
    alice.join_group("g").await.unwrap();
    alice.send_message("g", "ok").await.unwrap();
}

#[tokio::test]
async fn a_join_token_claim_switches_the_client_to_its_credential() {
    let hub = TestHub::start().await;
    let join = hub.join_token().await;
    let (client, _events) = connect(config(&hub, "mini", &join)).await.unwrap();
    let credential = client.token().unwrap();
    assert_ne!(credential, join);
    assert_eq!(
        hub.get("/api/agents/mini/inbox", Some(&credential)).await.0,
        200
    );
}

#[tokio::test]
async fn a_hub_crash_mid_conversation_loses_and_doubles_nothing() {
    let mut hub = TestHub::start().await;
    let (alice, _alice_events) = agent(&hub, "alice").await;
    let (bob, mut bob_events) = agent(&hub, "bob").await;
    alice.join_group("team").await.unwrap();
    bob.join_group("team").await.unwrap();

    let total = 60;
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..total {
                // Each send returns once stored, retrying across the crash.
                seqs.push(
                    alice
                        .send_message("team", &format!("m{n}"))
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        })
    };
    // Crash the hub once bob has seen a third of the conversation.
    let mut received = Vec::new();
    while received.len() < total / 3 {
        if let Event::Message(message) = next_stored(&mut bob_events).await {
            received.push(message);
        }
    }
    hub.crash_and_restart_on_same_ports().await;
    while received.len() < total {
        if let Event::Message(message) = next_stored(&mut bob_events).await {
            received.push(message);
        }
    }
    let seqs = sender.await.unwrap();
    let contents: Vec<String> = received.iter().map(|m| m.content.clone()).collect();
    let expected: Vec<String> = (0..total).map(|n| format!("m{n}")).collect();
    assert_eq!(contents, expected, "every message once, in order");
    assert_eq!(received.iter().map(|m| m.seq).collect::<Vec<_>>(), seqs);
    // Nothing more is pending for bob: a fresh message is the next event.
    alice.send_message("team", "after").await.unwrap();
    let Event::Message(next) = next_stored(&mut bob_events).await else {
        panic!()
    };
    assert_eq!(next.content, "after");
    let history = hub.admin_get("/api/groups/team/messages?limit=500").await;
    assert_eq!(
        history.as_array().unwrap().len(),
        total + 1,
        "stored once each"
    );
    let _ = ADMIN;
}

#[tokio::test]
async fn sending_while_the_hub_is_down_is_queued_and_sent_once_on_reconnect() {
    let mut hub = TestHub::start().await;
    let (alice, mut alice_events) = agent(&hub, "alice").await;
    let (_bob, mut bob_events) = agent(&hub, "bob").await;
    hub.kill().await;
    // Wait until alice notices.
    loop {
        if let Some(Event::Disconnected { .. }) = alice_events.recv().await {
            break;
        }
    }
    assert!(!alice.is_connected());
    let pending = tokio::spawn({
        let alice = alice.clone();
        async move { alice.send_direct_message("bob", "queued").await }
    });
    hub.crash_and_restart_on_same_ports_after_kill().await;
    let sent = pending.await.unwrap().unwrap();
    let Event::DirectMessage(dm) = next_stored(&mut bob_events).await else {
        panic!()
    };
    assert_eq!((dm.content.as_str(), dm.seq), ("queued", sent.seq));
}

/// The next `AgentList` event whose ids are `expected`.
async fn until_online(events: &mut Events, expected: &[&str]) -> Vec<String> {
    loop {
        let event = tokio::time::timeout(common::WAIT, events.recv())
            .await
            .expect("no presence in time")
            .expect("events ended");
        if let Event::AgentList(agents) = event {
            let ids: Vec<String> = agents.into_iter().map(|a| a.id).collect();
            if ids == expected {
                return ids;
            }
        }
    }
}

#[tokio::test]
async fn the_connector_follows_who_is_online_from_presence_changes() {
    let hub = TestHub::start().await;
    let (alice, mut alice_events) = agent(&hub, "alice").await;
    until_online(&mut alice_events, &["alice"]).await;
    let (bob, _bob_events) = agent(&hub, "bob").await;
    until_online(&mut alice_events, &["alice", "bob"]).await;
    let online: Vec<String> = alice.online_agents().into_iter().map(|a| a.id).collect();
    assert_eq!(online, ["alice", "bob"]);
    bob.close().await;
    until_online(&mut alice_events, &["alice"]).await;
    assert_eq!(alice.online_agents().len(), 1);

    // An agent that does not follow presence is told nothing, and its
    // list stays empty; it can still ask over REST.
    let token = hub.agent_token("carol").await;
    let mut quiet = config(&hub, "carol", &token);
    quiet.presence = false;
    let (carol, mut carol_events) = connect(quiet).await.unwrap();
    let (dave, _dave_events) = agent(&hub, "dave").await;
    until_online(&mut alice_events, &["alice", "carol", "dave"]).await;
    dave.close().await;
    until_online(&mut alice_events, &["alice", "carol"]).await;
    // Both broadcasts are out; a stored event sent now arrives after them.
    alice.send_direct_message("carol", "after").await.unwrap();
    loop {
        let event = tokio::time::timeout(common::WAIT, carol_events.recv())
            .await
            .expect("no event in time")
            .expect("events ended");
        match event {
            Event::Connected { .. } => {}
            Event::DirectMessage(dm) => {
                assert_eq!(dm.content, "after");
                break;
            }
            other => panic!("carol does not follow presence, got {other:?}"),
        }
    }
    assert!(carol.online_agents().is_empty());
    let statuses: Vec<(String, bool)> = carol
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.id,
                a.status == clawbot_connector::protocol::AgentStatus::Online,
            )
        })
        .collect();
    assert!(
        statuses.contains(&("dave".to_owned(), false)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("carol".to_owned(), true)),
        "{statuses:?}"
    );
}
