//! Tasks: every transition, bad transitions, idempotency, deadlines,
//! cancellation, least-busy fairness, leases and reassignment, restarts.

mod common;

use common::{Client, TestHub, ADMIN};
use serde_json::{json, Value};

/// A hub whose leases lapse quickly: pings every second, dead after two.
async fn quick_hub() -> TestHub {
    TestHub::start_with(&[
        "--token",
        ADMIN,
        "--ping-interval-secs",
        "1",
        "--idle-timeout-secs",
        "2",
    ])
    .await
}

async fn assign(client: &mut Client, request: Value) -> Value {
    let mut frame = request;
    frame["type"] = json!("assign_task");
    client.send(frame).await;
    client.expect("task_state").await["task"].clone()
}

async fn op(client: &mut Client, frame: Value) -> Value {
    client.send(frame).await;
    client.expect("task_state").await["task"].clone()
}

/// The next `task_update`, skipping presence.
async fn update(client: &mut Client) -> Value {
    client.expect("task_update").await
}

#[tokio::test]
async fn a_task_goes_through_every_state_and_both_sides_hear_each_step() {
    let hub = TestHub::start().await;
    let mut boss = hub.worker("boss", &[]).await;
    let mut builder = hub.worker("builder", &["xcode"]).await;
    let task = assign(
        &mut boss,
        json!({"title": "Build", "description": "the app", "assigneeId": "builder",
        "payload": {"branch": "main"}, "priority": "high"}),
    )
    .await;
    assert_eq!(task["status"], "assigned");
    assert_eq!(task["assignerId"], "boss");
    assert_eq!(task["attempts"], 1);
    let id = task["id"].as_str().unwrap().to_owned();

    let assigned = builder.expect("task_assigned").await;
    assert_eq!(assigned["task"]["id"], id.as_str());
    assert_eq!(assigned["task"]["title"], "Build");
    assert_eq!(assigned["task"]["payload"], json!({"branch": "main"}));

    let accepted = op(&mut builder, json!({"type": "task_accept", "taskId": id})).await;
    assert_eq!(accepted["status"], "accepted");
    let progress = op(
        &mut builder,
        json!({"type": "task_progress", "taskId": id, "percent": 40, "note": "compiling"}),
    )
    .await;
    assert_eq!(progress["status"], "in_progress");
    assert_eq!(
        progress["progress"],
        json!({"percent": 40, "note": "compiling"})
    );
    let done = op(
        &mut builder,
        json!({"type": "task_complete", "taskId": id, "result": {"artifact": "app.ipa"}}),
    )
    .await;
    assert_eq!(done["status"], "completed");

    // The assigner heard every step, live, in order.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let change = update(&mut boss).await;
        assert_eq!(change["change"]["actor"], "builder");
        statuses.push(change["change"]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["accepted", "in_progress", "completed"]);
    // The assignee made these changes itself: it has the answers, and no
    // update events.
    builder.ping_pong().await;

    let stored = hub.admin_get(&format!("/api/tasks/{id}")).await;
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["result"], json!({"artifact": "app.ipa"}));
    let history: Vec<(String, String)> = stored["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["status"].as_str().unwrap().to_owned(),
                h["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("assigned", "boss"),
            ("accepted", "builder"),
            ("in_progress", "builder"),
            ("completed", "builder")
        ]
        .map(|(s, a)| (s.to_owned(), a.to_owned()))
    );
    assert!(stored["history"][0]["at"].is_string());
}

