//! The one tokio runtime of the process (pyo3-async-runtimes' own), and how a Rust future
//! becomes a Python awaitable.

use std::future::Future;

use pyo3::prelude::*;

/// `f` as an awaitable of the running asyncio loop; it runs on the runtime's workers, so the
/// caller's thread (and the GIL) is free while it runs.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, f: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, f)
}
