//! Exception classes, each a subclass of `ClawBotError`.

use clawbot_connector::ClientError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    ClawBotError,
    PyException,
    "Base class of every ClawBot Network error."
);
create_exception!(
    _native,
    InvalidServerURL,
    ClawBotError,
    "The hub URL cannot be used."
);
create_exception!(
    _native,
    ConnectionFailed,
    ClawBotError,
    "The hub could not be reached."
);
create_exception!(
    _native,
    AuthenticationError,
    ClawBotError,
    "The hub refused the token."
);
create_exception!(
    _native,
    HubRejected,
    ClawBotError,
    "The hub refused a request; see `.code`."
);
create_exception!(
    _native,
    ClientClosed,
    ClawBotError,
    "The connection was closed by `disconnect()`."
);

pub fn register(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("ClawBotError", py.get_type::<ClawBotError>())?;
    module.add("InvalidServerURL", py.get_type::<InvalidServerURL>())?;
    module.add("ConnectionFailed", py.get_type::<ConnectionFailed>())?;
    module.add("AuthenticationError", py.get_type::<AuthenticationError>())?;
    module.add("HubRejected", py.get_type::<HubRejected>())?;
    module.add("ClientClosed", py.get_type::<ClientClosed>())?;
    Ok(())
}

/// The Python exception for a client error. `HubRejected` carries the hub's
/// stable error `code` as an attribute.
pub fn to_py(error: ClientError) -> PyErr {
    let message = error.to_string();
    match error {
        ClientError::InvalidUrl { .. } => InvalidServerURL::new_err(message),
        ClientError::Unreachable { .. } | ClientError::Disconnected | ClientError::Protocol(_) => {
            ConnectionFailed::new_err(message)
        }
        ClientError::Unauthorized { .. } => AuthenticationError::new_err(message),
        ClientError::Closed => ClientClosed::new_err(message),
        ClientError::Rejected {
            code,
            message: text,
        } => Python::attach(|py| {
            let error = HubRejected::new_err(format!("{text} ({})", code_name(code)));
            let _ = error.value(py).setattr("code", code_name(code));
            error
        }),
    }
}

fn code_name(code: clawbot_connector::protocol::ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}