#[tokio::test]
async fn out_of_order_and_unauthorized_changes_are_refused_and_change_nothing() {
    let hub = TestHub::start_with(&["--token", ADMIN, "--max-body-bytes", "1000"]).await;
    let mut boss = hub.worker("boss", &[]).await;
    let mut worker = hub.worker("worker", &[]).await;
    let mut other = hub.worker("other", &[]).await;
    let id = assign(&mut boss, json!({"title": "T", "assigneeId": "worker"})).await["id"].clone();
    worker.expect("task_assigned").await;

    worker
        .send(json!({"type": "task_complete", "taskId": id, "result": 1}))
        .await;
    worker.expect_error("invalid_transition").await;
    worker
        .send(json!({"type": "task_progress", "taskId": id, "percent": 10}))
        .await;
    worker.expect_error("invalid_transition").await;
    other
        .send(json!({"type": "task_accept", "taskId": id}))
        .await;
    other.expect_error("forbidden").await;
    boss.send(json!({"type": "task_complete", "taskId": id}))
        .await;
    boss.expect_error("forbidden").await;
    op(&mut worker, json!({"type": "task_accept", "taskId": id})).await;
    update(&mut boss).await;
    worker
        .send(json!({"type": "task_accept", "taskId": id}))
        .await;
    worker.expect_error("invalid_transition").await;
    worker
        .send(json!({"type": "task_complete", "taskId": id, "result": "x".repeat(2000)}))
        .await;
    worker.expect_error("too_large").await;
    worker
        .send(json!({"type": "task_progress", "taskId": id, "percent": 101}))
        .await;
    worker.expect_error("invalid_argument").await;
    worker
        .send(json!({"type": "task_progress", "taskId": id, "percent": -1}))
        .await;
    worker.expect_error("invalid_frame").await;
    worker
        .send(json!({"type": "task_complete", "taskId": "task-nope"}))
        .await;
    worker.expect_error("not_found").await;
    other
        .send(json!({"type": "task_cancel", "taskId": id}))
        .await;
    other.expect_error("forbidden").await;
    op(
        &mut worker,
        json!({"type": "task_complete", "taskId": id, "result": "ok"}),
    )
    .await;
    update(&mut boss).await;
    worker
        .send(json!({"type": "task_complete", "taskId": id, "result": "again"}))
        .await;
    worker.expect_error("invalid_transition").await;
    boss.send(json!({"type": "task_cancel", "taskId": id}))
        .await;
    boss.expect_error("invalid_transition").await;
    let stored = hub
        .admin_get(&format!("/api/tasks/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["result"], "ok");

    // Bad creations.
    for (request, code) in [
        (
            json!({"title": "T", "assigneeId": "ghost"}),
            "unknown_agent",
        ),
        (
            json!({"title": "T", "capability": "quantum"}),
            "unknown_capability",
        ),
        (
            json!({"title": "", "assigneeId": "worker"}),
            "invalid_argument",
        ),
        (
            json!({"title": "T", "assigneeId": "worker", "capability": "x"}),
            "invalid_argument",
        ),
        (
            json!({"title": "T", "assigneeId": "worker", "deadline": "tomorrow"}),
            "invalid_argument",
        ),
        (
            json!({"title": "T", "assigneeId": "worker", "deadline": "2001-01-01T00:00:00Z"}),
            "invalid_argument",
        ),
        (
            json!({"title": "T", "assigneeId": "worker", "maxAttempts": 0}),
            "invalid_argument",
        ),
        (
            json!({"title": "T", "assigneeId": "worker", "payload": "y".repeat(2000)}),
            "too_large",
        ),
    ] {
        let mut frame = request.clone();
        frame["type"] = json!("assign_task");
        boss.send(frame).await;
        boss.expect_error(code).await;
    }
    assert_eq!(
        hub.admin_get("/api/tasks").await.as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_task() {
    let hub = TestHub::start().await;
    let mut boss = hub.worker("boss", &[]).await;
    let mut worker = hub.worker("worker", &[]).await;
    let first = assign(
        &mut boss,
        json!({"title": "Once", "assigneeId": "worker", "idempotencyKey": "k1"}),
    )
    .await;
    // The assignee gets the task, not the assigner's key.
    let assigned = worker.expect("task_assigned").await;
    assert!(
        assigned["task"].get("idempotencyKey").is_none(),
        "{assigned}"
    );
    let second = assign(
        &mut boss,
        json!({"title": "Once", "assigneeId": "worker", "idempotencyKey": "k1"}),
    )
    .await;
    assert_eq!(first["id"], second["id"]);
    let token = boss.token.clone().unwrap();
    let body = json!({"title": "Once", "assigneeId": "worker", "idempotencyKey": "k1"});
    let (status, over_rest) = hub.post("/api/tasks", Some(&token), &body).await;
    assert_eq!(status, 200, "{over_rest}");
    assert_eq!(over_rest["id"], first["id"]);
    assert_eq!(
        hub.admin_get("/api/tasks").await.as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn cancel_tells_the_assignee_and_a_deadline_times_out_for_both() {
    let hub = TestHub::start().await;
    let mut boss = hub.worker("boss", &[]).await;
    let mut worker = hub.worker("worker", &[]).await;
    let id =
        assign(&mut boss, json!({"title": "Maybe", "assigneeId": "worker"})).await["id"].clone();
    worker.expect("task_assigned").await;
    let cancelled = op(&mut boss, json!({"type": "task_cancel", "taskId": id})).await;
    assert_eq!(cancelled["status"], "cancelled");
    let told = update(&mut worker).await;
    assert_eq!(
        (
            told["change"]["status"].as_str(),
            told["change"]["actor"].as_str()
        ),
        (Some("cancelled"), Some("boss"))
    );
    worker
        .send(json!({"type": "task_accept", "taskId": id}))
        .await;
    worker.expect_error("invalid_transition").await;

    let deadline = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let request = json!({"title": "Quick", "assigneeId": "worker", "deadline": deadline,
        "idempotencyKey": "quick-1"});
    let id = assign(&mut boss, request.clone()).await["id"].clone();
    worker.expect("task_assigned").await;
    op(&mut worker, json!({"type": "task_accept", "taskId": id})).await;
    update(&mut boss).await; // the accept
    for client in [&mut boss, &mut worker] {
        let timed_out = update(client).await;
        assert_eq!(timed_out["task"]["id"], id);
        assert_eq!(timed_out["change"]["status"], "timed_out");
        assert_eq!(timed_out["change"]["actor"], "hub");
    }
    // A retry of the same request, its deadline now past, is answered with
    // the task it made, not refused for the deadline.
    let retried = assign(&mut boss, request).await;
    assert_eq!(retried["id"], id);
    assert_eq!(retried["status"], "timed_out");
    // Without the key the same past deadline is refused.
    boss.send(
        json!({"type": "assign_task", "title": "Late", "assigneeId": "worker",
        "deadline": deadline}),
    )
    .await;
    boss.expect_error("invalid_argument").await;
}

#[tokio::test]
async fn capability_tasks_go_to_the_least_busy_agent_taking_turns() {
    let hub = TestHub::start().await;
    let mut boss = hub.worker("boss", &[]).await;
    let mut workers = Vec::new();
    for id in ["gpu-a", "gpu-b", "gpu-c"] {
        workers.push(hub.worker(id, &["gpu", "cuda"]).await);
    }
    let _cpu = hub.worker("cpu-only", &["cpu"]).await;
    let mut assignees = Vec::new();
    for n in 0..6 {
        let task = assign(
            &mut boss,
            json!({"title": format!("render {n}"), "capability": "gpu"}),
        )
        .await;
        assignees.push(task["assigneeId"].as_str().unwrap().to_owned());
    }
    // Equal load: each takes its turn, twice.
    assert_eq!(
        assignees,
        ["gpu-a", "gpu-b", "gpu-c", "gpu-a", "gpu-b", "gpu-c"]
    );

    // gpu-a finishes both of its tasks: it is now the least busy.
    let a = &mut workers[0];
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(a.expect("task_assigned").await["task"]["id"].clone());
    }
    for id in ids {
        op(a, json!({"type": "task_accept", "taskId": id})).await;
        op(a, json!({"type": "task_complete", "taskId": id})).await;
    }
    for _ in 0..4 {
        update(&mut boss).await;
    }
    let next = assign(&mut boss, json!({"title": "render 6", "capability": "gpu"})).await;
    assert_eq!(next["assigneeId"], "gpu-a");
}

#[tokio::test]
async fn a_task_waits_for_an_eligible_agent_and_goes_to_it_when_it_comes() {
    let hub = TestHub::start().await;
    let mut boss = hub.worker("boss", &[]).await;
    let mac = hub.worker("mac", &["xcode"]).await;
    let token = mac.token.clone().unwrap();
    drop(mac);
    // Wait until the hub has noticed mac left.
    loop {
        if hub.admin_get("/api/agents/mac").await["status"] == "offline" {
            break;
        }
        boss.ping_pong().await;
    }
    let task = assign(&mut boss, json!({"title": "Sign", "capability": "xcode"})).await;
    assert_eq!(task["status"], "pending");
    let mut mac = hub.connect(Some(&token)).await;
    mac.send(json!({"type": "register", "protocol": 2, "agent": {"id": "mac", "capabilities": ["xcode"]}})).await;
    mac.expect("registered").await;
    // The assignment may be made while mac catches up (then it is part of
    // the backlog) or after.
    let (backlog, _) = mac.backlog().await;
    let assigned = match backlog.into_iter().find(|f| f["type"] == "task_assigned") {
        Some(frame) => frame,
        None => mac.expect("task_assigned").await,
    };
    assert_eq!(assigned["task"]["id"], task["id"]);
    assert_eq!(assigned["task"]["attempts"], 1);
    let told = update(&mut boss).await;
    assert_eq!(told["change"]["status"], "assigned");
}

#[tokio::test]
async fn a_killed_agents_task_goes_to_another_and_a_live_long_task_stays() {
    let hub = quick_hub().await;
    let mut boss = hub.worker("boss", &[]).await;
    let mut first = hub.worker("w1", &["build"]).await;
    let mut second = hub.worker("w2", &["build"]).await;
    let task = assign(
        &mut boss,
        json!({"title": "Long build", "capability": "build"}),
    )
    .await;
    assert_eq!(task["assigneeId"], "w1");
    let id = task["id"].clone();
    first.expect("task_assigned").await;
    op(&mut first, json!({"type": "task_accept", "taskId": id})).await;
    assert_eq!(update(&mut boss).await["change"]["status"], "accepted");

    // A long task on a live connection is never handed out twice: w1 stays
    // connected through several idle timeouts (answering the hub's pings,
    // as every WebSocket client does while it reads), and nothing moves.
    let mut pings = 0;
    while pings < 5 {
        match tokio::time::timeout(common::WAIT, futures_util::StreamExt::next(&mut first.ws)).await
        {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_)))) => {
                pings += 1;
                // The others keep reading too, so they stay alive.
                second.ping_pong().await;
                boss.ping_pong().await;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("w1's connection failed: {other:?}"),
        }
    }
    let stored = hub
        .admin_get(&format!("/api/tasks/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(
        (stored["status"].as_str(), stored["assignee_id"].as_str()),
        (Some("accepted"), Some("w1"))
    );
    second.ping_pong().await; // w2 was offered nothing

    // w1 dies mid-task; after its lease lapses the task goes to w2.
    drop(first);
    // Both keep reading (and so answering pings) while the lease lapses.
    let (reassigned, change) = tokio::join!(second.expect("task_assigned"), update(&mut boss));
    assert_eq!(reassigned["task"]["id"], id);
    assert_eq!(reassigned["task"]["attempts"], 2);
    let change = change["change"].clone();
    assert_eq!(
        (change["status"].as_str(), change["actor"].as_str()),
        (Some("assigned"), Some("hub"))
    );
}

#[tokio::test]
async fn a_capability_task_dies_after_its_attempts_and_a_named_one_waits() {
    let hub = quick_hub().await;
    let mut boss = hub.worker("boss", &[]).await;
    let worker = hub.worker("solo", &["gpu"]).await;
    let token = worker.token.clone().unwrap();
    let mut worker = worker;
    let fragile = assign(
        &mut boss,
        json!({"title": "Fragile", "capability": "gpu", "maxAttempts": 1}),
    )
    .await;
    let named = assign(&mut boss, json!({"title": "Yours", "assigneeId": "solo"})).await;
    worker.expect("task_assigned").await;
    worker.expect("task_assigned").await;
    drop(worker);
    // Boss keeps reading while solo's lease lapses.
    let dead = update(&mut boss).await;
    assert_eq!(dead["task"]["id"], fragile["id"]);
    assert_eq!(dead["change"]["status"], "dead");
    // The named task still belongs to solo, who gets it back on return.
    let stored = hub
        .admin_get(&format!("/api/tasks/{}", named["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (stored["status"].as_str(), stored["assignee_id"].as_str()),
        (Some("assigned"), Some("solo"))
    );
    let mut worker = hub.connect(Some(&token)).await;
    worker.register_v2("solo", "solo", None).await;
    let (backlog, _) = worker.backlog().await;
    assert!(backlog
        .iter()
        .any(|f| f["type"] == "task_update" && f["change"]["status"] == "dead"));
    op(
        &mut worker,
        json!({"type": "task_accept", "taskId": named["id"]}),
    )
    .await;
}

#[tokio::test]
async fn tasks_survive_a_hub_restart() {
    let mut hub = TestHub::start().await;
    let mut boss = hub.worker("boss", &[]).await;
    let worker = hub.worker("worker", &[]).await;
    let worker_token = worker.token.clone().unwrap();
    let boss_token = boss.token.clone().unwrap();
    drop(worker);
    let id = assign(
        &mut boss,
        json!({"title": "Across restarts", "assigneeId": "worker"}),
    )
    .await["id"]
        .clone();
    drop(boss);
    hub.kill().await;
    hub.restart().await;
    let mut worker = hub.connect(Some(&worker_token)).await;
    worker.register_v2("worker", "worker", None).await;
    let (backlog, _) = worker.backlog().await;
    assert_eq!(backlog[0]["type"], "task_assigned");
    assert_eq!(backlog[0]["task"]["id"], id);
    op(&mut worker, json!({"type": "task_accept", "taskId": id})).await;
    op(
        &mut worker,
        json!({"type": "task_complete", "taskId": id, "result": "done"}),
    )
    .await;
    let mut boss = hub.connect(Some(&boss_token)).await;
    boss.register_v2("boss", "boss", None).await;
    let (backlog, _) = boss.backlog().await;
    let statuses: Vec<&str> = backlog
        .iter()
        .map(|f| f["change"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["accepted", "completed"]);
}

#[tokio::test]
async fn rest_lists_with_filters_and_pages_and_changes_tasks() {
    let hub = TestHub::start().await;
    let _w = hub.worker("worker", &[]).await;
    let token = hub.agent_token("worker").await;
    for n in 0..5 {
        let (status, _) = hub
            .post(
                "/api/tasks",
                Some(ADMIN),
                &json!({"title": format!("t{n}"), "assigneeId": "worker"}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let page = hub.admin_get("/api/tasks?assignee=worker&limit=2").await;
    let titles: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["t4", "t3"]);
    let cursor = page[1]["cursor"].as_i64().unwrap();
    let next = hub
        .admin_get(&format!(
            "/api/tasks?assignee=worker&limit=2&before={cursor}"
        ))
        .await;
    let titles: Vec<&str> = next
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["t2", "t1"]);
    let id = page[0]["id"].as_str().unwrap().to_owned();
    let (status, accepted) = hub
        .post(&format!("/api/tasks/{id}/accept"), Some(&token), &json!({}))
        .await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (200, Some("accepted"))
    );
    let (status, body) = hub
        .post(&format!("/api/tasks/{id}/accept"), Some(&token), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invalid_transition"))
    );
    let (status, done) = hub
        .post(
            &format!("/api/tasks/{id}/complete"),
            Some(&token),
            &json!({"result": {"ok": true}}),
        )
        .await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")));
    let completed = hub.admin_get("/api/tasks?status=completed").await;
    assert_eq!(completed.as_array().unwrap().len(), 1);
    let (status, body) = hub.get("/api/tasks?status=bogus", Some(ADMIN)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
}
