//! The protocol's requests: what a client asks a node, as one JSON object per line on the
//! local control socket, sealed on a Noise channel over zenoh for a remote client, and passed
//! as is to an embedded node. [`crate::Client`] builds them; `spookd` answers them. A
//! response is `{"ok": true, ...}` or `{"ok": false, "error": "...", "code": "..."}`.
//!
//! Values are JSON typed by the group's schema (what the CLI sends) or, with `typed`, each
//! value is a [`spook_core::Value`] in its serde form (what the typed API sends), so that a
//! vector, a pose or bytes cross without guessing.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

fn is_false(b: &bool) -> bool {
    !*b
}

/// JSON read without a schema: integers, floats, text, lists and maps as they are (a field
/// of a known kind is read by the node with its schema instead).
///
/// ```
/// use spook_core::Value;
/// assert_eq!(spook_client::proto::untyped_value(&serde_json::json!([1, 0.5, "a"])), Value::List(vec![Value::I64(1), Value::F64(0.5), Value::Str("a".into())]));
/// ```
#[must_use]
pub fn untyped_value(j: &Json) -> spook_core::Value {
    use spook_core::Value;
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.as_i64().map_or_else(|| Value::F64(n.as_f64().unwrap_or(f64::NAN)), Value::I64),
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(a) => Value::List(a.iter().map(untyped_value).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), untyped_value(v))).collect()),
    }
}

/// A register, by id or by name: `7` or `"drone-7"` in JSON. A name is resolved by the
/// group's schema ([`spook_core::Schema::resolve_register`]), the same way on every member.
///
/// ```
/// use spook_client::proto::Reg;
/// assert_eq!(serde_json::to_string(&Reg::from(7)).unwrap(), "7");
/// assert_eq!(serde_json::from_str::<Reg>("\"drone-7\"").unwrap(), Reg::from("drone-7"));
/// assert_eq!("12".parse::<Reg>().unwrap(), Reg::Id(12));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reg {
    /// By id.
    Id(u32),
    /// By name.
    Name(String),
}

impl Default for Reg {
    fn default() -> Reg {
        Reg::Id(0)
    }
}

impl From<u32> for Reg {
    fn from(id: u32) -> Reg {
        Reg::Id(id)
    }
}

impl From<spook_core::RegisterId> for Reg {
    fn from(id: spook_core::RegisterId) -> Reg {
        Reg::Id(id.0)
    }
}

impl From<&str> for Reg {
    fn from(name: &str) -> Reg {
        Reg::Name(name.to_string())
    }
}

impl From<String> for Reg {
    fn from(name: String) -> Reg {
        Reg::Name(name)
    }
}

impl std::str::FromStr for Reg {
    type Err = std::convert::Infallible;

    /// A number is an id; anything else a name.
    fn from_str(s: &str) -> Result<Reg, Self::Err> {
        Ok(s.parse::<u32>().map_or_else(|_| Reg::Name(s.to_string()), Reg::Id))
    }
}

impl std::fmt::Display for Reg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reg::Id(id) => write!(f, "{id}"),
            Reg::Name(n) => f.write_str(n),
        }
    }
}

impl Reg {
    /// The register id, by `schema` for a name.
    ///
    /// ```
    /// use spook_client::proto::Reg;
    /// use spook_core::{RegisterId, Schema};
    /// let s = Schema::fleet().register(RegisterId(7), "drone-7");
    /// assert_eq!(Reg::from("drone-7").resolve(&s), RegisterId(7));
    /// assert_eq!(Reg::from(9).resolve(&s), RegisterId(9));
    /// ```
    #[must_use]
    pub fn resolve(&self, schema: &spook_core::Schema) -> spook_core::RegisterId {
        match self {
            Reg::Id(id) => spook_core::RegisterId(*id),
            Reg::Name(n) => schema.resolve_register(n),
        }
    }
}

