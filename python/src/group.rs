//! `Group`: one entanglement group's reads, writes, transactions and watches, each an
//! awaitable over `spook_client::Group`. Values are read against the group's schema (fetched
//! once, since a schema never changes), so a list becomes a vector where the field is one.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;
use spook_client::{Cond, Reg, View, WatchOptions};
use spook_core::{RegisterId, Schema};

use crate::convert::{self, PyFields, PyValue};
use crate::errors;
use crate::outcome::{MaybeOutcome, PyOutcome};
use crate::runtime::awaitable;
use crate::watch::Watch;

/// A register as Python names it: an int id or a str name.
pub(crate) fn reg(o: &Bound<'_, PyAny>) -> PyResult<Reg> {
    if let Ok(s) = o.cast::<PyString>() {
        return Ok(Reg::Name(s.extract::<String>()?));
    }
    match o.extract::<u32>() {
        Ok(id) => Ok(Reg::Id(id)),
        Err(_) => Err(errors::bad_value(format!("a register is a str name or an int id from 0 to 2^32-1, got {}", o.repr().map(|r| r.to_string()).unwrap_or_default()))),
    }
}

pub(crate) fn view(v: &str) -> PyResult<View> {
    match v {
        "pending" => Ok(View::Pending),
        "committed" => Ok(View::Committed),
        _ => Err(errors::bad_value(format!("view is \"pending\" or \"committed\", got {v:?}"))),
    }
}

/// The group behind a Python `Group`, shared with the agent patterns built on it.
#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) g: spook_client::Group,
    schema: Arc<tokio::sync::OnceCell<Arc<Schema>>>,
}

impl Inner {
    pub(crate) fn new(g: spook_client::Group) -> Inner {
        Inner { g, schema: Arc::default() }
    }

    /// The group's schema, asked once.
    pub(crate) async fn schema(&self) -> PyResult<Arc<Schema>> {
        self.schema.get_or_try_init(|| async { self.g.schema().await.map(Arc::new).map_err(errors::client) }).await.cloned()
    }

    /// A register's id (names resolved by the schema).
    pub(crate) async fn resolve(&self, r: &Reg) -> PyResult<RegisterId> {
        Ok(r.resolve(&*self.schema().await?))
    }
}

/// Python objects turned into a field's value once the schema is known.
fn value_of(schema: &Schema, field: &str, v: &Py<PyAny>) -> PyResult<spook_core::Value> {
    Python::attach(|py| convert::field_value(schema, field, v.bind(py)))
}

/// One group of the client's domain. Every call returns an awaitable.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Group {
    pub(crate) inner: Inner,
}

