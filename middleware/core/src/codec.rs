//! The wire codec: one version byte and one frame-kind byte, then a compact body of LEB128
//! varints (postcard's integer encoding) that is schema-aware, so a field update carries no
//! type tags and no names. Decoding never panics: every malformed input is a [`DecodeError`].
//!
//! What the context already says is not repeated: the origin of a `Deltas` frame is its
//! sender, the group is the transport's key, stamps are millisecond offsets from the group's
//! creation (or from the previous delta of the same frame), and origins elsewhere are indices
//! into a per-frame table of short ids. No frame refers to an earlier frame.

use std::collections::BTreeMap;

use crate::field::{CounterPart, Fact, Write};
use crate::{Action, CausalContext, Cmp, Delta, Dot, EndpointId, FieldId, Hlc, IntervalSet, Op, OpId, Precondition, Record, RegisterId, Schema, Txn, TxnWrite, Value, ValueKind};

/// The wire version this build speaks.
pub const VERSION: u8 = 1;

/// Frame kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A batch of the sender's own deltas.
    Deltas = 1,
    /// Version vector, state hash and acks.
    Digest = 2,
    /// "Send me what I lack": the requester's causal context.
    Want = 3,
    /// Facts (state with dots) and membership deltas answering a want or digest.
    State = 4,
    /// Consensus on membership (serial groups): prepare, promise, accept, accepted.
    Paxos = 5,
    /// The sender's own ack alone, sent promptly once it has made something durable
    /// ([`crate::GroupConfig::prompt_ack_ms`]), so that the committed view need not wait
    /// for the next digest.
    Ack = 6,
}

/// A typed decoding failure. Nothing of a frame that fails to decode is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame has no bytes.
    #[error("empty frame")]
    Empty,
    /// The version byte is not one this build speaks.
    #[error("unknown wire version {0} (this build speaks {VERSION})")]
    UnknownVersion(u8),
    /// The frame-kind byte is unknown.
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// The frame ended early.
    #[error("frame truncated at byte {0}")]
    Truncated(usize),
    /// Bytes remain after a complete frame.
    #[error("{0} trailing bytes after a complete frame")]
    TrailingBytes(usize),
    /// A value, string or list is larger than the configured limit.
    #[error("value of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Its size.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The frame names a field the group schema does not define.
    #[error("unknown field {0}")]
    UnknownField(u64),
    /// An operation code or fact kind is unknown.
    #[error("unknown operation kind {0}")]
    UnknownOp(u8),
    /// A value tag is unknown.
    #[error("unknown value tag {0}")]
    UnknownValueTag(u8),
    /// The operation does not fit the field's merge policy.
    #[error("operation kind {0} does not fit the field's merge policy")]
    OpDoesNotFitField(u8),
    /// An origin short id that is not a member of the group.
    #[error("unknown origin {0:016x}")]
    UnknownOrigin(u64),
    /// A structural rule is broken (the text says which).
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// Decoding limits (all configurable per group).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest value, string or byte string, in bytes.
    pub max_value_bytes: usize,
    /// Most items in one list (deltas, ops, facts, ranges, origins).
    pub max_items: usize,
    /// Deepest nesting of lists and maps.
    pub max_depth: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_value_bytes: 64 * 1024, max_items: 1 << 20, max_depth: 16 }
    }
}

/// What a decoder needs to know about the group: its schema, creation time, members.
#[derive(Debug, Clone, Copy)]
pub struct GroupView<'a> {
    /// The group schema.
    pub schema: &'a Schema,
    /// Creation time (ms); stamps are offsets from it.
    pub genesis_ms: u64,
    /// Members by short id.
    pub roster: &'a BTreeMap<u64, EndpointId>,
    /// Decoding limits.
    pub limits: Limits,
}

/// One origin's acknowledgement: its durable HLC and how far its own deltas are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The member acknowledging.
    pub member: EndpointId,
    /// What `member` vouches for: it durably holds every delta of every member in force
    /// stamped at or below this (S is the smallest of these over the members in force).
    pub hlc: Hlc,
    /// Every own delta of `member` stamped at or below this is durable and counted in `own_seq`.
    pub own_hlc: Hlc,
    /// The member's own durable contiguous sequence number.
    pub own_seq: u64,
}

/// A digest: what the sender holds, its state hash, and the acks it knows (its own and
/// relayed ones, so acks spread by gossip).
#[derive(Clone, Debug, PartialEq)]
pub struct Digest {
    /// The sender's causal context.
    pub context: CausalContext,
    /// The sender's pending-view hash (16 bytes of it).
    pub hash: [u8; 16],
    /// Acks, the sender's own first.
    pub acks: Vec<Ack>,
}

/// State sent to a replica that lacks it: the dots it covers, facts, and membership deltas.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StateMsg {
    /// The dots this message covers: the receiver adopts them (gaps kept).
    pub context: CausalContext,
    /// Field facts.
    pub facts: Vec<(RegisterId, FieldId, Fact)>,
    /// Whole deltas that travel as deltas (membership changes).
    pub deltas: Vec<Delta>,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// The sender's own deltas, in seq order.
    Deltas(Vec<Delta>),
    /// A digest.
    Digest(Digest),
    /// A want: the requester's causal context.
    Want(CausalContext),
    /// State.
    State(StateMsg),
    /// A consensus message.
    Paxos(PaxosMsg),
    /// The sender's own ack (its `member` is the sender).
    Ack(Ack),
}

/// A ballot: (number, proposer), ordered by number then proposer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ballot {
    /// The number.
    pub n: u64,
    /// The proposer.
    pub by: EndpointId,
}

/// Single-decree Paxos on one membership epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum PaxosMsg {
    /// Phase 1a.
    Prepare {
        /// The epoch decided (current epoch + 1).
        epoch: u64,
        /// The ballot.
        ballot: Ballot,
        /// Members the proposer means to remove: an acceptor reports how far it holds their
        /// deltas and stops vouching for more of them until the epoch is decided.
        removing: Vec<EndpointId>,
    },
    /// Phase 1b: a promise, with the highest accepted value if any.
    Promise {
        /// The epoch.
        epoch: u64,
        /// The ballot promised.
        ballot: Ballot,
        /// What this acceptor accepted before, if anything.
        accepted: Option<(Ballot, Vec<Op>)>,
        /// For each member in `removing`: the acceptor's durable contiguous seq of it.
        coverage: Vec<(EndpointId, u64)>,
    },
    /// Phase 2a.
    Accept {
        /// The epoch.
        epoch: u64,
        /// The ballot.
        ballot: Ballot,
        /// The membership operations proposed.
        value: Vec<Op>,
    },
    /// Phase 2b.
    Accepted {
        /// The epoch.
        epoch: u64,
        /// The ballot accepted.
        ballot: Ballot,
    },
}

