//! A group's schema, declared by the application: in code with [`spook_core::Schema`]'s
//! builder, or in a TOML file ([`from_toml`]) that `spook group create --schema FILE` reads.
//! The schema travels in the invite; members compare its hash before they take each other's
//! sender keys, so a member that holds another schema is refused. A schema never changes in
//! place: a new schema is a new group.
//!
//! The TOML form, fields in order (a field's position is its index on the wire):
//!
//! ```toml
//! version = 1
//!
//! [[field]]
//! name = "pose"
//! kind = "pose"               # any bool i64 f64 str bytes vec3 quat pose
//! merge = "last-writer-wins"  # last-writer-wins max min counter set log
//!
//! [[field]]
//! name = "label"
//! kind = "str"
//!
//! [registers]                 # names pinned to ids (other names hash to an id)
//! table = 1
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use spook_core::{MergePolicy, RegisterId, Schema, SchemaError, ValueKind};

/// Why a schema file cannot be used.
///
/// ```
/// let e = spook_client::schema::from_toml("[[field]]\nname = \"x\"\nkind = \"complex\"").unwrap_err();
/// assert!(e.to_string().contains("complex"), "{e}");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SchemaFileError {
    /// Not TOML, or not of the form above.
    #[error("schema: {0}")]
    Toml(String),
    /// A kind or merge policy this version does not know.
    #[error("schema field {field:?}: {what}")]
    Unknown {
        /// The field.
        field: String,
        /// What is wrong.
        what: String,
    },
    /// Well-formed but unusable (duplicate names, too many fields, ...).
    #[error("schema: {0}")]
    Invalid(#[from] SchemaError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    field: Vec<FieldSpec>,
    #[serde(default)]
    registers: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    kind: String,
    #[serde(default)]
    merge: Option<String>,
}

fn kind(field: &str, k: &str) -> Result<ValueKind, SchemaFileError> {
    Ok(match k {
        "any" => ValueKind::Any,
        "bool" => ValueKind::Bool,
        "i64" | "int" => ValueKind::I64,
        "f64" | "float" => ValueKind::F64,
        "str" | "string" => ValueKind::Str,
        "bytes" => ValueKind::Bytes,
        "vec3" => ValueKind::Vec3,
        "quat" => ValueKind::Quat,
        "pose" => ValueKind::Pose,
        o => return Err(SchemaFileError::Unknown { field: field.into(), what: format!("kind {o:?} is not one of any bool i64 f64 str bytes vec3 quat pose") }),
    })
}

fn policy(field: &str, m: &str) -> Result<MergePolicy, SchemaFileError> {
    Ok(match m {
        "last-writer-wins" | "lww" => MergePolicy::LastWriterWins,
        "max" => MergePolicy::Max,
        "min" => MergePolicy::Min,
        "counter" => MergePolicy::Counter,
        "set" => MergePolicy::AddWinsSet,
        "log" => MergePolicy::AppendLog,
        o => return Err(SchemaFileError::Unknown { field: field.into(), what: format!("merge {o:?} is not one of last-writer-wins max min counter set log") }),
    })
}

/// Read a schema from its TOML form (above). A field's merge policy defaults to
/// last-writer-wins.
///
/// ```
/// let s = spook_client::schema::from_toml(r#"
///     version = 2
///     [[field]]
///     name = "pose"
///     kind = "pose"
///     [[field]]
///     name = "visits"
///     kind = "i64"
///     merge = "counter"
///     [registers]
///     table = 1
/// "#).unwrap();
/// assert_eq!((s.version, s.fields.len()), (2, 2));
/// assert_eq!(s.resolve_register("table"), spook_core::RegisterId(1));
/// let e = spook_client::schema::from_toml("[[field]]\nname = \"x\"\nkind = \"colour\"").unwrap_err();
/// assert!(e.to_string().contains("colour"));
/// ```
///
/// # Errors
/// [`SchemaFileError`] naming what is wrong.
pub fn from_toml(text: &str) -> Result<Schema, SchemaFileError> {
    let f: File = toml::from_str(text).map_err(|e| SchemaFileError::Toml(e.to_string()))?;
    let mut s = Schema::new();
    s.version = f.version;
    for spec in &f.field {
        let merge = spec.merge.as_deref().unwrap_or("last-writer-wins");
        s = s.field(&spec.name, kind(&spec.name, &spec.kind)?, policy(&spec.name, merge)?);
    }
    for (name, id) in &f.registers {
        s = s.register(RegisterId(*id), name);
    }
    s.validate()?;
    Ok(s)
}
