//! The baselines: the shared [`Workload`] run through `yrs`, `automerge`,
//! `loro` and a full-message ROS 2 stream (`PoseStamped` / `BatteryState`).
//!
//! The CRDT baselines model the fleet as a nested map: root map `"fleet"`
//! → one map per entity (key = the entity number as a decimal string) → the
//! eight `f64` fields of [`FIELDS`]. Two replicas start from the same synced
//! initial state (A builds it, B loads A's full state). Then:
//!
//! * **stream**: A applies each of `w.updates` as its own transaction /
//!   commit and produces the incremental update bytes for just that change;
//!   B applies each blob in order. This yields `bytes_per_update`,
//!   `local_write_ns` (write + producing the bytes) and
//!   `remote_apply_ops_per_s` (decode + apply at B).
//! * **heal**: two fresh synced replicas diverge (A applies `w.side_a`, B
//!   applies `w.side_b`, one commit per update) and re-align with each
//!   system's own incremental sync; every byte in both directions counts.
//!
//! Every run checks that the replicas hold identical values afterwards and
//! panics otherwise. Transport framing (WebSocket, RTPS, …) is counted for
//! no system.

use std::collections::HashMap;
use std::time::Instant;

use crate::workload::{Update, Workload, FIELDS};

/// What one baseline measured on one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineResult {
    /// Name of the system.
    pub system: &'static str,
    /// Mean size in bytes of the incremental update shipped for one
    /// single-field write (each of `w.updates` encoded on its own).
    pub bytes_per_update: f64,
    /// Mean nanoseconds per local single-field write, including producing
    /// its update bytes.
    pub local_write_ns: f64,
    /// Field updates per second applied (decoded and integrated) at a second
    /// replica.
    pub remote_apply_ops_per_s: f64,
    /// Total bytes, both directions, to re-align two replicas that diverged
    /// with `w.side_a` / `w.side_b`.
    pub heal_bytes: usize,
}

/// Index of (`entity`, `field`) in a canonical dump.
fn slot(entity: u32, field: u8) -> usize {
    entity as usize * FIELDS.len() + usize::from(field)
}

/// Field name of an update.
fn field_name(u: &Update) -> &'static str {
    FIELDS[usize::from(u.field)]
}

/// Panics unless two canonical dumps are bit-for-bit identical.
fn assert_same(system: &str, what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{system}: {what}: dump lengths differ");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        panic!(
            "{system}: {what}: replicas differ at entity {} field {}: {} vs {}",
            i / FIELDS.len(),
            FIELDS[i % FIELDS.len()],
            a[i],
            b[i]
        );
    }
}

/// Panics unless a healed CRDT state kept every write: a field written by
/// one side only holds that side's last value, a field written by both sides
/// holds one of the two last values, any other field its initial value.
fn assert_heal_kept_writes(system: &str, w: &Workload, healed: &[f64]) {
    let last = |side: &[Update]| -> HashMap<usize, f64> {
        side.iter()
            .map(|u| (slot(u.entity, u.field), u.value))
            .collect()
    };
    let (a, b) = (last(&w.side_a), last(&w.side_b));
    for u in &w.initial {
        let i = slot(u.entity, u.field);
        let got = healed[i].to_bits();
        let ok = match (a.get(&i), b.get(&i)) {
            (None, None) => got == u.value.to_bits(),
            (Some(x), None) | (None, Some(x)) => got == x.to_bits(),
            (Some(x), Some(y)) => got == x.to_bits() || got == y.to_bits(),
        };
        assert!(ok, "{system}: heal lost a write at slot {i}");
    }
}

/// Per-update mean of a total duration.
fn per_op_ns(elapsed: std::time::Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

/// Ops per second for `ops` operations done in `elapsed`.
fn ops_per_s(elapsed: std::time::Duration, ops: usize) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-12)
}

/// Mean length of the blobs.
fn mean_len(blobs: &[Vec<u8>]) -> f64 {
    blobs.iter().map(Vec::len).sum::<usize>() as f64 / blobs.len().max(1) as f64
}

// ---------------------------------------------------------------------------
// yrs
// ---------------------------------------------------------------------------

mod y {
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{
        Any, Doc, Map, MapPrelim, MapRef, Number, Out, ReadTxn, StateVector, Transact, Update,
    };

    use crate::workload::{Workload, FIELDS};

    /// Client ids in the 32-bit range Yjs itself draws from.
    pub(super) const CLIENT_A: u64 = 0x9E37_79B9;
    pub(super) const CLIENT_B: u64 = 0x7F4A_7C15;

    /// Replica A with the initial state, and replica B loaded from A's full state.
    pub(super) fn synced_pair(w: &Workload) -> (Doc, Doc) {
        let a = Doc::with_client_id(CLIENT_A);
        let fleet = a.get_or_insert_map("fleet");
        {
            let mut txn = a.transact_mut();
            for chunk in w.initial.chunks(FIELDS.len()) {
                let prelim: MapPrelim = chunk
                    .iter()
                    .map(|u| (FIELDS[usize::from(u.field)], u.value))
                    .collect();
                fleet.insert(&mut txn, chunk[0].entity.to_string(), prelim);
            }
        }
        let full = a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let b = Doc::with_client_id(CLIENT_B);
        apply(&b, &full);
        (a, b)
    }

