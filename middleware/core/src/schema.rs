//! The group schema: small per-group indices for fields, with their kinds and merge policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Action, FieldId, RegisterId, Value, ValueError, ValueKind};

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

impl FieldDef {
    /// The action a write of `v` to this field means: add for a counter (an integer), insert
    /// for a set, append for a log, assign for the rest (last-writer-wins, max, min), with the
    /// value admitted by the field's kind ([`ValueKind::admit`]).
    ///
    /// ```
    /// # use spook_core::{Action, FieldDef, MergePolicy, Value, ValueKind};
    /// let odometer = FieldDef { name: "odometer".into(), kind: ValueKind::I64, policy: MergePolicy::Counter };
    /// assert_eq!(odometer.action(Value::I64(3)), Ok(Action::Add(3)));
    /// assert!(odometer.action(Value::Str("3".into())).is_err());
    /// ```
    ///
    /// # Errors
    /// A value that does not fit the field.
    pub fn action(&self, v: Value) -> Result<Action, ValueError> {
        Ok(match self.policy {
            MergePolicy::Counter => match v {
                Value::I64(n) => Action::Add(n),
                v => return Err(ValueError::new(&self.name, "an integer to add", &format!("{v:?}"))),
            },
            MergePolicy::AddWinsSet => Action::Insert(self.kind.admit(&self.name, v)?),
            MergePolicy::AppendLog => Action::Append(self.kind.admit(&self.name, v)?),
            MergePolicy::LastWriterWins | MergePolicy::Max | MergePolicy::Min => Action::Set(self.kind.admit(&self.name, v)?),
        })
    }
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
    /// The application's number for this schema. A schema never changes in place (a group
    /// keeps the schema it was created with; a new schema is a new group), so this only tells
    /// people which one a group holds.
    #[serde(default)]
    pub version: u32,
    /// Field definitions; a field's index is its [`FieldId`].
    pub fields: Vec<FieldDef>,
    /// Names pinned to registers (e.g. `drone-7` to 7); other names hash to an id
    /// ([`Schema::resolve_register`]). Serialised as a list of (id, name) pairs, so that
    /// formats whose map keys are strings (JSON) carry it too.
    #[serde(with = "pairs")]
    pub registers: BTreeMap<RegisterId, String>,
}

/// A map as a list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::RegisterId;

    pub(super) fn serialize<S: Serializer>(m: &BTreeMap<RegisterId, String>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().collect::<Vec<_>>().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<RegisterId, String>, D::Error> {
        Ok(Vec::<(RegisterId, String)>::deserialize(d)?.into_iter().collect())
    }
}

