//! `spook.agents`: the coordination patterns of `spook-agents` (claims, auctions, sealed bids,
//! blackboard, barriers, formation goals) over a `Group`. Each call builds the pattern on the
//! group's `spook_client::Group` and awaits it; nothing is reimplemented here. Refusals
//! (nothing committed) raise the `spook.errors` class named for them.

use std::collections::BTreeSet;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use spook_agents::auctions::{AuctionError, AuctionResult as Result_, Auctions as Auctions_, Rule};
use spook_agents::barrier::{Barrier as Barrier_, BarrierError, BarrierOutcome as Outcome_};
use spook_agents::blackboard::{BoardError, BoardWatch, Blackboard as Blackboard_, Posted as Posted_, Selector};
use spook_agents::claims::{Claim as Claim_, ClaimError, Claims as Claims_};
use spook_agents::goals::Formation as Formation_;
use spook_agents::sealed::{SealedAuctions as Sealed_, SealedError};
use spook_client::Error;
use spook_core::api::Fields;

use crate::convert::{fields_of, fields_to_py, to_value};
use crate::errors::{self, pattern};
use crate::group::{reg, Group, Inner};
use crate::runtime::awaitable;

fn claim_err(e: ClaimError<Error>) -> PyErr {
    let m = e.to_string();
    match e {
        ClaimError::Held(_) => pattern("Held", m),
        ClaimError::NotHolder(_) => pattern("NotHolder", m),
        ClaimError::Unknown(_) => pattern("OutcomeUnknown", m),
        ClaimError::Missing(_) => pattern("Missing", m),
        ClaimError::Group(e) => errors::client(e),
    }
}

fn auction_err(e: AuctionError<Error>) -> PyErr {
    let m = e.to_string();
    match e {
        AuctionError::Exists(_) => pattern("Exists", m),
        AuctionError::NotOpen(_) => pattern("NotOpen", m),
        AuctionError::Closed(_) => pattern("WindowClosed", m),
        AuctionError::Outbid { .. } => pattern("Outbid", m),
        AuctionError::StillOpen(_) => pattern("StillOpen", m),
        AuctionError::BadAmount(_) => errors::bad_value(m),
        AuctionError::Unknown(_) => pattern("OutcomeUnknown", m),
        AuctionError::Group(e) => errors::client(e),
    }
}

fn sealed_err(e: SealedError<Error>) -> PyErr {
    let m = e.to_string();
    match e {
        SealedError::Exists(_) => pattern("Exists", m),
        SealedError::NotOpen(_) => pattern("NotOpen", m),
        SealedError::SealingEnded(_) | SealedError::RevealEnded(_) => pattern("WindowClosed", m),
        SealedError::StillSealing(_) | SealedError::StillRevealing(_) => pattern("StillOpen", m),
        SealedError::NotSealed(_) => pattern("NotSealed", m),
        SealedError::BadAmount(_) => errors::bad_value(m),
        SealedError::Unknown(_) => pattern("OutcomeUnknown", m),
        SealedError::Group(e) => errors::client(e),
    }
}

fn barrier_err(e: BarrierError<Error>) -> PyErr {
    let m = e.to_string();
    match e {
        BarrierError::Exists(_) => pattern("Exists", m),
        BarrierError::NotOpen(_) => pattern("NotOpen", m),
        BarrierError::Closed(_) => pattern("WindowClosed", m),
        BarrierError::NoParties => errors::bad_value(m),
        BarrierError::Unknown(_) => pattern("OutcomeUnknown", m),
        BarrierError::Group(e) => errors::client(e),
    }
}

fn board_err(e: BoardError<Error>) -> PyErr {
    let m = e.to_string();
    match e {
        BoardError::Taken { .. } => pattern("Taken", m),
        BoardError::NotOwner(_) => pattern("NotOwner", m),
        BoardError::Unknown(_) => pattern("OutcomeUnknown", m),
        BoardError::Group(e) => errors::client(e),
    }
}

/// A task this agent holds until its lease ends, unless renewed; `fence` is the fencing token
/// the resource it guards compares.
#[pyclass(module = "spook._spook", frozen, eq, get_all)]
#[derive(Clone, PartialEq)]
pub(crate) struct Claim {
    task: u32,
    fence: u64,
    lease_ms: u64,
}

