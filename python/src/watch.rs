//! `Watch`: a group's events in this replica's commit order, as an async iterator, and the
//! event classes it yields.

use std::collections::BTreeSet;
use std::sync::Arc;

use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use spook_client::{Event, View};
use spook_core::RegisterId;

use crate::convert::fields_to_py;
use crate::errors;
use crate::runtime::awaitable;

/// A register changed: every field it holds now. `snapshot` marks a value sent when the
/// watch started, after a lag, or after a move to another node, rather than a change as it
/// happened.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct Change {
    register: u32,
    view: &'static str,
    fields: Py<PyDict>,
    snapshot: bool,
}

#[pymethods]
impl Change {
    fn __repr__(&self, py: Python<'_>) -> String {
        let f = self.fields.bind(py).repr().map(|r| r.to_string()).unwrap_or_default();
        format!("Change(register={}, view={:?}, fields={f}, snapshot={})", self.register, self.view, if self.snapshot { "True" } else { "False" })
    }
}

/// The consumer fell behind and missed `missed` events; the registers that changed meanwhile
/// follow as snapshot changes.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct Lagged {
    missed: u64,
}

#[pymethods]
impl Lagged {
    fn __repr__(&self) -> String {
        format!("Lagged(missed={})", self.missed)
    }
}

/// The committed frontier moved: everything stamped before `frontier_ms` has collapsed.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct FrontierMoved {
    frontier_ms: u64,
}

#[pymethods]
impl FrontierMoved {
    fn __repr__(&self) -> String {
        format!("FrontierMoved(frontier_ms={})", self.frontier_ms)
    }
}

/// A member went silent past the decoherence timeout.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct MemberDecohered {
    member: String,
}

#[pymethods]
impl MemberDecohered {
    fn __repr__(&self) -> String {
        format!("MemberDecohered({:?})", self.member)
    }
}

/// Late deltas of a member that was cut off committed and changed these registers.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct ReEntangled {
    registers: Vec<u32>,
}

#[pymethods]
impl ReEntangled {
    fn __repr__(&self) -> String {
        format!("ReEntangled(registers={:?})", self.registers)
    }
}

/// A member joined (`joined`) or left (pruned or removed) the group's membership.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct MembershipChanged {
    member: String,
    joined: bool,
}

#[pymethods]
impl MembershipChanged {
    fn __repr__(&self) -> String {
        format!("MembershipChanged({:?}, joined={})", self.member, if self.joined { "True" } else { "False" })
    }
}

struct PyEvent(Event);

impl<'py> IntoPyObject<'py> for PyEvent {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.0 {
            Event::Change(c) => {
                let view = match c.view {
                    View::Pending => "pending",
                    View::Committed => "committed",
                };
                Bound::new(py, Change { register: c.register.0, view, fields: fields_to_py(py, &c.fields)?.unbind(), snapshot: c.snapshot })?.into_any()
            }
            Event::Lagged(missed) => Bound::new(py, Lagged { missed })?.into_any(),
            Event::Committed { frontier_ms } => Bound::new(py, FrontierMoved { frontier_ms })?.into_any(),
            Event::Decohered(m) => Bound::new(py, MemberDecohered { member: m.to_string() })?.into_any(),
            Event::ReEntangled { registers } => Bound::new(py, ReEntangled { registers: registers.iter().map(|r| r.0).collect() })?.into_any(),
            Event::MemberJoined(m) => Bound::new(py, MembershipChanged { member: m.to_string(), joined: true })?.into_any(),
            Event::MemberLeft(m) => Bound::new(py, MembershipChanged { member: m.to_string(), joined: false })?.into_any(),
        })
    }
}

/// A watch on a group: `async for event in watch`. It ends (StopAsyncIteration) when closed;
/// a node that is lost raises `NodeLost` (a remote client's watch moves to the next node by
/// itself and goes on with a snapshot).
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Watch {
    w: Arc<tokio::sync::Mutex<Option<spook_client::Watch>>>,
    only: Option<Arc<BTreeSet<RegisterId>>>,
    /// `close()` was called: a `__anext__` waiting for an event ends now, not at the next one.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Watch {
    pub(crate) fn new(w: spook_client::Watch, only: Option<BTreeSet<RegisterId>>) -> Watch {
        Watch { w: Arc::new(tokio::sync::Mutex::new(Some(w))), only: only.map(Arc::new), closed: tokio::sync::watch::Sender::new(false) }
    }
}

#[pymethods]
impl Watch {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (w, only, mut closed) = (self.w.clone(), self.only.clone(), self.closed.subscribe());
        awaitable(py, async move {
            let mut guard = w.lock().await;
            let Some(watch) = guard.as_mut() else { return Err(PyStopAsyncIteration::new_err(())) };
            loop {
                let next = tokio::select! {
                    next = watch.next() => next,
                    _ = closed.wait_for(|c| *c) => None,
                };
                match next {
                    None => {
                        guard.take();
                        return Err(PyStopAsyncIteration::new_err(()));
                    }
                    Some(Err(e)) => return Err(errors::client(e)),
                    Some(Ok(Event::Change(c))) if only.as_ref().is_some_and(|o| !o.contains(&c.register)) => continue,
                    Some(Ok(e)) => return Ok(PyEvent(e)),
                }
            }
        })
    }

    /// Stop watching: the iteration ends (one waiting for an event ends now).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.closed.send_replace(true);
        let w = self.w.clone();
        awaitable(py, async move {
            w.lock().await.take();
            Ok(())
        })
    }
}
