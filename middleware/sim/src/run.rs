//! One simulated run.

use std::collections::{BTreeMap, BTreeSet};

use spook_core::{
    Action, Dest, Dot, EndpointId, Event, FieldId, FrameKind, GroupConfig, GroupId, Op, Record, RegisterId, Replica, Schema,
    StateBlock, Value, View,
};

use crate::rng::Rng;

/// What a run simulates. Defaults: 5 nodes, light faults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: the run is a pure function of it and the rest of this config.
    pub seed: u64,
    /// Number of replicas.
    pub nodes: usize,
    /// Per-frame loss probability during the fault phase.
    pub loss: f64,
    /// Per-frame duplication probability during the fault phase.
    pub dup: f64,
    /// Probability that a frame is held back (reordered behind later frames).
    pub reorder: f64,
    /// One-way delay range (ms).
    pub delay_ms: (u64, u64),
    /// Partitions during the fault phase (the last one heals when faults stop).
    pub partitions: usize,
    /// Crash-and-restart events during the fault phase.
    pub crashes: usize,
    /// Each node's clock is offset by a value in ±skew (ms).
    pub skew_ms: u64,
    /// Mean time between writes at each node (ms).
    pub write_every_ms: u64,
    /// Registers written (entities).
    pub registers: u32,
    /// Length of the fault phase (ms).
    pub fault_ms: u64,
    /// Bound on the liveness phase (ms): not converged by then is a failure.
    pub settle_ms: u64,
    /// Time to make a batch durable (ms range).
    pub persist_ms: (u64, u64),
    /// Only last-writer-wins f64 writes (the benchmark workload) instead of the mix of policies.
    pub lww_only: bool,
    /// Task-claim race: when non-zero, 30% of writes are serial transactions claiming one of
    /// this many tasks (precondition: unclaimed). No task may be claimed twice, and every
    /// claim must have the same outcome on every node.
    pub tasks: u32,
    /// Fixed sides for every partition instead of random ones: the sizes of the first sides in
    /// node order, the rest forming the last (`[2]` is 2 | 3 of five, `[2, 2]` is 2 | 2 | 1).
    pub split: Option<Vec<usize>>,
    /// After one persisted batch in this many (0: never), a node compacts its disk: the log is
    /// replaced by the replica's snapshot, round-tripped through the record codec, as the
    /// ledger does. Crashes then restore from snapshots.
    pub compact_one_in: u64,
    /// How far ahead of local time a stamp may be before its frame is held back (ms). `None`:
    /// DESIGN.md's rule, 2 × skew + max delay, so nothing legitimate is held; a smaller value
    /// exercises holding back and retrying.
    pub max_future_ms: Option<u64>,
    /// Each digest round goes to every member as one frame, as over a radio's multicast group
    /// ([`GroupConfig::digest_broadcast`]).
    pub digest_broadcast: bool,
    /// Least time between prompt acks ([`GroupConfig::prompt_ack_ms`]); 0: acks ride the
    /// digests only.
    pub prompt_ack_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 5,
            loss: 0.1,
            dup: 0.05,
            reorder: 0.1,
            delay_ms: (1, 30),
            partitions: 1,
            crashes: 1,
            skew_ms: 200,
            write_every_ms: 200,
            registers: 20,
            fault_ms: 10_000,
            settle_ms: 60_000,
            persist_ms: (0, 3),
            lww_only: false,
            tasks: 0,
            split: None,
            compact_one_in: 8,
            max_future_ms: None,
            digest_broadcast: false,
            prompt_ack_ms: 1,
        }
    }
}