    /// Decodes and applies one v1 update.
    pub(super) fn apply(doc: &Doc, bytes: &[u8]) {
        let update = Update::decode_v1(bytes).expect("yrs: decode update");
        doc.transact_mut()
            .apply_update(update)
            .expect("yrs: apply update");
    }

    /// Handles of the entity maps, by entity number.
    pub(super) fn entity_maps(doc: &Doc, entities: u32) -> Vec<MapRef> {
        let fleet = doc.get_or_insert_map("fleet");
        let txn = doc.transact();
        (0..entities)
            .map(|e| match fleet.get(&txn, &e.to_string()) {
                Some(Out::YMap(m)) => m,
                other => panic!("yrs: entity {e} is not a map: {other:?}"),
            })
            .collect()
    }

    /// All `entities × 8` values, entity-major.
    pub(super) fn dump(doc: &Doc, maps: &[MapRef]) -> Vec<f64> {
        let txn = doc.transact();
        maps.iter()
            .flat_map(|m| FIELDS.iter().map(|f| (m.clone(), *f)))
            .map(|(m, f)| match m.get(&txn, f) {
                Some(Out::Any(Any::Number(Number::Float(v)))) => v,
                Some(Out::Any(Any::Number(Number::Int(v)))) => v as f64,
                other => panic!("yrs: field {f} is not a number: {other:?}"),
            })
            .collect()
    }

    /// Encodes a state vector.
    pub(super) fn state_vector(doc: &Doc) -> Vec<u8> {
        doc.transact().state_vector().encode_v1()
    }

    /// The update `doc` holds beyond the encoded state vector `sv`.
    pub(super) fn diff(doc: &Doc, sv: &[u8]) -> Vec<u8> {
        let sv = StateVector::decode_v1(sv).expect("yrs: decode state vector");
        doc.transact().encode_state_as_update_v1(&sv)
    }
}

/// `yrs` baseline. The incremental update of one write is the update of its
/// own transaction (`TransactionMut::encode_update_v1`: new blocks plus the
/// transaction's delete set — the bytes a Yjs provider broadcasts from
/// `observe_update_v1`). Healing exchanges v1 state vectors, then each side
/// sends `encode_state_as_update_v1(&other_sv)`; all four blobs count.
pub fn run_yrs(w: &Workload) -> BaselineResult {
    use yrs::{Map, Transact};
    const SYSTEM: &str = "yrs";

    let (a, b) = y::synced_pair(w);
    let (maps_a, maps_b) = (
        y::entity_maps(&a, w.entities),
        y::entity_maps(&b, w.entities),
    );
    let start = Instant::now();
    let blobs: Vec<Vec<u8>> = w
        .updates
        .iter()
        .map(|u| {
            let mut txn = a.transact_mut();
            maps_a[u.entity as usize].insert(&mut txn, field_name(u), u.value);
            txn.encode_update_v1()
        })
        .collect();
    let write = start.elapsed();
    let start = Instant::now();
    for blob in &blobs {
        y::apply(&b, blob);
    }
    let apply = start.elapsed();
    let (dump_a, dump_b) = (y::dump(&a, &maps_a), y::dump(&b, &maps_b));
    assert_same(SYSTEM, "stream", &dump_a, &dump_b);
    assert_same(
        SYSTEM,
        "stream vs workload",
        &dump_a,
        &w.final_stream_state(),
    );

    let (a, b) = y::synced_pair(w);
    let (maps_a, maps_b) = (
        y::entity_maps(&a, w.entities),
        y::entity_maps(&b, w.entities),
    );
    for (doc, maps, side) in [(&a, &maps_a, &w.side_a), (&b, &maps_b, &w.side_b)] {
        for u in side {
            let mut txn = doc.transact_mut();
            maps[u.entity as usize].insert(&mut txn, field_name(u), u.value);
        }
    }
    let (sv_a, sv_b) = (y::state_vector(&a), y::state_vector(&b));
    let (a_to_b, b_to_a) = (y::diff(&a, &sv_b), y::diff(&b, &sv_a));
    y::apply(&b, &a_to_b);
    y::apply(&a, &b_to_a);
    let heal_bytes = sv_a.len() + sv_b.len() + a_to_b.len() + b_to_a.len();
    let (dump_a, dump_b) = (y::dump(&a, &maps_a), y::dump(&b, &maps_b));
    assert_same(SYSTEM, "heal", &dump_a, &dump_b);
    assert_heal_kept_writes(SYSTEM, w, &dump_a);

    BaselineResult {
        system: SYSTEM,
        bytes_per_update: mean_len(&blobs),
        local_write_ns: per_op_ns(write, w.updates.len()),
        remote_apply_ops_per_s: ops_per_s(apply, w.updates.len()),
        heal_bytes,
    }
}

// ---------------------------------------------------------------------------
// automerge
// ---------------------------------------------------------------------------

