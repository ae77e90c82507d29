//! The group operations as one trait, [`GroupApi`]: what every way of reaching a group
//! offers, a client's group on a real node (`spook_client::Group`) as much as a replica
//! hosted in the simulator (`spook_sim::net::SimGroup`). Code written once over it (the agent
//! patterns, the fleet twin) runs against real nodes and in simulation alike.
//!
//! Time is an input here too: [`GroupApi::now_ms`] and [`GroupApi::sleep_ms`] are the
//! group's clock, the system's for a client and the virtual one in the simulator. Registers
//! are ids ([`Schema::resolve_register`] turns a name into one) and fields are names, so the
//! same call reads the same on either side.

use std::collections::BTreeMap;
use std::future::Future;

use crate::{Cmp, EndpointId, OpId, Precondition, RegisterId, Schema, Txn, TxnOutcome, TxnWrite, Value, ValueError, View};

/// A register's fields: name to value.
///
/// ```
/// let f: spook_core::api::Fields = [("battery".to_string(), spook_core::Value::F64(0.5))].into();
/// assert_eq!(f["battery"], spook_core::Value::F64(0.5));
/// ```
pub type Fields = BTreeMap<String, Value>;

/// How long a transaction may wait for its turn unless it says otherwise (ms).
///
/// ```
/// use spook_core::{api::TxSpec, EndpointId, OpId, RegisterId, Schema};
/// let t = TxSpec::new().set(RegisterId(1), "owner", "a").to_txn(&Schema::fleet(), OpId { client: EndpointId::from_index(1), seq: 1 }, 0).unwrap();
/// assert_eq!(t.deadline_ms, spook_core::api::DEFAULT_DEADLINE_MS);
/// ```
pub const DEFAULT_DEADLINE_MS: u64 = 10_000;

/// The longest a transaction may wait for its turn (ms): a day, as the node allows.
pub const MAX_DEADLINE_MS: u64 = 86_400_000;

/// How a transaction ended, as far as this member knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It committed; `fence` is its commit stamp, a fencing token later holders compare.
    Committed {
        /// The operation's seq.
        seq: u64,
        /// The commit stamp.
        fence: u64,
        /// The group had executed it before (this was a resend).
        resent: bool,
    },
    /// Its conditions did not hold, or it missed its deadline.
    Aborted {
        /// The operation's seq.
        seq: u64,
        /// Why, for people.
        reason: String,
    },
    /// Its deadline passed before its outcome was known here; it may still commit or abort
    /// (ask again with [`GroupApi::outcome`]).
    Decohered {
        /// The operation's seq.
        seq: u64,
    },
    /// Submitted without waiting for its outcome.
    Pending {
        /// The operation's seq.
        seq: u64,
    },
}

impl Outcome {
    /// The outcome the group agreed on for operation `seq`.
    ///
    /// ```
    /// # use spook_core::{api::Outcome, AbortReason, TxnOutcome};
    /// let o = Outcome::of(4, &TxnOutcome::Aborted(AbortReason::Precondition(0)));
    /// assert_eq!(o, Outcome::Aborted { seq: 4, reason: "condition 1 did not hold".into() });
    /// ```
    #[must_use]
    pub fn of(seq: u64, o: &TxnOutcome) -> Outcome {
        match o {
            TxnOutcome::Committed { fence } => Outcome::Committed { seq, fence: fence.0, resent: false },
            TxnOutcome::Aborted(r) => Outcome::Aborted { seq, reason: r.to_string() },
        }
    }

    /// For an abort because a condition did not hold: which one (from 0, in the order the
    /// transaction lists them). The reason travels as text (what a node sends its clients),
    /// written by [`AbortReason`](crate::AbortReason)'s `Display`, which this reads back.
    ///
    /// ```
    /// # use spook_core::{api::Outcome, AbortReason, TxnOutcome};
    /// assert_eq!(Outcome::of(4, &TxnOutcome::Aborted(AbortReason::Precondition(2))).failed_condition(), Some(2));
    /// assert_eq!(Outcome::of(4, &TxnOutcome::Aborted(AbortReason::DeadlinePassed)).failed_condition(), None);
    /// ```
    #[must_use]
    pub fn failed_condition(&self) -> Option<usize> {
        let Outcome::Aborted { reason, .. } = self else { return None };
        let n: usize = reason.strip_prefix("condition ")?.strip_suffix(" did not hold")?.parse().ok()?;
        n.checked_sub(1)
    }

    /// The operation's seq.
    ///
    /// ```
    /// assert_eq!(spook_core::api::Outcome::Decohered { seq: 5 }.seq(), 5);
    /// ```
    #[must_use]
    pub fn seq(&self) -> u64 {
        match self {
            Outcome::Committed { seq, .. } | Outcome::Aborted { seq, .. } | Outcome::Decohered { seq } | Outcome::Pending { seq } => *seq,
        }
    }
}