impl Claim {
    fn of(c: Claim_) -> Claim {
        Claim { task: c.task.0, fence: c.fence, lease_ms: c.lease_ms }
    }

    fn inner(&self) -> Claim_ {
        Claim_ { task: spook_core::RegisterId(self.task), fence: self.fence, lease_ms: self.lease_ms }
    }
}

#[pymethods]
impl Claim {
    fn __repr__(&self) -> String {
        format!("Claim(task={}, fence={}, lease_ms={})", self.task, self.fence, self.lease_ms)
    }
}

/// Task claims with leases and fencing tokens: the owner of task `t` is the string field
/// `field` of register `t`.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Claims {
    group: Inner,
    field: String,
    posted_in: Option<String>,
    lease_ms: u64,
    deadline_ms: u64,
}

#[pymethods]
impl Claims {
    #[new]
    #[pyo3(signature = (group, field = "owner", *, posted_in = None, lease_ms = 10_000, deadline_ms = 5_000))]
    fn new(group: &Group, field: &str, posted_in: Option<String>, lease_ms: u64, deadline_ms: u64) -> Claims {
        Claims { group: group.inner.clone(), field: field.to_string(), posted_in, lease_ms, deadline_ms }
    }

    /// Take `task` if nobody holds it: raises `Held` if another agent's lease runs.
    fn claim<'py>(&self, py: Python<'py>, task: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, t, field, posted, lease, deadline) = (self.group.clone(), reg(task)?, self.field.clone(), self.posted_in.clone(), self.lease_ms, self.deadline_ms);
        awaitable(py, async move {
            let task = g.resolve(&t).await?;
            let mut c = Claims_::new(&g.g, &field).lease_ms(lease).deadline_ms(deadline);
            if let Some(p) = &posted {
                c = c.posted_in(p);
            }
            c.claim(task).await.map(Claim::of).map_err(claim_err)
        })
    }

    /// Extend a held claim; raises `NotHolder` if it was lost.
    fn renew<'py>(&self, py: Python<'py>, claim: Claim) -> PyResult<Bound<'py, PyAny>> {
        let (g, field, lease, deadline) = (self.group.clone(), self.field.clone(), self.lease_ms, self.deadline_ms);
        awaitable(py, async move { Claims_::new(&g.g, &field).lease_ms(lease).deadline_ms(deadline).renew(&claim.inner()).await.map(Claim::of).map_err(claim_err) })
    }

    /// Give a claim up.
    fn release<'py>(&self, py: Python<'py>, claim: Claim) -> PyResult<Bound<'py, PyAny>> {
        let (g, field, deadline) = (self.group.clone(), self.field.clone(), self.deadline_ms);
        awaitable(py, async move { Claims_::new(&g.g, &field).deadline_ms(deadline).release(claim.inner()).await.map_err(claim_err) })
    }
}

/// A closed auction's outcome, the same on every member: the winner's session id (None if
/// nobody bid) and the winning amount (the reserve if nobody bid).
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct AuctionResult {
    winner: Option<String>,
    amount: f64,
}

#[pymethods]
impl AuctionResult {
    fn __repr__(&self) -> String {
        format!("AuctionResult(winner={:?}, amount={})", self.winner, self.amount)
    }
}

impl From<Result_> for AuctionResult {
    fn from(r: Result_) -> AuctionResult {
        AuctionResult { winner: r.winner, amount: r.amount }
    }
}

fn rule(r: &str) -> PyResult<Rule> {
    match r {
        "highest" => Ok(Rule::Highest),
        "lowest" => Ok(Rule::Lowest),
        _ => Err(errors::bad_value(format!("rule is \"highest\" or \"lowest\", got {r:?}"))),
    }
}

/// Open-bid auctions with a winner every member computes.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Auctions {
    group: Inner,
    deadline_ms: u64,
}

#[pymethods]
impl Auctions {
    #[new]
    #[pyo3(signature = (group, *, deadline_ms = 5_000))]
    fn new(group: &Group, deadline_ms: u64) -> Auctions {
        Auctions { group: group.inner.clone(), deadline_ms }
    }

