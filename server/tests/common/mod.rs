//! Test harness: the real `clawbot-hub` binary on port 0 with a temporary
//! data directory, real WebSocket clients and a real HTTP client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ADMIN: &str = "test-admin-token";
/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestHub {
    child: Option<Child>,
    pub http: String,
    pub ws: String,
    /// Kept alive for the hub's lifetime (and across restarts).
    dir: tempfile::TempDir,
    args: Vec<String>,
    pub rest: reqwest::Client,
}

impl TestHub {
    /// A hub with the admin token [`ADMIN`].
    pub async fn start() -> TestHub {
        Self::start_with(&["--token", ADMIN]).await
    }

    pub async fn start_with(args: &[&str]) -> TestHub {
        // reqwest is built with TLS but no crypto provider of its own (the
        // connector chooses ring); the test's HTTP client needs it too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut dir = tempfile::tempdir().unwrap();
        if std::env::var_os("CLAWBOT_KEEP_TEST_DIRS").is_some() {
            // For debugging a failure: keep the data and the hub's log.
            dir.disable_cleanup(true);
            eprintln!("hub directory: {}", dir.path().display());
        }
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, http, ws) = spawn(dir.path(), &args).await;
        TestHub {
            child: Some(child),
            http,
            ws,
            dir,
            args,
            rest: reqwest::Client::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id().unwrap()
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().await.unwrap();
    }

