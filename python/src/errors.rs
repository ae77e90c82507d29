//! Errors as the exception classes of `spook.errors` (Python classes, so that they can also be
//! the built-in exception each one is: `BadValue` is a `ValueError`, `NodeLost` a
//! `ConnectionError`). Every failure reaches Python as one of them; nothing panics across
//! the boundary.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use spook_client::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An exception of class `class` (a name in `spook.errors`) with `msg`.
pub(crate) fn raise(class: &str, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| {
        let module = ERRORS.get_or_try_init(py, || py.import("spook.errors").map(Bound::unbind));
        match module.and_then(|m| m.bind(py).getattr(class)).and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from)) {
            Ok(cls) => PyErr::from_type(cls, (msg,)),
            Err(e) => e,
        }
    })
}

/// A value Python handed in that cannot be used.
pub(crate) fn bad_value(msg: impl Into<String>) -> PyErr {
    raise("BadValue", msg)
}

/// A client error as its exception.
pub(crate) fn client(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => raise("NotFound", msg),
        Error::BadValue(_) => raise("BadValue", msg),
        Error::NotAllowed(_) => raise("NotAllowed", msg),
        Error::StorageUnavailable(_) => raise("StorageUnavailable", msg),
        Error::Refused(_) => raise("Refused", msg),
        Error::NodeLost { may_have_applied, .. } => {
            let err = raise("NodeLost", msg);
            Python::attach(|py| {
                let _ = err.value(py).setattr("may_have_applied", may_have_applied);
            });
            err
        }
        Error::Unreachable { .. } => raise("Unreachable", msg),
        Error::Remote(ref r) if r.node_lost() => raise("NodeLost", msg),
        Error::Remote(_) => raise("AttachFailed", msg),
        Error::Protocol(_) => raise("ProtocolError", msg),
    }
}

/// An agent pattern's refusal (nothing committed) as its exception.
pub(crate) fn pattern(class: &str, msg: String) -> PyErr {
    raise(class, msg)
}