/// A request. Groups are named by the name given at create/join time or by their hex id.
///
/// ```
/// use spook_client::proto::Request;
/// let r: Request = serde_json::from_str(r#"{"op": "get", "group": "fleet", "register": 7}"#).unwrap();
/// assert!(matches!(r, Request::Get { .. }));
/// assert_eq!(serde_json::to_value(&Request::Status).unwrap(), serde_json::json!({"op": "status"}));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// This node's endpoint id.
    Id,
    /// Add a peer to the allow-list.
    Allow {
        /// The peer's endpoint id (base32).
        peer: String,
        /// A display name.
        #[serde(default)]
        name: String,
    },
    /// Remove a peer from the allow-list: its channels close, its group frames are refused,
    /// and this node's sender key of every group it is in is replaced (the peer never gets
    /// the new one).
    Disallow {
        /// The peer's endpoint id (base32).
        peer: String,
    },
    /// Create a group with this node and `members`.
    GroupCreate {
        /// Local name.
        name: String,
        /// The other members' endpoint ids.
        #[serde(default)]
        members: Vec<String>,
        /// `convergent` (default) or `serial`.
        #[serde(default)]
        kind: Option<String>,
        /// Frames without origin signatures (see DESIGN.md "Security"): cheaper on constrained
        /// radio, but any member could forge another member's deltas. Default false.
        #[serde(default)]
        trusted_members: bool,
        /// The group's schema (default: the fleet schema of the examples). It travels in the
        /// invite and never changes: a new schema is a new group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<spook_core::Schema>,
    },
    /// A group's schema and its hash.
    Schema {
        /// The group.
        group: String,
    },
    /// Join a group from the invite `group create` printed.
    GroupJoin {
        /// The invite.
        invite: String,
        /// Local name (defaults to the creator's).
        #[serde(default)]
        name: Option<String>,
    },
    /// Leave a group (forget it locally).
    GroupLeave {
        /// The group.
        group: String,
    },
    /// Remove a member from a group by operator decision: for a member that is not coming
    /// back (a lost drone, a revoked peer). Members prune a silent member by themselves after
    /// the decoherence timeout, but a serial group needs a majority for it: a pair, or a group
    /// that lost its majority, waits for this. Either way a removed member that is heard again is
    /// re-added, as after a prune: to keep it out, `disallow` it on every member. Answered
    /// once the removal is durable.
    GroupRemove {
        /// The group.
        group: String,
        /// The member's endpoint id (base32).
        member: String,
    },
    /// The groups this node holds.
    GroupList,
    /// Write one field of a register (last-writer-wins set, counter add, set insert or log
    /// append, by the field's policy).
    Set {
        /// The group.
        group: String,
        /// The register.
        register: Reg,
        /// The field name (e.g. `battery`, `pose.rotation`).
        field: String,
        /// The value, as JSON.
        value: Json,
        /// Values are [`spook_core::Value`]s in their serde form, not schema-typed JSON.
        #[serde(default, skip_serializing_if = "is_false")]
        typed: bool,
    },
    /// Write several fields, of one or many registers, as one delta: atomically, in one frame
    /// and one ledger record (how a 100-drone pose stream is sent cheaply).
    Write {
        /// The group.
        group: String,
        /// The writes, applied in order.
        set: Vec<FieldWrite>,
        /// Values are [`spook_core::Value`]s in their serde form, not schema-typed JSON.
        #[serde(default, skip_serializing_if = "is_false")]
        typed: bool,
    },
    /// Read a register (all fields) or one field.
    Get {
        /// The group.
        group: String,
        /// The register.
        register: Reg,
        /// One field, or all.
        #[serde(default)]
        field: Option<String>,
        /// `pending` (default) or `committed`.
        #[serde(default)]
        view: Option<String>,
        /// Values are [`spook_core::Value`]s in their serde form, not schema-typed JSON.
        #[serde(default, skip_serializing_if = "is_false")]
        typed: bool,
    },
    /// Stream changes of a group.
    Watch {
        /// The group.
        group: String,
        /// `pending` (default) or `committed`.
        #[serde(default)]
        view: Option<String>,
        /// First every register written so far, as events marked `"snapshot": true`, then
        /// the changes: a watcher that starts late, or comes back through another node,
        /// misses nothing.
        #[serde(default)]
        snapshot: bool,
        /// Values are [`spook_core::Value`]s in their serde form, not schema-typed JSON.
        #[serde(default, skip_serializing_if = "is_false")]
        typed: bool,
    },
    /// Submit a serial transaction as operation `seq` of `client` (serial groups only).
    /// Resending the same (client, seq) through any node of the domain is safe: it executes
    /// once. With `wait`, the response comes when the outcome is known here or the deadline
    /// passes (state `decohered`: unknown yet, ask again with `session`).
    Tx {
        /// The group.
        group: String,
        /// The client's endpoint id (base32): the session the operation belongs to.
        client: String,
        /// The client's sequence number for this operation.
        seq: u64,
        /// Conditions on the committed serial state; all must hold.
        #[serde(default, rename = "if")]
        conditions: Vec<TxCondition>,
        /// Writes applied if it commits.
        set: Vec<TxSet>,
        /// Seqs of this client's operations that must commit before this one.
        #[serde(default)]
        after: Vec<u64>,
        /// Abort if not evaluated within this many ms of submission (default 10 000).
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Answer when the outcome is known rather than at submission.
        #[serde(default)]
        wait: bool,
        /// Values are [`spook_core::Value`]s in their serde form, not schema-typed JSON.
        #[serde(default, skip_serializing_if = "is_false")]
        typed: bool,
    },
    /// A client's session in a group: the outcome of each of its operations known here.
    Session {
        /// The group.
        group: String,
        /// The client's endpoint id.
        client: String,
    },
    /// Open a pairing window: meet another node whose operator opened one too.
    PairOpen {
        /// The name the other side stores for this node.
        #[serde(default)]
        name: String,
        /// How long the window stays open (default 120 s).
        #[serde(default)]
        seconds: Option<u64>,
    },
    /// The pairing window: open or not, and the code to compare once a peer answered.
    PairStatus,
    /// The operator confirms with the code the other node shows; that peer is allowed.
    PairConfirm {
        /// The six digits the other node shows.
        code: String,
    },
    /// Node and group status.
    Status,
    /// Drop the zenoh session and open a fresh one (new zenoh id, new links and
    /// declarations): the way out when zenoh's routing is wedged, as plain UDP can leave it
    /// (see docs/protocol.md).
    Reconnect,
    /// Show the domain key's token ([`crate::domain_key`]), or replace it with `set` (joining
    /// another domain, or taking a rotation by hand); the node then renews its zenoh session.
    DomainKey {
        /// A token from `spook domain-key` on a node of the domain.
        #[serde(default)]
        set: Option<String>,
    },
    /// Stop the node (as SIGTERM does).
    Shutdown,
}

