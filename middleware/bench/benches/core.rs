//! (criterion_group! generates an undocumented function.)
#![allow(missing_docs)]
//! Criterion micro-benchmarks of the hot paths of `spook-core`: encoding a one-update frame,
//! decoding it, and applying it at a remote replica (decode + merge + hash + bookkeeping).
//! The cross-system table (yrs, automerge, loro, PoseStamped) is `examples/compare.rs`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use spook_core::codec::{self, GroupView, Limits};
use spook_core::{Action, Delta, EndpointId, FieldId, GroupConfig, GroupId, Hlc, MergePolicy, Op, RegisterId, Replica, Schema, Value, ValueKind};

fn schema() -> Schema {
    ["x", "y", "z", "qw", "qx", "qy", "qz", "battery"].iter().fold(Schema::new(), |s, f| s.field(f, ValueKind::F64, MergePolicy::LastWriterWins))
}

fn deltas(origin: EndpointId, n: u64) -> Vec<Delta> {
    (1..=n)
        .map(|i| Delta {
            origin,
            seq: i,
            stamp: Hlc::new(2_000 + i, 0),
            ops: vec![Op::Field { reg: RegisterId((i * 7919 % 1000) as u32), field: FieldId((i % 8) as u16), action: Action::Set(Value::F64(i as f64 * 0.25)) }],
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let s = schema();
    let a = EndpointId::from_index(1);
    let b = EndpointId::from_index(2);
    let ds = deltas(a, 1_000);
    let frames: Vec<Vec<u8>> = ds.iter().map(|d| codec::encode_deltas(&s, 1_000, std::slice::from_ref(d))).collect();
    let roster = [(a.short(), a), (b.short(), b)].into_iter().collect();
    let g = GroupView { schema: &s, genesis_ms: 1_000, roster: &roster, limits: Limits::default() };

    let mut grp = c.benchmark_group("one-update frame");
    grp.throughput(Throughput::Elements(1));
    grp.bench_function("encode", |bn| bn.iter(|| codec::encode_deltas(&s, 1_000, std::slice::from_ref(&ds[500]))));
    grp.bench_function("decode", |bn| bn.iter(|| codec::decode(&g, a, &frames[500])));
    grp.finish();

    // Steady state: the receiver already holds all 1,000 x 8 fields (written by `a` earlier,
    // as an 8-field delta per entity), so updates replace existing fields.
    let initial: Vec<Vec<u8>> = (0..1_000u32)
        .map(|e| {
            let d = Delta {
                origin: b,
                seq: u64::from(e) + 1,
                stamp: Hlc::new(1_500 + u64::from(e) / 10, (e % 10) as u16),
                ops: (0..8u16).map(|f| Op::Field { reg: RegisterId(e), field: FieldId(f), action: Action::Set(Value::F64(0.0)) }).collect(),
            };
            codec::encode_deltas(&s, 1_000, &[d])
        })
        .collect();
    let c_id = EndpointId::from_index(3);
    let fresh = || {
        let mut r = Replica::new(c_id, GroupConfig::new(GroupId([1; 16]), s.clone(), 1_000, vec![a, b, c_id]), 5_000);
        for f in &initial {
            r.handle_frame(b, f, 5_000);
        }
        while r.poll_event().is_some() {}
        r
    };
    let mut grp = c.benchmark_group("remote apply");
    grp.throughput(Throughput::Elements(frames.len() as u64));
    grp.bench_function("1000 one-update frames", |bn| {
        bn.iter_batched(
            fresh,
            |mut r| {
                for f in &frames {
                    r.handle_frame(a, f, 5_000);
                }
                r
            },
            BatchSize::LargeInput,
        );
    });
    let batched: Vec<Vec<u8>> = ds.chunks(100).map(|c| codec::encode_deltas(&s, 1_000, c)).collect();
    grp.bench_function("1000 updates in frames of 100", |bn| {
        bn.iter_batched(
            fresh,
            |mut r| {
                for f in &batched {
                    r.handle_frame(a, f, 5_000);
                }
                r
            },
            BatchSize::LargeInput,
        );
    });
    grp.finish();

    // The same field operations, eight per delta (a whole entity: pose and battery).
    let wide: Vec<Delta> = (1..=125u64)
        .map(|i| Delta {
            origin: a,
            seq: i,
            stamp: Hlc::new(2_000 + i, 0),
            ops: (0..8u16)
                .map(|f| Op::Field { reg: RegisterId((i * 7919 % 1000) as u32), field: FieldId(f), action: Action::Set(Value::F64(i as f64 + f64::from(f))) })
                .collect(),
        })
        .collect();
    let wide_frames: Vec<Vec<u8>> = wide.iter().map(|d| codec::encode_deltas(&s, 1_000, std::slice::from_ref(d))).collect();
    let mut grp = c.benchmark_group("remote apply, field ops");
    grp.throughput(Throughput::Elements(1_000));
    grp.bench_function("1000 field ops as 125 eight-field deltas", |bn| {
        bn.iter_batched(
            fresh,
            |mut r| {
                for f in &wide_frames {
                    r.handle_frame(a, f, 5_000);
                }
                r
            },
            BatchSize::LargeInput,
        );
    });
    grp.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
