//! `NativeClient`: every method has an awaitable form and, for plain
//! scripts, a `_blocking` form. Awaitables are futures of the calling
//! event loop, settled through its [`crate::bridge`]. Blocking forms release
//! the GIL while Rust waits and check for signals every so often, so Ctrl-C
//! works.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clawbot_connector::protocol::{AgentInfo, AssignTask, TaskView};
use clawbot_connector::{Client, ClientConfig, ClientError, Event, Events, Sent};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bridge::BridgeSlot;
use crate::convert::to_python;
use crate::errors::to_py;
use crate::message::Message;

/// How often a blocking wait wakes to check for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Events handed over in one `next_events` at most: enough to amortize the
/// wake-up, few enough that one batch never holds the loop for long.
const EVENT_BATCH: usize = 256;

#[pyclass(module = "clawbot_connector._native", frozen)]
pub struct NativeClient {
    client: Client,
    events: Arc<EventQueue>,
    /// The bridge to the event loop this client's awaitables belong to.
    bridge: BridgeSlot,
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        // The loop holds the bridge (its reader callback) until told
        // otherwise; a client gone needs neither.
        Python::attach(|py| self.bridge.release(py));
    }
}

/// Events taken from the connector but not yet handed to Python.
///
/// A batch is received on the runtime and handed over when the loop settles
/// its future. If that future was cancelled meanwhile, the batch must not
/// be lost, nor overtaken by a later one: so received events wait here, in
/// order, and whoever asks next gets them first.
struct EventQueue {
    /// One receiver at a time; the lock is async because it is held while
    /// waiting for the next event.
    events: tokio::sync::Mutex<Events>,
    /// Received, in order, not yet handed over. A std mutex: held only to
    /// push or take, never across an await.
    ready: std::sync::Mutex<VecDeque<Event>>,
    /// The connector said there will be no more.
    closed: AtomicBool,
}

impl EventQueue {
    fn new(events: Events) -> Self {
        EventQueue {
            events: tokio::sync::Mutex::new(events),
            ready: std::sync::Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until some event is ready, the client is closed, or `timeout`
    /// passed.
    async fn fill(&self, timeout: Option<Duration>) {
        let mut events = self.events.lock().await;
        if !self.ready().is_empty() {
            return;
        }
        let mut batch = Vec::new();
        let received = match timeout {
            Some(limit) => tokio::time::timeout(limit, events.recv_many(&mut batch, EVENT_BATCH))
                .await
                .ok(),
            None => Some(events.recv_many(&mut batch, EVENT_BATCH).await),
        };
        if received == Some(0) {
            self.closed.store(true, Ordering::Relaxed);
        }
        self.ready().extend(batch);
    }

    /// Everything ready, as Messages; None once closed and drained.
    fn take_all(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let ready: Vec<Event> = self.ready().drain(..).collect();
        if ready.is_empty() && self.closed.load(Ordering::Relaxed) {
            return Ok(py.None());
        }
        let list = PyList::empty(py);
        for event in ready {
            list.append(Message::from_event(py, event)?)?;
        }
        Ok(list.into_any().unbind())
    }

    /// The oldest ready event; None if there is none.
    fn take_one(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        let event = self.ready().pop_front();
        event
            .map(|event| Message::from_event(py, event))
            .transpose()
    }
}

/// The settings `connect` takes, gathered from Python keyword arguments.
#[allow(clippy::too_many_arguments)]
fn build_config(
    server_url: String,
    agent_id: String,
    token: Option<String>,
    name: Option<String>,
    role: Option<String>,
    device: Option<String>,
    capabilities: Vec<String>,
    groups: Vec<String>,
    rest_url: Option<String>,
    last_seq: Option<i64>,
    connect_timeout: f64,
    presence: bool,
) -> ClientConfig {
    let mut agent = AgentInfo::new(agent_id);
    agent.name = name;
    agent.role = role;
    agent.device = device;
    agent.capabilities = capabilities;
    let mut config = ClientConfig::new(server_url, agent);
    config.token = token;
    config.groups = groups;
    config.rest_url = rest_url;
    config.last_seq = last_seq;
    config.connect_timeout = Duration::from_secs_f64(connect_timeout.max(0.1));
    config.presence = presence;
    config
}

async fn open(config: ClientConfig) -> PyResult<NativeClient> {
    // The configured groups are joined first thing on every connection, so
    // anything sent after this returns reaches the hub after the joins.
    let (client, events) = clawbot_connector::connect(config).await.map_err(to_py)?;
    Ok(NativeClient {
        client,
        events: Arc::new(EventQueue::new(events)),
        bridge: BridgeSlot::default(),
    })
}

/// Connects and registers; the awaitable resolves to a `NativeClient`.
#[pyfunction]
#[pyo3(signature = (server_url, agent_id, token=None, name=None, role=None, device=None,
    capabilities=Vec::new(), groups=Vec::new(), rest_url=None, last_seq=None, connect_timeout=10.0, presence=true))]