/// A promise and an acceptor's durable record share one shape: epoch, ballot, the value
/// accepted (if any) and per-member sequence numbers (coverage, or what it froze).
fn put_promise(out: &mut Vec<u8>, schema: &Schema, epoch: u64, ballot: &Ballot, accepted: Option<&(Ballot, Vec<Op>)>, members: &[(EndpointId, u64)]) {
    put_uvarint(out, epoch);
    put_ballot(out, ballot);
    match accepted {
        None => out.push(0),
        Some((b, v)) => {
            out.push(1);
            put_ballot(out, b);
            put_ops(out, schema, v);
        }
    }
    put_uvarint(out, members.len() as u64);
    for (m, c) in members {
        out.extend_from_slice(&m.0);
        put_uvarint(out, *c);
    }
}

type PromiseBody = (Option<(Ballot, Vec<Op>)>, Vec<(EndpointId, u64)>);

impl Reader<'_> {
    /// The part of [`put_promise`] after epoch and ballot.
    fn promise_rest(&mut self, g: &GroupView<'_>) -> Result<PromiseBody, DecodeError> {
        let accepted = match self.u8()? {
            0 => None,
            1 => {
                let b = self.ballot()?;
                Some((b, read_membership_ops(self, g)?))
            }
            _ => return Err(DecodeError::Malformed("accepted flag is not 0 or 1")),
        };
        let n = self.count()?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let m = EndpointId(self.fixed::<32>()?);
            members.push((m, self.uvarint()?));
        }
        Ok((accepted, members))
    }
}

fn put_ballot(out: &mut Vec<u8>, b: &Ballot) {
    put_uvarint(out, b.n);
    out.extend_from_slice(&b.by.0);
}

/// Encode a consensus message.
#[must_use]
pub fn encode_paxos(schema: &Schema, m: &PaxosMsg) -> Vec<u8> {
    let mut out = header(FrameKind::Paxos);
    match m {
        PaxosMsg::Prepare { epoch, ballot, removing } => {
            out.push(0);
            put_uvarint(&mut out, *epoch);
            put_ballot(&mut out, ballot);
            put_uvarint(&mut out, removing.len() as u64);
            for m in removing {
                out.extend_from_slice(&m.0);
            }
        }
        PaxosMsg::Promise { epoch, ballot, accepted, coverage } => {
            out.push(1);
            put_promise(&mut out, schema, *epoch, ballot, accepted.as_ref(), coverage);
        }
        PaxosMsg::Accept { epoch, ballot, value } => {
            out.push(2);
            put_uvarint(&mut out, *epoch);
            put_ballot(&mut out, ballot);
            put_ops(&mut out, schema, value);
        }
        PaxosMsg::Accepted { epoch, ballot } => {
            out.push(3);
            put_uvarint(&mut out, *epoch);
            put_ballot(&mut out, ballot);
        }
    }
    out
}

impl Reader<'_> {
    fn ballot(&mut self) -> Result<Ballot, DecodeError> {
        Ok(Ballot { n: self.uvarint()?, by: EndpointId(self.fixed::<32>()?) })
    }
}

fn read_membership_ops(r: &mut Reader<'_>, g: &GroupView<'_>) -> Result<Vec<Op>, DecodeError> {
    let mut added = BTreeMap::new();
    let n = r.count()?;
    // An empty value is a decision to change nothing (an epoch closed without a change).
    let ops = if n == 0 { Vec::new() } else { read_ops_body(r, g, &mut added, n)? };
    if !ops.iter().all(|o| matches!(o, Op::AddMember(_) | Op::RemoveMember { .. })) {
        return Err(DecodeError::Malformed("a membership value holds only membership operations"));
    }
    Ok(ops)
}

// ---------------------------------------------------------------- primitives

/// Append an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_svarint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64);
}

/// Append a stamp in canonical (fixed) form, for hashing.
pub fn put_hlc(out: &mut Vec<u8>, h: Hlc) {
    out.extend_from_slice(&h.0.to_le_bytes());
}

fn put_f64(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&crate::value::canonical_f64(x).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Append a value with its type tag (canonical form).
pub fn put_value_tagged(out: &mut Vec<u8>, v: &Value) {
    let tag = match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::I64(_) => 2,
        Value::F64(_) => 3,
        Value::Str(_) => 4,
        Value::Bytes(_) => 5,
        Value::Vec3(_) => 6,
        Value::Quat(_) => 7,
        Value::Pose(..) => 8,
        Value::List(_) => 9,
        Value::Map(_) => 10,
    };
    out.push(tag);
    put_value_body(out, v);
}

fn put_value_body(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::I64(x) => put_svarint(out, *x),
        Value::F64(x) => put_f64(out, *x),
        Value::Str(s) => put_bytes(out, s.as_bytes()),
        Value::Bytes(b) => put_bytes(out, b),
        Value::Vec3(a) => a.iter().for_each(|x| put_f64(out, *x)),
        Value::Quat(a) => a.iter().for_each(|x| put_f64(out, *x)),
        Value::Pose(t, r) => t.iter().chain(r.iter()).for_each(|x| put_f64(out, *x)),
        Value::List(l) => {
            put_uvarint(out, l.len() as u64);
            l.iter().for_each(|x| put_value_tagged(out, x));
        }
        Value::Map(m) => {
            put_uvarint(out, m.len() as u64);
            for (k, x) in m {
                put_bytes(out, k.as_bytes());
                put_value_tagged(out, x);
            }
        }
    }
}