/// A schema that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// No fields at all.
    #[error("the schema has no fields")]
    Empty,
    /// More fields than a group can index.
    #[error("the schema has {0} fields; at most {max}", max = Schema::MAX_FIELDS)]
    TooManyFields(usize),
    /// A field or register name that is empty, too long or holds control characters.
    #[error("name {0:?}: 1 to 128 characters, no control characters")]
    BadName(String),
    /// Two fields, or two registers, of one name.
    #[error("{0:?} is named twice")]
    Duplicate(String),
    /// A register name that reads as a number (it would hide that register id).
    #[error("register name {0:?} is a number: numbers address registers by id")]
    NumericName(String),
    /// A pinned register id in the range kept for hashed names.
    #[error("register {name:?} is pinned to {id}, at or above {min}, the range of hashed names", min = Schema::HASHED_REGISTERS)]
    PinnedTooHigh {
        /// The name.
        name: String,
        /// The id.
        id: u32,
    },
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

    /// The field with this name and its definition, or why there is none.
    ///
    /// ```
    /// # use spook_core::{Schema, MergePolicy};
    /// let fleet = Schema::fleet();
    /// let (id, def) = fleet.field_named("battery").unwrap();
    /// assert_eq!((Some(id), def.policy), (fleet.field_id("battery"), MergePolicy::Min));
    /// assert_eq!(Schema::fleet().field_named("colour").unwrap_err().field, "colour");
    /// ```
    ///
    /// # Errors
    /// A name the schema lacks.
    pub fn field_named(&self, name: &str) -> Result<(FieldId, &FieldDef), ValueError> {
        let no = || ValueError::new(name, "a field of the schema", "no such field");
        let f = self.field_id(name).ok_or_else(no)?;
        Ok((f, self.def(f).ok_or_else(no)?))
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

    /// Fields a group may have.
    pub const MAX_FIELDS: usize = 64;

    /// Register ids from here up are names' hashes; pinned names and numbers stay below.
    pub const HASHED_REGISTERS: u32 = 1 << 31;

    /// The register a name addresses, the same on every member: the id the schema pins it to,
    /// else one derived from the name (the upper half of the id space, never a pinned or
    /// numbered register). Two names of one group share an id with probability about
    /// n²/2³² for n names (1 in 8,600 for 1,000 names); a schema pins one of them to part
    /// them. A name costs no byte on the wire: deltas carry the id.
    ///
    /// ```
    /// # use spook_core::{Schema, RegisterId};
    /// let s = Schema::fleet().register(RegisterId(7), "drone-7");
    /// assert_eq!(s.resolve_register("drone-7"), RegisterId(7));
    /// let r = s.resolve_register("drone-8");
    /// assert!(r.0 >= Schema::HASHED_REGISTERS && r == Schema::fleet().resolve_register("drone-8"));
    /// ```
    #[must_use]
    pub fn resolve_register(&self, name: &str) -> RegisterId {
        if let Some(id) = self.register_id(name) {
            return id;
        }
        let h = blake3::Hasher::new_derive_key("spook register name v1").update(name.as_bytes()).finalize();
        let b = h.as_bytes();
        RegisterId(Self::HASHED_REGISTERS | (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & (Self::HASHED_REGISTERS - 1)))
    }

    /// Check that a group can use this schema.
    ///
    /// ```
    /// # use spook_core::{Schema, MergePolicy, ValueKind, SchemaError};
    /// assert!(Schema::fleet().validate().is_ok());
    /// let twice = Schema::new().field("a", ValueKind::F64, MergePolicy::Max).field("a", ValueKind::I64, MergePolicy::Counter);
    /// assert_eq!(twice.validate(), Err(SchemaError::Duplicate("a".into())));
    /// ```
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let name_ok = |n: &str| !n.is_empty() && n.len() <= 128 && !n.chars().any(char::is_control);
        if self.fields.is_empty() {
            return Err(SchemaError::Empty);
        }
        if self.fields.len() > Self::MAX_FIELDS {
            return Err(SchemaError::TooManyFields(self.fields.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
            if !name_ok(&f.name) {
                return Err(SchemaError::BadName(f.name.clone()));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(SchemaError::Duplicate(f.name.clone()));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (id, n) in &self.registers {
            if !name_ok(n) {
                return Err(SchemaError::BadName(n.clone()));
            }
            if n.parse::<u64>().is_ok() {
                return Err(SchemaError::NumericName(n.clone()));
            }
            if id.0 >= Self::HASHED_REGISTERS {
                return Err(SchemaError::PinnedTooHigh { name: n.clone(), id: id.0 });
            }
            if !seen.insert(n.as_str()) {
                return Err(SchemaError::Duplicate(n.clone()));
            }
        }
        Ok(())
    }

    /// A short digest of the schema (its version, fields with kinds and policies, pinned
    /// names), equal on two members exactly when they hold the same schema: members compare
    /// it before they take each other's sender keys.
    ///
    /// ```
    /// # use spook_core::{Schema, MergePolicy, ValueKind};
    /// let a = Schema::fleet();
    /// assert_eq!(a.hash(), Schema::fleet().hash());
    /// assert_ne!(a.hash(), Schema::fleet().field("extra", ValueKind::Any, MergePolicy::LastWriterWins).hash());
    /// ```
    #[must_use]
    pub fn hash(&self) -> [u8; 8] {
        let mut h = blake3::Hasher::new_derive_key("spook schema v1");
        h.update(&self.version.to_le_bytes());
        h.update(&(self.fields.len() as u64).to_le_bytes());
        for f in &self.fields {
            h.update(&(f.name.len() as u64).to_le_bytes());
            h.update(f.name.as_bytes());
            h.update(&[f.kind as u8, f.policy as u8]);
        }
        h.update(&(self.registers.len() as u64).to_le_bytes());
        for (id, n) in &self.registers {
            h.update(&id.0.to_le_bytes());
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
        }
        let mut out = [0u8; 8];
        out.copy_from_slice(&h.finalize().as_bytes()[..8]);
        out
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
