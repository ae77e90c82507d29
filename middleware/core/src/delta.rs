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
    /// Remove a member; its deltas up to `cut` stay included.
    RemoveMember {
        /// The member removed.
        member: EndpointId,
        /// The last sequence number of that member that is included.
        cut: u64,
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

    /// Whether it changes membership.
    #[must_use]
    pub fn has_membership_ops(&self) -> bool {
        self.ops.iter().any(|o| !matches!(o, Op::Field { .. }))
    }
}
