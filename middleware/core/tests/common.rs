//! Shared helpers for the core's integration tests: generate valid delta sets and drive
//! replicas with them.
#![allow(dead_code, unreachable_pub, missing_docs)]

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use spook_core::codec::{self, Ack, Digest};
use spook_core::*;

pub const GENESIS: u64 = 1_000;

pub fn origins(n: u32) -> Vec<EndpointId> {
    (0..n).map(EndpointId::from_index).collect()
}

pub fn config(members: &[EndpointId]) -> GroupConfig {
    let mut c = GroupConfig::new(GroupId([9; 16]), Schema::fleet(), GENESIS, members.to_vec());
    c.max_future_ms = u64::MAX / 4;
    c
}

pub fn serial_config(members: &[EndpointId]) -> GroupConfig {
    let mut c = config(members);
    c.kind = GroupKind::Serial;
    c
}

/// Deltas written by real replicas, one per step; `script` picks (origin, op kind, register, value).
pub fn generate(members: &[EndpointId], script: &[(u8, u8, u8, i16)]) -> Vec<Delta> {
    let cfg = config(members);
    let mut writers: Vec<Replica> = members.iter().map(|m| Replica::new(*m, cfg.clone(), GENESIS)).collect();
    let mut out = Vec::new();
    let mut now = GENESIS + 1;
    for &(o, kind, reg, v) in script {
        let o = usize::from(o) % writers.len();
        now += 1 + (v.unsigned_abs() % 3) as u64;
        let reg = RegisterId(u32::from(reg % 6));
        let x = f64::from(v) / 8.0;
        let w = &mut writers[o];
        let op = match kind % 8 {
            0 | 1 => Op::Field { reg, field: FieldId(u16::from(kind % 3)), action: Action::Set(Value::F64(x)) },
            2 => Op::Field { reg, field: FieldId(4), action: Action::Set(Value::F64(x)) },
            3 => Op::Field { reg, field: FieldId(8), action: Action::Set(Value::F64(x)) },
            4 => Op::Field { reg, field: FieldId(5), action: Action::Add(i64::from(v)) },
            5 => Op::Field { reg, field: FieldId(6), action: Action::Insert(Value::I64(i64::from(v % 3))) },
            6 => {
                let value = Value::I64(i64::from(v % 3));
                let observed = w.observed_adds(reg, FieldId(6), &value);
                Op::Field { reg, field: FieldId(6), action: Action::Remove { value, observed } }
            }
            _ => Op::Field { reg, field: FieldId(7), action: Action::Append(Value::I64(i64::from(v))) },
        };
        w.write(now, vec![op]).expect("generated write fits the schema");
        let me = w.me();
        let mut frames = Vec::new();
        while let Some(p) = w.poll_persist() {
            for rec in &p.records {
                if let Record::Delta(d) = rec {
                    if d.origin == me {
                        out.push(d.clone());
                    }
                }
            }
            w.handle_persisted(p.id, now);
        }
        while let Some(t) = w.poll_transmit() {
            frames.push(t.bytes);
        }
        // Writers see each other's deltas at once, so removes observe real adds.
        for (j, other) in writers.iter_mut().enumerate() {
            if j != o {
                for f in &frames {
                    other.handle_frame(me, f, now);
                }
            }
            settle(other, now);
        }
    }
    out
}

/// Feed one delta to a replica as its origin's `Deltas` frame, then make everything durable.
pub fn feed(r: &mut Replica, d: &Delta, now: u64) {
    let bytes = codec::encode_deltas(r.schema(), GENESIS, std::slice::from_ref(d));
    r.handle_frame(d.origin, &bytes, now);
    settle(r, now);
}

pub fn settle(r: &mut Replica, now: u64) {
    while let Some(p) = r.poll_persist() {
        r.handle_persisted(p.id, now);
    }
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
}

/// Deliver acks from every origin, as digests.
pub fn ack(r: &mut Replica, acks: &[Ack], now: u64) {
    for a in acks {
        let d = Digest { context: CausalContext::default(), hash: [0; 16], acks: vec![*a] };
        let bytes = codec::encode_digest(GENESIS, &d);
        r.handle_frame(a.member, &bytes, now);
    }
    r.handle_timeout(now);
    settle(r, now);
}

/// The field task claims write (the fleet schema's `owner`).
pub const OWNER: FieldId = FieldId(9);

/// A transaction claiming `task` for `who` if nobody holds it.
pub fn claim(client: EndpointId, seq: u64, task: u32, who: &str, deadline_ms: u64) -> Txn {
    Txn {
        id: OpId { client, seq },
        deadline_ms,
        after: vec![],
        preconditions: vec![Precondition::Absent { reg: RegisterId(task), field: OWNER }],
        writes: vec![TxnWrite { reg: RegisterId(task), field: OWNER, value: Value::from(who), lease_ms: None }],
    }
}

/// Deliver every frame between the replicas until quiet, ticking clocks by `step` ms.
pub fn run(rs: &mut [Replica], now: &mut u64, step: u64, rounds: usize, events: &mut Vec<(usize, Event)>) -> usize {
    run_with_disks(rs, None, now, step, rounds, events)
}

/// As [`run`]; with `disks`, every persisted batch is also appended to its replica's disk.
pub fn run_with_disks(
    rs: &mut [Replica],
    disks: Option<&mut [Vec<Record>]>,
    now: &mut u64,
    step: u64,
    rounds: usize,
    events: &mut Vec<(usize, Event)>,
) -> usize {
    run_linked(rs, disks, &|_, _| true, now, step, rounds, events)
}

/// As [`run`], in a split: a frame from replica i reaches replica j only if both are on the
/// same side (`side[i] == side[j]`).
pub fn run_split(rs: &mut [Replica], side: &[u8], now: &mut u64, step: u64, rounds: usize, events: &mut Vec<(usize, Event)>) -> usize {
    run_linked(rs, None, &|i, j| side[i] == side[j], now, step, rounds, events)
}

/// As [`run_with_disks`], delivering a frame from i to j only where `link(i, j)`.
pub fn run_linked(
    rs: &mut [Replica],
    mut disks: Option<&mut [Vec<Record>]>,
    link: &dyn Fn(usize, usize) -> bool,
    now: &mut u64,
    step: u64,
    rounds: usize,
    events: &mut Vec<(usize, Event)>,
) -> usize {
    let mut bytes = 0;
    for _ in 0..rounds {
        *now += step;
        for r in rs.iter_mut() {
            r.handle_timeout(*now);
        }
        for _ in 0..16 {
            let mut frames = Vec::new();
            for (i, r) in rs.iter_mut().enumerate() {
                while let Some(p) = r.poll_persist() {
                    if let Some(d) = disks.as_deref_mut() {
                        d[i].extend(p.records.iter().cloned());
                    }
                    r.handle_persisted(p.id, *now);
                }
                while let Some(e) = r.poll_event() {
                    events.push((i, e));
                }
                while let Some(t) = r.poll_transmit() {
                    frames.push((i, t));
                }
            }
            if frames.is_empty() {
                break;
            }
            for (i, t) in frames {
                let from = rs[i].me();
                for (j, r) in rs.iter_mut().enumerate() {
                    let to_j = match t.dest {
                        Dest::Members => j != i,
                        Dest::Peer(p) => p == r.me(),
                    };
                    if to_j && link(i, j) {
                        bytes += t.bytes.len();
                        r.handle_frame(from, &t.bytes, *now);
                    }
                }
            }
        }
    }
    bytes
}