/// What a condition of a transaction tests of one committed serial cell.
///
/// ```
/// use spook_core::{api::{Test, TxSpec}, Cmp, RegisterId};
/// let tx = TxSpec::new().when(RegisterId(7), "battery", Test::Compare(Cmp::Ge, 0.3.into())).set(RegisterId(3), "owner", "drone-7");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// The cell holds this value.
    Equals(Value),
    /// The cell was never written.
    Absent,
    /// The cell has had exactly this many committed writes.
    Version(u64),
    /// The cell holds no lease, or its lease ended before the transaction's turn.
    LeaseExpired,
    /// The cell holds a lease that has not ended at the transaction's turn.
    LeaseHeld,
    /// The cell compares so with the value.
    Compare(Cmp, Value),
}

/// A condition of a transaction on one cell (register, field).
///
/// ```
/// use spook_core::{api::{Condition, Test, TxSpec}, RegisterId};
/// let tx = TxSpec::new().when(RegisterId(3), "owner", Test::Absent);
/// assert_eq!(tx.conditions, vec![Condition { register: RegisterId(3), field: "owner".into(), test: Test::Absent }]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The register.
    pub register: RegisterId,
    /// The field's name.
    pub field: String,
    /// What must hold.
    pub test: Test,
}

/// A serial transaction before it is submitted: conditions, writes, lease, deadline. Built
/// alike for a client and for the simulator.
///
/// ```
/// # use spook_core::{api::{Test, TxSpec}, OpId, EndpointId, RegisterId, Schema};
/// let claim = TxSpec::new()
///     .when(RegisterId(3), "owner", Test::LeaseExpired)
///     .set(RegisterId(3), "owner", "drone-7")
///     .lease_ms(5_000);
/// let txn = claim.to_txn(&Schema::fleet(), OpId { client: EndpointId::from_index(1), seq: 1 }, 1_000).unwrap();
/// assert_eq!((txn.deadline_ms, txn.writes[0].lease_ms), (11_000, Some(5_000)));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use = "a transaction does nothing until it is submitted"]
pub struct TxSpec {
    /// Conditions on the committed serial state; all must hold.
    pub conditions: Vec<Condition>,
    /// Writes applied if it commits: (register, field, value).
    pub sets: Vec<(RegisterId, String, Value)>,
    /// Lease the cells written for this long after the commit.
    pub lease_ms: Option<u64>,
    /// Abort unless evaluated within this many ms of submission ([`DEFAULT_DEADLINE_MS`]).
    pub deadline_ms: Option<u64>,
    /// Seqs of this session's operations that must commit before this one.
    pub after: Vec<u64>,
    /// The operation's seq (default: the session's next); a resend of a seq executes once.
    pub seq: Option<u64>,
}

impl TxSpec {
    /// An empty transaction.
    pub fn new() -> TxSpec {
        TxSpec::default()
    }

    /// Commit only if `test` holds for the cell at the transaction's turn.
    ///
    /// ```
    /// use spook_core::{api::{Test, TxSpec}, RegisterId};
    /// let tx = TxSpec::new().when(RegisterId(3), "owner", Test::Version(2));
    /// assert_eq!(tx.conditions.len(), 1);
    /// ```
    pub fn when(mut self, register: RegisterId, field: &str, test: Test) -> TxSpec {
        self.conditions.push(Condition { register, field: field.to_string(), test });
        self
    }

    /// Write `value` to the cell if it commits.
    ///
    /// ```
    /// use spook_core::{api::TxSpec, RegisterId, Value};
    /// let tx = TxSpec::new().set(RegisterId(3), "owner", "drone-7");
    /// assert_eq!(tx.sets[0].2, Value::Str("drone-7".into()));
    /// ```
    pub fn set(mut self, register: RegisterId, field: &str, value: impl Into<Value>) -> TxSpec {
        self.sets.push((register, field.to_string(), value.into()));
        self
    }

    /// Lease the cells written for this long after the commit.
    ///
    /// ```
    /// assert_eq!(spook_core::api::TxSpec::new().lease_ms(5_000).lease_ms, Some(5_000));
    /// ```
    pub fn lease_ms(mut self, ms: u64) -> TxSpec {
        self.lease_ms = Some(ms);
        self
    }

    /// Abort unless evaluated within this many ms of submission.
    ///
    /// ```
    /// assert_eq!(spook_core::api::TxSpec::new().deadline_ms(500).deadline_ms, Some(500));
    /// ```
    pub fn deadline_ms(mut self, ms: u64) -> TxSpec {
        self.deadline_ms = Some(ms);
        self
    }