mod am {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

    use crate::workload::{Workload, FIELDS};

    /// A 16-byte actor id, the size of the UUIDs automerge generates.
    pub(super) fn actor(tag: u8) -> ActorId {
        ActorId::from(
            (0u8..16)
                .map(|i| tag.wrapping_mul(31).wrapping_add(i.wrapping_mul(73)))
                .collect::<Vec<u8>>(),
        )
    }

    /// Replica A with the initial state (one change), and replica B loaded
    /// from A's saved document. A's `save_incremental` cursor starts there.
    pub(super) fn synced_pair(w: &Workload) -> (AutoCommit, AutoCommit) {
        let mut a = AutoCommit::new().with_actor(actor(1));
        let fleet = a
            .put_object(ROOT, "fleet", ObjType::Map)
            .expect("automerge: put fleet");
        for chunk in w.initial.chunks(FIELDS.len()) {
            let m = a
                .put_object(&fleet, chunk[0].entity.to_string(), ObjType::Map)
                .expect("automerge: put entity");
            for u in chunk {
                a.put(&m, FIELDS[usize::from(u.field)], u.value)
                    .expect("automerge: put field");
            }
        }
        a.commit();
        let full = a.save();
        let b = AutoCommit::load(&full)
            .expect("automerge: load")
            .with_actor(actor(2));
        (a, b)
    }

    /// Object ids of the entity maps, by entity number.
    pub(super) fn entity_objs(doc: &AutoCommit, entities: u32) -> Vec<ObjId> {
        let fleet = match doc.get(ROOT, "fleet").expect("automerge: get fleet") {
            Some((Value::Object(ObjType::Map), id)) => id,
            other => panic!("automerge: fleet is not a map: {other:?}"),
        };
        (0..entities)
            .map(|e| match doc.get(&fleet, e.to_string()) {
                Ok(Some((Value::Object(ObjType::Map), id))) => id,
                other => panic!("automerge: entity {e} is not a map: {other:?}"),
            })
            .collect()
    }

    /// All `entities × 8` values, entity-major.
    pub(super) fn dump(doc: &AutoCommit, objs: &[ObjId]) -> Vec<f64> {
        objs.iter()
            .flat_map(|o| FIELDS.iter().map(move |f| (o, *f)))
            .map(|(o, f)| match doc.get(o, f) {
                Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                    ScalarValue::F64(v) => *v,
                    other => panic!("automerge: field {f} is not an f64: {other:?}"),
                },
                other => panic!("automerge: field {f} missing: {other:?}"),
            })
            .collect()
    }
}

/// `automerge` baseline. The incremental update of one write is
/// `AutoCommit::save_incremental()` right after the write, i.e. the raw
/// bytes of the one change it commits (actor, seq, start op, deps hash,
/// time, ops — what automerge-repo would otherwise ship inside a sync
/// message); B applies it with `load_incremental`. Healing runs the
/// `automerge::sync` protocol between fresh `sync::State`s (a new connection
/// after the partition) until neither side generates a message; every
/// message's encoded bytes count.
pub fn run_automerge(w: &Workload) -> BaselineResult {
    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;
    const SYSTEM: &str = "automerge";

    let (mut a, mut b) = am::synced_pair(w);
    let (objs_a, objs_b) = (
        am::entity_objs(&a, w.entities),
        am::entity_objs(&b, w.entities),
    );
    let start = Instant::now();
    let blobs: Vec<Vec<u8>> = w
        .updates
        .iter()
        .map(|u| {
            a.put(&objs_a[u.entity as usize], field_name(u), u.value)
                .expect("automerge: put");
            a.save_incremental()
        })
        .collect();
    let write = start.elapsed();
    let start = Instant::now();
    for blob in &blobs {
        b.load_incremental(blob)
            .expect("automerge: load_incremental");
    }
    let apply = start.elapsed();
    let (dump_a, dump_b) = (am::dump(&a, &objs_a), am::dump(&b, &objs_b));
    assert_same(SYSTEM, "stream", &dump_a, &dump_b);
    assert_same(
        SYSTEM,
        "stream vs workload",
        &dump_a,
        &w.final_stream_state(),
    );

    let (mut a, mut b) = am::synced_pair(w);
    let (objs_a, objs_b) = (
        am::entity_objs(&a, w.entities),
        am::entity_objs(&b, w.entities),
    );
    for (doc, objs, side) in [(&mut a, &objs_a, &w.side_a), (&mut b, &objs_b, &w.side_b)] {
        for u in side {
            doc.put(&objs[u.entity as usize], field_name(u), u.value)
                .expect("automerge: put");
            doc.commit();
        }
    }
    let (mut state_a, mut state_b) = (sync::State::new(), sync::State::new());
    let mut heal_bytes = 0;
    // Ships one message over the "wire": encode, count, decode.
    let mut wire = |m: sync::Message| {
        let bytes = m.encode();
        heal_bytes += bytes.len();
        sync::Message::decode(&bytes).expect("automerge: decode sync message")
    };
    for round in 0.. {
        assert!(round < 100, "automerge: sync did not terminate");
        let a_to_b = a.sync().generate_sync_message(&mut state_a).map(&mut wire);
        let sent_a = a_to_b.is_some();
        if let Some(m) = a_to_b {
            b.sync()
                .receive_sync_message(&mut state_b, m)
                .expect("automerge: receive at B");
        }
        let b_to_a = b.sync().generate_sync_message(&mut state_b).map(&mut wire);
        let sent_b = b_to_a.is_some();
        if let Some(m) = b_to_a {
            a.sync()
                .receive_sync_message(&mut state_a, m)
                .expect("automerge: receive at A");
        }
        if !sent_a && !sent_b {
            break;
        }
    }
    let (dump_a, dump_b) = (am::dump(&a, &objs_a), am::dump(&b, &objs_b));
    assert_same(SYSTEM, "heal", &dump_a, &dump_b);
    assert_heal_kept_writes(SYSTEM, w, &dump_a);

    BaselineResult {
        system: SYSTEM,
        bytes_per_update: mean_len(&blobs),
        local_write_ns: per_op_ns(write, w.updates.len()),
        remote_apply_ops_per_s: ops_per_s(apply, w.updates.len()),
        heal_bytes,
    }
}