#[pymethods]
impl Group {
    /// The group's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.g.name().to_string()
    }

    fn __repr__(&self) -> String {
        format!("Group({:?})", self.inner.g.name())
    }

    /// All fields of a register, as a dict.
    #[pyo3(signature = (register, view = "pending"))]
    fn get<'py>(&self, py: Python<'py>, register: &Bound<'py, PyAny>, view: &str) -> PyResult<Bound<'py, PyAny>> {
        let (g, r, v) = (self.inner.g.clone(), reg(register)?, self::view(view)?);
        awaitable(py, async move { g.get(r, v).await.map(PyFields).map_err(errors::client) })
    }

    /// One field of a register, or None.
    #[pyo3(signature = (register, field, view = "pending"))]
    fn get_field<'py>(&self, py: Python<'py>, register: &Bound<'py, PyAny>, field: String, view: &str) -> PyResult<Bound<'py, PyAny>> {
        let (g, r, v) = (self.inner.g.clone(), reg(register)?, self::view(view)?);
        awaitable(py, async move { g.get_field(r, &field, v).await.map(PyValue).map_err(errors::client) })
    }

    /// Write one field; the answer is the delta's seq.
    fn set<'py>(&self, py: Python<'py>, register: &Bound<'py, PyAny>, field: String, value: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (inner, r) = (self.inner.clone(), reg(register)?);
        awaitable(py, async move {
            let v = value_of(&*inner.schema().await?, &field, &value)?;
            inner.g.set(r, &field, v).await.map_err(errors::client)
        })
    }

    /// Write several fields of one register as one delta (a dict, or a pydantic model).
    fn write<'py>(&self, py: Python<'py>, register: &Bound<'py, PyAny>, fields: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (inner, r) = (self.inner.clone(), reg(register)?);
        awaitable(py, async move {
            let schema = inner.schema().await?;
            let f = Python::attach(|py| convert::fields_of(&schema, fields.bind(py)))?;
            inner.g.write(r, f).await.map_err(errors::client)
        })
    }

    /// Write fields of many registers as one delta: `[(register, field, value), ...]`.
    fn write_many<'py>(&self, py: Python<'py>, writes: Vec<(Bound<'py, PyAny>, String, Py<PyAny>)>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        let writes = writes.into_iter().map(|(r, f, v)| Ok((reg(&r)?, f, v))).collect::<PyResult<Vec<_>>>()?;
        awaitable(py, async move {
            let schema = inner.schema().await?;
            let w = writes.into_iter().map(|(r, f, v)| Ok((r, f.clone(), value_of(&schema, &f, &v)?))).collect::<PyResult<Vec<_>>>()?;
            inner.g.write_many(w).await.map_err(errors::client)
        })
    }

    /// A transaction to build (`when_*`, `set`) and `submit` (serial groups).
    fn tx(&self) -> Tx {
        Tx { group: self.inner.clone(), conds: Vec::new(), sets: Vec::new(), lease_ms: None, deadline_ms: None, after: Vec::new(), seq: None, wait: true }
    }

    /// The outcome of this client's transaction `seq`, if the node knows it.
    fn outcome<'py>(&self, py: Python<'py>, seq: u64) -> PyResult<Bound<'py, PyAny>> {
        let g = self.inner.g.clone();
        awaitable(py, async move { g.outcome(seq).await.map(MaybeOutcome).map_err(errors::client) })
    }

    /// The members now, as endpoint ids.
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let g = self.inner.g.clone();
        awaitable(py, async move { Ok(g.members().await.map_err(errors::client)?.iter().map(ToString::to_string).collect::<Vec<_>>()) })
    }

    /// The group's state on the node: members, pending count, state and committed hashes.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let g = self.inner.g.clone();
        awaitable(py, async move {
            let s = g.status().await.map_err(errors::client)?;
            Ok(GroupStatus {
                name: s.name,
                kind: s.kind,
                members: s.members.iter().map(ToString::to_string).collect(),
                frontier_ms: s.frontier_ms,
                pending: s.pending,
                state_hash: s.state_hash,
                committed_hash: s.committed_hash,
            })
        })
    }

    /// The id a register name has in this group.
    fn register_id<'py>(&self, py: Python<'py>, register: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (inner, r) = (self.inner.clone(), reg(register)?);
        awaitable(py, async move { Ok(inner.resolve(&r).await?.0) })
    }

    /// The group's fields: `{name: (kind, merge policy)}`.
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move {
            let s = inner.schema().await?;
            Ok(s.fields.iter().map(|f| (f.name.clone(), (format!("{:?}", f.kind).to_lowercase(), format!("{:?}", f.policy)))).collect::<Vec<_>>())
        })
    }

    /// Changes in this replica's order (and lags, commits, decoherence, re-entanglement,
    /// membership), optionally of some registers only and after a snapshot of every register
    /// written so far.
    #[pyo3(signature = (view = "pending", snapshot = false, registers = None))]
    fn watch<'py>(&self, py: Python<'py>, view: &str, snapshot: bool, registers: Option<Vec<Bound<'py, PyAny>>>) -> PyResult<Bound<'py, PyAny>> {
        let (inner, v) = (self.inner.clone(), self::view(view)?);
        let regs = registers.map(|rs| rs.iter().map(reg).collect::<PyResult<Vec<_>>>()).transpose()?;
        awaitable(py, async move {
            let only = match regs {
                Some(rs) => {
                    let s = inner.schema().await?;
                    Some(rs.iter().map(|r| r.resolve(&s)).collect())
                }
                None => None,
            };
            let w = inner.g.watch_with(WatchOptions { view: v, snapshot }).await.map_err(errors::client)?;
            Ok(Watch::new(w, only))
        })
    }
}

/// A group's state on the client's node.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct GroupStatus {
    name: String,
    kind: String,
    members: Vec<String>,
    frontier_ms: u64,
    pending: u64,
    state_hash: String,
    committed_hash: String,
}

#[pymethods]
impl GroupStatus {
    fn __repr__(&self) -> String {
        format!("GroupStatus(name={:?}, kind={:?}, members={}, pending={}, state_hash={:?})", self.name, self.kind, self.members.len(), self.pending, self.state_hash)
    }
}

enum CondSpec {
    Equals(Reg, String, Py<PyAny>),
    Absent(Reg, String),
    Version(Reg, String, u64),
    LeaseExpired(Reg, String),
    LeaseHeld(Reg, String),
    Compare(Reg, String, String, Py<PyAny>),
}

/// A transaction being built: conditions on the committed state, writes applied if they all
/// hold. `submit()` sends it; its awaitable resolves to `Committed`, `Aborted`, `Decohered`
/// (or `Pending` with `no_wait()`).
#[pyclass(module = "spook._spook")]
pub(crate) struct Tx {
    group: Inner,
    conds: Vec<CondSpec>,
    sets: Vec<(Reg, String, Py<PyAny>)>,
    lease_ms: Option<u64>,
    deadline_ms: Option<u64>,
    after: Vec<u64>,
    seq: Option<u64>,
    wait: bool,
}

