//! Handing results from the Rust runtime to Python's event loop, cheaply.
//!
//! `pyo3_async_runtimes::tokio::future_into_py` pays, for every awaited
//! call: the task locals (`get_running_loop`, `contextvars.copy_context`),
//! a done callback, two tokio spawns, a hop to a blocking-pool thread that
//! takes the GIL, and a `call_soon_threadsafe` (a write to the loop's self
//! pipe) per result. On one core that was ~90 µs of CPU per round trip,
//! about seven times the Rust connector's (references/BENCHMARKS.md).
//!
//! Here a finished call's result waits in an [`Inbox`] as Rust data, without
//! the GIL. The loop watches one socket per bridge (`add_reader`); a byte is
//! written to it only when the inbox goes from empty to not empty, and the
//! loop then settles every waiting future in one go, on its own thread,
//! with the GIL it already holds. Under load one wake-up settles hundreds
//! of futures, and no runtime thread takes the GIL for such a result (so
//! none is inside the interpreter when it finalizes, either). Only
//! `connect`, once per client, still goes through `future_into_py`.
//!
//! What is given up: cancelling the Python future does not cancel the Rust
//! call (a request already queued is sent anyway, as before: the connection
//! task owns it); its result is dropped when it comes. The one call whose
//! result must not be dropped, `next_events`, keeps its events elsewhere
//! (see `client::EventQueue`).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// Turns a finished call's Rust result into the Python value (or the
/// exception) its future gets; runs on the loop's thread, with the GIL.
type Settle = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// Like [`Settle`], before it has the call's output `T`.
type SettleWith<T> = Box<dyn FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send>;

/// A finished call, waiting for the loop.
struct Done {
    future: Py<PyAny>,
    settle: Settle,
}

/// Results waiting for one event loop, and the socket that wakes it.
struct Inbox {
    /// A std mutex, held only to push or to swap the vector out, never
    /// across an await or a call into Python.
    queue: Mutex<Vec<Done>>,
    /// The writing end; the loop watches the other one.
    waker: UnixStream,
}

impl Inbox {
    fn push(&self, done: Done) {
        let was_empty = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(done);
            queue.len() == 1
        };
        // Only the first result wakes the loop: it takes everything queued
        // by the time it runs. It reads the socket before it swaps the
        // queue, so a result pushed after the swap finds the queue empty and
        // writes again. A full socket (cannot happen: one byte per empty
        // queue) or a closed loop would only make this fail, harmlessly.
        if was_empty {
            let _ = (&self.waker).write(&[1]);
        }
    }
}

/// One event loop's end of the bridge. Its `settle` method is the loop's
/// reader callback, so the loop keeps it alive while it is registered.
#[pyclass(module = "clawbot_connector._native", frozen)]
pub struct LoopBridge {
    event_loop: Py<PyAny>,
    /// `event_loop.create_future`, looked up once.
    create_future: Py<PyAny>,
    inbox: Arc<Inbox>,
    /// The end the loop watches.
    reader: UnixStream,
}

impl LoopBridge {
    /// A bridge to `event_loop`, registered with it.
    fn attach(event_loop: &Bound<'_, PyAny>) -> PyResult<Py<LoopBridge>> {
        let py = event_loop.py();
        let (reader, waker) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        waker.set_nonblocking(true)?;
        let fd = reader.as_raw_fd();
        let bridge = Py::new(
            py,
            LoopBridge {
                event_loop: event_loop.clone().unbind(),
                create_future: event_loop.getattr("create_future")?.unbind(),
                inbox: Arc::new(Inbox {
                    queue: Mutex::new(Vec::new()),
                    waker,
                }),
                reader,
            },
        )?;
        event_loop.call_method1("add_reader", (fd, bridge.getattr(py, "settle")?))?;
        Ok(bridge)
    }

    /// Whether this bridge serves `event_loop`.
    pub fn serves(&self, event_loop: &Bound<'_, PyAny>) -> bool {
        self.event_loop.bind(event_loop.py()).is(event_loop)
    }

    /// A new future of this loop, and what completes it: any thread may
    /// call [`Completer::complete`] with a result, and `settle` converts it
    /// once the loop picks it up.
    pub fn promise<'py, T: Send + 'static>(
        &self,
        py: Python<'py>,
        settle: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    ) -> PyResult<(Bound<'py, PyAny>, Completer<T>)> {
        let future = self.create_future.bind(py).call0()?;
        let completer = Completer(Some(Pending {
            inbox: Arc::clone(&self.inbox),
            future: future.clone().unbind(),
            settle: Box::new(settle),
        }));
        Ok((future, completer))
    }