#[allow(clippy::too_many_arguments)]
pub fn connect(
    py: Python<'_>,
    server_url: String,
    agent_id: String,
    token: Option<String>,
    name: Option<String>,
    role: Option<String>,
    device: Option<String>,
    capabilities: Vec<String>,
    groups: Vec<String>,
    rest_url: Option<String>,
    last_seq: Option<i64>,
    connect_timeout: f64,
    presence: bool,
) -> PyResult<Bound<'_, PyAny>> {
    let config = build_config(
        server_url,
        agent_id,
        token,
        name,
        role,
        device,
        capabilities,
        groups,
        rest_url,
        last_seq,
        connect_timeout,
        presence,
    );
    pyo3_async_runtimes::tokio::future_into_py(py, open(config))
}

/// `connect` for code without an event loop.
#[pyfunction]
#[pyo3(signature = (server_url, agent_id, token=None, name=None, role=None, device=None,
    capabilities=Vec::new(), groups=Vec::new(), rest_url=None, last_seq=None, connect_timeout=10.0, presence=true))]
#[allow(clippy::too_many_arguments)]
pub fn connect_blocking(
    py: Python<'_>,
    server_url: String,
    agent_id: String,
    token: Option<String>,
    name: Option<String>,
    role: Option<String>,
    device: Option<String>,
    capabilities: Vec<String>,
    groups: Vec<String>,
    rest_url: Option<String>,
    last_seq: Option<i64>,
    connect_timeout: f64,
    presence: bool,
) -> PyResult<NativeClient> {
    let config = build_config(
        server_url,
        agent_id,
        token,
        name,
        role,
        device,
        capabilities,
        groups,
        rest_url,
        last_seq,
        connect_timeout,
        presence,
    );
    block_on(py, open(config))
}

/// Called at interpreter exit: gives the runtime's threads a moment without
/// the GIL to finish handing results to Python. A thread still doing that
/// when the interpreter finalizes aborts the process ("PyGILState_Release:
/// thread state must be current"); this happens when the last awaited
/// result wakes the main thread while the runtime thread is still inside
/// `call_soon_threadsafe`.
#[pyfunction]
pub fn quiesce(py: Python<'_>) {
    py.detach(|| std::thread::sleep(Duration::from_millis(100)));
}

/// Runs `future` on the shared runtime with the GIL released, waking every
/// [`SIGNAL_CHECK`] to let Python raise KeyboardInterrupt.
fn block_on<T: Send>(
    py: Python<'_>,
    future: impl Future<Output = PyResult<T>> + Send,
) -> PyResult<T> {
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let mut future = Box::pin(future);
    loop {
        let step = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut future).await })
        });
        match step {
            Ok(result) => return result,
            Err(_) => py.check_signals()?,
        }
    }
}

fn sent_to_dict(py: Python<'_>, sent: Sent) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item(pyo3::intern!(py, "id"), sent.id)?;
    dict.set_item(pyo3::intern!(py, "seq"), sent.seq)?;
    dict.set_item(pyo3::intern!(py, "clientId"), sent.client_id)?;
    dict.set_item(pyo3::intern!(py, "duplicate"), sent.duplicate)?;
    dict.set_item(pyo3::intern!(py, "unknownMentions"), sent.unknown_mentions)?;
    Ok(dict.into_any().unbind())
}

/// The hub's confirmation as a dict, or the error raised.
fn settle_sent(py: Python<'_>, result: Result<Sent, ClientError>) -> PyResult<Py<PyAny>> {
    sent_to_dict(py, result.map_err(to_py)?)
}

/// None, or the error raised.
fn settle_unit(py: Python<'_>, result: Result<(), ClientError>) -> PyResult<Py<PyAny>> {
    result.map_err(to_py)?;
    Ok(py.None())
}

/// Decoded JSON, or the error raised.
fn settle_json(
    py: Python<'_>,
    result: Result<serde_json::Value, ClientError>,
) -> PyResult<Py<PyAny>> {
    to_python(py, &result.map_err(to_py)?)
}

