//! A transaction's outcome as Python sees it: `Committed`, `Aborted`, `Decohered` or
//! `Pending`, each a small frozen class.

use pyo3::prelude::*;
use spook_client::Outcome;

/// It committed; `fence` is its commit stamp, the fencing token later holders compare.
#[pyclass(module = "spook._spook", frozen, eq, get_all)]
#[derive(Clone, PartialEq)]
pub(crate) struct Committed {
    seq: u64,
    fence: u64,
    resent: bool,
}

#[pymethods]
impl Committed {
    fn __repr__(&self) -> String {
        format!("Committed(seq={}, fence={}, resent={})", self.seq, self.fence, if self.resent { "True" } else { "False" })
    }
}

/// Its conditions did not hold, or it missed its deadline. `failed_condition` is the index
/// of the condition that did not hold, if that was why.
#[pyclass(module = "spook._spook", frozen, eq, get_all)]
#[derive(Clone, PartialEq)]
pub(crate) struct Aborted {
    seq: u64,
    reason: String,
    failed_condition: Option<usize>,
}

#[pymethods]
impl Aborted {
    fn __repr__(&self) -> String {
        format!("Aborted(seq={}, reason={:?})", self.seq, self.reason)
    }
}

/// Its deadline passed before its outcome was known here; it may still commit or abort (ask
/// again with `Group.outcome(seq)`).
#[pyclass(module = "spook._spook", frozen, eq, get_all)]
#[derive(Clone, PartialEq)]
pub(crate) struct Decohered {
    seq: u64,
}

#[pymethods]
impl Decohered {
    fn __repr__(&self) -> String {
        format!("Decohered(seq={})", self.seq)
    }
}

/// Submitted without waiting for its outcome.
#[pyclass(module = "spook._spook", frozen, eq, get_all)]
#[derive(Clone, PartialEq)]
pub(crate) struct Pending {
    seq: u64,
}

#[pymethods]
impl Pending {
    fn __repr__(&self) -> String {
        format!("Pending(seq={})", self.seq)
    }
}

/// An outcome on its way to Python.
pub(crate) struct PyOutcome(pub(crate) Outcome);

impl<'py> IntoPyObject<'py> for PyOutcome {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let failed_condition = self.0.failed_condition();
        Ok(match self.0 {
            Outcome::Committed { seq, fence, resent } => Bound::new(py, Committed { seq, fence, resent })?.into_any(),
            Outcome::Aborted { seq, reason } => Bound::new(py, Aborted { seq, reason, failed_condition })?.into_any(),
            Outcome::Decohered { seq } => Bound::new(py, Decohered { seq })?.into_any(),
            Outcome::Pending { seq } => Bound::new(py, Pending { seq })?.into_any(),
        })
    }
}

/// An outcome that may not exist (`Group.outcome` of an unknown seq).
pub(crate) struct MaybeOutcome(pub(crate) Option<Outcome>);

impl<'py> IntoPyObject<'py> for MaybeOutcome {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            Some(o) => PyOutcome(o).into_pyobject(py),
            None => Ok(py.None().into_bound(py)),
        }
    }
}