    /// SIGTERM, and the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().unwrap().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap()
            .unwrap()
    }

    /// Starts the hub again on the same data directory with other flags.
    pub async fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.restart().await;
    }

    /// Starts the hub again on the same data directory (new ports).
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
        let (child, http, ws) = spawn(self.dir.path(), &self.args).await;
        self.child = Some(child);
        self.http = http;
        self.ws = ws;
    }

    /// Kills the hub (SIGKILL) and starts it again on the same ports, as a
    /// crash and a supervisor restart would: clients reconnect to the URL
    /// they know.
    pub async fn crash_and_restart_on_same_ports(&mut self) {
        self.kill().await;
        self.crash_and_restart_on_same_ports_after_kill().await;
    }

    /// Starts a killed hub again on its old ports.
    pub async fn crash_and_restart_on_same_ports_after_kill(&mut self) {
        let port = |url: &str| url.rsplit(':').next().unwrap().to_owned();
        let mut args = self.args.clone();
        args.extend([
            "--port".into(),
            port(&self.http),
            "--ws-port".into(),
            port(&self.ws),
        ]);
        let (child, http, ws) = spawn(self.dir.path(), &args).await;
        self.child = Some(child);
        assert_eq!(
            (http.as_str(), ws.as_str()),
            (self.http.as_str(), self.ws.as_str())
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    // ---- REST ----

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.rest.get(format!("{}{path}", self.http));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let (status, body) = self.get(path, Some(ADMIN)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.rest.post(format!("{}{path}", self.http)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Mints an agent's own credential with the admin token.
    pub async fn agent_token(&self, agent_id: &str) -> String {
        let (status, body) = self
            .post(
                "/api/tokens",
                Some(ADMIN),
                &json!({"kind": "agent", "agentId": agent_id}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn join_token(&self) -> String {
        let (status, body) = self
            .post("/api/tokens", Some(ADMIN), &json!({"kind": "join"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    // ---- WebSocket ----

    /// Connects to the WebSocket port with `?token=`.
    pub async fn connect(&self, token: Option<&str>) -> Client {
        let url = match token {
            Some(token) => format!("{}/?token={token}", self.ws),
            None => format!("{}/", self.ws),
        };
        Client::connect_url(&url).await.unwrap()
    }

    /// A legacy client (no protocol field) with its own agent token,
    /// registered; `registered` is consumed.
    pub async fn legacy(&self, id: &str, name: &str) -> Client {
        let token = self.agent_token(id).await;
        let mut client = self.connect(Some(&token)).await;
        client.token = Some(token);
        client
            .send(json!({"type": "register", "agent": {"id": id, "name": name, "role": "tester", "device": "ci"}}))
            .await;
        let registered = client.expect("registered").await;
        assert_eq!(registered["agentId"], id);
        client
    }

    /// A legacy client connecting again with `token` as agent `id`,
    /// registered; `registered` is consumed, the backlog is not.
    pub async fn legacy_again(&self, token: &str, id: &str, name: &str) -> Client {
        let mut client = self.connect(Some(token)).await;
        client.token = Some(token.to_owned());
        client
            .send(json!({"type": "register", "agent": {"id": id, "name": name}}))
            .await;
        client.expect("registered").await;
        client
    }

    /// A v2 client with these capabilities, registered, its backlog read.
    pub async fn worker(&self, id: &str, capabilities: &[&str]) -> Client {
        let token = self.agent_token(id).await;
        let mut client = self.connect(Some(&token)).await;
        client.token = Some(token);
        client
            .send(json!({"type": "register", "protocol": 2,
                "agent": {"id": id, "name": id, "capabilities": capabilities}}))
            .await;
        client.expect("registered").await;
        client.backlog().await;
        client
    }

    /// A v2 client with its own agent token, registered and caught up.
    pub async fn v2(&self, id: &str, name: &str) -> Client {
        let token = self.agent_token(id).await;
        let mut client = self.connect(Some(&token)).await;
        client.token = Some(token);
        client.register_v2(id, name, None).await;
        client
    }
}

async fn spawn(dir: &Path, args: &[String]) -> (Child, String, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("hub.log"))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_clawbot-hub"));
    command
        .args(["--bind", "127.0.0.1", "--data-dir"])
        .arg(dir.join("data"));
    if !args.iter().any(|a| a == "--port") {
        command.args(["--port", "0", "--ws-port", "0"]);
    }
    let mut child = command
        .args(args)
        .env("RUST_LOG", "info,clawbot_hub=debug")
        .env_remove("CLAWBOT_TOKEN")
        .env_remove("PORT")
        .env_remove("WS_PORT")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the hub did not start")
        .unwrap()
        .expect("the hub exited before listening");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    let (http, ws) = (field("http="), field("ws="));
    (child, format!("http://{http}"), format!("ws://{ws}"))
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub token: Option<String>,
    /// The seq of this client's last confirmed message while its own copy
    /// (if it is a group member) may still be on the way: the hub confirms
    /// before it delivers, so the copy can come after `sent`.
    pending_echo: Option<i64>,
}

/// Frame types that arrive on their own schedule and that `expect` skips.
const BACKGROUND: &[&str] = &["agent_list", "presence"];

impl Client {
    pub async fn connect_url(url: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Client {
            ws,
            token: None,
            pending_echo: None,
        })
    }

    pub async fn connect_with_header(url: &str, token: &str) -> Client {
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Client {
            ws,
            token: Some(token.to_owned()),
            pending_echo: None,
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text frame, whatever its type.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame arrived in time")
                .expect("the connection ended")
                .expect("the connection failed");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => panic!("closed by the hub: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame that is not a background one (nor this client's own
    /// copy of a message already confirmed); it must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            let frame_type = frame["type"].as_str().unwrap_or_default();
            if frame_type == "message"
                && self.pending_echo.is_some()
                && frame["seq"].as_i64() == self.pending_echo
            {
                self.pending_echo = None;
                continue;
            }
            if frame_type == kind {
                return frame;
            }
            if !BACKGROUND.contains(&frame_type) {
                panic!("expected a '{kind}' frame, got {frame}");
            }
        }
    }

    /// An `error` frame with this code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
        frame
    }

    /// Reads until the hub closes the connection; returns the close frame.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no close in time")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Legacy receipt: waits for the hub's checkpoint ping (an 8-byte seq)
    /// that follows delivered frames, answers it, and makes sure the hub
    /// has read the answer.
    pub async fn answer_checkpoint(&mut self) {
        let checkpoint = self.checkpoint_ping().await;
        self.answer_ping(checkpoint).await;
        self.ping_pong().await;
    }

    /// The next checkpoint ping's payload, not answered yet: tungstenite
    /// queues its automatic pong and sends it with this socket's next read
    /// or write.
    pub async fn checkpoint_ping(&mut self) -> Bytes {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no checkpoint ping in time")
                .expect("the connection ended")
                .expect("the connection failed");
            if let Message::Ping(payload) = message {
                if payload.len() == 8 {
                    return payload;
                }
            }
        }
    }

    /// Waits until the hub has sent this client something, without reading
    /// it (so nothing tungstenite has queued is sent either).
    pub async fn wait_for_bytes(&self) {
        let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() else {
            panic!("a plain TCP connection was expected");
        };
        tokio::time::timeout(WAIT, tcp.readable())
            .await
            .expect("nothing arrived in time")
            .unwrap();
    }

    pub async fn answer_ping(&mut self, payload: Bytes) {
        self.ws.send(Message::Pong(payload)).await.unwrap();
    }

    /// Proves the connection is alive and in order: a heartbeat round trip.
    pub async fn ping_pong(&mut self) {
        self.send(json!({"type": "heartbeat"})).await;
        self.expect("heartbeat_ack").await;
    }

    pub async fn register_v2(&mut self, id: &str, name: &str, last_seq: Option<i64>) -> Value {
        let mut frame = json!({"type": "register", "protocol": 2,
            "agent": {"id": id, "name": name, "capabilities": ["test"]}});
        if let Some(seq) = last_seq {
            frame["lastSeq"] = json!(seq);
        }
        self.send(frame).await;
        let registered = self.expect("registered").await;
        assert_eq!(registered["protocol"], 2);
        registered
    }

    /// v2: the frames before `caught_up`, and its seq.
    pub async fn backlog(&mut self) -> (Vec<Value>, i64) {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            match frame["type"].as_str().unwrap_or_default() {
                "caught_up" => return (frames, frame["seq"].as_i64().unwrap()),
                "agent_list" | "presence" => {}
                _ => frames.push(frame),
            }
        }
    }

    pub async fn join(&mut self, group: &str) {
        self.send(json!({"type": "join_group", "groupId": group}))
            .await;
        // Joining answers nothing for legacy clients; a heartbeat round trip
        // proves the join was handled (frames are handled in order).
        self.ping_pong().await;
    }

    /// v2: sends a group message and returns the `sent` confirmation.
    pub async fn say(&mut self, group: &str, content: &str) -> Value {
        self.send(json!({"type": "message", "groupId": group, "content": content}))
            .await;
        self.expect_sent().await
    }

    /// The `sent` confirmation, skipping the sender's own echo of a group
    /// message if it comes first; if it has not come yet, `expect` skips it
    /// later.
    pub async fn expect_sent(&mut self) -> Value {
        let mut echoes = Vec::new();
        loop {
            let frame = self.next().await;
            match frame["type"].as_str().unwrap_or_default() {
                "sent" => {
                    let seq = frame["seq"].as_i64();
                    self.pending_echo = seq.filter(|seq| !echoes.contains(seq));
                    return frame;
                }
                "message" => echoes.push(frame["seq"].as_i64().unwrap_or_default()),
                "agent_list" | "system" => continue,
                _ => panic!("expected 'sent', got {frame}"),
            }
        }
    }
}
