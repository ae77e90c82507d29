//! Serial transactions: conditions on the committed serial state, writes applied if they all
//! hold, identified by (client, seq) so that a resend through any node executes once.

use serde_json::Value as Json;
use spook_core::api::Outcome;
use spook_core::Value;

use crate::error::Error;
use crate::group::{typed, Group};
use crate::proto::{Reg, Request, TxCondition, TxSet};

/// An outcome as a node answers it.
pub(crate) fn outcome_from_json(j: &Json) -> Result<Outcome, Error> {
    let seq = j.get("seq").and_then(Json::as_u64).unwrap_or(0);
    Ok(match j.get("state").and_then(Json::as_str) {
        Some("committed") => Outcome::Committed { seq, fence: j.get("fence").and_then(Json::as_u64).unwrap_or(0), resent: j.get("resent") == Some(&Json::Bool(true)) },
        Some("aborted") => Outcome::Aborted { seq, reason: j.get("reason").and_then(Json::as_str).unwrap_or_default().to_string() },
        Some("decohered") => Outcome::Decohered { seq },
        Some("pending") => Outcome::Pending { seq },
        _ => return Err(Error::Protocol(format!("a transaction outcome without a state: {j}"))),
    })
}

/// A condition of a transaction on the committed serial state of one cell.
///
/// ```
/// use spook_client::Cond;
/// let c = Cond::equals(3, "owner", "drone-7");
/// assert_eq!(c.register(), &spook_client::proto::Reg::Id(3));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Cond(TxCondition, Option<Value>);

impl Cond {
    fn cell(register: impl Into<Reg>, field: &str) -> TxCondition {
        TxCondition { register: register.into(), field: field.to_string(), ..TxCondition::default() }
    }

    /// The cell holds this value.
    ///
    /// ```
    /// let owned_by_me = spook_client::Cond::equals("task-3", "owner", "drone-7");
    /// ```
    pub fn equals(register: impl Into<Reg>, field: &str, value: impl Into<Value>) -> Cond {
        Cond(Cond::cell(register, field), Some(value.into()))
    }

    /// The cell was never written.
    ///
    /// ```
    /// let unclaimed = spook_client::Cond::absent(3, "owner");
    /// ```
    #[must_use]
    pub fn absent(register: impl Into<Reg>, field: &str) -> Cond {
        Cond(TxCondition { absent: true, ..Cond::cell(register, field) }, None)
    }

    /// The cell has had exactly `version` committed writes.
    ///
    /// ```
    /// // Compare-and-set: only if nobody wrote the cell since it was read at version 4.
    /// let unchanged = spook_client::Cond::version(3, "owner", 4);
    /// ```
    #[must_use]
    pub fn version(register: impl Into<Reg>, field: &str, version: u64) -> Cond {
        Cond(TxCondition { version: Some(version), ..Cond::cell(register, field) }, None)
    }

    /// The cell holds no lease, or its lease ended before the transaction's turn.
    ///
    /// ```
    /// let free = spook_client::Cond::lease_expired(3, "owner");
    /// ```
    #[must_use]
    pub fn lease_expired(register: impl Into<Reg>, field: &str) -> Cond {
        Cond(TxCondition { lease_expired: true, ..Cond::cell(register, field) }, None)
    }

    /// The cell holds a lease that has not ended at the transaction's position: a window
    /// still open in the group's total order.
    ///
    /// ```
    /// let bidding = spook_client::Cond::lease_held("auction-1", "state");
    /// ```
    #[must_use]
    pub fn lease_held(register: impl Into<Reg>, field: &str) -> Cond {
        Cond(TxCondition { lease_held: true, ..Cond::cell(register, field) }, None)
    }

    /// A comparison (`<`, `<=`, `>`, `>=`, `!=`) of the cell with `value`.
    ///
    /// ```
    /// let charged = spook_client::Cond::compare(7, "battery", ">=", 0.3);
    /// ```
    pub fn compare(register: impl Into<Reg>, field: &str, op: &str, value: impl Into<Value>) -> Cond {
        Cond(TxCondition { cmp: Some(op.to_string()), ..Cond::cell(register, field) }, Some(value.into()))
    }

    /// The register it tests.
    ///
    /// ```
    /// use spook_client::{proto::Reg, Cond};
    /// assert_eq!(Cond::absent("task-3", "owner").register(), &Reg::Name("task-3".into()));
    /// ```
    #[must_use]
    pub fn register(&self) -> &Reg {
        &self.0.register
    }

    fn into_wire(self) -> Result<TxCondition, Error> {
        let Cond(mut c, v) = self;
        if let Some(v) = v {
            if c.cmp.is_some() {
                c.value = Some(typed(&v)?);
            } else {
                c.equals = Some(typed(&v)?);
            }
        }
        Ok(c)
    }
}