    /// Commit only after this session's operation `seq` committed.
    ///
    /// ```
    /// assert_eq!(spook_core::api::TxSpec::new().after(4).after, vec![4]);
    /// ```
    pub fn after(mut self, seq: u64) -> TxSpec {
        self.after.push(seq);
        self
    }

    /// The operation's seq.
    ///
    /// ```
    /// assert_eq!(spook_core::api::TxSpec::new().seq(9).seq, Some(9));
    /// ```
    pub fn seq(mut self, seq: u64) -> TxSpec {
        self.seq = Some(seq);
        self
    }

    /// The transaction typed by `schema`, submitted as operation `id` when the group clock
    /// reads `now_ms` ([`crate::Replica::clock_now`]: deadlines are judged against stamps,
    /// which may run ahead of a slow local clock).
    ///
    /// # Errors
    /// A field the schema lacks, a value that does not fit it, or no write at all.
    ///
    /// ```
    /// use spook_core::{api::TxSpec, EndpointId, OpId, RegisterId, Schema};
    /// let id = OpId { client: EndpointId::from_index(1), seq: 1 };
    /// let e = TxSpec::new().set(RegisterId(3), "colour", "red").to_txn(&Schema::fleet(), id, 0).unwrap_err();
    /// assert_eq!(e.field, "colour");
    /// assert!(TxSpec::new().to_txn(&Schema::fleet(), id, 0).is_err(), "a transaction writes something");
    /// ```
    pub fn to_txn(&self, schema: &Schema, id: OpId, now_ms: u64) -> Result<Txn, ValueError> {
        if self.sets.is_empty() {
            return Err(ValueError::new("(none)", "at least one write", "a transaction that writes nothing"));
        }
        let field = |name: &str| schema.field_named(name).map(|(f, def)| (f, def.kind));
        let preconditions = self
            .conditions
            .iter()
            .map(|c| {
                let (f, kind) = field(&c.field)?;
                let reg = c.register;
                Ok(match &c.test {
                    Test::Equals(v) => Precondition::ValueEquals { reg, field: f, value: kind.admit(&c.field, v.clone())? },
                    Test::Absent => Precondition::Absent { reg, field: f },
                    Test::Version(version) => Precondition::VersionEquals { reg, field: f, version: *version },
                    Test::LeaseExpired => Precondition::LeaseExpired { reg, field: f },
                    Test::LeaseHeld => Precondition::LeaseHeld { reg, field: f },
                    Test::Compare(cmp, v) => Precondition::Compare { reg, field: f, cmp: *cmp, value: kind.admit(&c.field, v.clone())? },
                })
            })
            .collect::<Result<Vec<_>, ValueError>>()?;
        let writes = self
            .sets
            .iter()
            .map(|(reg, name, v)| {
                let (f, kind) = field(name)?;
                Ok(TxnWrite { reg: *reg, field: f, value: kind.admit(name, v.clone())?, lease_ms: self.lease_ms })
            })
            .collect::<Result<Vec<_>, ValueError>>()?;
        let budget = self.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS);
        if !(1..=MAX_DEADLINE_MS).contains(&budget) {
            return Err(ValueError::new("deadline_ms", format!("1..={MAX_DEADLINE_MS}"), &budget.to_string()));
        }
        let deadline_ms = now_ms.saturating_add(budget);
        let after = self.after.iter().map(|&seq| OpId { client: id.client, seq }).collect();
        Ok(Txn { id, deadline_ms, after, preconditions, writes })
    }
}

/// One change of a register: its fields now, in the watched view.
///
/// ```
/// use spook_core::{api::{Change, Event}, RegisterId, View};
/// let e = Event::Change(Change { register: RegisterId(7), view: View::Committed, fields: Default::default(), snapshot: false });
/// assert!(matches!(e, Event::Change(Change { register: RegisterId(7), .. })));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The register.
    pub register: RegisterId,
    /// The view it changed in.
    pub view: View,
    /// Every field of the register that holds a value.
    pub fields: Fields,
    /// Part of a snapshot (the register's value when the watch started, after a lag, or
    /// after a move to another node) rather than a change as it happened.
    pub snapshot: bool,
}