/// One field write of [`Request::Write`].
///
/// ```
/// use spook_client::proto::FieldWrite;
/// let w: FieldWrite = serde_json::from_str(r#"{"register": "drone-7", "field": "battery", "value": 0.5}"#).unwrap();
/// assert_eq!(w.field, "battery");
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldWrite {
    /// The register.
    pub register: Reg,
    /// The field name.
    pub field: String,
    /// The value, as JSON.
    pub value: Json,
}

/// A precondition as JSON: a register, a field and exactly one test.
///
/// ```
/// use spook_client::proto::TxCondition;
/// let c = TxCondition { register: 3.into(), field: "owner".into(), absent: true, ..Default::default() };
/// assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::json!({"register": 3, "field": "owner", "absent": true}));
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxCondition {
    /// The register.
    pub register: Reg,
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
    /// The cell holds a lease that has not ended at the transaction's position.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lease_held: bool,
    /// A comparison with `value`: one of `<`, `<=`, `>`, `>=`, `!=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmp: Option<String>,
    /// The operand of `cmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Json>,
}

/// A write of a transaction as JSON.
///
/// ```
/// let s = spook_client::proto::parse_set("3.owner \"drone-7\"", Some(5_000)).unwrap();
/// assert_eq!((s.field.as_str(), s.lease_ms), ("owner", Some(5_000)));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxSet {
    /// The register.
    pub register: Reg,
    /// The field name.
    pub field: String,
    /// The new value.
    pub value: Json,
    /// Lease the cell for this long after the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// What kind of failure an error response reports (`"code"`), so that a client can act on it