#[pymethods]
impl Tx {
    /// Only if the field holds `value`.
    fn when_equals<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String, value: Py<PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        slf.conds.push(CondSpec::Equals(reg(register)?, field, value));
        Ok(slf)
    }

    /// Only if the field holds no value.
    fn when_absent<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String) -> PyResult<PyRefMut<'py, Self>> {
        slf.conds.push(CondSpec::Absent(reg(register)?, field));
        Ok(slf)
    }

    /// Only if the field's version (its last commit stamp) is `version`.
    fn when_version<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String, version: u64) -> PyResult<PyRefMut<'py, Self>> {
        slf.conds.push(CondSpec::Version(reg(register)?, field, version));
        Ok(slf)
    }

    /// Only if the field's lease has ended (or it never had one).
    fn when_lease_expired<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String) -> PyResult<PyRefMut<'py, Self>> {
        slf.conds.push(CondSpec::LeaseExpired(reg(register)?, field));
        Ok(slf)
    }

    /// Only while the field's lease runs.
    fn when_lease_held<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String) -> PyResult<PyRefMut<'py, Self>> {
        slf.conds.push(CondSpec::LeaseHeld(reg(register)?, field));
        Ok(slf)
    }

    /// Only if `field op value` holds (`op`: `<`, `<=`, `>`, `>=`, `==`, `!=`).
    fn when_compare<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String, op: String, value: Py<PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        slf.conds.push(CondSpec::Compare(reg(register)?, field, op, value));
        Ok(slf)
    }

    /// Write a field if it commits.
    fn set<'py>(mut slf: PyRefMut<'py, Self>, register: &Bound<'py, PyAny>, field: String, value: Py<PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        slf.sets.push((reg(register)?, field, value));
        Ok(slf)
    }

    /// The writes hold a lease of `ms` after the commit.
    fn lease_ms(mut slf: PyRefMut<'_, Self>, ms: u64) -> PyRefMut<'_, Self> {
        slf.lease_ms = Some(ms);
        slf
    }

    /// Abort if not evaluated within `ms` of submission (default 10 000).
    fn deadline_ms(mut slf: PyRefMut<'_, Self>, ms: u64) -> PyRefMut<'_, Self> {
        slf.deadline_ms = Some(ms);
        slf
    }

    /// Only after this client's transaction `seq` committed.
    fn after(mut slf: PyRefMut<'_, Self>, seq: u64) -> PyRefMut<'_, Self> {
        slf.after.push(seq);
        slf
    }

    /// Send it as operation `seq` (a resend of the same seq executes once).
    fn seq(mut slf: PyRefMut<'_, Self>, seq: u64) -> PyRefMut<'_, Self> {
        slf.seq = Some(seq);
        slf
    }

    /// Answer at submission (`Pending`) rather than at the outcome.
    fn no_wait(mut slf: PyRefMut<'_, Self>) -> PyRefMut<'_, Self> {
        slf.wait = false;
        slf
    }

    /// Send it; the awaitable resolves to its outcome.
    fn submit<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.sets.is_empty() {
            return Err(errors::bad_value("a transaction needs at least one set() (and is submitted once: build another for a second)"));
        }
        let group = self.group.clone();
        let conds = std::mem::take(&mut self.conds);
        let sets = std::mem::take(&mut self.sets);
        let (lease, deadline, after, seq, wait) = (self.lease_ms, self.deadline_ms, std::mem::take(&mut self.after), self.seq, self.wait);
        awaitable(py, async move {
            let schema = group.schema().await?;
            let mut tx = group.g.tx();
            for c in conds {
                tx = tx.when(match c {
                    CondSpec::Equals(r, f, v) => Cond::equals(r, &f, value_of(&schema, &f, &v)?),
                    CondSpec::Absent(r, f) => Cond::absent(r, &f),
                    CondSpec::Version(r, f, n) => Cond::version(r, &f, n),
                    CondSpec::LeaseExpired(r, f) => Cond::lease_expired(r, &f),
                    CondSpec::LeaseHeld(r, f) => Cond::lease_held(r, &f),
                    CondSpec::Compare(r, f, op, v) => Cond::compare(r, &f, &op, value_of(&schema, &f, &v)?),
                });
            }
            for (r, f, v) in sets {
                let v = value_of(&schema, &f, &v)?;
                tx = tx.set(r, &f, v);
            }
            if let Some(ms) = lease {
                tx = tx.lease_ms(ms);
            }
            if let Some(ms) = deadline {
                tx = tx.deadline_ms(ms);
            }
            for s in after {
                tx = tx.after(s);
            }
            if let Some(s) = seq {
                tx = tx.seq(s);
            }
            if !wait {
                tx = tx.no_wait();
            }
            tx.submit().await.map(PyOutcome).map_err(errors::client)
        })
    }
}