/// What a watch yields.
///
/// ```
/// use spook_core::api::Event;
/// fn describe(e: &Event) -> String {
///     match e {
///         Event::Change(c) => format!("register {} changed", c.register),
///         Event::Lagged(n) => format!("missed {n}"),
///         other => format!("{other:?}"),
///     }
/// }
/// assert_eq!(describe(&Event::Lagged(3)), "missed 3");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A register changed.
    Change(Change),
    /// The consumer fell behind and missed this many events; the registers that changed
    /// meanwhile follow as snapshot changes.
    Lagged(u64),
    /// The committed frontier moved (ms of the group's clock).
    Committed {
        /// The new frontier.
        frontier_ms: u64,
    },
    /// A member went silent past the decoherence timeout.
    Decohered(EndpointId),
    /// Late deltas of a member that was cut off committed and changed these registers.
    ReEntangled {
        /// The registers.
        registers: Vec<RegisterId>,
    },
    /// A member joined the group's membership.
    MemberJoined(EndpointId),
    /// A member left it (pruned or removed).
    MemberLeft(EndpointId),
}

/// A watch: the events of one group in this member's order, until it is dropped.
///
/// ```
/// use spook_core::api::{Event, WatchStream};
/// /// Count changes until the watch ends.
/// async fn count<W: WatchStream>(mut w: W) -> usize {
///     let mut n = 0;
///     while let Some(Ok(e)) = w.next().await {
///         n += usize::from(matches!(e, Event::Change(_)));
///     }
///     n
/// }
/// ```
pub trait WatchStream: Send {
    /// What can end it.
    type Error;

    /// The next event; `None` once the watch has ended (after an error saying why).
    /// Cancel-safe: an event is either returned or still queued.
    fn next(&mut self) -> impl Future<Output = Option<Result<Event, Self::Error>>> + Send;
}

/// The operations of one entanglement group, as one member's session sees them.
///
/// Code written over it runs unchanged against a real node and in the simulator:
///
/// ```
/// use spook_core::api::{GroupApi, Outcome, Test, TxSpec};
/// use spook_core::RegisterId;
///
/// /// Take task `task` unless someone holds it; true if this session got it.
/// async fn claim<G: GroupApi>(g: &G, task: RegisterId) -> Result<bool, G::Error> {
///     let me = g.id().to_string();
///     let tx = TxSpec::new().when(task, "owner", Test::LeaseExpired).set(task, "owner", me).lease_ms(5_000);
///     Ok(matches!(g.transact(tx).await?, Outcome::Committed { .. }))
/// }
/// ```
pub trait GroupApi: Send + Sync {
    /// Why an operation failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// What [`GroupApi::watch`] returns.
    type Watch: WatchStream<Error = Self::Error>;

    /// The session's identity: the client of its transactions ([`OpId::client`]).
    fn id(&self) -> EndpointId;

    /// The group's clock now (ms): what stamps, deadlines and leases are measured in.
    fn now_ms(&self) -> u64;

    /// Wait this long on the group's clock.
    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()> + Send;

    /// The group's schema.
    fn schema(&self) -> impl Future<Output = Result<Schema, Self::Error>> + Send;

    /// Every field of `register` that holds a value, in `view`.
    fn read(&self, register: RegisterId, view: View) -> impl Future<Output = Result<Fields, Self::Error>> + Send;

    /// Write fields of `register` as one delta (by each field's merge policy); returns the
    /// delta's seq.
    fn write(&self, register: RegisterId, fields: Fields) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Submit a serial transaction without waiting; returns its seq.
    fn submit(&self, tx: TxSpec) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// The outcome of this session's operation `seq`, if the group has evaluated it.
    fn outcome(&self, seq: u64) -> impl Future<Output = Result<Option<Outcome>, Self::Error>> + Send;

    /// The group's members now.
    fn members(&self) -> impl Future<Output = Result<Vec<EndpointId>, Self::Error>> + Send;

    /// Watch the group's changes in `view` from now on.
    fn watch(&self, view: View) -> impl Future<Output = Result<Self::Watch, Self::Error>> + Send;

    /// Submit a transaction and wait for its outcome: committed, aborted, or decohered once
    /// its deadline passed with the outcome unknown here. A resend of a seq the group already
    /// decided answers that outcome (`resent`) and executes nothing.
    fn transact(&self, tx: TxSpec) -> impl Future<Output = Result<Outcome, Self::Error>> + Send
    where
        Self: Sized,
    {
        async move {
            if let Some(seq) = tx.seq {
                if let Some(o) = self.outcome(seq).await? {
                    return Ok(match o {
                        Outcome::Committed { seq, fence, .. } => Outcome::Committed { seq, fence, resent: true },
                        o => o,
                    });
                }
            }
            let deadline = self.now_ms().saturating_add(tx.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS));
            let seq = self.submit(tx).await?;
            loop {
                if let Some(o) = self.outcome(seq).await? {
                    return Ok(o);
                }
                if self.now_ms() > deadline {
                    return Ok(Outcome::Decohered { seq });
                }
                self.sleep_ms(5).await;
            }
        }
    }
}