/// A transaction being built: [`Group::tx`], then conditions and writes, then
/// [`Tx::submit`].
///
/// ```no_run
/// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
/// use spook_client::{Cond, Outcome};
/// let o = tasks.tx().when(Cond::lease_expired(3, "owner")).set(3, "owner", "drone-7").lease_ms(5_000).deadline_ms(2_000).submit().await?;
/// assert!(matches!(o, Outcome::Committed { .. } | Outcome::Aborted { .. } | Outcome::Decohered { .. }));
/// # Ok(()) }
/// ```
#[must_use = "a transaction does nothing until it is submitted"]
pub struct Tx<'a> {
    group: &'a Group,
    conditions: Vec<Cond>,
    sets: Vec<(Reg, String, Value)>,
    after: Vec<u64>,
    lease_ms: Option<u64>,
    timeout_ms: Option<u64>,
    seq: Option<u64>,
    wait: bool,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(group: &'a Group) -> Tx<'a> {
        Tx { group, conditions: Vec::new(), sets: Vec::new(), after: Vec::new(), lease_ms: None, timeout_ms: None, seq: None, wait: true }
    }

    /// Commit only if `c` holds at the transaction's turn.
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Cond;
    /// tasks.tx().when(Cond::absent(3, "owner")).when(Cond::compare(7, "battery", ">", 0.2)).set(3, "owner", "drone-7").submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn when(mut self, c: Cond) -> Tx<'a> {
        self.conditions.push(c);
        self
    }

    /// Write `value` to the cell if it commits.
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// // Hand task 3 over and mark the drone busy, atomically.
    /// tasks.tx().set(3, "owner", "drone-8").set("drone-8", "status", "busy").submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn set(mut self, register: impl Into<Reg>, field: &str, value: impl Into<Value>) -> Tx<'a> {
        self.sets.push((register.into(), field.to_string(), value.into()));
        self
    }

    /// Lease the cells written for this long after the commit (a claim that expires unless
    /// renewed).
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Cond;
    /// // Claimed for 5 s unless renewed (the same transaction again, before it ends).
    /// tasks.tx().when(Cond::lease_expired(3, "owner")).set(3, "owner", "drone-7").lease_ms(5_000).submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn lease_ms(mut self, ms: u64) -> Tx<'a> {
        self.lease_ms = Some(ms);
        self
    }

    /// Abort unless evaluated within this many ms of submission (default 10 000).
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// // Give up (Aborted, or Decohered if the outcome is unknown here) after 500 ms.
    /// tasks.tx().set(3, "owner", "drone-7").deadline_ms(500).submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn deadline_ms(mut self, ms: u64) -> Tx<'a> {
        self.timeout_ms = Some(ms);
        self
    }

    /// Commit only after this client's operation `seq` committed.
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// let first = tasks.tx().set(3, "owner", "drone-7").no_wait().submit().await?.seq();
    /// tasks.tx().set(4, "owner", "drone-7").after(first).submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn after(mut self, seq: u64) -> Tx<'a> {
        self.after.push(seq);
        self
    }

    /// The operation's seq (default: the client's next). Resending the same seq executes once.
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// // A resend after a lost node: the same seq executes once (`resent` says it had).
    /// let o = tasks.tx().set(3, "owner", "drone-7").seq(41).submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn seq(mut self, seq: u64) -> Tx<'a> {
        self.seq = Some(seq);
        self
    }

    /// Answer at submission ([`Outcome::Pending`]) rather than with the outcome.
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Outcome;
    /// let o = tasks.tx().set(3, "owner", "drone-7").no_wait().submit().await?;
    /// assert!(matches!(o, Outcome::Pending { .. }));
    /// # Ok(()) }
    /// ```
    pub fn no_wait(mut self) -> Tx<'a> {
        self.wait = false;
        self
    }

    /// Submit it and, unless [`Tx::no_wait`], wait for its outcome.
    ///
    /// # Errors
    /// The group is not serial, a write or condition does not fit its schema, or the node
    /// went away ([`Error::NodeLost`]: resend with the same [`Tx::seq`]).
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::{Error, Outcome};
    /// match tasks.tx().set(3, "owner", "drone-7").seq(9).submit().await {
    ///     Ok(Outcome::Committed { fence, .. }) => println!("fence {fence}"),
    ///     Ok(other) => println!("{other:?}"),
    ///     Err(e) if e.node_lost() => println!("resend seq 9 through another node"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn submit(self) -> Result<Outcome, Error> {
        let lease = self.lease_ms;
        let set = self.sets.into_iter().map(|(register, field, v)| Ok(TxSet { register, field, value: typed(&v)?, lease_ms: lease })).collect::<Result<Vec<_>, Error>>()?;
        let conditions = self.conditions.into_iter().map(Cond::into_wire).collect::<Result<Vec<_>, Error>>()?;
        let client = self.group.client().session_id().to_string();
        let seq = self.seq.unwrap_or_else(|| self.group.client().next_seq());
        let r = Request::Tx { group: self.group.name().to_string(), client, seq, conditions, set, after: self.after, timeout_ms: self.timeout_ms, wait: self.wait, typed: true };
        outcome_from_json(&self.group.client().call(&r).await?)
    }
}
