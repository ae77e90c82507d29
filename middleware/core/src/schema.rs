//! The group schema: small per-group indices for fields, with their kinds and merge policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{FieldId, RegisterId, ValueKind};

/// How concurrent writes to one field merge. Every policy is a join: the result does not
/// depend on the order, duplication or grouping of the writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergePolicy {
    /// The write with the greatest (stamp, origin) wins.
    LastWriterWins,
    /// The greatest value wins (ties by stamp, origin).
    Max,
    /// The smallest value wins (ties by stamp, origin).
    Min,
    /// Integer adds; the value is the sum of all adds.
    Counter,
    /// Add-wins set: an element is present if some add of it was not observed by a remove.
    AddWinsSet,
    /// Append-only log ordered by (stamp, origin, seq).
    AppendLog,
}

/// One field of the schema: a path such as `pose.translation.x`, a kind and a merge policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// The field's path within a register.
    pub name: String,
    /// The kind of value it holds.
    pub kind: ValueKind,
    /// How concurrent writes merge.
    pub policy: MergePolicy,
}

/// The schema of a group: the list of fields (index = [`FieldId`]) and optional register names.
/// Deltas on the wire carry indices, never names.
///
/// ```
/// # use spook_core::{Schema, MergePolicy, ValueKind, FieldId};
/// let s = Schema::new()
///     .field("pose.translation.x", ValueKind::F64, MergePolicy::LastWriterWins)
///     .field("battery", ValueKind::F64, MergePolicy::Min);
/// assert_eq!(s.field_id("battery"), Some(FieldId(1)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Field definitions; a field's index is its [`FieldId`].
    pub fields: Vec<FieldDef>,
    /// Optional human names of registers (e.g. `drone/7`).
    pub registers: BTreeMap<RegisterId, String>,
}

impl Schema {
    /// An empty schema.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a field (builder style).
    #[must_use]
    pub fn field(mut self, name: &str, kind: ValueKind, policy: MergePolicy) -> Self {
        self.fields.push(FieldDef { name: name.to_owned(), kind, policy });
        self
    }

    /// Name a register (builder style).
    #[must_use]
    pub fn register(mut self, id: RegisterId, name: &str) -> Self {
        self.registers.insert(id, name.to_owned());
        self
    }

    /// The field with this path.
    #[must_use]
    pub fn field_id(&self, name: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .and_then(|i| u16::try_from(i).ok())
            .map(FieldId)
    }

    /// The definition of a field.
    #[must_use]
    pub fn def(&self, f: FieldId) -> Option<&FieldDef> {
        self.fields.get(usize::from(f.0))
    }

    /// The register with this name.
    #[must_use]
    pub fn register_id(&self, name: &str) -> Option<RegisterId> {
        self.registers.iter().find(|(_, n)| n.as_str() == name).map(|(id, _)| *id)
    }

    /// The fleet schema used by examples and the simulator: a pose (translation as three
    /// scalar fields, rotation as one atomic quaternion), battery (min), a distance counter,
    /// tags (set), events (log), peak speed (max) and an owner (for task claims).
    #[must_use]
    pub fn fleet() -> Self {
        Schema::new()
            .field("pose.translation.x", ValueKind::F64, MergePolicy::LastWriterWins)
            .field("pose.translation.y", ValueKind::F64, MergePolicy::LastWriterWins)
            .field("pose.translation.z", ValueKind::F64, MergePolicy::LastWriterWins)
            .field("pose.rotation", ValueKind::Quat, MergePolicy::LastWriterWins)
            .field("battery", ValueKind::F64, MergePolicy::Min)
            .field("odometer", ValueKind::I64, MergePolicy::Counter)
            .field("tags", ValueKind::Any, MergePolicy::AddWinsSet)
            .field("events", ValueKind::Any, MergePolicy::AppendLog)
            .field("peak_speed", ValueKind::F64, MergePolicy::Max)
            .field("owner", ValueKind::Any, MergePolicy::LastWriterWins)
    }
}
