//! Deltas: the minimal changes that travel between replicas.

use serde::{Deserialize, Serialize};

use crate::{Dot, EndpointId, FieldId, Hlc, RegisterId, Value};

/// What a field operation does; which actions a field accepts follows from its merge policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Last-writer-wins, max and min fields: propose this value.
    Set(Value),
    /// Counter fields: add this amount.
    Add(i64),
    /// Add-wins sets: insert an element.
    Insert(Value),
    /// Add-wins sets: remove an element; `observed` are the adds of it the writer had seen.
    Remove {
        /// The element.
        value: Value,
        /// The adds (dots) this remove cancels.
        observed: Vec<Dot>,
    },
    /// Append-only logs: append an entry.
    Append(Value),
}

/// A serial operation's identity: the client that issued it and the client's own sequence
/// number, so an operation resent through a second node executes once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    /// The client endpoint.
    pub client: EndpointId,
    /// The client's sequence number for this operation.
    pub seq: u64,
}

/// A comparison for [`Precondition::Compare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    /// Cell value < operand.
    Lt,
    /// Cell value ≤ operand.
    Le,
    /// Cell value > operand.
    Gt,
    /// Cell value ≥ operand.
    Ge,
    /// Cell value ≠ operand (an absent cell differs from everything).
    Ne,
}

/// A condition on the committed serial state, checked at the transaction's position in the
/// total order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Precondition {
    /// The cell's version (number of committed writes) equals this (0 = never written).
    VersionEquals {
        /// Register.
        reg: RegisterId,
        /// Field.
        field: FieldId,
        /// Expected version.
        version: u64,
    },
    /// The cell holds exactly this value.
    ValueEquals {
        /// Register.
        reg: RegisterId,
        /// Field.
        field: FieldId,
        /// Expected value.
        value: Value,
    },
    /// The cell was never written.
    Absent {
        /// Register.
        reg: RegisterId,
        /// Field.
        field: FieldId,
    },
    /// Compare the cell's numeric value with an operand (an absent or non-numeric cell fails,
    /// except for `Ne`).
    Compare {
        /// Register.
        reg: RegisterId,
        /// Field.
        field: FieldId,
        /// The comparison.
        cmp: Cmp,
        /// The operand.
        value: Value,
    },
    /// The cell holds no lease, or its lease ended at or before the transaction's stamp.
    LeaseExpired {
        /// Register.
        reg: RegisterId,
        /// Field.
        field: FieldId,
    },
    /// The cell holds a lease that ends after the transaction's stamp: a window that is still
    /// open in the total order (an auction's bidding, a barrier's wait).
    LeaseHeld {
        /// Register.
        reg: RegisterId,
        /// Field.
        field: FieldId,
    },
}

/// One write of a transaction; with `lease_ms` the cell is leased until the commit stamp's
/// time plus that many milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnWrite {
    /// Register.
    pub reg: RegisterId,
    /// Field.
    pub field: FieldId,
    /// New value.
    pub value: Value,
    /// Lease length, if this write is a lease.
    pub lease_ms: Option<u64>,
}

/// A serial transaction: evaluated in the total order once causally stable; the first whose
/// preconditions hold commits, later conflicting ones abort, identically on every node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Txn {
    /// Identity (client, client seq).
    pub id: OpId,
    /// Past this time (ms) at its position the transaction aborts; a node still waiting for
    /// its outcome then reports it decohered.
    pub deadline_ms: u64,
    /// Operations that must have committed before this one; if one aborted, this aborts.
    pub after: Vec<OpId>,
    /// Conditions on the committed serial state.
    pub preconditions: Vec<Precondition>,
    /// Writes applied if it commits.
    pub writes: Vec<TxnWrite>,
}

/// One operation of a delta.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Change one field of one register.
    Field {
        /// The register.
        reg: RegisterId,
        /// The field within it.
        field: FieldId,
        /// The change.
        action: Action,
    },
    /// Add a member to the group.
    AddMember(EndpointId),
    /// A serial transaction.
    Txn(Txn),
    /// A membership change decided by consensus for `epoch` (serial groups): the inner
    /// operations are `AddMember` / `RemoveMember`. Only the first decision for an epoch in
    /// the total order applies (consensus makes every decision for an epoch carry the same
    /// operations; an operator's force-remove is the exception and logs a warning).
    Decided {
        /// The membership epoch this decision starts (1 for the first change).
        epoch: u64,
        /// The membership operations.
        ops: Vec<Op>,
    },
    /// Remove a member; its deltas up to `cut` stay included.
    RemoveMember {
        /// The member removed.
        member: EndpointId,
        /// The last sequence number of that member that is included.
        cut: u64,
        /// The members the proposer heard within its decoherence window when it proposed the
        /// removal (DESIGN.md, "Removals need a majority that hears"): in a convergent group
        /// the removal is void unless these and the proposer are a majority of the members in
        /// force. `None`: an operator's force-remove, which is exempt (and logged as a warning).
        heard: Option<Vec<EndpointId>>,
    },
}

/// A minimal change to a group: only the fields that changed, with the origin's sequence
/// number and HLC stamp. All its operations apply atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Who created it.
    pub origin: EndpointId,
    /// The origin's sequence number (from 1, no gaps at the origin).
    pub seq: u64,
    /// Its HLC stamp.
    pub stamp: Hlc,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Delta {
    /// The delta's identity.
    #[must_use]
    pub fn dot(&self) -> Dot {
        Dot { origin: self.origin, seq: self.seq }
    }

    /// Its position in the total order every node computes alike: (stamp, origin, seq).
    #[must_use]
    pub fn order_key(&self) -> (Hlc, EndpointId, u64) {
        (self.stamp, self.origin, self.seq)
    }

    /// Whether it carries operations that travel as whole deltas (membership, transactions)
    /// rather than as field state.
    #[must_use]
    pub fn has_membership_ops(&self) -> bool {
        self.ops.iter().any(|o| !matches!(o, Op::Field { .. }))
    }
}