// ---------------------------------------------------------------------------
// loro
// ---------------------------------------------------------------------------

mod lo {
    use loro::{Container, ExportMode, LoroDoc, LoroMap, LoroValue, ValueOrContainer};

    use crate::workload::{Workload, FIELDS};

    /// Peer ids: random-looking 64-bit values, like loro's own.
    pub(super) const PEER_A: u64 = 0xC2B2_AE3D_27D4_EB4F;
    pub(super) const PEER_B: u64 = 0x1656_67B1_9E37_79F9;

    /// A fresh document with a fixed peer id.
    fn doc(peer: u64) -> LoroDoc {
        let doc = LoroDoc::new();
        doc.set_peer_id(peer).expect("loro: set peer id");
        doc
    }

    /// Replica A with the initial state (one commit), and replica B that
    /// imported A's snapshot.
    pub(super) fn synced_pair(w: &Workload) -> (LoroDoc, LoroDoc) {
        let a = doc(PEER_A);
        let fleet = a.get_map("fleet");
        for chunk in w.initial.chunks(FIELDS.len()) {
            let m = fleet
                .insert_container(&chunk[0].entity.to_string(), LoroMap::new())
                .expect("loro: insert entity");
            for u in chunk {
                m.insert(FIELDS[usize::from(u.field)], u.value)
                    .expect("loro: insert field");
            }
        }
        a.commit();
        let snapshot = a.export(ExportMode::Snapshot).expect("loro: snapshot");
        let b = doc(PEER_B);
        b.import(&snapshot).expect("loro: import snapshot");
        (a, b)
    }

    /// Handles of the entity maps, by entity number.
    pub(super) fn entity_maps(doc: &LoroDoc, entities: u32) -> Vec<LoroMap> {
        let fleet = doc.get_map("fleet");
        (0..entities)
            .map(|e| match fleet.get(&e.to_string()) {
                Some(ValueOrContainer::Container(Container::Map(m))) => m,
                other => panic!("loro: entity {e} is not a map: {other:?}"),
            })
            .collect()
    }

    /// All `entities × 8` values, entity-major.
    pub(super) fn dump(maps: &[LoroMap]) -> Vec<f64> {
        maps.iter()
            .flat_map(|m| FIELDS.iter().map(move |f| (m, *f)))
            .map(|(m, f)| match m.get(f) {
                Some(ValueOrContainer::Value(LoroValue::Double(v))) => v,
                other => panic!("loro: field {f} is not a double: {other:?}"),
            })
            .collect()
    }
}

