//! `clawbot_connector._native`: the Rust connector, for Python.
//!
//! # Layout
//! - [`client`]: `NativeClient`, async (awaitable) and blocking methods over
//!   `clawbot_connector::Client`; the GIL is released whenever Rust waits.
//! - [`bridge`]: how awaitables get their results: queued in Rust and
//!   settled in batches on the event loop's thread, woken through a socket.
//! - [`message`]: `Message`, one class for every event, readable like the
//!   original SDK's dicts (`msg['fromName']`) and by attribute.
//! - [`errors`]: the exception classes and the mapping from `ClientError`.
//! - [`convert`]: JSON values to Python objects.
//!
//! The public, typed API is the pure-Python package around this module.

mod bridge;
mod client;
mod convert;
mod errors;
mod message;

use pyo3::prelude::*;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<client::NativeClient>()?;
    module.add_class::<message::Message>()?;
    module.add_function(wrap_pyfunction!(client::connect, module)?)?;
    module.add_function(wrap_pyfunction!(client::connect_blocking, module)?)?;
    module.add_function(wrap_pyfunction!(client::quiesce, module)?)?;
    errors::register(py, module)?;
    Ok(())
}