    /// A new future of this loop that gets `call`'s result: `call` runs on
    /// the shared runtime, and `settle` converts what it returned once the
    /// loop picks it up.
    pub fn spawn<'py, F, T>(
        &self,
        py: Python<'py>,
        call: F,
        settle: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (future, completer) = self.promise(py, settle)?;
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            completer.complete(call.await);
        });
        Ok(future)
    }
}

/// What a [`Completer`] holds until it is used.
struct Pending<T> {
    inbox: Arc<Inbox>,
    future: Py<PyAny>,
    settle: SettleWith<T>,
}

/// Completes one future of a [`LoopBridge`], from any thread, without the
/// GIL. Dropped unused (a runtime shutting down), it fails the future with
/// `ClientClosed` rather than leave it pending for ever.
pub struct Completer<T: Send + 'static>(Option<Pending<T>>);

impl<T: Send + 'static> Completer<T> {
    pub fn complete(mut self, output: T) {
        if let Some(Pending {
            inbox,
            future,
            settle,
        }) = self.0.take()
        {
            inbox.push(Done {
                future,
                settle: Box::new(move |py| settle(py, output)),
            });
        }
    }
}

impl<T: Send + 'static> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(Pending { inbox, future, .. }) = self.0.take() {
            inbox.push(Done {
                future,
                settle: Box::new(|_| {
                    Err(crate::errors::to_py(clawbot_connector::ClientError::Closed))
                }),
            });
        }
    }
}

#[pymethods]
impl LoopBridge {
    /// The loop's reader callback: settles every future whose call is done.
    fn settle(&self, py: Python<'_>) {
        let mut bytes = [0u8; 64];
        while matches!((&self.reader).read(&mut bytes), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut *self.inbox.queue.lock().unwrap_or_else(|p| p.into_inner()));
        for Done { future, settle } in done {
            let future = future.bind(py);
            // One future that cannot be settled must not strand the rest:
            // report it as asyncio would an error in a callback, and go on.
            if let Err(error) = settle_one(future, settle) {
                error.write_unraisable(py, Some(future));
            }
        }
    }
}

fn settle_one(future: &Bound<'_, PyAny>, settle: Settle) -> PyResult<()> {
    let py = future.py();
    // Cancelled (a timeout, say) while the call ran: nobody wants it.
    if future
        .call_method0(pyo3::intern!(py, "done"))?
        .is_truthy()?
    {
        return Ok(());
    }
    match settle(py) {
        Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
        Err(error) => {
            future.call_method1(pyo3::intern!(py, "set_exception"), (error.into_value(py),))?
        }
    };
    Ok(())
}

/// `asyncio.get_running_loop`, looked up once.
fn running_loop<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
        })?
        .bind(py)
        .call0()
}

/// The bridge of the running loop, remembered per client: a client is
/// nearly always used from one loop, so this is one comparison per call.
#[derive(Default)]
pub struct BridgeSlot(Mutex<Option<Py<LoopBridge>>>);

impl BridgeSlot {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Py<LoopBridge>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, py: Python<'_>) -> PyResult<Py<LoopBridge>> {
        let event_loop = running_loop(py)?;
        if let Some(bridge) = self.slot().as_ref() {
            if bridge.get().serves(&event_loop) {
                return Ok(bridge.clone_ref(py));
            }
        }
        // Never call into Python holding the lock: Python may switch to
        // another thread, which would then block on it holding the GIL.
        let bridge = LoopBridge::attach(&event_loop)?;
        let old = self.slot().replace(bridge.clone_ref(py));
        // A client moved to another loop: the old one need not watch.
        if let Some(old) = old {
            old.get().detach(py);
        }
        Ok(bridge)
    }

    /// Stops using the bridge (the client is gone).
    pub fn release(&self, py: Python<'_>) {
        let bridge = self.slot().take();
        if let Some(bridge) = bridge {
            bridge.get().detach(py);
        }
    }
}

impl LoopBridge {
    /// Stops the loop watching this bridge's socket, if it still runs (a
    /// closed loop has forgotten it already).
    fn detach(&self, py: Python<'_>) {
        let event_loop = self.event_loop.bind(py);
        let closed = event_loop
            .call_method0("is_closed")
            .and_then(|closed| closed.is_truthy())
            .unwrap_or(true);
        if !closed {
            let _ = event_loop.call_method1("remove_reader", (self.reader.as_raw_fd(),));
        }
    }
}