/// `loro` baseline. The incremental update of one write is
/// `export(ExportMode::updates(&vv_before))` right after its commit (a
/// self-describing "updates" blob with loro's header and checksum); B
/// applies it with `import`. Healing exchanges encoded oplog version vectors
/// (`VersionVector::encode`), then each side sends
/// `export(ExportMode::updates(&other_vv))`; all four blobs count.
pub fn run_loro(w: &Workload) -> BaselineResult {
    use loro::{ExportMode, LoroDoc, VersionVector};
    const SYSTEM: &str = "loro";

    let (a, b) = lo::synced_pair(w);
    let (maps_a, maps_b) = (
        lo::entity_maps(&a, w.entities),
        lo::entity_maps(&b, w.entities),
    );
    let start = Instant::now();
    let mut vv = a.oplog_vv();
    let blobs: Vec<Vec<u8>> = w
        .updates
        .iter()
        .map(|u| {
            maps_a[u.entity as usize]
                .insert(field_name(u), u.value)
                .expect("loro: insert");
            a.commit();
            let bytes = a
                .export(ExportMode::updates(&vv))
                .expect("loro: export updates");
            vv = a.oplog_vv();
            bytes
        })
        .collect();
    let write = start.elapsed();
    let start = Instant::now();
    for blob in &blobs {
        b.import(blob).expect("loro: import");
    }
    let apply = start.elapsed();
    let (dump_a, dump_b) = (lo::dump(&maps_a), lo::dump(&maps_b));
    assert_same(SYSTEM, "stream", &dump_a, &dump_b);
    assert_same(
        SYSTEM,
        "stream vs workload",
        &dump_a,
        &w.final_stream_state(),
    );

    let (a, b) = lo::synced_pair(w);
    let (maps_a, maps_b) = (
        lo::entity_maps(&a, w.entities),
        lo::entity_maps(&b, w.entities),
    );
    for (doc, maps, side) in [(&a, &maps_a, &w.side_a), (&b, &maps_b, &w.side_b)] {
        for u in side {
            maps[u.entity as usize]
                .insert(field_name(u), u.value)
                .expect("loro: insert");
            doc.commit();
        }
    }
    let (vv_a, vv_b) = (a.oplog_vv().encode(), b.oplog_vv().encode());
    let diff = |doc: &LoroDoc, vv: &[u8]| {
        let vv = VersionVector::decode(vv).expect("loro: decode version vector");
        doc.export(ExportMode::updates(&vv))
            .expect("loro: export updates")
    };
    let (a_to_b, b_to_a) = (diff(&a, &vv_b), diff(&b, &vv_a));
    b.import(&a_to_b).expect("loro: import at B");
    a.import(&b_to_a).expect("loro: import at A");
    let heal_bytes = vv_a.len() + vv_b.len() + a_to_b.len() + b_to_a.len();
    let (dump_a, dump_b) = (lo::dump(&maps_a), lo::dump(&maps_b));
    assert_same(SYSTEM, "heal", &dump_a, &dump_b);
    assert_heal_kept_writes(SYSTEM, w, &dump_a);

    BaselineResult {
        system: SYSTEM,
        bytes_per_update: mean_len(&blobs),
        local_write_ns: per_op_ns(write, w.updates.len()),
        remote_apply_ops_per_s: ops_per_s(apply, w.updates.len()),
        heal_bytes,
    }
}

// ---------------------------------------------------------------------------
// ROS 2 full messages
// ---------------------------------------------------------------------------

/// A minimal little-endian CDR (XCDR1, as ROS 2 over DDS uses) encoder and
/// decoder for `geometry_msgs/msg/PoseStamped` and
/// `sensor_msgs/msg/BatteryState`.
///
/// What is counted, per message: the 4-byte encapsulation header
/// (`00 01 00 00`, CDR_LE) plus the serialized payload, with each primitive
/// aligned to its own size relative to the payload start.
///
/// * `PoseStamped` with `frame_id = "map"`: `stamp.sec` i32 (4) +
///   `stamp.nanosec` u32 (4) + `frame_id` (u32 length 4 incl. NUL, then
///   `"map\0"`: 4) = 16, already 8-aligned, then `pose.position` 3×f64 (24)
///   and `pose.orientation` 4×f64 (32): payload 72, **76 bytes** in all.
///   (`frame_id = ""` is also 76: 13 bytes padded to 16.)
/// * `PoseStamped` carries no battery, so a battery write ships the ROS 2
///   standard `BatteryState` with `frame_id = ""`, empty arrays and strings
///   and `percentage` = the value: header 13 → pad 16, 7×f32 (28) → 44, three u8
///   and a bool → 48, two empty f32 sequences (2×4) → 56, `location` (4 + NUL)
///   → 61, pad → 64, `serial_number` (4 + NUL) → 69: **73 bytes**.
///   `percentage` is an f32, so the full-message replicas store battery
///   rounded to f32.
///
/// Not counted (for any system): RTPS/UDP headers and the topic name, which
/// DDS resolves at discovery; the receiver knows the entity from the topic
/// (`/robot_<entity>/pose`, `/robot_<entity>/battery`).
pub mod cdr {
    /// `geometry_msgs/msg/PoseStamped`: stamp, frame id and a 7-value pose
    /// (`x, y, z, qw, qx, qy, qz` in [`FIELDS`](crate::workload::FIELDS)
    /// order; on the wire the quaternion is `x, y, z, w`).
    #[derive(Clone, Debug, PartialEq)]
    pub struct PoseStamped {
        /// `header.stamp.sec`.
        pub sec: i32,
        /// `header.stamp.nanosec`.
        pub nanosec: u32,
        /// `header.frame_id`.
        pub frame_id: String,
        /// `x, y, z, qw, qx, qy, qz`.
        pub pose: [f64; 7],
    }

    /// The subset of `sensor_msgs/msg/BatteryState` this benchmark sets;
    /// every other field is serialized as zero / empty.
    #[derive(Clone, Debug, PartialEq)]
    pub struct BatteryState {
        /// `header.stamp.sec`.
        pub sec: i32,
        /// `header.stamp.nanosec`.
        pub nanosec: u32,
        /// `percentage`, 0 to 1.
        pub percentage: f32,
    }

    /// Encapsulation header: representation CDR_LE, options 0.
    const ENCAPSULATION: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

