//! Client sessions: serial transactions named by the client, not by the node.
//!
//! An operation's identity is (client EndpointId, client seq). A client that loses its node
//! resends the same operation through another node of the domain; the group's serial state
//! records every outcome by that identity, so the operation executes once, wherever and
//! however often it was submitted. A session is therefore nothing a node holds: it is the
//! client's identity plus the outcomes the group already agreed on ([`Request::Session`]
//! reads them back).
//!
//! [`Request::Session`]: crate::control::Request::Session

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use spook_core::{AbortReason, Cmp, EndpointId, OpId, Precondition, RegisterId, Schema, SerialCell, Txn, TxnOutcome, TxnWrite};
use spook_secure::Identity;

use crate::values;

/// A precondition as JSON: a register, a field and exactly one test.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxCondition {
    /// The register.
    pub register: u32,
    /// The field name.
    pub field: String,
    /// The committed value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Json>,
    /// The cell has had exactly this many committed writes (0: never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The cell was never written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    /// The cell holds no lease, or its lease ended before the transaction's position.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lease_expired: bool,
    /// A comparison with `value`: one of `<`, `<=`, `>`, `>=`, `!=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmp: Option<String>,
    /// The operand of `cmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Json>,
}

/// A write of a transaction as JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxSet {
    /// The register.
    pub register: u32,
    /// The field name.
    pub field: String,
    /// The new value.
    pub value: Json,
    /// Lease the cell for this long after the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

fn field_id(schema: &Schema, name: &str) -> Result<(spook_core::FieldId, spook_core::ValueKind), String> {
    let f = schema.field_id(name).ok_or_else(|| format!("no field {name:?} in the schema"))?;
    let kind = schema.def(f).map(|d| d.kind).ok_or_else(|| format!("no field {name:?} in the schema"))?;
    Ok((f, kind))
}

fn precondition(schema: &Schema, c: &TxCondition) -> Result<Precondition, String> {
    let (field, kind) = field_id(schema, &c.field)?;
    let reg = RegisterId(c.register);
    let value = |j: &Json| values::from_json(&c.field, kind, j).map_err(|e| e.to_string());
    let tests = usize::from(c.equals.is_some()) + usize::from(c.version.is_some()) + usize::from(c.absent) + usize::from(c.lease_expired) + usize::from(c.cmp.is_some());
    if tests != 1 {
        return Err(format!("condition on {}.{}: give exactly one of equals, version, absent, lease_expired, cmp", c.register, c.field));
    }
    if c.value.is_some() != c.cmp.is_some() {
        return Err(format!("condition on {}.{}: cmp and value go together", c.register, c.field));
    }
    Ok(match (&c.equals, c.version, &c.cmp, &c.value) {
        (Some(v), ..) => Precondition::ValueEquals { reg, field, value: value(v)? },
        (_, Some(version), ..) => Precondition::VersionEquals { reg, field, version },
        (_, _, Some(op), Some(v)) => {
            let cmp = match op.as_str() {
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                "!=" => Cmp::Ne,
                o => return Err(format!("condition on {}.{}: cmp {o:?} is not one of < <= > >= !=", c.register, c.field)),
            };
            Precondition::Compare { reg, field, cmp, value: value(v)? }
        }
        _ if c.absent => Precondition::Absent { reg, field },
        _ => Precondition::LeaseExpired { reg, field },
    })
}