    /// Open an auction in register `auction`, bidding for `bidding_ms`.
    #[pyo3(signature = (auction, bidding_ms, *, rule = "highest", reserve = 0.0))]
    fn open<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>, bidding_ms: u64, rule: &str, reserve: f64) -> PyResult<Bound<'py, PyAny>> {
        let (g, a, r, d) = (self.group.clone(), reg(auction)?, self::rule(rule)?, self.deadline_ms);
        awaitable(py, async move { Auctions_::new(&g.g).deadline_ms(d).open(g.resolve(&a).await?, r, reserve, bidding_ms).await.map_err(auction_err) })
    }

    /// Bid; raises `Outbid` if it does not beat the best, `WindowClosed` once bidding ended.
    fn bid<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>, amount: f64) -> PyResult<Bound<'py, PyAny>> {
        let (g, a, d) = (self.group.clone(), reg(auction)?, self.deadline_ms);
        awaitable(py, async move { Auctions_::new(&g.g).deadline_ms(d).bid(g.resolve(&a).await?, amount).await.map_err(auction_err) })
    }

    /// The result once bidding has ended (raises `StillOpen` before).
    fn result<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, a, d) = (self.group.clone(), reg(auction)?, self.deadline_ms);
        awaitable(py, async move { Auctions_::new(&g.g).deadline_ms(d).result(g.resolve(&a).await?).await.map(AuctionResult::from).map_err(auction_err) })
    }
}

/// Sealed-bid auctions: a hash while sealing runs, the amount once it has ended.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct SealedAuctions {
    group: Inner,
}

#[pymethods]
impl SealedAuctions {
    #[new]
    fn new(group: &Group) -> SealedAuctions {
        SealedAuctions { group: group.inner.clone() }
    }

    /// Open an auction: sealing for `sealing_ms`, then revealing for `reveal_ms`.
    #[pyo3(signature = (auction, sealing_ms, reveal_ms, *, rule = "highest", reserve = 0.0))]
    fn open<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>, sealing_ms: u64, reveal_ms: u64, rule: &str, reserve: f64) -> PyResult<Bound<'py, PyAny>> {
        let (g, a, r) = (self.group.clone(), reg(auction)?, self::rule(rule)?);
        awaitable(py, async move { Sealed_::new(&g.g).open(g.resolve(&a).await?, r, reserve, sealing_ms, reveal_ms).await.map_err(sealed_err) })
    }

    /// Seal a bid (keep `nonce` secret until the reveal).
    fn seal<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>, amount: f64, nonce: u64) -> PyResult<Bound<'py, PyAny>> {
        let (g, a) = (self.group.clone(), reg(auction)?);
        awaitable(py, async move { Sealed_::new(&g.g).seal(g.resolve(&a).await?, amount, nonce).await.map_err(sealed_err) })
    }

    /// Reveal the sealed bid.
    fn reveal<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>, amount: f64, nonce: u64) -> PyResult<Bound<'py, PyAny>> {
        let (g, a) = (self.group.clone(), reg(auction)?);
        awaitable(py, async move { Sealed_::new(&g.g).reveal(g.resolve(&a).await?, amount, nonce).await.map_err(sealed_err) })
    }

    /// The result once revealing has ended.
    fn result<'py>(&self, py: Python<'py>, auction: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, a) = (self.group.clone(), reg(auction)?);
        awaitable(py, async move { Sealed_::new(&g.g).result(g.resolve(&a).await?).await.map(AuctionResult::from).map_err(sealed_err) })
    }
}

/// How a barrier ended, the same on every member.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct BarrierOutcome {
    complete: bool,
    arrived: Vec<String>,
    parties: Option<usize>,
}

#[pymethods]
impl BarrierOutcome {
    fn __repr__(&self) -> String {
        format!("BarrierOutcome(complete={}, arrived={:?})", if self.complete { "True" } else { "False" }, self.arrived)
    }
}

/// A barrier in one register: `open(parties, wait_ms)`, then each party `arrive()`s and
/// `wait()`s for everyone or the deadline.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Barrier {
    group: Inner,
    register: spook_client::Reg,
    deadline_ms: u64,
}

#[pymethods]
impl Barrier {
    #[new]
    #[pyo3(signature = (group, register, *, deadline_ms = 5_000))]
    fn new(group: &Group, register: &Bound<'_, PyAny>, deadline_ms: u64) -> PyResult<Barrier> {
        Ok(Barrier { group: group.inner.clone(), register: reg(register)?, deadline_ms })
    }