    /// A CDR writer; alignment counts from the end of the encapsulation header.
    struct Writer(Vec<u8>);

    impl Writer {
        fn new(capacity: usize) -> Self {
            let mut buf = Vec::with_capacity(capacity);
            buf.extend_from_slice(&ENCAPSULATION);
            Self(buf)
        }
        fn align(&mut self, n: usize) {
            while !(self.0.len() - ENCAPSULATION.len()).is_multiple_of(n) {
                self.0.push(0);
            }
        }
        fn u8(&mut self, v: u8) {
            self.0.push(v);
        }
        fn u32(&mut self, v: u32) {
            self.align(4);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn i32(&mut self, v: i32) {
            self.align(4);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn f32(&mut self, v: f32) {
            self.align(4);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn f64(&mut self, v: f64) {
            self.align(8);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn string(&mut self, s: &str) {
            self.u32(s.len() as u32 + 1);
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
        }
    }

    /// A CDR reader mirroring [`Writer`].
    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    /// Why a message failed to decode.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DecodeError(&'static str);

    impl<'a> Reader<'a> {
        fn new(buf: &'a [u8]) -> Result<Self, DecodeError> {
            if buf.get(..4) != Some(&ENCAPSULATION[..]) {
                return Err(DecodeError("not CDR_LE"));
            }
            Ok(Self { buf, pos: 4 })
        }
        fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
            while !(self.pos - ENCAPSULATION.len()).is_multiple_of(N) {
                self.pos += 1;
            }
            let bytes = self
                .buf
                .get(self.pos..self.pos + N)
                .ok_or(DecodeError("truncated"))?;
            self.pos += N;
            bytes.try_into().map_err(|_| DecodeError("truncated"))
        }
        fn u8(&mut self) -> Result<u8, DecodeError> {
            Ok(self.take::<1>()?[0])
        }
        fn u32(&mut self) -> Result<u32, DecodeError> {
            self.take::<4>().map(u32::from_le_bytes)
        }
        fn i32(&mut self) -> Result<i32, DecodeError> {
            self.take::<4>().map(i32::from_le_bytes)
        }
        fn f32(&mut self) -> Result<f32, DecodeError> {
            self.take::<4>().map(f32::from_le_bytes)
        }
        fn f64(&mut self) -> Result<f64, DecodeError> {
            self.take::<8>().map(f64::from_le_bytes)
        }
        fn string(&mut self) -> Result<String, DecodeError> {
            let len = self.u32()? as usize;
            let bytes = self
                .buf
                .get(self.pos..self.pos + len)
                .ok_or(DecodeError("truncated string"))?;
            self.pos += len;
            match bytes.split_last() {
                Some((0, text)) => std::str::from_utf8(text)
                    .map(str::to_owned)
                    .map_err(|_| DecodeError("string not UTF-8")),
                _ => Err(DecodeError("string not NUL-terminated")),
            }
        }
        fn skip_f32_sequence(&mut self) -> Result<(), DecodeError> {
            let n = self.u32()?;
            for _ in 0..n {
                self.f32()?;
            }
            Ok(())
        }
        fn finish(self) -> Result<(), DecodeError> {
            if self.pos == self.buf.len() {
                Ok(())
            } else {
                Err(DecodeError("trailing bytes"))
            }
        }
    }

    impl PoseStamped {
        /// CDR_LE encoding, encapsulation header included.
        pub fn encode(&self) -> Vec<u8> {
            let mut w = Writer::new(80);
            w.i32(self.sec);
            w.u32(self.nanosec);
            w.string(&self.frame_id);
            let [x, y, z, qw, qx, qy, qz] = self.pose;
            for v in [x, y, z, qx, qy, qz, qw] {
                w.f64(v);
            }
            w.0
        }

        /// Decodes [`Self::encode`]'s output.
        pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
            let mut r = Reader::new(bytes)?;
            let sec = r.i32()?;
            let nanosec = r.u32()?;
            let frame_id = r.string()?;
            let mut v = [0.0; 7];
            for slot in &mut v {
                *slot = r.f64()?;
            }
            r.finish()?;
            let [x, y, z, qx, qy, qz, qw] = v;
            Ok(Self {
                sec,
                nanosec,
                frame_id,
                pose: [x, y, z, qw, qx, qy, qz],
            })
        }
    }

    impl BatteryState {
        /// CDR_LE encoding, encapsulation header included.
        pub fn encode(&self) -> Vec<u8> {
            let mut w = Writer::new(80);
            w.i32(self.sec);
            w.u32(self.nanosec);
            w.string("");
            // voltage, temperature, current, charge, capacity, design_capacity
            for _ in 0..6 {
                w.f32(0.0);
            }
            w.f32(self.percentage);
            // power_supply_status, _health, _technology, present
            for _ in 0..4 {
                w.u8(0);
            }
            w.u32(0); // cell_voltage: float32[]
            w.u32(0); // cell_temperature: float32[]
            w.string(""); // location
            w.string(""); // serial_number
            w.0
        }

        /// Decodes [`Self::encode`]'s output.
        pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
            let mut r = Reader::new(bytes)?;
            let sec = r.i32()?;
            let nanosec = r.u32()?;
            r.string()?;
            for _ in 0..6 {
                r.f32()?;
            }
            let percentage = r.f32()?;
            for _ in 0..4 {
                r.u8()?;
            }
            r.skip_f32_sequence()?;
            r.skip_f32_sequence()?;
            r.string()?;
            r.string()?;
            r.finish()?;
            Ok(Self {
                sec,
                nanosec,
                percentage,
            })
        }
    }
}

/// A full-message replica: the latest values and, per entity and topic, the
/// stamp of the latest message (last-writer-wins by header stamp).
struct RosReplica {
    values: Vec<[f64; 8]>,
    pose_stamp: Vec<u64>,
    battery_stamp: Vec<u64>,
}

/// A message on the wire, with the topic's entity (known to the receiver
/// from the topic, not from the bytes).
struct RosMessage {
    entity: u32,
    battery: bool,
    bytes: Vec<u8>,
}

/// The `frame_id` of every pose.
const FRAME_ID: &str = "map";
/// Index of the battery field.
const BATTERY: u8 = 7;

impl RosReplica {
    /// Both replicas start from `w.initial` with stamp 0; battery is stored
    /// as an f32 percentage, as `BatteryState` carries it.
    fn initial(w: &Workload) -> Self {
        let n = w.entities as usize;
        let mut values = vec![[0.0; 8]; n];
        for u in &w.initial {
            values[u.entity as usize][usize::from(u.field)] = Self::stored(u);
        }
        Self {
            values,
            pose_stamp: vec![0; n],
            battery_stamp: vec![0; n],
        }
    }

