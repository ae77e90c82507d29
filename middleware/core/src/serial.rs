//! Serial state: cells written by transactions, evaluated one by one in the total order once
//! causally stable. Every node evaluates the same transactions in the same order against the
//! same state, so every node reaches the same outcomes without a leader or a lock.

use std::collections::BTreeMap;

use crate::state::SetHash;
use crate::{Cmp, EndpointId, FieldId, Hlc, OpId, Precondition, RegisterId, Txn, Value};

/// A committed serial cell.
#[derive(Clone, Debug, PartialEq)]
pub struct SerialCell {
    /// The value.
    pub value: Value,
    /// How many committed writes it has had.
    pub version: u64,
    /// The commit stamp of its last write: a fencing token for whoever wrote it.
    pub stamp: Hlc,
    /// For a lease: when it ends (ms).
    pub lease_until_ms: Option<u64>,
}

/// Why a transaction aborted. The same reason on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// Precondition number `0` (index into the list) did not hold.
    Precondition(usize),
    /// An operation it had to come after had not committed before it in the total order
    /// (it aborted, or it comes later, or it is unknown).
    DependencyAborted(OpId),
    /// Its position in the total order is past its deadline.
    DeadlinePassed,
}

impl std::fmt::Display for AbortReason {
    /// The reason as people read it (and clients receive it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortReason::Precondition(i) => write!(f, "condition {} did not hold", i + 1),
            AbortReason::DependencyAborted(id) => write!(f, "operation {} it comes after did not commit before it", id.seq),
            AbortReason::DeadlinePassed => f.write_str("its deadline passed before its turn"),
        }
    }
}

/// The outcome of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Committed; its commit stamp is the fencing token.
    Committed {
        /// The commit stamp.
        fence: Hlc,
    },
    /// Aborted, for a reason every node agrees on.
    Aborted(AbortReason),
}

/// The serial state of a group: committed cells and every outcome so far.
#[derive(Clone, Debug, Default)]
pub struct SerialState {
    cells: BTreeMap<(RegisterId, FieldId), SerialCell>,
    outcomes: BTreeMap<OpId, TxnOutcome>,
    hash: SetHash,
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::I64(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        _ => None,
    }
}

fn cell_bytes(reg: RegisterId, field: FieldId, c: &SerialCell) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&reg.0.to_le_bytes());
    b.extend_from_slice(&field.0.to_le_bytes());
    crate::codec::put_value_tagged(&mut b, &c.value);
    b.extend_from_slice(&c.version.to_le_bytes());
    crate::codec::put_hlc(&mut b, c.stamp);
    b.extend_from_slice(&c.lease_until_ms.unwrap_or(u64::MAX).to_le_bytes());
    b
}

impl SerialState {
    /// A committed cell.
    #[must_use]
    pub fn cell(&self, reg: RegisterId, field: FieldId) -> Option<&SerialCell> {
        self.cells.get(&(reg, field))
    }

    /// The outcome of an operation, if it was evaluated.
    #[must_use]
    pub fn outcome(&self, id: &OpId) -> Option<&TxnOutcome> {
        self.outcomes.get(id)
    }

    /// The outcomes of one client's operations, by client seq: what a client reattaching
    /// through another node needs to continue its session.
    pub fn outcomes_of(&self, client: EndpointId) -> impl Iterator<Item = (u64, &TxnOutcome)> {
        let lo = OpId { client, seq: 0 };
        let hi = OpId { client, seq: u64::MAX };
        self.outcomes.range(lo..=hi).map(|(id, o)| (id.seq, o))
    }

    /// Every committed cell.
    pub fn cells(&self) -> impl Iterator<Item = (&(RegisterId, FieldId), &SerialCell)> {
        self.cells.iter()
    }

    /// Hash of the cells (order-independent, keyed).
    #[must_use]
    pub fn hash(&self) -> SetHash {
        self.hash
    }

    fn holds(&self, p: &Precondition, position: Hlc) -> bool {
        let get = |reg: &RegisterId, field: &FieldId| self.cells.get(&(*reg, *field));
        match p {
            Precondition::VersionEquals { reg, field, version } => get(reg, field).map_or(0, |c| c.version) == *version,
            Precondition::ValueEquals { reg, field, value } => get(reg, field).is_some_and(|c| c.value.canonical_bytes() == value.canonical_bytes()),
            Precondition::Absent { reg, field } => get(reg, field).is_none(),
            Precondition::LeaseExpired { reg, field } => {
                get(reg, field).is_none_or(|c| c.lease_until_ms.is_none_or(|until| until <= position.ms()))
            }
            Precondition::LeaseHeld { reg, field } => get(reg, field).is_some_and(|c| c.lease_until_ms.is_some_and(|until| until > position.ms())),
            Precondition::Compare { reg, field, cmp, value } => {
                let cell = get(reg, field);
                if *cmp == Cmp::Ne {
                    return cell.is_none_or(|c| c.value.canonical_bytes() != value.canonical_bytes());
                }
                let (Some(a), Some(b)) = (cell.and_then(|c| numeric(&c.value)), numeric(value)) else { return false };
                match cmp {
                    Cmp::Lt => a < b,
                    Cmp::Le => a <= b,
                    Cmp::Gt => a > b,
                    Cmp::Ge => a >= b,
                    Cmp::Ne => false,
                }
            }
        }
    }

    /// Evaluate `txn` at `position` in the total order. Returns `None` for an operation that
    /// was already evaluated (a resend through another node): it executes once.
    pub fn evaluate(&mut self, key: &[u8; 32], position: Hlc, txn: &Txn) -> Option<TxnOutcome> {
        if self.outcomes.contains_key(&txn.id) {
            return None;
        }
        let outcome = self.decide(position, txn);
        if let TxnOutcome::Committed { fence } = outcome {
            for w in &txn.writes {
                let k = (w.reg, w.field);
                let version = self.cells.get(&k).map_or(0, |c| c.version) + 1;
                if let Some(old) = self.cells.get(&k) {
                    self.hash.remove(key, &cell_bytes(w.reg, w.field, old));
                }
                let cell = SerialCell {
                    value: w.value.clone(),
                    version,
                    stamp: fence,
                    lease_until_ms: w.lease_ms.map(|l| fence.ms().saturating_add(l)),
                };
                self.hash.add(key, &cell_bytes(w.reg, w.field, &cell));
                self.cells.insert(k, cell);
            }
        }
        self.outcomes.insert(txn.id, outcome.clone());
        Some(outcome)
    }

    fn decide(&self, position: Hlc, txn: &Txn) -> TxnOutcome {
        if position.ms() > txn.deadline_ms {
            return TxnOutcome::Aborted(AbortReason::DeadlinePassed);
        }
        for dep in &txn.after {
            if !matches!(self.outcomes.get(dep), Some(TxnOutcome::Committed { .. })) {
                return TxnOutcome::Aborted(AbortReason::DependencyAborted(*dep));
            }
        }
        match txn.preconditions.iter().position(|p| !self.holds(p, position)) {
            Some(i) => TxnOutcome::Aborted(AbortReason::Precondition(i)),
            None => TxnOutcome::Committed { fence: position },
        }
    }
}