    /// Open it for `parties`, closing `wait_ms` after the opening commits.
    fn open<'py>(&self, py: Python<'py>, parties: usize, wait_ms: u64) -> PyResult<Bound<'py, PyAny>> {
        let (g, r, d) = (self.group.clone(), self.register.clone(), self.deadline_ms);
        awaitable(py, async move { Barrier_::new(&g.g, g.resolve(&r).await?).deadline_ms(d).open(parties, wait_ms).await.map_err(barrier_err) })
    }

    /// Arrive (this session).
    fn arrive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (g, r, d) = (self.group.clone(), self.register.clone(), self.deadline_ms);
        awaitable(py, async move { Barrier_::new(&g.g, g.resolve(&r).await?).deadline_ms(d).arrive().await.map_err(barrier_err) })
    }

    /// Wait until every party arrived or the barrier closed.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (g, r, d) = (self.group.clone(), self.register.clone(), self.deadline_ms);
        awaitable(py, async move {
            Ok(match Barrier_::new(&g.g, g.resolve(&r).await?).deadline_ms(d).wait().await.map_err(barrier_err)? {
                Outcome_::Complete { arrived } => BarrierOutcome { complete: true, arrived, parties: None },
                Outcome_::TimedOut { arrived, parties } => BarrierOutcome { complete: false, arrived, parties: Some(parties) },
            })
        })
    }
}

/// A blackboard entry as read or watched: its register, owner (empty once removed) and
/// fields (None once removed).
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct Posted {
    key: u32,
    owner: String,
    entry: Option<Py<PyDict>>,
}

#[pymethods]
impl Posted {
    fn __repr__(&self, py: Python<'_>) -> String {
        let e = self.entry.as_ref().map_or_else(|| "None".into(), |d| d.bind(py).repr().map(|r| r.to_string()).unwrap_or_default());
        format!("Posted(key={}, owner={:?}, entry={e})", self.key, self.owner)
    }
}

struct PyPosted(Option<Posted_<Fields>>);

impl<'py> IntoPyObject<'py> for PyPosted {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some(p) = self.0 else { return Ok(py.None().into_bound(py)) };
        // The owner is the board's own field, reported as `owner`, not part of the entry.
        let entry = p.entry.map(|mut f| {
            f.remove("owner");
            fields_to_py(py, &f).map(Bound::unbind)
        });
        let entry = entry.transpose()?;
        Ok(Bound::new(py, Posted { key: p.key.0, owner: p.owner, entry })?.into_any())
    }
}

/// A blackboard of owned entries (a serial group): post, update and remove your own, read
/// and watch everyone's.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Blackboard {
    group: Inner,
}

#[pymethods]
impl Blackboard {
    #[new]
    fn new(group: &Group) -> Blackboard {
        Blackboard { group: group.inner.clone() }
    }