    /// The value a full-message replica keeps for an update.
    fn stored(u: &Update) -> f64 {
        if u.field == BATTERY {
            f64::from(u.value as f32)
        } else {
            u.value
        }
    }

    /// Writes locally at time `t` (ns) and produces the full message.
    fn write(&mut self, u: &Update, t: u64) -> RosMessage {
        let e = u.entity as usize;
        self.values[e][usize::from(u.field)] = Self::stored(u);
        let battery = u.field == BATTERY;
        if battery {
            self.battery_stamp[e] = t;
        } else {
            self.pose_stamp[e] = t;
        }
        self.message(u.entity, battery)
    }

    /// The full message of one topic of one entity, as held now.
    fn message(&self, entity: u32, battery: bool) -> RosMessage {
        let e = entity as usize;
        let t = if battery {
            self.battery_stamp[e]
        } else {
            self.pose_stamp[e]
        };
        let (sec, nanosec) = ((t / 1_000_000_000) as i32, (t % 1_000_000_000) as u32);
        let bytes = if battery {
            cdr::BatteryState {
                sec,
                nanosec,
                percentage: self.values[e][usize::from(BATTERY)] as f32,
            }
            .encode()
        } else {
            let v = &self.values[e];
            cdr::PoseStamped {
                sec,
                nanosec,
                frame_id: FRAME_ID.to_owned(),
                pose: [v[0], v[1], v[2], v[3], v[4], v[5], v[6]],
            }
            .encode()
        };
        RosMessage {
            entity,
            battery,
            bytes,
        }
    }

    /// Decodes a message and stores it unless an equal or newer stamp is held.
    fn receive(&mut self, m: &RosMessage) {
        let e = m.entity as usize;
        let stamp = |sec: i32, nanosec: u32| sec as u64 * 1_000_000_000 + u64::from(nanosec);
        if m.battery {
            let msg = cdr::BatteryState::decode(&m.bytes).expect("ros: decode BatteryState");
            let t = stamp(msg.sec, msg.nanosec);
            if t > self.battery_stamp[e] {
                self.battery_stamp[e] = t;
                self.values[e][usize::from(BATTERY)] = f64::from(msg.percentage);
            }
        } else {
            let msg = cdr::PoseStamped::decode(&m.bytes).expect("ros: decode PoseStamped");
            let t = stamp(msg.sec, msg.nanosec);
            if t > self.pose_stamp[e] {
                self.pose_stamp[e] = t;
                self.values[e][..7].copy_from_slice(&msg.pose);
            }
        }
    }