/// Faults actually injected in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames lost on a link.
    pub drops: u64,
    /// Frames lost to a partition.
    pub partition_drops: u64,
    /// Frames delivered twice.
    pub dups: u64,
    /// Frames held back behind later ones.
    pub reorders: u64,
    /// Partitions.
    pub partitions: u64,
    /// Crashes.
    pub crashes: u64,
    /// Frames held back by a receiver for a stamp ahead of its clock.
    pub held: u64,
    /// Prune proposals (decoherence), re-add proposals, and re-entanglements (late commits).
    pub prunes: u64,
    /// Re-add proposals.
    pub readds: u64,
    /// Re-entanglements: commits below the frontier that changed committed values.
    pub reentangled: u64,
    /// Removals that took effect (every node's log merged).
    pub removals: u64,
    /// Removals no fault explains, or made by a cut-off minority: must be 0.
    pub spurious_removals: u64,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Whether every replica converged to the oracle state, committed everything, within the bound.
    pub converged: bool,
    /// Why not, if not.
    pub failure: Option<String>,
    /// Hash of every event of the run, in order.
    pub trace_hash: String,
    /// Final pending-view hash (equal on every replica when converged).
    pub state_hash: String,
    /// Simulated ms from the end of faults (the last heal) to convergence.
    pub converge_ms: u64,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Deltas created (durable at their origin).
    pub deltas: u64,
    /// Bytes of `Deltas` frames sent, per delta carried (per link transmission).
    pub bytes_per_delta: f64,
    /// All bytes sent.
    pub bytes_total: u64,
    /// Bytes sent from the last heal until convergence (digests, wants, state, acks).
    pub realign_bytes: u64,
    /// The same by frame kind, indexed by `FrameKind as usize - 1` (deltas, digest, want,
    /// state, paxos, ack).
    pub realign_by_kind: [u64; 6],
    /// Canonical bytes of the field states that differed from the merged state at the last heal
    /// (summed over replicas).
    pub diverged_bytes: u64,
    /// Fields that differed at the last heal (summed over replicas).
    pub diverged_fields: u64,
    /// Frames rejected by receivers (must be 0 in a run without an attacker).
    pub rejected: u64,
    /// Serial transactions (task claims) durable at their origin, and how many committed.
    pub txns: (u64, u64),
}

#[derive(Debug)]
enum Ev {
    Deliver { to: usize, from: usize, bytes: Vec<u8> },
    Wake { node: usize, inc: u64 },
    Persisted { node: usize, id: u64, inc: u64 },
    Write { node: usize },
    Crash { node: usize },
    Restart { node: usize },
    Partition { side: Vec<u8> },
    Heal,
    EndFaults,
}

struct Node {
    id: EndpointId,
    replica: Option<Replica>,
    disk: Vec<Record>,
    in_flight: BTreeMap<u64, Vec<Record>>,
    last_persist_at: u64,
    inc: u64,
    skew: i64,
    wake_at: Option<u64>,
    frontier_seen: spook_core::Hlc,
}

struct World {
    cfg: SimConfig,
    group: GroupConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    side: Option<Vec<u8>>,
    history: crate::membership_check::FaultHistory,
    faults_on: bool,
    faults: FaultCounts,
    trace: blake3::Hasher,
    oracle: BTreeMap<Dot, spook_core::Delta>,
    bytes_total: u64,
    bytes_by_kind: [u64; 6],
    delta_bytes: u64,
    delta_items: u64,
    rejected: u64,
    failure: Option<String>,
    claim_seq: u64,
}

const START: u64 = 100_000;
const OWNER: FieldId = FieldId(9);

impl World {
    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn local(&self, i: usize) -> u64 {
        (self.now as i64 + self.nodes[i].skew).max(0) as u64
    }

    fn trace(&mut self, tag: u8, a: u64, b: &[u8]) {
        self.trace.update(&self.now.to_le_bytes());
        self.trace.update(&[tag]);
        self.trace.update(&a.to_le_bytes());
        self.trace.update(blake3::hash(b).as_bytes());
    }

    /// Replace node `i`'s disk by its replica's snapshot, through the record codec. Records
    /// still in flight are not part of it: they land after it, as in the ledger.
    fn compact(&mut self, i: usize) {
        let Some(r) = self.nodes[i].replica.as_ref() else { return };
        let Some(snap) = r.snapshot() else { return };
        let roster = r.roster().clone();
        let g = spook_core::codec::GroupView {
            schema: &self.group.schema,
            genesis_ms: self.group.genesis_ms,
            roster: &roster,
            limits: spook_core::Limits::default(),
        };
        let mut disk = Vec::with_capacity(snap.len());
        for rec in &snap {
            let bytes = spook_core::codec::encode_record(&self.group.schema, self.group.genesis_ms, rec);
            match spook_core::codec::decode_record(&g, &bytes) {
                Ok(back) => disk.push(back),
                Err(e) => {
                    self.failure.get_or_insert(format!("node {i}: a snapshot record does not decode: {e}"));
                    return;
                }
            }
        }
        // The snapshot must stand for the log it replaces.
        let back = Replica::restore(r.me(), self.group.clone(), &disk, 0);
        if back.state_hash() != r.state_hash() || back.committed_hash() != r.committed_hash() || back.context() != r.context() {
            self.failure.get_or_insert(format!("node {i}: a replica restored from its snapshot differs from the live one"));
            return;
        }
        self.nodes[i].disk = disk;
    }