fn put_value(out: &mut Vec<u8>, kind: ValueKind, v: &Value) {
    if kind == ValueKind::Any {
        put_value_tagged(out, v);
    } else {
        put_value_body(out, v);
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let x = *self.b.get(self.pos).ok_or(DecodeError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(x)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated(self.pos))?;
        let s = self.b.get(self.pos..end).ok_or(DecodeError::Truncated(self.b.len()))?;
        self.pos = end;
        Ok(s)
    }
    fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                return Err(DecodeError::Malformed("varint overflows 64 bits"));
            }
            x |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes"))
    }
    fn svarint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.uvarint()?;
        if n > self.limits.max_items as u64 || n > (self.b.len() - self.pos) as u64 {
            return Err(DecodeError::Malformed("item count exceeds the limit or the frame"));
        }
        Ok(n as usize)
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(f64::from_le_bytes(a))
    }
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()?;
        if n > self.limits.max_value_bytes as u64 {
            return Err(DecodeError::Oversized { len: n, limit: self.limits.max_value_bytes });
        }
        self.take(n as usize)
    }
    fn value_tagged(&mut self, depth: u8) -> Result<Value, DecodeError> {
        let tag = self.u8()?;
        self.value_body(tag, depth)
    }
    fn value_body(&mut self, tag: u8, depth: u8) -> Result<Value, DecodeError> {
        if depth > self.limits.max_depth {
            return Err(DecodeError::Malformed("value nested too deeply"));
        }
        Ok(match tag {
            0 => Value::Null,
            1 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(DecodeError::Malformed("bool is not 0 or 1")),
            },
            2 => Value::I64(self.svarint()?),
            3 => Value::F64(self.f64()?),
            4 => Value::Str(
                String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Malformed("string is not UTF-8"))?,
            ),
            5 => Value::Bytes(self.bytes()?.to_vec()),
            6 => Value::Vec3([self.f64()?, self.f64()?, self.f64()?]),
            7 => Value::Quat([self.f64()?, self.f64()?, self.f64()?, self.f64()?]),
            8 => Value::Pose(
                [self.f64()?, self.f64()?, self.f64()?],
                [self.f64()?, self.f64()?, self.f64()?, self.f64()?],
            ),
            9 => {
                let n = self.count()?;
                let mut l = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    l.push(self.value_tagged(depth + 1)?);
                }
                Value::List(l)
            }
            10 => {
                let n = self.count()?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = String::from_utf8(self.bytes()?.to_vec())
                        .map_err(|_| DecodeError::Malformed("map key is not UTF-8"))?;
                    let v = self.value_tagged(depth + 1)?;
                    if m.insert(k, v).is_some() {
                        return Err(DecodeError::Malformed("duplicate map key"));
                    }
                }
                Value::Map(m)
            }
            t => return Err(DecodeError::UnknownValueTag(t)),
        })
    }
    fn value(&mut self, kind: ValueKind) -> Result<Value, DecodeError> {
        let start = self.pos;
        let v = match kind {
            ValueKind::Any => self.value_tagged(0)?,
            k => self.value_body(k as u8, 0)?,
        };
        let len = (self.pos - start) as u64;
        if len > self.limits.max_value_bytes as u64 {
            return Err(DecodeError::Oversized { len, limit: self.limits.max_value_bytes });
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------- stamps, origins, contexts

fn put_stamp(out: &mut Vec<u8>, base_ms: u64, h: Hlc) {
    let off = h.ms().saturating_sub(base_ms);
    put_uvarint(out, (off << 1) | u64::from(h.ctr() != 0));
    if h.ctr() != 0 {
        put_uvarint(out, u64::from(h.ctr()));
    }
}

impl Reader<'_> {
    fn stamp(&mut self, base_ms: u64) -> Result<Hlc, DecodeError> {
        let x = self.uvarint()?;
        let ms = base_ms.checked_add(x >> 1).filter(|ms| *ms < 1 << 48).ok_or(DecodeError::Malformed("stamp out of range"))?;
        let ctr = if x & 1 == 1 {
            u16::try_from(self.uvarint()?).map_err(|_| DecodeError::Malformed("logical counter out of range"))?
        } else {
            0
        };
        Ok(Hlc::new(ms, ctr))
    }
}

/// A per-frame table of origins, referenced by index.
#[derive(Default)]
struct Origins {
    ids: Vec<EndpointId>,
    index: BTreeMap<EndpointId, u64>,
}

impl Origins {
    fn idx(&mut self, o: EndpointId) -> u64 {
        let n = self.ids.len() as u64;
        *self.index.entry(o).or_insert_with(|| {
            self.ids.push(o);
            n
        })
    }
    fn put(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.ids.len() as u64);
        for o in &self.ids {
            out.extend_from_slice(&o.short().to_le_bytes());
        }
    }
}

fn read_origins(r: &mut Reader<'_>, roster: &BTreeMap<u64, EndpointId>) -> Result<Vec<EndpointId>, DecodeError> {
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = u64::from_le_bytes(r.fixed::<8>()?);
        out.push(*roster.get(&s).ok_or(DecodeError::UnknownOrigin(s))?);
    }
    Ok(out)
}

fn read_origin(r: &mut Reader<'_>, table: &[EndpointId]) -> Result<EndpointId, DecodeError> {
    let i = r.uvarint()?;
    usize::try_from(i).ok().and_then(|i| table.get(i)).copied().ok_or(DecodeError::Malformed("origin index out of the frame's table"))
}

fn put_context(out: &mut Vec<u8>, origins: &mut Origins, ctx: &CausalContext) {
    let entries: Vec<_> = ctx.0.iter().filter(|(_, s)| !s.is_empty()).collect();
    put_uvarint(out, entries.len() as u64);
    for (o, s) in entries {
        put_uvarint(out, origins.idx(*o));
        put_uvarint(out, s.ranges().len() as u64);
        let mut prev = 0u64;
        for &(a, b) in s.ranges() {
            put_uvarint(out, a - prev);
            put_uvarint(out, b - a);
            prev = b;
        }
    }
}

fn read_context(r: &mut Reader<'_>, table: &[EndpointId]) -> Result<CausalContext, DecodeError> {
    let n = r.count()?;
    let mut ctx = CausalContext::default();
    for _ in 0..n {
        let o = read_origin(r, table)?;
        let k = r.count()?;
        let mut ranges = Vec::with_capacity(k);
        let mut prev = 0u64;
        for i in 0..k {
            let gap = r.uvarint()?;
            if i > 0 && gap < 2 {
                return Err(DecodeError::Malformed("context ranges overlap or touch"));
            }
            let a = prev.checked_add(gap).filter(|a| *a >= 1).ok_or(DecodeError::Malformed("bad context range"))?;
            let b = a.checked_add(r.uvarint()?).ok_or(DecodeError::Malformed("bad context range"))?;
            ranges.push((a, b));
            prev = b;
        }
        if ctx.0.insert(o, IntervalSet::from_ranges(ranges)).is_some() {
            return Err(DecodeError::Malformed("origin listed twice in a context"));
        }
    }
    Ok(ctx)
}

// ---------------------------------------------------------------- ops and deltas

fn opcode(a: &Action) -> u8 {
    match a {
        Action::Set(_) => 0,
        Action::Add(_) => 1,
        Action::Insert(_) => 2,
        Action::Remove { .. } => 3,
        Action::Append(_) => 4,
    }
}

fn put_ops(out: &mut Vec<u8>, schema: &Schema, ops: &[Op]) {
    put_uvarint(out, ops.len() as u64);
    put_ops_body(out, schema, ops);
}