impl NativeClient {
    /// A future of the running loop that gets `call`'s result, converted
    /// by `settle` on the loop's thread.
    fn awaitable<'py, F, T>(
        &self,
        py: Python<'py>,
        call: F,
        settle: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.bridge.get(py)?.get().spawn(py, call, settle)
    }
}

#[pymethods]
impl NativeClient {
    #[getter]
    fn agent_id(&self) -> String {
        self.client.agent_id().to_owned()
    }

    /// The token in use; after a claim, the agent's own credential.
    #[getter]
    fn token(&self) -> Option<String> {
        self.client.token()
    }

    #[getter]
    fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// The highest sequence number the application has taken.
    #[getter]
    fn processed_seq(&self) -> i64 {
        self.events
            .events
            .try_lock()
            .map(|events| events.processed_seq())
            .unwrap_or(-1)
    }

    /// The agents online, as the hub last said (no network call).
    fn online_agents(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let agents = serde_json::to_value(self.client.online_agents()).unwrap_or_default();
        to_python(py, &agents)
    }

    /// Awaitable: the events waiting (at least one, in order), or None once
    /// closed. With a timeout, an empty list when nothing came in time.
    /// Asking again marks the previous ones processed.
    #[pyo3(signature = (timeout=None))]
    fn next_events<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let events = Arc::clone(&self.events);
        let settled = Arc::clone(&self.events);
        let timeout = timeout.map(Duration::from_secs_f64);
        self.bridge.get(py)?.get().spawn(
            py,
            async move { events.fill(timeout).await },
            move |py, ()| settled.take_all(py),
        )
    }

    /// The next event, or None once closed or, with a timeout, when nothing
    /// came in time.
    #[pyo3(signature = (timeout=None))]
    fn next_event_blocking(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Message>> {
        if let Some(message) = self.events.take_one(py)? {
            return Ok(Some(message));
        }
        let events = Arc::clone(&self.events);
        block_on(py, async move {
            events.fill(timeout.map(Duration::from_secs_f64)).await;
            Ok(())
        })?;
        self.events.take_one(py)
    }

    fn send_message<'py>(
        &self,
        py: Python<'py>,
        group_id: String,
        content: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        // No task per message: the connection task completes the future.
        let (future, completer) = self.bridge.get(py)?.get().promise(py, settle_sent)?;
        self.client
            .send_message_then(&group_id, &content, move |sent| completer.complete(sent));
        Ok(future)
    }

    fn send_message_blocking(
        &self,
        py: Python<'_>,
        group_id: String,
        content: String,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let sent = block_on(py, async move {
            client
                .send_message(&group_id, &content)
                .await
                .map_err(to_py)
        })?;
        sent_to_dict(py, sent)
    }

    fn send_direct_message<'py>(
        &self,
        py: Python<'py>,
        to: String,
        content: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        // No task per message: the connection task completes the future.
        let (future, completer) = self.bridge.get(py)?.get().promise(py, settle_sent)?;
        self.client
            .send_direct_message_then(&to, &content, move |sent| completer.complete(sent));
        Ok(future)
    }

    fn send_direct_message_blocking(
        &self,
        py: Python<'_>,
        to: String,
        content: String,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let sent = block_on(py, async move {
            client
                .send_direct_message(&to, &content)
                .await
                .map_err(to_py)
        })?;
        sent_to_dict(py, sent)
    }

    fn join_group<'py>(&self, py: Python<'py>, group_id: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        self.awaitable(
            py,
            async move { client.join_group(&group_id).await },
            settle_unit,
        )
    }

    fn join_group_blocking(&self, py: Python<'_>, group_id: String) -> PyResult<()> {
        let client = self.client.clone();
        block_on(py, async move {
            client.join_group(&group_id).await.map_err(to_py)
        })
    }

    fn leave_group<'py>(&self, py: Python<'py>, group_id: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        self.awaitable(
            py,
            async move { client.leave_group(&group_id).await },
            settle_unit,
        )
    }

    /// Awaitable: a REST call (`method`, `path` under the hub's base URL,
    /// optional JSON body as text); resolves to the decoded JSON.
    #[pyo3(signature = (method, path, body=None))]
    fn rest<'py>(
        &self,
        py: Python<'py>,
        method: String,
        path: String,
        body: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let body = parse_body(body)?;
        self.awaitable(
            py,
            async move { client.rest_json(&method, &path, body.as_ref()).await },
            settle_json,
        )
    }

    #[pyo3(signature = (method, path, body=None))]
    fn rest_blocking(
        &self,
        py: Python<'_>,
        method: String,
        path: String,
        body: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let body = parse_body(body)?;
        let value = block_on(py, async move {
            client
                .rest_json(&method, &path, body.as_ref())
                .await
                .map_err(to_py)
        })?;
        to_python(py, &value)
    }

    /// Awaitable: creates a task from the JSON of an `assign_task` request;
    /// resolves to the task (a dict).
    fn assign_task<'py>(&self, py: Python<'py>, request: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let request = parse_request(&request)?;
        self.awaitable(
            py,
            async move { task_json(client.assign_task(request).await) },
            settle_json,
        )
    }

    fn assign_task_blocking(&self, py: Python<'_>, request: String) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let request = parse_request(&request)?;
        let task = block_on(py, async move {
            task_json(client.assign_task(request).await).map_err(to_py)
        })?;
        to_python(py, &task)
    }

    /// Awaitable: a task operation (`accept`, `progress`, `complete`,
    /// `fail`, `cancel`); resolves to the task as it is afterwards.
    #[pyo3(signature = (task_id, action, percent=None, note=None, result=None, error=None))]
    #[allow(clippy::too_many_arguments)]
    fn change_task<'py>(
        &self,
        py: Python<'py>,
        task_id: String,
        action: String,
        percent: Option<u8>,
        note: Option<String>,
        result: Option<String>,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let change = TaskChange::new(action, percent, note, result, error)?;
        self.awaitable(
            py,
            async move { task_json(change.apply(&client, &task_id).await) },
            settle_json,
        )
    }

    #[pyo3(signature = (task_id, action, percent=None, note=None, result=None, error=None))]
    #[allow(clippy::too_many_arguments)]
    fn change_task_blocking(
        &self,
        py: Python<'_>,
        task_id: String,
        action: String,
        percent: Option<u8>,
        note: Option<String>,
        result: Option<String>,
        error: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let change = TaskChange::new(action, percent, note, result, error)?;
        let task = block_on(py, async move {
            task_json(change.apply(&client, &task_id).await).map_err(to_py)
        })?;
        to_python(py, &task)
    }

    /// Awaitable: closes the connection.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        self.awaitable(
            py,
            async move {
                client.close().await;
                Ok(())
            },
            settle_unit,
        )
    }

    fn close_blocking(&self, py: Python<'_>) -> PyResult<()> {
        let client = self.client.clone();
        block_on(py, async move {
            client.close().await;
            Ok(())
        })
    }
}