    /// Collect everything node `i` wants done after an input.
    fn drain(&mut self, i: usize) {
        let Some(r) = self.nodes[i].replica.as_mut() else { return };
        let mut persists = Vec::new();
        while let Some(p) = r.poll_persist() {
            persists.push(p);
        }
        let mut sends = Vec::new();
        while let Some(t) = r.poll_transmit() {
            sends.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = r.poll_event() {
            events.push(e);
        }
        let wake_local = r.poll_timeout();
        let frontier = r.frontier();
        let inc = self.nodes[i].inc;
        for p in persists {
            let d = self.rng.range(self.cfg.persist_ms.0, self.cfg.persist_ms.1);
            let t = (self.now + d).max(self.nodes[i].last_persist_at);
            self.nodes[i].last_persist_at = t;
            self.nodes[i].in_flight.insert(p.id, p.records);
            self.at(t, Ev::Persisted { node: i, id: p.id, inc });
        }
        for t in sends {
            let targets: Vec<usize> = match t.dest {
                Dest::Members => (0..self.nodes.len()).filter(|&j| j != i).collect(),
                Dest::Peer(p) => self.nodes.iter().position(|n| n.id == p).into_iter().collect(),
            };
            for j in targets {
                self.send(i, j, &t.bytes, t.kind, t.items);
            }
        }
        for e in events {
            match e {
                Event::Rejected { error, .. } => {
                    self.rejected += 1;
                    self.trace(9, i as u64, error.to_string().as_bytes());
                }
                Event::Committed { frontier, .. } => self.trace(8, i as u64, &frontier.0.to_le_bytes()),
                _ => {}
            }
        }
        if frontier < self.nodes[i].frontier_seen && self.failure.is_none() {
            self.failure = Some(format!("node {i}: committed frontier went backwards"));
        }
        self.nodes[i].frontier_seen = frontier;
        let wake = (wake_local as i64 - self.nodes[i].skew).max(self.now as i64 + 1) as u64;
        if self.nodes[i].wake_at.is_none_or(|w| wake < w || w <= self.now) {
            self.nodes[i].wake_at = Some(wake);
            self.at(wake, Ev::Wake { node: i, inc });
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: &[u8], kind: FrameKind, items: usize) {
        self.bytes_total += bytes.len() as u64;
        self.bytes_by_kind[kind as usize - 1] += bytes.len() as u64;
        if kind == FrameKind::Deltas {
            self.delta_bytes += bytes.len() as u64;
            self.delta_items += items as u64;
        }
        if let Some(side) = &self.side {
            if side[from] != side[to] {
                self.faults.partition_drops += 1;
                return;
            }
        }
        let (loss, dup, reorder) = if self.faults_on { (self.cfg.loss, self.cfg.dup, self.cfg.reorder) } else { (0.0, 0.0, 0.0) };
        if self.rng.chance(loss) {
            self.faults.drops += 1;
            return;
        }
        let copies = if self.rng.chance(dup) {
            self.faults.dups += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut d = self.rng.range(self.cfg.delay_ms.0, self.cfg.delay_ms.1);
            if self.rng.chance(reorder) {
                self.faults.reorders += 1;
                d += self.rng.range(self.cfg.delay_ms.1, self.cfg.delay_ms.1 * 4 + 10);
            }
            let t = self.now + d;
            self.at(t, Ev::Deliver { to, from, bytes: bytes.to_vec() });
        }
    }

    fn random_ops(&mut self, i: usize) -> Vec<Op> {
        if self.cfg.tasks > 0 && self.rng.chance(0.3) {
            let task = RegisterId(self.rng.below(self.cfg.tasks as usize) as u32);
            self.claim_seq += 1;
            let local = self.local(i);
            let deadline_ms = self.nodes[i].replica.as_mut().map_or(local, |r| r.clock_now(local).ms()) + 5_000;
            return vec![Op::Txn(spook_core::Txn {
                id: spook_core::OpId { client: self.nodes[i].id, seq: self.claim_seq },
                deadline_ms,
                after: vec![],
                preconditions: vec![spook_core::Precondition::Absent { reg: task, field: OWNER }],
                writes: vec![spook_core::TxnWrite { reg: task, field: OWNER, value: Value::I64(i as i64), lease_ms: None }],
            })];
        }
        let reg = RegisterId(self.rng.below(self.cfg.registers as usize) as u32);
        let n = if self.cfg.lww_only { 9 } else { 11 };
        let pick = self.rng.below(n);
        let f = |k: u16| FieldId(k);
        let x = (self.rng.next_u64() % 10_000) as f64 / 100.0;
        match pick {
            0..=2 | 9 | 10 if self.cfg.lww_only => {
                vec![Op::Field { reg, field: f(self.rng.below(3) as u16), action: Action::Set(Value::F64(x)) }]
            }
            0..=2 => vec![Op::Field { reg, field: f(pick as u16), action: Action::Set(Value::F64(x)) }],
            3 => {
                // A whole pose in one atomic delta: three translations and one quaternion.
                let q = [1.0, 0.0, 0.0, 0.0];
                let mut ops: Vec<Op> = (0..3).map(|k| Op::Field { reg, field: f(k), action: Action::Set(Value::F64(x + k as f64)) }).collect();
                ops.push(Op::Field { reg, field: f(3), action: Action::Set(Value::Quat(q)) });
                ops
            }
            4 => vec![Op::Field { reg, field: f(4), action: Action::Set(Value::F64(x)) }],
            5 => vec![Op::Field { reg, field: f(5), action: Action::Add((self.rng.next_u64() % 7) as i64 - 2) }],
            6 => vec![Op::Field { reg, field: f(6), action: Action::Insert(Value::I64((self.rng.next_u64() % 4) as i64)) }],
            7 => {
                let v = Value::I64((self.rng.next_u64() % 4) as i64);
                let observed = self.nodes[i].replica.as_ref().map(|r| r.observed_adds(reg, f(6), &v)).unwrap_or_default();
                if observed.is_empty() {
                    vec![Op::Field { reg, field: f(7), action: Action::Append(Value::I64(i as i64)) }]
                } else {
                    vec![Op::Field { reg, field: f(6), action: Action::Remove { value: v, observed } }]
                }
            }
            _ => vec![Op::Field { reg, field: f(8), action: Action::Set(Value::F64(x)) }],
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, bytes } => {
                self.trace(1, (to as u64) << 32 | from as u64, &bytes);
                let local = self.local(to);
                let from_id = self.nodes[from].id;
                if let Some(r) = self.nodes[to].replica.as_mut() {
                    r.handle_frame(from_id, &bytes, local);
                    self.drain(to);
                }
            }
            Ev::Wake { node, inc } => {
                if inc != self.nodes[node].inc || self.nodes[node].wake_at != Some(self.now) {
                    return;
                }
                self.nodes[node].wake_at = None;
                let local = self.local(node);
                if let Some(r) = self.nodes[node].replica.as_mut() {
                    r.handle_timeout(local);
                    self.drain(node);
                }
            }
            Ev::Persisted { node, id, inc } => {
                if inc != self.nodes[node].inc {
                    return;
                }
                self.trace(3, (node as u64) << 32 | id, &[]);
                let done: Vec<u64> = self.nodes[node].in_flight.range(..=id).map(|(k, _)| *k).collect();
                let me = self.nodes[node].id;
                for k in done {
                    if let Some(recs) = self.nodes[node].in_flight.remove(&k) {
                        for r in &recs {
                            if let Record::Delta(d) = r {
                                if d.origin == me {
                                    self.oracle.insert(d.dot(), d.clone());
                                }
                            }
                        }
                        self.nodes[node].disk.extend(recs);
                    }
                }
                let local = self.local(node);
                if let Some(r) = self.nodes[node].replica.as_mut() {
                    r.handle_persisted(id, local);
                }
                if self.cfg.compact_one_in > 0 && self.rng.range(0, self.cfg.compact_one_in) == 0 {
                    self.compact(node);
                }
                self.drain(node);
            }
            Ev::Write { node } => {
                if !self.faults_on {
                    return;
                }
                let next = self.now + self.rng.range(1, self.cfg.write_every_ms * 2);
                self.at(next, Ev::Write { node });
                if self.nodes[node].replica.is_none() {
                    return;
                }
                let ops = self.random_ops(node);
                let local = self.local(node);
                if let Some(r) = self.nodes[node].replica.as_mut() {
                    if let Err(e) = r.write(local, ops) {
                        self.failure.get_or_insert(format!("node {node}: write refused: {e}"));
                    }
                    self.trace(4, node as u64, &[]);
                    self.drain(node);
                }
            }
            Ev::Crash { node } => {
                if self.nodes[node].replica.take().is_some() {
                    self.history.crashed(node, self.now);
                    self.faults.crashes += 1;
                    self.nodes[node].inc += 1;
                    self.nodes[node].in_flight.clear();
                    self.nodes[node].wake_at = None;
                    self.trace(5, node as u64, &[]);
                }
            }
            Ev::Restart { node } => {
                if self.nodes[node].replica.is_none() {
                    let local = self.local(node);
                    self.history.restarted(node, self.now);
                    let r = Replica::restore(self.nodes[node].id, self.group.clone(), &self.nodes[node].disk, local);
                    self.nodes[node].frontier_seen = r.frontier();
                    self.nodes[node].replica = Some(r);
                    self.trace(6, node as u64, &[]);
                    self.drain(node);
                }
            }
            Ev::Partition { side } => {
                self.faults.partitions += 1;
                self.history.partitioned(&side, self.now);
                self.side = Some(side);
                self.trace(7, 0, &[]);
            }
            Ev::Heal => {
                self.history.healed(self.now);
                self.side = None;
                self.trace(7, 1, &[]);
            }
            Ev::EndFaults => {}
        }
    }

    /// The serial state every node must reach: every durable delta committed at once by a
    /// fresh replica, so every transaction is evaluated in the total order with the whole
    /// membership history known.
    fn serial_reference(&self) -> spook_core::SerialState {
        let mut recs: Vec<Record> = self.oracle.values().cloned().map(Record::Delta).collect();
        recs.push(Record::Frontier(spook_core::Hlc(u64::MAX >> 1)));
        Replica::restore(EndpointId([0; 32]), self.group.clone(), &recs, self.now).serial().clone()
    }

    /// Consensus safety: at most one value decided per membership epoch.
    fn check_decisions(&self) -> Option<String> {
        let mut decided: BTreeMap<u64, &Vec<Op>> = BTreeMap::new();
        for d in self.oracle.values() {
            for op in &d.ops {
                if let Op::Decided { epoch, ops } = op {
                    match decided.get(epoch) {
                        Some(v) if *v != ops => return Some(format!("epoch {epoch}: two different decisions {v:?} and {ops:?}")),
                        _ => {
                            decided.insert(*epoch, ops);
                        }
                    }
                }
            }
        }
        None
    }

    fn merged(&self) -> Replica {
        let recs: Vec<Record> = self.oracle.values().cloned().map(Record::Delta).collect();
        Replica::restore(EndpointId([0; 32]), self.group.clone(), &recs, self.now)
    }

    /// Two replicas with equal contexts must hold equal pending views.
    fn check_pairs(&mut self, verbose: bool) {
        let live: Vec<(usize, &Replica)> = self.nodes.iter().enumerate().filter_map(|(i, n)| n.replica.as_ref().map(|r| (i, r))).collect();
        for (a, ra) in &live {
            for (b, rb) in &live {
                if a < b && ra.context() == rb.context() && ra.state_hash() != rb.state_hash() {
                    if !verbose {
                        self.failure.get_or_insert(format!("t={} nodes {a} and {b}: equal contexts, different pending states", self.now));
                        return;
                    }
                    eprintln!("t={} nodes {a} and {b}: equal contexts, different states", self.now);
                    for (k, st) in ra.view(View::Pending).iter() {
                        if rb.view(View::Pending).field_state(k.0, k.1) != Some(st) {
                            eprintln!("  {k:?}\n    {a}: {st:?}\n    {b}: {:?}", rb.view(View::Pending).field_state(k.0, k.1));
                        }
                    }
                    self.failure.get_or_insert("debug: equal contexts, different states".into());
                    return;
                }
            }
        }
    }

    /// Fields (count, canonical bytes) in which `block` differs from `reference`.
    fn diff(block: &StateBlock, reference: &StateBlock) -> (u64, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for (k, st) in reference.iter() {
            if block.field_state(k.0, k.1) != Some(st) {
                n += 1;
                let mut b = Vec::new();
                st.canonical_bytes(&mut b);
                bytes += b.len() as u64 + 3;
            }
        }
        (n, bytes)
    }

    fn converged(&self, reference: &Replica, serial: &spook_core::SerialState) -> bool {
        // Every durable transaction must have ended (a claim of a pruned member waits, inert,
        // for its re-add, and is then evaluated at the re-add).
        let txns: Vec<spook_core::OpId> =
            self.oracle.values().flat_map(|d| d.ops.iter()).filter_map(|o| if let Op::Txn(t) = o { Some(t.id) } else { None }).collect();
        self.nodes.iter().all(|n| {
            n.replica.as_ref().is_some_and(|r| {
                txns.iter().all(|id| r.serial().outcome(id).is_some())
                    && r.serial().hash() == serial.hash()
                    && r.context() == reference.context()
                    && r.state_hash() == reference.state_hash()
                    && r.pending_candidates() == 0
                    && r.committed_hash() == reference.view(View::Pending).hash()
            })
        })
    }
}

/// Run one simulation.
///
/// ```
/// use spook_sim::{run, SimConfig};
/// let a = run(&SimConfig { seed: 3, nodes: 3, fault_ms: 2_000, ..SimConfig::default() });
/// assert!(a.converged, "{:?}", a.failure);
/// let b = run(&SimConfig { seed: 3, nodes: 3, fault_ms: 2_000, ..SimConfig::default() });
/// assert_eq!(a.trace_hash, b.trace_hash);
/// ```
#[must_use]
pub fn run(cfg: &SimConfig) -> Outcome {
    let mut rng = Rng::new(cfg.seed);
    let ids: Vec<EndpointId> = (0..cfg.nodes as u32).map(EndpointId::from_index).collect();
    let mut group = GroupConfig::new(GroupId([7; 16]), Schema::fleet(), 1_000, ids.clone());
    group.max_future_ms = cfg.max_future_ms.unwrap_or(2 * cfg.skew_ms + cfg.delay_ms.1 + 100);
    group.digest_broadcast = cfg.digest_broadcast;
    group.prompt_ack_ms = cfg.prompt_ack_ms;
    if cfg.tasks > 0 {
        group.kind = spook_core::GroupKind::Serial;
    }
    let nodes = ids
        .iter()
        .map(|&id| {
            let skew = if cfg.skew_ms == 0 { 0 } else { rng.range(0, 2 * cfg.skew_ms) as i64 - cfg.skew_ms as i64 };
            Node {
                id,
                replica: None,
                disk: Vec::new(),
                in_flight: BTreeMap::new(),
                last_persist_at: 0,
                inc: 0,
                skew,
                wake_at: None,
                frontier_seen: spook_core::Hlc(0),
            }
        })
        .collect();
    let mut w = World {
        cfg: cfg.clone(),
        group,
        rng,
        now: START,
        seq: 0,
        queue: BTreeMap::new(),
        nodes,
        side: None,
        history: crate::membership_check::FaultHistory::default(),
        faults_on: true,
        faults: FaultCounts::default(),
        trace: blake3::Hasher::new(),
        oracle: BTreeMap::new(),
        bytes_total: 0,
        bytes_by_kind: [0; 6],
        delta_bytes: 0,
        delta_items: 0,
        rejected: 0,
        failure: None,
        claim_seq: 0,
    };
    for (i, &id) in ids.iter().enumerate().take(cfg.nodes) {
        let local = w.local(i);
        w.nodes[i].replica = Some(Replica::new(id, w.group.clone(), local));
        w.drain(i);
        let t = START + w.rng.range(1, cfg.write_every_ms);
        w.at(t, Ev::Write { node: i });
    }
    let end = START + cfg.fault_ms;
    // Partitions: disjoint windows inside the fault phase; the last heals when faults stop.
    for k in 0..cfg.partitions {
        let slot = cfg.fault_ms / cfg.partitions as u64;
        let from = START + k as u64 * slot + w.rng.range(0, slot / 3);
        let until = if k + 1 == cfg.partitions { end } else { from + slot / 2 };
        let mut side: Vec<u8> = (0..cfg.nodes).map(|_| u8::from(w.rng.chance(0.5))).collect();
        let a = w.rng.below(cfg.nodes);
        side[a] = 1 - side[(a + 1) % cfg.nodes];
        if let Some(sizes) = &cfg.split {
            side = (0..cfg.nodes).map(|i| sizes.iter().scan(0, |end, k| { *end += k; Some(*end) }).take_while(|end| *end <= i).count() as u8).collect();
        }
        w.at(from, Ev::Partition { side });
        w.at(until, Ev::Heal);
    }
    for _ in 0..cfg.crashes {
        let node = w.rng.below(cfg.nodes);
        let t = START + w.rng.range(0, cfg.fault_ms.saturating_sub(1));
        let back = (t + w.rng.range(100, 3_000)).min(end);
        w.at(t, Ev::Crash { node });
        w.at(back, Ev::Restart { node });
    }
    w.at(end, Ev::EndFaults);

    let debug = std::env::var_os("SPOOK_SIM_DEBUG").is_some();
    let mut diverged = (0, 0);
    let mut realign_from = 0;
    let mut realign_kinds = [0; 6];
    let mut converged_at = None;
    let deadline = end + cfg.settle_ms;
    let mut next_check = end;
    let mut next_pair_check = START;
    while let Some(((t, _), ev)) = w.queue.pop_first() {
        if t > deadline {
            break;
        }
        w.now = t;
        if matches!(ev, Ev::EndFaults) {
            w.faults_on = false;
            w.side = None;
            w.history.healed(t);
            let merged = w.merged();
            for n in &w.nodes {
                if let Some(r) = &n.replica {
                    let (f, b) = World::diff(r.view(View::Pending), merged.view(View::Pending));
                    diverged.0 += f;
                    diverged.1 += b;
                }
            }
            for i in 0..cfg.nodes {
                if w.nodes[i].replica.is_none() {
                    w.step(Ev::Restart { node: i });
                }
            }
            realign_from = w.bytes_total;
            realign_kinds = w.bytes_by_kind;
            continue;
        }
        w.step(ev);
        // Guarantee 1 as a running invariant: replicas holding the same deltas hold the same
        // pending state (checked after every event when debugging, else every 100 ms).
        if debug || t >= next_pair_check {
            next_pair_check = t + 100;
            w.check_pairs(debug);
        }
        if w.failure.is_some() {
            break;
        }
        if !w.faults_on && t >= next_check {
            next_check = t + 50;
            let merged = w.merged();
            let serial = w.serial_reference();
            if w.converged(&merged, &serial) {
                converged_at = Some(t);
                break;
            }
        }
    }
    if debug {
        eprintln!("loop ended at {} ms (deadline {deadline}), queue {} events, failure {:?}", w.now, w.queue.len(), w.failure);
    }
    for n in &w.nodes {
        if let Some(r) = &n.replica {
            w.faults.held += r.stats().frames_held;
            w.faults.prunes += r.stats().decohered;
            w.faults.readds += r.stats().readded;
            w.faults.reentangled += r.stats().reentangled;
            if r.stats().hash_mismatches > 0 && w.failure.is_none() {
                w.failure = Some("a replica saw equal causal contexts with different state hashes".into());
            }
        }
    }
    let merged = w.merged();
    if std::env::var_os("SPOOK_SIM_DEBUG").is_some() {
        for (i, n) in w.nodes.iter().enumerate() {
            let Some(r) = &n.replica else { continue };
            eprintln!("node {i}: {}", r.summary());
            for (k, st) in merged.view(View::Pending).iter() {
                let mine = r.view(View::Pending).field_state(k.0, k.1);
                let canon = |x: &spook_core::field::FieldState| { let mut b = Vec::new(); x.canonical_bytes(&mut b); b };
                if mine.map(canon) != Some(canon(st)) {
                    eprintln!("node {i} field {k:?}: has {mine:?}\n  merged {st:?}");
                }
            }
            if r.context() != merged.context() {
                eprintln!("node {i} context differs: {:?}", r.context().difference(merged.context()));
            }
        }
    }
    let state_hash = hex(&merged.state_hash().short());
    let mut failure = w.failure.take();
    // Membership reflects reality: every removal that took effect is explained by a fault
    // between the member and its proposer, and no cut-off minority removed anyone.
    let ids: Vec<EndpointId> = w.nodes.iter().map(|n| n.id).collect();
    let skews: Vec<i64> = w.nodes.iter().map(|n| n.skew).collect();
    let verdict = w.history.judge(merged.removals(), &ids, &skews, w.group.decohere_bound_ms() + 2 * cfg.skew_ms + 1_000);
    w.faults.removals = merged.removals().len() as u64;
    w.faults.spurious_removals = verdict.len() as u64;
    if let Some(v) = verdict.first() {
        failure.get_or_insert(format!("membership change not caused by a fault: {v} ({} such)", verdict.len()));
    }
    if failure.is_none() && converged_at.is_none() {
        let lagging: BTreeSet<usize> = (0..cfg.nodes)
            .filter(|&i| {
                w.nodes[i].replica.as_ref().is_none_or(|r| {
                    r.context() != merged.context() || r.state_hash() != merged.state_hash() || r.pending_candidates() > 0
                })
            })
            .collect();
        failure = Some(format!("not converged within {} ms after faults stopped; lagging nodes {lagging:?}", cfg.settle_ms));
    }
    let serial = w.serial_reference();
    let mut txns = (0u64, 0u64);
    if failure.is_none() && cfg.tasks > 0 {
        // Every durable claim has an outcome at every node, the same everywhere; every claimed
        // task has exactly one committed claim.
        let mut committed_per_task: BTreeMap<u32, u64> = BTreeMap::new();
        let claims: Vec<&spook_core::Txn> = w.oracle.values().flat_map(|d| d.ops.iter()).filter_map(|o| if let Op::Txn(t) = o { Some(t) } else { None }).collect();
        for t in &claims {
            txns.0 += 1;
            let task = t.writes[0].reg.0;
            let all: Vec<Option<spook_core::TxnOutcome>> = w.nodes.iter().filter_map(|n| n.replica.as_ref()).map(|r| r.serial().outcome(&t.id).cloned()).collect();
            let first = all.first().cloned().flatten();
            if first.is_none() || all.iter().any(|o| *o != first) {
                failure.get_or_insert(format!("claim {:?}: outcomes differ or missing across nodes: {all:?}; reference {:?}", t.id, serial.outcome(&t.id)));
                if std::env::var_os("SPOOK_SIM_DEBUG").is_some() {
                    for d in w.oracle.values() {
                        if d.ops.iter().any(|o| matches!(o, Op::Txn(x) if x.id == t.id)) {
                            eprintln!("txn delta: origin {} seq {} stamp {}", &d.origin.to_string()[..4], d.seq, d.stamp.ms());
                        }
                        for o in &d.ops {
                            if let Op::Decided { epoch, ops } = o {
                                eprintln!("decided epoch {epoch} by {} at {} (seq {}): {:?}", &d.origin.to_string()[..4], d.stamp.ms(), d.seq, ops.iter().map(|x| match x { Op::RemoveMember { member, cut, .. } => format!("-{}@{cut}", &member.to_string()[..4]), Op::AddMember(m) => format!("+{}", &m.to_string()[..4]), _ => String::new() }).collect::<Vec<_>>());
                            }
                        }
                    }
                }
            }
            if matches!(first, Some(spook_core::TxnOutcome::Committed { .. })) {
                txns.1 += 1;
                *committed_per_task.entry(task).or_default() += 1;
            }
        }
        for (task, n) in &committed_per_task {
            if *n > 1 {
                failure.get_or_insert(format!("task {task}: claimed {n} times"));
            }
        }
        if let Some(e) = w.check_decisions() {
            failure.get_or_insert(e);
        }
        for n in &w.nodes {
            if n.replica.as_ref().is_some_and(|r| r.serial().hash() != serial.hash()) {
                failure.get_or_insert("serial state differs from the reference".into());
            }
        }
    }
    if failure.is_none() && w.rejected > 0 {
        failure = Some(format!("{} frames rejected in a run without an attacker", w.rejected));
    }
    let converged = failure.is_none();
    let mut trace = w.trace.clone();
    trace.update(&merged.state_hash().short());
    Outcome {
        seed: cfg.seed,
        converged,
        failure,
        trace_hash: trace.finalize().to_hex()[..16].to_string(),
        state_hash,
        converge_ms: converged_at.map_or(0, |t| t - end),
        faults: w.faults,
        deltas: w.oracle.len() as u64,
        bytes_per_delta: if w.delta_items == 0 { 0.0 } else { w.delta_bytes as f64 / w.delta_items as f64 },
        bytes_total: w.bytes_total,
        realign_bytes: w.bytes_total - realign_from,
        realign_by_kind: std::array::from_fn(|k| w.bytes_by_kind[k] - realign_kinds[k]),
        diverged_bytes: diverged.1,
        diverged_fields: diverged.0,
        rejected: w.rejected,
        txns,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