/// Build the transaction a client asked for, typed by the group's schema.
///
/// ```
/// # use spook_core::{EndpointId, OpId, Schema};
/// # use spook_node::session::{build_txn, TxCondition, TxSet};
/// let client = EndpointId::from_index(9);
/// let claim = TxSet { register: 3, field: "owner".into(), value: serde_json::json!("drone-7"), lease_ms: Some(5_000) };
/// let free = TxCondition { register: 3, field: "owner".into(), lease_expired: true, ..Default::default() };
/// let t = build_txn(&Schema::fleet(), OpId { client, seq: 1 }, 60_000, &[], &[free], &[claim]).unwrap();
/// assert_eq!((t.writes.len(), t.preconditions.len(), t.deadline_ms), (1, 1, 60_000));
/// let e = build_txn(&Schema::fleet(), OpId { client, seq: 2 }, 60_000, &[], &[], &[]).unwrap_err();
/// assert!(e.contains("writes nothing"));
/// ```
///
/// # Errors
/// A message naming the condition or write that does not fit the schema.
pub fn build_txn(schema: &Schema, id: OpId, deadline_ms: u64, after: &[u64], conditions: &[TxCondition], sets: &[TxSet]) -> Result<Txn, String> {
    if sets.is_empty() {
        return Err("the transaction writes nothing (give at least one write)".into());
    }
    let preconditions = conditions.iter().map(|c| precondition(schema, c)).collect::<Result<Vec<_>, _>>()?;
    let writes = sets
        .iter()
        .map(|s| {
            let (field, kind) = field_id(schema, &s.field)?;
            let value = values::from_json(&s.field, kind, &s.value).map_err(|e| e.to_string())?;
            Ok(TxnWrite { reg: RegisterId(s.register), field, value, lease_ms: s.lease_ms })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let after = after.iter().map(|&seq| OpId { client: id.client, seq }).collect();
    Ok(Txn { id, deadline_ms, after, preconditions, writes })
}

/// An outcome as JSON: `{"state": "committed", "fence": …}` or `{"state": "aborted", "reason": …}`.
#[must_use]
pub fn outcome_json(o: &TxnOutcome) -> Json {
    match o {
        TxnOutcome::Committed { fence } => json!({"state": "committed", "fence_ms": fence.ms(), "fence": fence.0}),
        TxnOutcome::Aborted(r) => json!({"state": "aborted", "reason": match r {
            AbortReason::Precondition(i) => format!("condition {} did not hold", i + 1),
            AbortReason::DependencyAborted(id) => format!("operation {} it comes after did not commit before it", id.seq),
            AbortReason::DeadlinePassed => "its deadline passed before its turn".to_string(),
        }}),
    }
}

/// A committed serial cell as JSON.
#[must_use]
pub fn cell_json(c: &SerialCell) -> Json {
    json!({"value": values::to_json(&c.value), "version": c.version, "fence": c.stamp.0, "lease_until_ms": c.lease_until_ms})
}

/// Parse the CLI's condition `REG.FIELD == JSON` (also `!= < <= > >=`), `REG.FIELD absent`,
/// `REG.FIELD version N` or `REG.FIELD lease-expired`.
///
/// ```
/// # use spook_node::session::parse_condition;
/// let c = parse_condition("3.owner == \"drone-7\"").unwrap();
/// assert_eq!((c.register, c.field.as_str(), c.equals), (3, "owner", Some(serde_json::json!("drone-7"))));
/// assert!(parse_condition("3.owner >= 5").unwrap().cmp.is_some());
/// assert!(parse_condition("owner absent").is_err());
/// ```
///
/// # Errors
/// A message showing the expected forms.
pub fn parse_condition(s: &str) -> Result<TxCondition, String> {
    let usage = || format!("condition {s:?}: expected REG.FIELD == JSON (or != < <= > >=), REG.FIELD absent, REG.FIELD version N or REG.FIELD lease-expired");
    let (target, rest) = s.trim().split_once(char::is_whitespace).ok_or_else(usage)?;
    let (register, field) = parse_target(target).ok_or_else(usage)?;
    let mut c = TxCondition { register, field, ..Default::default() };
    let rest = rest.trim();
    let (op, arg) = rest.split_once(char::is_whitespace).map_or((rest, ""), |(a, b)| (a, b.trim()));
    let json = |a: &str| serde_json::from_str::<Json>(a).map_err(|e| format!("condition {s:?}: {a:?} is not JSON ({e}); strings need quotes"));
    match op {
        "absent" if arg.is_empty() => c.absent = true,
        "lease-expired" if arg.is_empty() => c.lease_expired = true,
        "version" => c.version = Some(arg.parse().map_err(|_| usage())?),
        "==" => c.equals = Some(json(arg)?),
        "!=" | "<" | "<=" | ">" | ">=" => {
            c.cmp = Some(op.to_string());
            c.value = Some(json(arg)?);
        }
        _ => return Err(usage()),
    }
    Ok(c)
}

/// Parse the CLI's write `REG.FIELD JSON`.
///
/// # Errors
/// A message showing the expected form.
pub fn parse_set(s: &str, lease_ms: Option<u64>) -> Result<TxSet, String> {
    let usage = || format!("write {s:?}: expected REG.FIELD JSON, e.g. '3.owner \"drone-7\"'");
    let (target, value) = s.trim().split_once(char::is_whitespace).ok_or_else(usage)?;
    let (register, field) = parse_target(target).ok_or_else(usage)?;
    let value = serde_json::from_str(value.trim()).map_err(|e| format!("write {s:?}: the value is not JSON ({e}); strings need quotes"))?;
    Ok(TxSet { register, field, value, lease_ms })
}

fn parse_target(t: &str) -> Option<(u32, String)> {
    let (reg, field) = t.split_once('.')?;
    (!field.is_empty()).then(|| reg.parse().ok().map(|r| (r, field.to_string())))?
}

/// The client identity at `path`, created (mode 0600) on first use.
///
/// # Errors
/// The file cannot be read or written, or holds no identity.
pub fn client_identity(path: &Path) -> anyhow::Result<Identity> {
    match std::fs::read(path) {
        Ok(b) => Identity::from_bytes(&b).map_err(|e| anyhow::anyhow!("{}: not a client identity ({e})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let id = Identity::generate();
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            f.write_all(&id.to_bytes())?;
            f.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// A client's session in a group as JSON: every outcome the group agreed on for it.
#[must_use]
pub fn session_json(serial: &spook_core::SerialState, client: EndpointId) -> Json {
    let ops: Vec<Json> = serial
        .outcomes_of(client)
        .map(|(seq, o)| {
            let mut j = outcome_json(o);
            j["seq"] = json!(seq);
            j
        })
        .collect();
    let next = serial.outcomes_of(client).map(|(s, _)| s).max().map_or(1, |s| s + 1);
    json!({"client": client.to_string(), "ops": ops, "next_seq": next})
}