fn parse_request(text: &str) -> PyResult<AssignTask> {
    serde_json::from_str(text)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("bad task: {e}")))
}

fn task_json(result: Result<TaskView, ClientError>) -> Result<serde_json::Value, ClientError> {
    Ok(serde_json::to_value(result?).unwrap_or_default())
}

/// A task operation, checked before it is sent.
enum TaskChange {
    Accept,
    Progress(u8, String),
    Complete(serde_json::Value),
    Fail(String),
    Cancel,
}

impl TaskChange {
    fn new(
        action: String,
        percent: Option<u8>,
        note: Option<String>,
        result: Option<String>,
        error: Option<String>,
    ) -> PyResult<Self> {
        use pyo3::exceptions::PyValueError;
        Ok(match action.as_str() {
            "accept" => TaskChange::Accept,
            "progress" => TaskChange::Progress(
                percent.ok_or_else(|| PyValueError::new_err("progress needs percent"))?,
                note.unwrap_or_default(),
            ),
            "complete" => TaskChange::Complete(match result {
                None => serde_json::Value::Null,
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| PyValueError::new_err(format!("result is not JSON: {e}")))?,
            }),
            "fail" => TaskChange::Fail(error.unwrap_or_else(|| "failed".into())),
            "cancel" => TaskChange::Cancel,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown task action '{other}'"
                )))
            }
        })
    }

    async fn apply(self, client: &Client, task_id: &str) -> Result<TaskView, ClientError> {
        match self {
            TaskChange::Accept => client.accept_task(task_id).await,
            TaskChange::Progress(percent, note) => {
                client.task_progress(task_id, percent, &note).await
            }
            TaskChange::Complete(result) => client.complete_task(task_id, result).await,
            TaskChange::Fail(error) => client.fail_task(task_id, &error).await,
            TaskChange::Cancel => client.cancel_task(task_id).await,
        }
    }
}

fn parse_body(body: Option<String>) -> PyResult<Option<serde_json::Value>> {
    body.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("body is not JSON: {e}")))
}