    /// All values, entity-major.
    fn dump(&self) -> Vec<f64> {
        self.values.iter().flatten().copied().collect()
    }
}

/// Full-message ROS 2 baseline (`PoseStamped` for the 7 pose fields,
/// `BatteryState` for the battery; see [`cdr`] for what each byte is).
///
/// * `bytes_per_update`: every single-field write republishes the entity's
///   whole message (76 B pose, 73 B battery); the mean over `w.updates`.
/// * `local_write_ns`: store the value, stamp and CDR-encode the message.
/// * `remote_apply_ops_per_s`: decode and store (stamp-checked) at B.
/// * `heal_bytes`: after the partition each side republishes the latest
///   message of every (entity, topic) it wrote while partitioned; both
///   directions count, no handshake. Receivers keep the newer stamp per
///   (entity, topic), so the replicas converge — but a field written on only
///   one side is lost when the other side's newer message for the same
///   entity wins: that is the full-message semantics.
pub fn run_posestamped(w: &Workload) -> BaselineResult {
    const SYSTEM: &str = "ros2-posestamped";
    /// Stream writes are 10 ms apart.
    const PERIOD_NS: u64 = 10_000_000;

    let mut a = RosReplica::initial(w);
    let mut b = RosReplica::initial(w);
    let start = Instant::now();
    let messages: Vec<RosMessage> = w
        .updates
        .iter()
        .zip(1u64..)
        .map(|(u, i)| a.write(u, i * PERIOD_NS))
        .collect();
    let write = start.elapsed();
    let start = Instant::now();
    for m in &messages {
        b.receive(m);
    }
    let apply = start.elapsed();
    let (dump_a, dump_b) = (a.dump(), b.dump());
    assert_same(SYSTEM, "stream", &dump_a, &dump_b);
    let expected: Vec<f64> = {
        let mut s = w.final_stream_state();
        for (i, v) in s.iter_mut().enumerate() {
            if i % FIELDS.len() == usize::from(BATTERY) {
                *v = f64::from(*v as f32);
            }
        }
        s
    };
    assert_same(SYSTEM, "stream vs workload", &dump_a, &expected);
    let bytes_per_update =
        messages.iter().map(|m| m.bytes.len()).sum::<usize>() as f64 / messages.len().max(1) as f64;

    // Heal: interleaved distinct stamps (A odd ms, B even ms) give a total order.
    let mut a = RosReplica::initial(w);
    let mut b = RosReplica::initial(w);
    let mut touched_a = Vec::new();
    let mut touched_b = Vec::new();
    for (i, u) in (0u64..).zip(&w.side_a) {
        a.write(u, (2 * i + 1) * 1_000_000);
        touched_a.push((u.entity, u.field == BATTERY));
    }
    for (i, u) in (0u64..).zip(&w.side_b) {
        b.write(u, (2 * i + 2) * 1_000_000);
        touched_b.push((u.entity, u.field == BATTERY));
    }
    for t in [&mut touched_a, &mut touched_b] {
        t.sort_unstable();
        t.dedup();
    }
    let a_to_b: Vec<RosMessage> = touched_a
        .iter()
        .map(|&(e, bat)| a.message(e, bat))
        .collect();
    let b_to_a: Vec<RosMessage> = touched_b
        .iter()
        .map(|&(e, bat)| b.message(e, bat))
        .collect();
    for m in &a_to_b {
        b.receive(m);
    }
    for m in &b_to_a {
        a.receive(m);
    }
    let heal_bytes = a_to_b.iter().chain(&b_to_a).map(|m| m.bytes.len()).sum();
    assert_same(SYSTEM, "heal", &a.dump(), &b.dump());

    BaselineResult {
        system: SYSTEM,
        bytes_per_update,
        local_write_ns: per_op_ns(write, w.updates.len()),
        remote_apply_ops_per_s: ops_per_s(apply, w.updates.len()),
        heal_bytes,
    }
}

/// Runs all four baselines on `w`, in the order yrs, automerge, loro,
/// full-message ROS 2.
pub fn run_all(w: &Workload) -> Vec<BaselineResult> {
    vec![
        run_yrs(w),
        run_automerge(w),
        run_loro(w),
        run_posestamped(w),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(r: &BaselineResult) {
        assert!(r.bytes_per_update > 0.0, "{r:?}");
        assert!(r.local_write_ns > 0.0, "{r:?}");
        assert!(r.remote_apply_ops_per_s > 0.0, "{r:?}");
        assert!(r.heal_bytes > 0, "{r:?}");
    }

    // Each run panics if its replicas differ after the stream or the heal.
    #[test]
    fn yrs_small() {
        check(&run_yrs(&Workload::small(7)));
    }

    #[test]
    fn automerge_small() {
        check(&run_automerge(&Workload::small(7)));
    }

    #[test]
    fn loro_small() {
        check(&run_loro(&Workload::small(7)));
    }

    #[test]
    fn posestamped_small() {
        let r = run_posestamped(&Workload::small(7));
        check(&r);
        assert!((73.0..=76.0).contains(&r.bytes_per_update), "{r:?}");
    }

    #[test]
    fn cdr_sizes_and_round_trip() {
        let p = cdr::PoseStamped {
            sec: 12,
            nanosec: 345,
            frame_id: "map".to_owned(),
            pose: [1.0, 2.0, 3.0, 0.5, 0.1, 0.2, 0.3],
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), 76);
        assert_eq!(cdr::PoseStamped::decode(&bytes), Ok(p.clone()));
        let empty_frame = cdr::PoseStamped {
            frame_id: String::new(),
            ..p
        };
        assert_eq!(empty_frame.encode().len(), 76);
        let bat = cdr::BatteryState {
            sec: 1,
            nanosec: 2,
            percentage: 0.75,
        };
        let bytes = bat.encode();
        assert_eq!(bytes.len(), 73);
        assert_eq!(cdr::BatteryState::decode(&bytes), Ok(bat));
    }
}