fn put_ops_body(out: &mut Vec<u8>, schema: &Schema, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Field { reg, field, action } => {
                // One varint for register and field (fields 0..14 inline, 15 = the field
                // follows); the operation is implied by the field's policy, except for sets.
                let low = u64::from(field.0.min(15));
                put_uvarint(out, ((u64::from(reg.0) + 1) << 4) | low);
                if low == 15 {
                    put_uvarint(out, u64::from(field.0));
                }
                let def = schema.def(*field);
                if def.is_some_and(|d| d.policy == crate::MergePolicy::AddWinsSet) {
                    out.push(opcode(action));
                }
                let kind = def.map_or(ValueKind::Any, |d| d.kind);
                match action {
                    Action::Set(v) | Action::Insert(v) | Action::Append(v) => put_value(out, kind, v),
                    Action::Add(n) => put_svarint(out, *n),
                    Action::Remove { value, observed } => {
                        put_value(out, kind, value);
                        put_uvarint(out, observed.len() as u64);
                        for d in observed {
                            out.extend_from_slice(&d.origin.short().to_le_bytes());
                            put_uvarint(out, d.seq);
                        }
                    }
                }
            }
            Op::AddMember(m) => {
                put_uvarint(out, 0);
                out.push(0);
                out.extend_from_slice(&m.0);
            }
            Op::RemoveMember { member, cut, heard } => {
                put_uvarint(out, 0);
                // Kind 1, a force-remove, predates the majority rule: ledgers written before it
                // decode unchanged. Kind 4 names the members heard, by short id.
                out.push(if heard.is_some() { 4 } else { 1 });
                out.extend_from_slice(&member.0);
                put_uvarint(out, *cut);
                if let Some(heard) = heard {
                    put_uvarint(out, heard.len() as u64);
                    for h in heard {
                        out.extend_from_slice(&h.short().to_le_bytes());
                    }
                }
            }
            Op::Txn(t) => {
                put_uvarint(out, 0);
                out.push(2);
                put_txn(out, t);
            }
            Op::Decided { epoch, ops } => {
                put_uvarint(out, 0);
                out.push(3);
                put_uvarint(out, *epoch);
                put_ops(out, schema, ops);
            }
        }
    }
}

fn put_opid(out: &mut Vec<u8>, id: &OpId) {
    out.extend_from_slice(&id.client.0);
    put_uvarint(out, id.seq);
}

fn put_txn(out: &mut Vec<u8>, t: &Txn) {
    put_opid(out, &t.id);
    put_uvarint(out, t.deadline_ms);
    put_uvarint(out, t.after.len() as u64);
    t.after.iter().for_each(|a| put_opid(out, a));
    put_uvarint(out, t.preconditions.len() as u64);
    for p in &t.preconditions {
        let (tag, reg, field) = match p {
            Precondition::VersionEquals { reg, field, .. } => (0u8, reg, field),
            Precondition::ValueEquals { reg, field, .. } => (1, reg, field),
            Precondition::Absent { reg, field } => (2, reg, field),
            Precondition::Compare { reg, field, .. } => (3, reg, field),
            Precondition::LeaseExpired { reg, field } => (4, reg, field),
            Precondition::LeaseHeld { reg, field } => (5, reg, field),
        };
        out.push(tag);
        put_uvarint(out, u64::from(reg.0));
        put_uvarint(out, u64::from(field.0));
        match p {
            Precondition::VersionEquals { version, .. } => put_uvarint(out, *version),
            Precondition::ValueEquals { value, .. } => put_value_tagged(out, value),
            Precondition::Compare { cmp, value, .. } => {
                out.push(*cmp as u8);
                put_value_tagged(out, value);
            }
            Precondition::Absent { .. } | Precondition::LeaseExpired { .. } | Precondition::LeaseHeld { .. } => {}
        }
    }
    put_uvarint(out, t.writes.len() as u64);
    for w in &t.writes {
        put_uvarint(out, u64::from(w.reg.0));
        put_uvarint(out, u64::from(w.field.0));
        put_value_tagged(out, &w.value);
        put_uvarint(out, w.lease_ms.map_or(0, |l| l.saturating_add(1)));
    }
}

impl Reader<'_> {
    fn opid(&mut self) -> Result<OpId, DecodeError> {
        Ok(OpId { client: EndpointId(self.fixed::<32>()?), seq: self.uvarint()? })
    }

    fn reg_field(&mut self, schema: &Schema) -> Result<(RegisterId, FieldId), DecodeError> {
        let reg = RegisterId(u32::try_from(self.uvarint()?).map_err(|_| DecodeError::Malformed("register id out of range"))?);
        let f = self.uvarint()?;
        let field = FieldId(u16::try_from(f).map_err(|_| DecodeError::UnknownField(f))?);
        schema.def(field).ok_or(DecodeError::UnknownField(f))?;
        Ok((reg, field))
    }

    fn txn(&mut self, schema: &Schema) -> Result<Txn, DecodeError> {
        let id = self.opid()?;
        let deadline_ms = self.uvarint()?;
        let n = self.count()?;
        let after = (0..n).map(|_| self.opid()).collect::<Result<Vec<_>, _>>()?;
        let n = self.count()?;
        let mut preconditions = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = self.u8()?;
            let (reg, field) = self.reg_field(schema)?;
            preconditions.push(match tag {
                0 => Precondition::VersionEquals { reg, field, version: self.uvarint()? },
                1 => Precondition::ValueEquals { reg, field, value: self.value_tagged(0)? },
                2 => Precondition::Absent { reg, field },
                3 => {
                    let cmp = match self.u8()? {
                        0 => Cmp::Lt,
                        1 => Cmp::Le,
                        2 => Cmp::Gt,
                        3 => Cmp::Ge,
                        4 => Cmp::Ne,
                        c => return Err(DecodeError::UnknownOp(c)),
                    };
                    Precondition::Compare { reg, field, cmp, value: self.value_tagged(0)? }
                }
                4 => Precondition::LeaseExpired { reg, field },
                5 => Precondition::LeaseHeld { reg, field },
                t => return Err(DecodeError::UnknownOp(t)),
            });
        }
        let n = self.count()?;
        let mut writes = Vec::with_capacity(n);
        for _ in 0..n {
            let (reg, field) = self.reg_field(schema)?;
            let value = self.value_tagged(0)?;
            let lease = self.uvarint()?;
            writes.push(TxnWrite { reg, field, value, lease_ms: lease.checked_sub(1) });
        }
        Ok(Txn { id, deadline_ms, after, preconditions, writes })
    }
}

fn policy_fits(policy: crate::MergePolicy, code: u8) -> bool {
    use crate::MergePolicy as P;
    matches!(
        (policy, code),
        (P::LastWriterWins | P::Max | P::Min, 0) | (P::Counter, 1) | (P::AddWinsSet, 2 | 3) | (P::AppendLog, 4)
    )
}