/// without reading the message.
///
/// ```
/// use spook_client::proto::ErrorCode;
/// assert_eq!(serde_json::to_value(ErrorCode::NotFound).unwrap(), serde_json::json!("not_found"));
/// ```
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No such group, register field or client session.
    NotFound,
    /// A value, field or argument that does not fit the group's schema or the request.
    BadValue,
    /// Not allowed: administration asked remotely, a transaction for another client's key.
    NotAllowed,
    /// The node cannot store it: full disk, broken ledger. Nothing was written.
    StorageUnavailable,
    /// The node refused it for another reason the message gives (e.g. a convergent group asked
    /// for a transaction).
    Refused,
    /// The node has stopped.
    Stopped,
    /// A request that does not parse.
    BadRequest,
}

impl Request {
    /// Whether a remote client may make this request (the rest is administration, local only).
    ///
    /// ```
    /// use spook_client::proto::Request;
    /// assert!(Request::Status.allowed_remotely());
    /// assert!(!Request::Shutdown.allowed_remotely());
    /// assert!(!Request::Allow { peer: "…".into(), name: String::new() }.allowed_remotely());
    /// ```
    #[must_use]
    pub fn allowed_remotely(&self) -> bool {
        matches!(self, Request::Id | Request::GroupList | Request::Schema { .. } | Request::Set { .. } | Request::Write { .. } | Request::Get { .. } | Request::Tx { .. } | Request::Session { .. } | Request::Status | Request::Watch { .. })
    }
}

/// Parse the CLI's condition `REG.FIELD == JSON` (also `!= < <= > >=`), `REG.FIELD absent`,
/// `REG.FIELD version N`, `REG.FIELD lease-expired` or `REG.FIELD lease-held`.
///
/// ```
/// # use spook_client::proto::{parse_condition, Reg};
/// let c = parse_condition("3.owner == \"drone-7\"").unwrap();
/// assert!(parse_condition("5.state lease-held").unwrap().lease_held);
/// assert_eq!((c.register, c.field.as_str(), c.equals), (Reg::Id(3), "owner", Some(serde_json::json!("drone-7"))));
/// assert!(parse_condition("3.owner >= 5").unwrap().cmp.is_some());
/// assert!(parse_condition("owner absent").is_err());
/// ```
///
/// # Errors
/// A message showing the expected forms.
pub fn parse_condition(s: &str) -> Result<TxCondition, String> {
    let usage = || format!("condition {s:?}: expected REG.FIELD == JSON (or != < <= > >=), REG.FIELD absent, REG.FIELD version N, REG.FIELD lease-expired or REG.FIELD lease-held");
    let (target, rest) = s.trim().split_once(char::is_whitespace).ok_or_else(usage)?;
    let (register, field) = parse_target(target).ok_or_else(usage)?;
    let mut c = TxCondition { register, field, ..Default::default() };
    let rest = rest.trim();
    let (op, arg) = rest.split_once(char::is_whitespace).map_or((rest, ""), |(a, b)| (a, b.trim()));
    let json = |a: &str| serde_json::from_str::<Json>(a).map_err(|e| format!("condition {s:?}: {a:?} is not JSON ({e}); strings need quotes"));
    match op {
        "absent" if arg.is_empty() => c.absent = true,
        "lease-expired" if arg.is_empty() => c.lease_expired = true,
        "lease-held" if arg.is_empty() => c.lease_held = true,
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
///
/// ```
/// use spook_client::proto::{parse_set, Reg};
/// let s = parse_set("drone-7.battery 0.5", None).unwrap();
/// assert_eq!((s.register, s.value), (Reg::from("drone-7"), serde_json::json!(0.5)));
/// assert!(parse_set("drone-7.owner drone-8", None).unwrap_err().contains("strings need quotes"));
/// ```
pub fn parse_set(s: &str, lease_ms: Option<u64>) -> Result<TxSet, String> {
    let usage = || format!("write {s:?}: expected REG.FIELD JSON, e.g. '3.owner \"drone-7\"'");
    let (target, value) = s.trim().split_once(char::is_whitespace).ok_or_else(usage)?;
    let (register, field) = parse_target(target).ok_or_else(usage)?;
    let value = serde_json::from_str(value.trim()).map_err(|e| format!("write {s:?}: the value is not JSON ({e}); strings need quotes"))?;
    Ok(TxSet { register, field, value, lease_ms })
}

fn parse_target(t: &str) -> Option<(Reg, String)> {
    let (reg, field) = t.split_once('.')?;
    (!reg.is_empty() && !field.is_empty()).then(|| (reg.parse().unwrap_or_default(), field.to_string()))
}