    /// Post an entry (a dict of fields) in register `key`, which nobody holds.
    fn post<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>, entry: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, k) = (self.group.clone(), reg(key)?);
        awaitable(py, async move {
            let schema = g.schema().await?;
            let fields: Fields = Python::attach(|py| fields_of(&schema, entry.bind(py)))?.into_iter().collect();
            Blackboard_::new(&g.g).post(k.resolve(&schema), &fields).await.map_err(board_err)
        })
    }

    /// Replace the fields of an entry this session owns.
    fn update<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>, entry: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, k) = (self.group.clone(), reg(key)?);
        awaitable(py, async move {
            let schema = g.schema().await?;
            let fields: Fields = Python::attach(|py| fields_of(&schema, entry.bind(py)))?.into_iter().collect();
            Blackboard_::new(&g.g).update(k.resolve(&schema), &fields).await.map_err(board_err)
        })
    }

    /// Remove an entry this session owns.
    fn remove<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, k) = (self.group.clone(), reg(key)?);
        awaitable(py, async move { Blackboard_::new(&g.g).remove(g.resolve(&k).await?).await.map_err(board_err) })
    }

    /// The committed entry in `key`, or None.
    fn read<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (g, k) = (self.group.clone(), reg(key)?);
        awaitable(py, async move { Blackboard_::new(&g.g).read::<Fields>(g.resolve(&k).await?).await.map(PyPosted).map_err(board_err) })
    }

    /// Watch entries: all, those in `keys`, or those whose field `equals[0]` holds `equals[1]`.
    #[pyo3(signature = (*, keys = None, equals = None))]
    fn watch<'py>(&self, py: Python<'py>, keys: Option<Vec<Bound<'py, PyAny>>>, equals: Option<(String, Bound<'py, PyAny>)>) -> PyResult<Bound<'py, PyAny>> {
        let g = self.group.clone();
        let keys = keys.map(|ks| ks.iter().map(reg).collect::<PyResult<Vec<_>>>()).transpose()?;
        let equals = equals.map(|(f, v)| Ok::<_, PyErr>((f.clone(), to_value(&v, &f, 0)?))).transpose()?;
        if keys.is_some() && equals.is_some() {
            return Err(errors::bad_value("watch by keys or by equals, not both"));
        }
        awaitable(py, async move {
            let schema = g.schema().await?;
            let selector = match (keys, equals) {
                (Some(k), _) => Selector::Keys(k.iter().map(|r| r.resolve(&schema)).collect::<BTreeSet<_>>()),
                (None, Some((f, v))) => Selector::Equals(f, v),
                (None, None) => Selector::All,
            };
            let w = Blackboard_::new(&g.g).watch::<Fields>(selector).await.map_err(board_err)?;
            Ok(BoardWatcher { w: Arc::new(tokio::sync::Mutex::new(w)) })
        })
    }
}

/// A watch of blackboard entries: `async for posted in watcher`.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct BoardWatcher {
    w: Arc<tokio::sync::Mutex<BoardWatch<spook_client::Watch, Fields>>>,
}

#[pymethods]
impl BoardWatcher {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let w = self.w.clone();
        awaitable(py, async move {
            match w.lock().await.next().await {
                None => Err(pyo3::exceptions::PyStopAsyncIteration::new_err(())),
                Some(Err(e)) => Err(errors::client(e)),
                Some(Ok(p)) => Ok(PyPosted(Some(p))),
            }
        })
    }
}

/// The formation's goal as every member computes it: the goal, its votes and the members
/// whose proposals counted.
#[pyclass(module = "spook._spook", frozen, get_all)]
pub(crate) struct Choice {
    goal: String,
    votes: usize,
    members: Vec<String>,
}

#[pymethods]
impl Choice {
    fn __repr__(&self) -> String {
        format!("Choice(goal={:?}, votes={})", self.goal, self.votes)
    }
}

/// Leaderless goals: each member proposes, every member computes the same choice.
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Formation {
    group: Inner,
    member: spook_core::EndpointId,
    name: Option<String>,
}

#[pymethods]
impl Formation {
    /// The formation of `group` as `member` (the node this agent speaks for: `node_id()`).
    #[new]
    #[pyo3(signature = (group, member, *, name = None))]
    fn new(group: &Group, member: &str, name: Option<String>) -> PyResult<Formation> {
        let member = member.trim().parse().map_err(|e| errors::bad_value(format!("{member:?} is not an endpoint id ({e})")))?;
        Ok(Formation { group: group.inner.clone(), member, name })
    }

    /// Propose a goal (replacing this member's earlier proposal).
    fn propose<'py>(&self, py: Python<'py>, goal: String) -> PyResult<Bound<'py, PyAny>> {
        let (g, m, n) = (self.group.clone(), self.member, self.name.clone());
        awaitable(py, async move {
            let f = Formation_::new(&g.g, m);
            let f = if let Some(n) = &n { f.named(n) } else { f };
            f.propose(&goal).await.map_err(errors::client)
        })
    }

    /// The goal the members' committed proposals choose, or None.
    fn choose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (g, m, n) = (self.group.clone(), self.member, self.name.clone());
        awaitable(py, async move {
            let f = Formation_::new(&g.g, m);
            let f = if let Some(n) = &n { f.named(n) } else { f };
            Ok(f.choose().await.map_err(errors::client)?.map(|c| Choice { goal: c.goal, votes: c.votes, members: c.members.iter().map(ToString::to_string).collect() }))
        })
    }
}