/// Check an operation against the schema: known field, fitting action, admissible value.
///
/// # Errors
/// The [`DecodeError`] that a frame carrying this operation would get.
pub fn check_op(schema: &Schema, limits: &Limits, op: &Op) -> Result<(), DecodeError> {
    if let Op::Txn(t) = op {
        for w in &t.writes {
            let def = schema.def(w.field).ok_or(DecodeError::UnknownField(u64::from(w.field.0)))?;
            if !def.kind.admits(&w.value) {
                return Err(DecodeError::Malformed("value does not fit the field's kind"));
            }
            let len = w.value.encoded_len();
            if len > limits.max_value_bytes {
                return Err(DecodeError::Oversized { len: len as u64, limit: limits.max_value_bytes });
            }
        }
        return Ok(());
    }
    let Op::Field { field, action, .. } = op else { return Ok(()) };
    let def = schema.def(*field).ok_or(DecodeError::UnknownField(u64::from(field.0)))?;
    let code = opcode(action);
    if !policy_fits(def.policy, code) {
        return Err(DecodeError::OpDoesNotFitField(code));
    }
    if let Action::Set(v) | Action::Insert(v) | Action::Append(v) | Action::Remove { value: v, .. } = action {
        if !def.kind.admits(v) {
            return Err(DecodeError::Malformed("value does not fit the field's kind"));
        }
        let len = v.encoded_len();
        if len > limits.max_value_bytes {
            return Err(DecodeError::Oversized { len: len as u64, limit: limits.max_value_bytes });
        }
    }
    Ok(())
}

fn read_ops(r: &mut Reader<'_>, g: &GroupView<'_>, added: &mut BTreeMap<u64, EndpointId>) -> Result<Vec<Op>, DecodeError> {
    let n = r.count()?;
    read_ops_body(r, g, added, n)
}

fn read_ops_body(r: &mut Reader<'_>, g: &GroupView<'_>, added: &mut BTreeMap<u64, EndpointId>, n: usize) -> Result<Vec<Op>, DecodeError> {
    if n == 0 || n > r.limits.max_items {
        return Err(DecodeError::Malformed("a delta with no operations"));
    }
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let head = r.uvarint()?;
        if head == 0 {
            let kind = r.u8()?;
            if kind == 2 {
                ops.push(Op::Txn(r.txn(g.schema)?));
                continue;
            }
            if kind == 3 {
                let epoch = r.uvarint()?;
                let n = r.count()?;
                let inner = if n == 0 { Vec::new() } else { read_ops_body(r, g, added, n)? };
                if !inner.iter().all(|o| matches!(o, Op::AddMember(_) | Op::RemoveMember { .. })) {
                    return Err(DecodeError::Malformed("a decided membership change holds only membership operations"));
                }
                ops.push(Op::Decided { epoch, ops: inner });
                continue;
            }
            let m = EndpointId(r.fixed::<32>()?);
            ops.push(match kind {
                0 => {
                    added.insert(m.short(), m);
                    Op::AddMember(m)
                }
                1 => Op::RemoveMember { member: m, cut: r.uvarint()?, heard: None },
                4 => {
                    let cut = r.uvarint()?;
                    let n = r.count()?;
                    let mut heard = Vec::with_capacity(n);
                    for _ in 0..n {
                        let s = u64::from_le_bytes(r.fixed::<8>()?);
                        heard.push(*g.roster.get(&s).or_else(|| added.get(&s)).ok_or(DecodeError::UnknownOrigin(s))?);
                    }
                    Op::RemoveMember { member: m, cut, heard: Some(heard) }
                }
                k => return Err(DecodeError::UnknownOp(k)),
            });
            continue;
        }
        let reg = RegisterId(u32::try_from((head >> 4).wrapping_sub(1)).map_err(|_| DecodeError::Malformed("register id out of range"))?);
        if head >> 4 == 0 {
            return Err(DecodeError::Malformed("register id out of range"));
        }
        let f = match head & 15 {
            15 => r.uvarint()?,
            low => low,
        };
        let field = FieldId(u16::try_from(f).map_err(|_| DecodeError::UnknownField(f))?);
        let def = g.schema.def(field).ok_or(DecodeError::UnknownField(f))?;
        let code = match def.policy {
            crate::MergePolicy::LastWriterWins | crate::MergePolicy::Max | crate::MergePolicy::Min => 0,
            crate::MergePolicy::Counter => 1,
            crate::MergePolicy::AppendLog => 4,
            crate::MergePolicy::AddWinsSet => match r.u8()? {
                c @ (2 | 3) => c,
                c => return Err(DecodeError::UnknownOp(c)),
            },
        };
        let action = match code {
            0 => Action::Set(r.value(def.kind)?),
            1 => Action::Add(r.svarint()?),
            2 => Action::Insert(r.value(def.kind)?),
            3 => {
                let value = r.value(def.kind)?;
                let k = r.count()?;
                let mut observed = Vec::with_capacity(k);
                for _ in 0..k {
                    let s = u64::from_le_bytes(r.fixed::<8>()?);
                    let origin = *g.roster.get(&s).or_else(|| added.get(&s)).ok_or(DecodeError::UnknownOrigin(s))?;
                    observed.push(Dot { origin, seq: r.uvarint()? });
                }
                Action::Remove { value, observed }
            }
            _ => Action::Append(r.value(def.kind)?),
        };
        ops.push(Op::Field { reg, field, action });
    }
    Ok(ops)
}

// ---------------------------------------------------------------- frames

fn header(kind: FrameKind) -> Vec<u8> {
    vec![VERSION, kind as u8]
}

/// Encode a batch of the sender's own deltas (consecutive in seq order, as an origin sends
/// them; gaps are allowed). Origin and group are implied by the sender and the key.
///
/// ```
/// # use spook_core::{codec, Delta, EndpointId, Hlc, Op, Action, RegisterId, Schema, Value};
/// # use std::collections::BTreeMap;
/// let schema = Schema::fleet();
/// let me = EndpointId::from_index(1);
/// let d = Delta { origin: me, seq: 1, stamp: Hlc::new(1_500, 0), ops: vec![Op::Field {
///     reg: RegisterId(7), field: schema.field_id("battery").unwrap(), action: Action::Set(Value::F64(0.5)) }] };
/// let bytes = codec::encode_deltas(&schema, 1_000, &[d.clone()]);
/// let roster = BTreeMap::from([(me.short(), me)]);
/// let g = codec::GroupView { schema: &schema, genesis_ms: 1_000, roster: &roster, limits: Default::default() };
/// assert_eq!(codec::decode(&g, me, &bytes), Ok(codec::Frame::Deltas(vec![d])));
/// ```
#[must_use]
pub fn encode_deltas(schema: &Schema, genesis_ms: u64, deltas: &[Delta]) -> Vec<u8> {
    let mut out = header(FrameKind::Deltas);
    put_uvarint(&mut out, deltas.len() as u64);
    let mut prev: Option<(u64, Hlc)> = None;
    for d in deltas {
        match prev {
            None => {
                put_uvarint(&mut out, d.seq);
                put_stamp(&mut out, genesis_ms, d.stamp);
                put_ops(&mut out, schema, &d.ops);
            }
            Some((ps, ph)) => {
                // Later deltas of a batch start with one byte: ms since the previous delta
                // (4 bits, 15 = an explicit stamp follows), op count − 1 (3 bits, 7 = a count
                // follows) and whether a sequence gap follows (1 bit).
                let gap = d.seq.saturating_sub(ps + 1);
                let dms = d.stamp.ms().saturating_sub(ph.ms());
                let short_stamp = d.stamp.ctr() == 0 && dms < 15;
                let nib = if short_stamp { dms as u8 } else { 15 };
                let n = d.ops.len();
                let nops = if (1..=7).contains(&n) { (n - 1) as u8 } else { 7 };
                out.push((nib << 4) | (nops << 1) | u8::from(gap > 0));
                if gap > 0 {
                    put_uvarint(&mut out, gap);
                }
                if !short_stamp {
                    put_stamp(&mut out, ph.ms(), d.stamp);
                }
                if nops == 7 {
                    put_uvarint(&mut out, n as u64);
                }
                put_ops_body(&mut out, schema, &d.ops);
            }
        }
        prev = Some((d.seq, d.stamp));
    }
    out
}

