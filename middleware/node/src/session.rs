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

use serde_json::{json, Value as Json};
use spook_core::{Cmp, EndpointId, OpId, Precondition, Schema, SerialCell, Txn, TxnOutcome, TxnWrite};

use crate::values;
pub use spook_client::proto::{TxCondition, TxSet};

fn field_id(schema: &Schema, name: &str) -> Result<(spook_core::FieldId, spook_core::ValueKind), String> {
    let f = schema.field_id(name).ok_or_else(|| format!("no field {name:?} in the schema"))?;
    let kind = schema.def(f).map(|d| d.kind).ok_or_else(|| format!("no field {name:?} in the schema"))?;
    Ok((f, kind))
}

fn precondition(schema: &Schema, c: &TxCondition, typed: bool) -> Result<Precondition, String> {
    let (field, kind) = field_id(schema, &c.field)?;
    let reg = c.register.resolve(schema);
    let value = |j: &Json| values::value_in(&c.field, kind, j, typed).map_err(|e| e.to_string());
    let tests = usize::from(c.equals.is_some()) + usize::from(c.version.is_some()) + usize::from(c.absent) + usize::from(c.lease_expired) + usize::from(c.lease_held) + usize::from(c.cmp.is_some());
    if tests != 1 {
        return Err(format!("condition on {}.{}: give exactly one of equals, version, absent, lease_expired, lease_held, cmp", c.register, c.field));
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
        _ if c.lease_held => Precondition::LeaseHeld { reg, field },
        _ => Precondition::LeaseExpired { reg, field },
    })
}

/// Build the transaction a client asked for, typed by the group's schema.
///
/// ```
/// # use spook_core::{EndpointId, OpId, Schema};
/// # use spook_node::session::build_txn;
/// # use spook_client::proto::{TxCondition, TxSet};
/// let client = EndpointId::from_index(9);
/// let claim = TxSet { register: 3.into(), field: "owner".into(), value: serde_json::json!("drone-7"), lease_ms: Some(5_000) };
/// let free = TxCondition { register: 3.into(), field: "owner".into(), lease_expired: true, ..Default::default() };
/// let t = build_txn(&Schema::fleet(), OpId { client, seq: 1 }, 60_000, &[], &[free], &[claim], false).unwrap();
/// assert_eq!((t.writes.len(), t.preconditions.len(), t.deadline_ms), (1, 1, 60_000));
/// let e = build_txn(&Schema::fleet(), OpId { client, seq: 2 }, 60_000, &[], &[], &[], false).unwrap_err();
/// assert!(e.contains("writes nothing"));
/// // A window still open: the lease-held test.
/// let open = TxCondition { register: 3.into(), field: "owner".into(), lease_held: true, ..Default::default() };
/// let t = build_txn(&Schema::fleet(), OpId { client, seq: 3 }, 60_000, &[], &[open.clone()], &[TxSet { lease_ms: None, ..claim_set() }], false).unwrap();
/// assert!(matches!(t.preconditions[0], spook_core::Precondition::LeaseHeld { .. }));
/// // Two tests in one condition are refused.
/// let both = TxCondition { lease_expired: true, ..open };
/// assert!(build_txn(&Schema::fleet(), OpId { client, seq: 4 }, 60_000, &[], &[both], &[claim_set()], false).unwrap_err().contains("exactly one"));
/// # fn claim_set() -> TxSet { TxSet { register: 3.into(), field: "owner".into(), value: serde_json::json!("drone-7"), lease_ms: Some(5_000) } }
/// ```
///
/// # Errors
/// A message naming the condition or write that does not fit the schema.
pub fn build_txn(schema: &Schema, id: OpId, deadline_ms: u64, after: &[u64], conditions: &[TxCondition], sets: &[TxSet], typed: bool) -> Result<Txn, String> {
    if sets.is_empty() {
        return Err("the transaction writes nothing (give at least one write)".into());
    }
    let preconditions = conditions.iter().map(|c| precondition(schema, c, typed)).collect::<Result<Vec<_>, _>>()?;
    let writes = sets
        .iter()
        .map(|s| {
            let (field, kind) = field_id(schema, &s.field)?;
            let value = values::value_in(&s.field, kind, &s.value, typed).map_err(|e| e.to_string())?;
            Ok(TxnWrite { reg: s.register.resolve(schema), field, value, lease_ms: s.lease_ms })
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
        TxnOutcome::Aborted(r) => json!({"state": "aborted", "reason": r.to_string()}),
    }
}

/// A committed serial cell as JSON.
#[must_use]
pub fn cell_json(c: &SerialCell, typed: bool) -> Json {
    json!({"value": values::out(&c.value, typed), "version": c.version, "fence": c.stamp.0, "lease_until_ms": c.lease_until_ms})
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