/// The frame-kind byte of a digest in its compact form: the acks' stamps from the smallest
/// of them, written once, and each `own_hlc` from its `hlc` (a 20-member digest is about 40%
/// smaller than in the first form, kind 2, which is still read).
const DIGEST_COMPACT: u8 = 7;

/// Encode a digest.
#[must_use]
pub fn encode_digest(genesis_ms: u64, d: &Digest) -> Vec<u8> {
    let mut origins = Origins::default();
    let mut body = Vec::new();
    put_context(&mut body, &mut origins, &d.context);
    body.extend_from_slice(&d.hash);
    put_uvarint(&mut body, d.acks.len() as u64);
    let base = d.acks.iter().map(|a| a.hlc.ms()).min().unwrap_or(genesis_ms).max(genesis_ms);
    if !d.acks.is_empty() {
        put_uvarint(&mut body, base - genesis_ms);
    }
    for a in &d.acks {
        put_uvarint(&mut body, origins.idx(a.member));
        put_stamp(&mut body, base, a.hlc);
        put_stamp(&mut body, a.hlc.ms(), a.own_hlc);
        put_uvarint(&mut body, a.own_seq);
    }
    let mut out = vec![VERSION, DIGEST_COMPACT];
    origins.put(&mut out);
    out.extend_from_slice(&body);
    out
}

/// Encode the sender's own ack. The sender is implied by the key, so the frame carries
/// only the three numbers: `hlc` from the group's creation, `own_hlc` from `hlc` (never
/// below it: a member's ack is capped by its own durable mark).
///
/// ```
/// use spook_core::codec::{encode_ack, Ack};
/// use spook_core::{EndpointId, Hlc};
/// let a = Ack { member: EndpointId([7; 32]), hlc: Hlc::new(1_500, 0), own_hlc: Hlc::new(1_502, 3), own_seq: 40 };
/// // version, kind, then 2 + 2 + 1 bytes of varints.
/// assert_eq!(encode_ack(1_000, &a).len(), 7);
/// ```
#[must_use]
pub fn encode_ack(genesis_ms: u64, a: &Ack) -> Vec<u8> {
    let mut out = header(FrameKind::Ack);
    put_stamp(&mut out, genesis_ms, a.hlc);
    put_stamp(&mut out, a.hlc.ms(), a.own_hlc);
    put_uvarint(&mut out, a.own_seq);
    out
}

/// Encode a want.
#[must_use]
pub fn encode_want(ctx: &CausalContext) -> Vec<u8> {
    let mut origins = Origins::default();
    let mut body = Vec::new();
    put_context(&mut body, &mut origins, ctx);
    let mut out = header(FrameKind::Want);
    origins.put(&mut out);
    out.extend_from_slice(&body);
    out
}

fn fact_stamps(f: &Fact) -> Vec<Hlc> {
    match f {
        Fact::Count { part, .. } => std::iter::once(part.upto_stamp).chain(part.extras.values().map(|(_, s)| *s)).collect(),
        other => vec![other.stamp()],
    }
}

fn put_dot(out: &mut Vec<u8>, origins: &mut Origins, d: Dot) {
    put_uvarint(out, origins.idx(d.origin));
    put_uvarint(out, d.seq);
}

/// Encode a state message. Membership deltas come first, so members they add may be named
/// by the facts that follow.
#[must_use]
pub fn encode_state(schema: &Schema, genesis_ms: u64, s: &StateMsg) -> Vec<u8> {
    let mut origins = Origins::default();
    let mut body = Vec::new();
    put_uvarint(&mut body, s.deltas.len() as u64);
    for d in &s.deltas {
        put_dot(&mut body, &mut origins, d.dot());
        put_stamp(&mut body, genesis_ms, d.stamp);
        put_ops(&mut body, schema, &d.ops);
    }
    put_context(&mut body, &mut origins, &s.context);
    // Facts sorted by register travel as register gaps; stamps as offsets from the frame's
    // smallest stamp, written once.
    let mut facts: Vec<&(RegisterId, FieldId, Fact)> = s.facts.iter().collect();
    facts.sort_by_key(|(r, _, _)| *r);
    put_uvarint(&mut body, facts.len() as u64);
    let base = facts.iter().flat_map(|(_, _, f)| fact_stamps(f)).map(Hlc::ms).min().unwrap_or(genesis_ms).max(genesis_ms);
    if !facts.is_empty() {
        put_uvarint(&mut body, base - genesis_ms);
    }
    let mut prev_reg = 0u32;
    for (reg, field, fact) in facts {
        put_uvarint(&mut body, u64::from(reg.0 - prev_reg));
        prev_reg = reg.0;
        let kind = schema.def(*field).map_or(ValueKind::Any, |d| d.kind);
        let code: u8 = match fact {
            Fact::Write(_) => 0,
            Fact::Count { .. } => 1,
            Fact::Add { .. } => 2,
            Fact::Tomb { .. } => 3,
            Fact::Entry(_) => 4,
        };
        put_uvarint(&mut body, (u64::from(field.0) << 3) | u64::from(code));
        match fact {
            Fact::Write(w) | Fact::Entry(w) => {
                put_value(&mut body, kind, &w.value);
                put_stamp(&mut body, base, w.stamp);
                put_dot(&mut body, &mut origins, w.dot);
            }
            Fact::Count { origin, part } => {
                put_uvarint(&mut body, origins.idx(*origin));
                put_uvarint(&mut body, part.upto);
                put_svarint(&mut body, part.sum);
                put_stamp(&mut body, base, part.upto_stamp);
                put_uvarint(&mut body, part.extras.len() as u64);
                for (seq, (n, st)) in &part.extras {
                    put_uvarint(&mut body, *seq);
                    put_svarint(&mut body, *n);
                    put_stamp(&mut body, base, *st);
                }
            }
            Fact::Add { value, dot, stamp } => {
                put_value(&mut body, kind, value);
                put_dot(&mut body, &mut origins, *dot);
                put_stamp(&mut body, base, *stamp);
            }
            Fact::Tomb { removed, by, stamp } => {
                put_dot(&mut body, &mut origins, *removed);
                put_dot(&mut body, &mut origins, *by);
                put_stamp(&mut body, base, *stamp);
            }
        }
    }
    let mut out = header(FrameKind::State);
    origins.put(&mut out);
    out.extend_from_slice(&body);
    out
}

fn read_dot(r: &mut Reader<'_>, table: &[EndpointId]) -> Result<Dot, DecodeError> {
    let origin = read_origin(r, table)?;
    let seq = r.uvarint()?;
    if seq == 0 {
        return Err(DecodeError::Malformed("sequence number 0"));
    }
    Ok(Dot { origin, seq })
}

/// Decode one frame from `sender`. Never panics; trailing bytes are an error.
///
/// # Errors
/// A [`DecodeError`] naming the first problem found.
pub fn decode(g: &GroupView<'_>, sender: EndpointId, bytes: &[u8]) -> Result<Frame, DecodeError> {
    let (&version, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let mut r = Reader { b: bytes, pos: 1, limits: g.limits };
    let kind = r.u8()?;
    let mut added = BTreeMap::new();
    let frame = match kind {
        1 => {
            let n = r.count()?;
            if n == 0 {
                return Err(DecodeError::Malformed("an empty batch of deltas"));
            }
            let mut out: Vec<Delta> = Vec::with_capacity(n);
            for i in 0..n {
                let (seq, stamp, ops) = match out.last() {
                    None => {
                        let seq = r.uvarint()?;
                        let stamp = r.stamp(g.genesis_ms)?;
                        (seq, stamp, read_ops(&mut r, g, &mut added)?)
                    }
                    Some(p) => {
                        let h = r.u8()?;
                        let gap = if h & 1 == 1 { r.uvarint()? } else { 0 };
                        let seq = p.seq.checked_add(gap).and_then(|x| x.checked_add(1)).ok_or(DecodeError::Malformed("sequence overflow"))?;
                        let nib = u64::from(h >> 4);
                        let stamp = if nib == 15 {
                            r.stamp(p.stamp.ms())?
                        } else {
                            let ms = p.stamp.ms().checked_add(nib).filter(|ms| *ms < 1 << 48).ok_or(DecodeError::Malformed("stamp out of range"))?;
                            Hlc::new(ms, 0)
                        };
                        let nops = usize::from((h >> 1) & 7);
                        let count = if nops == 7 { r.count()? } else { nops + 1 };
                        (seq, stamp, read_ops_body(&mut r, g, &mut added, count)?)
                    }
                };
                if seq == 0 || (i > 0 && out.last().is_some_and(|p| stamp <= p.stamp)) {
                    return Err(DecodeError::Malformed("deltas out of order"));
                }
                out.push(Delta { origin: sender, seq, stamp, ops });
            }
            Frame::Deltas(out)
        }
        2 | DIGEST_COMPACT => {
            let table = read_origins(&mut r, g.roster)?;
            let context = read_context(&mut r, &table)?;
            let hash = r.fixed::<16>()?;
            let n = r.count()?;
            let compact = kind == DIGEST_COMPACT;
            let base = if compact && n > 0 {
                g.genesis_ms.checked_add(r.uvarint()?).ok_or(DecodeError::Malformed("stamp base out of range"))?
            } else {
                g.genesis_ms
            };
            let mut acks = Vec::with_capacity(n);
            for _ in 0..n {
                let member = read_origin(&mut r, &table)?;
                let hlc = r.stamp(base)?;
                let own_hlc = r.stamp(if compact { hlc.ms() } else { g.genesis_ms })?;
                if compact && own_hlc < hlc {
                    return Err(DecodeError::Malformed("an ack's own stamp below its stamp"));
                }
                acks.push(Ack { member, hlc, own_hlc, own_seq: r.uvarint()? });
            }
            Frame::Digest(Digest { context, hash, acks })
        }
        3 => {
            let table = read_origins(&mut r, g.roster)?;
            Frame::Want(read_context(&mut r, &table)?)
        }
        4 => {
            // Membership deltas may add members that the origin table names: resolve the
            // table against the roster plus those members.
            let n_orig = r.count()?;
            let mut shorts = Vec::with_capacity(n_orig);
            for _ in 0..n_orig {
                shorts.push(u64::from_le_bytes(r.fixed::<8>()?));
            }
            let n = r.count()?;
            let mut raw = Vec::with_capacity(n);
            for _ in 0..n {
                let idx = r.uvarint()?;
                let seq = r.uvarint()?;
                let stamp = r.stamp(g.genesis_ms)?;
                let ops = read_ops(&mut r, g, &mut added)?;
                raw.push((idx, seq, stamp, ops));
            }
            let table = shorts
                .iter()
                .map(|s| g.roster.get(s).or_else(|| added.get(s)).copied().ok_or(DecodeError::UnknownOrigin(*s)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut deltas = Vec::with_capacity(raw.len());
            for (idx, seq, stamp, ops) in raw {
                let origin = usize::try_from(idx).ok().and_then(|i| table.get(i)).copied().ok_or(DecodeError::Malformed("origin index out of the frame's table"))?;
                if seq == 0 {
                    return Err(DecodeError::Malformed("sequence number 0"));
                }
                deltas.push(Delta { origin, seq, stamp, ops });
            }
            let context = read_context(&mut r, &table)?;
            let n = r.count()?;
            let mut facts = Vec::with_capacity(n.min(1 << 16));
            let base = if n > 0 {
                g.genesis_ms.checked_add(r.uvarint()?).ok_or(DecodeError::Malformed("stamp base out of range"))?
            } else {
                g.genesis_ms
            };
            let mut reg_acc = 0u64;
            for _ in 0..n {
                reg_acc = reg_acc.checked_add(r.uvarint()?).ok_or(DecodeError::Malformed("register id out of range"))?;
                let reg = RegisterId(u32::try_from(reg_acc).map_err(|_| DecodeError::Malformed("register id out of range"))?);
                let fo = r.uvarint()?;
                let code = (fo & 7) as u8;
                let f = fo >> 3;
                let field = FieldId(u16::try_from(f).map_err(|_| DecodeError::UnknownField(f))?);
                let def = g.schema.def(field).ok_or(DecodeError::UnknownField(f))?;
                let fits = match code {
                    0 => policy_fits(def.policy, 0),
                    1 => policy_fits(def.policy, 1),
                    2 | 3 => policy_fits(def.policy, 2),
                    4 => policy_fits(def.policy, 4),
                    c => return Err(DecodeError::UnknownOp(c)),
                };
                if !fits {
                    return Err(DecodeError::OpDoesNotFitField(code));
                }
                let fact = match code {
                    0 | 4 => {
                        let value = r.value(def.kind)?;
                        let stamp = r.stamp(base)?;
                        let w = Write { value, stamp, dot: read_dot(&mut r, &table)? };
                        if code == 0 { Fact::Write(w) } else { Fact::Entry(w) }
                    }
                    1 => {
                        let origin = read_origin(&mut r, &table)?;
                        let upto = r.uvarint()?;
                        let sum = r.svarint()?;
                        let upto_stamp = r.stamp(base)?;
                        let k = r.count()?;
                        let mut extras = BTreeMap::new();
                        for _ in 0..k {
                            let seq = r.uvarint()?;
                            let amount = r.svarint()?;
                            let st = r.stamp(base)?;
                            if seq <= upto || extras.insert(seq, (amount, st)).is_some() {
                                return Err(DecodeError::Malformed("counter part extras overlap"));
                            }
                        }
                        Fact::Count { origin, part: CounterPart { upto, sum, upto_stamp, extras } }
                    }
                    2 => {
                        let value = r.value(def.kind)?;
                        let dot = read_dot(&mut r, &table)?;
                        Fact::Add { value, dot, stamp: r.stamp(base)? }
                    }
                    _ => {
                        let removed = read_dot(&mut r, &table)?;
                        let by = read_dot(&mut r, &table)?;
                        Fact::Tomb { removed, by, stamp: r.stamp(base)? }
                    }
                };
                facts.push((reg, field, fact));
            }
            Frame::State(StateMsg { context, facts, deltas })
        }
        5 => {
            let tag = r.u8()?;
            let epoch = r.uvarint()?;
            let ballot = r.ballot()?;
            Frame::Paxos(match tag {
                0 => {
                    let n = r.count()?;
                    let removing = (0..n).map(|_| r.fixed::<32>().map(EndpointId)).collect::<Result<Vec<_>, _>>()?;
                    PaxosMsg::Prepare { epoch, ballot, removing }
                }
                1 => {
                    let (accepted, coverage) = r.promise_rest(g)?;
                    PaxosMsg::Promise { epoch, ballot, accepted, coverage }
                }
                2 => PaxosMsg::Accept { epoch, ballot, value: read_membership_ops(&mut r, g)? },
                3 => PaxosMsg::Accepted { epoch, ballot },
                t => return Err(DecodeError::UnknownOp(t)),
            })
        }
        6 => {
            let hlc = r.stamp(g.genesis_ms)?;
            let own_hlc = r.stamp(hlc.ms())?;
            if own_hlc < hlc {
                return Err(DecodeError::Malformed("an ack's own stamp below its stamp"));
            }
            Frame::Ack(Ack { member: sender, hlc, own_hlc, own_seq: r.uvarint()? })
        }
        k => return Err(DecodeError::UnknownFrameKind(k)),
    };
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - r.pos));
    }
    Ok(frame)
}

// ---------------------------------------------------------------- durable records

/// The version of the record encoding (the ledger's on-disk format of [`Record`]s).
pub const RECORD_VERSION: u8 = 1;

/// Encode a durable record for storage. Deltas carry their origin's full id, since no sender
/// frames them; other origins are short ids resolved against the group's roster on decode, so
/// the store must keep the roster (it only grows) with the records.
///
/// ```
/// # use spook_core::{codec, Hlc, Record, Schema};
/// # use std::collections::BTreeMap;
/// let schema = Schema::fleet();
/// let bytes = codec::encode_record(&schema, 1_000, &Record::Hwm(Hlc::new(2_000, 3)));
/// let roster = BTreeMap::new();
/// let g = codec::GroupView { schema: &schema, genesis_ms: 1_000, roster: &roster, limits: Default::default() };
/// assert_eq!(codec::decode_record(&g, &bytes), Ok(Record::Hwm(Hlc::new(2_000, 3))));
/// ```
#[must_use]
pub fn encode_record(schema: &Schema, genesis_ms: u64, rec: &Record) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    match rec {
        Record::Delta(d) => {
            out.push(1);
            out.extend_from_slice(&d.origin.0);
            out.extend_from_slice(&encode_deltas(schema, genesis_ms, std::slice::from_ref(d)));
        }
        Record::State(s) => {
            out.push(2);
            out.extend_from_slice(&encode_state(schema, genesis_ms, s));
        }
        Record::Hwm(h) => {
            out.push(3);
            out.extend_from_slice(&h.0.to_le_bytes());
        }
        Record::Frontier(h) => {
            out.push(4);
            out.extend_from_slice(&h.0.to_le_bytes());
        }
        Record::Paxos { epoch, promised, accepted, frozen } => {
            out.push(5);
            put_promise(&mut out, schema, *epoch, promised, accepted.as_ref(), frozen);
        }
    }
    out
}

/// Decode a record written by [`encode_record`]. Never panics; a damaged record is a
/// [`DecodeError`].
pub fn decode_record(g: &GroupView<'_>, bytes: &[u8]) -> Result<Record, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != RECORD_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (&tag, body) = rest.split_first().ok_or(DecodeError::Truncated(1))?;
    let stamp = |b: &[u8]| -> Result<Hlc, DecodeError> {
        let a: [u8; 8] = b.try_into().map_err(|_| DecodeError::Malformed("a stamp record holds 8 bytes"))?;
        Ok(Hlc(u64::from_le_bytes(a)))
    };
    match tag {
        1 => {
            let origin = body.get(..32).ok_or(DecodeError::Truncated(bytes.len()))?;
            let mut id = [0u8; 32];
            id.copy_from_slice(origin);
            match decode(g, EndpointId(id), &body[32..])? {
                Frame::Deltas(mut v) if v.len() == 1 => Ok(Record::Delta(v.remove(0))),
                _ => Err(DecodeError::Malformed("a delta record holds one delta")),
            }
        }
        2 => match decode(g, EndpointId([0; 32]), body)? {
            Frame::State(s) => Ok(Record::State(s)),
            _ => Err(DecodeError::Malformed("a state record holds a state frame")),
        },
        3 => Ok(Record::Hwm(stamp(body)?)),
        4 => Ok(Record::Frontier(stamp(body)?)),
        5 => {
            let mut r = Reader { b: bytes, pos: 2, limits: g.limits };
            let epoch = r.uvarint()?;
            let promised = r.ballot()?;
            let (accepted, frozen) = r.promise_rest(g)?;
            if r.pos != bytes.len() {
                return Err(DecodeError::TrailingBytes(bytes.len() - r.pos));
            }
            Ok(Record::Paxos { epoch, promised, accepted, frozen })
        }
        t => Err(DecodeError::UnknownFrameKind(t)),
    }
}
