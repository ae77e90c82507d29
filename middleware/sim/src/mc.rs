//! A bounded exhaustive model checker over the sans-IO core: every interleaving of message
//! delivery, message loss, time steps and crashes, up to a depth, for a small serial group in
//! which members race to claim one task. States are deduplicated by fingerprint.
//!
//! Checked in every state reached: no task is claimed twice; every transaction has the same
//! outcome wherever it was decided; at most one membership decision per epoch across all
//! nodes. Checked from every leaf, by healing (no more loss, time advancing) for a bounded
//! number of rounds: every transaction ends (committed or aborted) on every node.
//!
//! With `convergent`, the group is convergent and every member writes instead of claiming,
//! and the membership rule is checked where it is applied (DESIGN.md, "Removals need a
//! majority that hears"): every removal a node proposes names a member it really had not
//! heard for the timeout, never itself, and only members it really heard within the window,
//! which with it are a majority; from every leaf, the heal brings every member back into
//! every view with identical state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use spook_core::{
    Action, Dest, EndpointId, Op, FieldId, GroupConfig, GroupId, GroupKind, OpId, Precondition, Record, RegisterId, Replica, Schema, Txn,
    TxnWrite, Value,
};

const TASK: RegisterId = RegisterId(0);
const OWNER: FieldId = FieldId(9);

/// Bounds of an exploration.
#[derive(Clone, Copy, Debug)]
pub struct McConfig {
    /// Replicas.
    pub nodes: usize,
    /// How many of them submit a claim at the start.
    pub claimants: usize,
    /// Maximum number of steps from the initial state.
    pub depth: usize,
    /// Maximum crashes along one path.
    pub crashes: usize,
    /// Maximum time steps (of `step_ms`) along one path.
    pub ticks: usize,
    /// Length of one time step (ms).
    pub step_ms: u64,
    /// Maximum messages lost along one path.
    pub losses: usize,
    /// Stop after this many distinct states.
    pub max_states: usize,
    /// Heal and check termination from at most this many leaves.
    pub max_leaves: usize,
    /// A convergent group (the membership rule) instead of a serial claim race.
    pub convergent: bool,
    /// Digests to all members as one frame ([`GroupConfig::digest_broadcast`]).
    pub digest_broadcast: bool,
    /// Least time between prompt acks ([`GroupConfig::prompt_ack_ms`]); 0: acks ride the
    /// digests only.
    pub prompt_ack_ms: u64,
}

impl Default for McConfig {
    fn default() -> Self {
        McConfig { nodes: 3, claimants: 2, depth: 12, crashes: 1, ticks: 4, step_ms: 150, losses: 2, max_states: 500_000, max_leaves: 2_000, convergent: false, digest_broadcast: false, prompt_ack_ms: 0 }
    }
}

/// What an exploration found.
#[derive(Clone, Debug, Default)]
pub struct McReport {
    /// Distinct states explored.
    pub states: usize,
    /// Leaves healed and checked for termination.
    pub leaves_checked: usize,
    /// Deepest level reached.
    pub max_depth: usize,
    /// Whether `max_states` cut the exploration short.
    pub truncated: bool,
    /// Invariant violations (empty when all hold), each with the path that reached it.
    pub violations: Vec<String>,
    /// Leaves whose path made at least one removal proposal (each judged by the rule).
    pub leaves_with_removals: usize,
}

#[derive(Clone)]
struct State {
    now: u64,
    replicas: Vec<Replica>,
    disks: Vec<Vec<Record>>,
    net: Vec<(usize, usize, Vec<u8>)>,
    crashes: usize,
    ticks: usize,
    losses: usize,
    claimants: usize,
    path: Vec<String>,
    /// When each node last received a frame from each other (0: never).
    last_delivery: Vec<Vec<u64>>,
    /// The first membership rule broken where a proposal was made.
    broken: Option<String>,
    /// Removal proposals judged along this path.
    proposals: usize,
}

fn config(ids: &[EndpointId], convergent: bool, digest_broadcast: bool, prompt_ack_ms: u64) -> GroupConfig {
    let mut c = GroupConfig::new(GroupId([5; 16]), Schema::fleet(), 1_000, ids.to_vec());
    c.kind = if convergent { GroupKind::Convergent } else { GroupKind::Serial };
    // A fixed timeout keeps the window the checker judges by exact.
    c.decohere_max_ms = 300;
    c.digest_interval_ms = 100;
    c.digest_fanout = ids.len();
    c.decohere_after_ms = 300;
    c.rejoin_after_ms = 300;
    c.resend_after_ms = 50;
    c.digest_broadcast = digest_broadcast;
    c.prompt_ack_ms = prompt_ack_ms;
    c
}

impl State {
    fn settle(&mut self, i: usize) {
        let ids: Vec<EndpointId> = self.replicas.iter().map(Replica::me).collect();
        let r = &mut self.replicas[i];
        while let Some(p) = r.poll_persist() {
            self.proposals += p.records.iter().filter(|r| matches!(r, Record::Delta(d) if d.origin == ids[i] && d.ops.iter().any(|o| matches!(o, Op::RemoveMember { .. })))).count();
            if self.broken.is_none() {
                self.broken = Self::judge_proposals(i, &ids, &p.records, &self.last_delivery[i], self.now, r.config().decohere_after_ms);
            }
            self.disks[i].extend(p.records);
            r.handle_persisted(p.id, self.now);
        }
        while let Some(t) = r.poll_transmit() {
            for (j, id) in ids.iter().enumerate() {
                let to = match t.dest {
                    Dest::Members => j != i,
                    Dest::Peer(p) => p == *id,
                };
                if to && j != i {
                    self.net.push((i, j, t.bytes.clone()));
                }
            }
        }
        while r.poll_event().is_some() {}
    }

    /// The membership rule where node `i` applies it: each removal it proposes names a member
    /// it had not heard for the timeout, not itself, and members it did hear within the
    /// window, which with it are a majority of the group.
    fn judge_proposals(i: usize, ids: &[EndpointId], records: &[Record], heard_at: &[u64], now: u64, timeout: u64) -> Option<String> {
        let me = ids[i];
        for rec in records {
            let Record::Delta(d) = rec else { continue };
            if d.origin != me {
                continue;
            }
            for op in &d.ops {
                let Op::RemoveMember { member, heard: Some(heard), .. } = op else { continue };
                let m = ids.iter().position(|x| x == member)?;
                if *member == me {
                    return Some(format!("node {i} proposed its own removal"));
                }
                if heard_at[m] > 0 && now.saturating_sub(heard_at[m]) <= timeout {
                    return Some(format!("node {i} proposed removing node {m}, heard {} ms ago", now - heard_at[m]));
                }
                for h in heard {
                    let k = ids.iter().position(|x| x == h)?;
                    if heard_at[k] == 0 || now.saturating_sub(heard_at[k]) > timeout {
                        return Some(format!("node {i} named node {k} as heard when removing node {m}, but it was not heard within {timeout} ms"));
                    }
                }
                if 2 * (heard.len() + 1) <= ids.len() {
                    return Some(format!("node {i} proposed removing node {m} hearing only {} of {}", heard.len() + 1, ids.len()));
                }
            }
        }
        None
    }

    fn fingerprint(&self) -> Vec<u8> {
        let mut h = blake3::Hasher::new();
        h.update(&self.now.to_le_bytes());
        h.update(&(self.crashes as u64).to_le_bytes());
        for row in &self.last_delivery {
            for t in row {
                h.update(&t.to_le_bytes());
            }
        }
        for r in &self.replicas {
            h.update(&r.state_hash().short());
            h.update(&r.serial().hash().short());
            h.update(&r.frontier().0.to_le_bytes());
            h.update(r.summary().as_bytes());
        }
        let mut net: Vec<&(usize, usize, Vec<u8>)> = self.net.iter().collect();
        net.sort();
        for (a, b, m) in net {
            h.update(&[*a as u8, *b as u8]);
            h.update(blake3::hash(m).as_bytes());
        }
        h.finalize().as_bytes().to_vec()
    }

    fn claims(&self) -> Vec<OpId> {
        (0..self.claimants).map(|i| OpId { client: self.replicas[i].me(), seq: 1 }).collect()
    }

    fn check(&self) -> Option<String> {
        if let Some(b) = &self.broken {
            return Some(b.clone());
        }
        let mut owners = BTreeSet::new();
        for r in &self.replicas {
            if let Some(c) = r.serial().cell(TASK, OWNER) {
                if c.version > 1 {
                    return Some(format!("task claimed {} times at one node", c.version));
                }
                owners.insert(c.value.canonical_bytes());
            }
        }
        if owners.len() > 1 {
            return Some("two nodes hold different owners of the task".into());
        }
        for id in self.claims() {
            let decided: BTreeSet<String> = self.replicas.iter().filter_map(|r| r.serial().outcome(&id)).map(|o| format!("{o:?}")).collect();
            if decided.len() > 1 {
                return Some(format!("claim {id:?} has different outcomes: {decided:?}"));
            }
        }
        let mut epochs: BTreeMap<u64, String> = BTreeMap::new();
        for r in &self.replicas {
            let mut first: BTreeMap<u64, String> = BTreeMap::new();
            for (e, ops) in r.decisions() {
                first.entry(e).or_insert_with(|| format!("{ops:?}"));
            }
            for (e, v) in first {
                if let Some(w) = epochs.get(&e) {
                    if *w != v {
                        return Some(format!("epoch {e}: two decisions {w} and {v}"));
                    }
                }
                epochs.insert(e, v);
            }
        }
        None
    }

    /// Heal: deliver everything, advance time, until quiet; then every claim must have ended
    /// everywhere.
    fn heal_and_check_termination(mut self, step_ms: u64) -> Option<String> {
        for _ in 0..200 {
            self.now += step_ms;
            for i in 0..self.replicas.len() {
                self.replicas[i].handle_timeout(self.now);
                self.settle(i);
            }
            let mut queue: VecDeque<(usize, usize, Vec<u8>)> = std::mem::take(&mut self.net).into();
            let mut budget = 10_000;
            while let Some((from, to, m)) = queue.pop_front() {
                budget -= 1;
                if budget == 0 {
                    break;
                }
                let f = self.replicas[from].me();
                self.last_delivery[to][from] = self.now;
                self.replicas[to].handle_frame(f, &m, self.now);
                self.settle(to);
                queue.extend(self.net.drain(..));
            }
            let all_done = self.claims().iter().all(|id| self.replicas.iter().all(|r| r.serial().outcome(id).is_some()));
            let healed = self.replicas.iter().all(|r| r.members().len() == self.replicas.len() && r.state_hash() == self.replicas[0].state_hash());
            if all_done && healed {
                return self.check();
            }
        }
        let missing: Vec<String> = self
            .claims()
            .iter()
            .map(|id| format!("{}", self.replicas.iter().filter(|r| r.serial().outcome(id).is_none()).count()))
            .collect();
        let views: Vec<usize> = self.replicas.iter().map(|r| r.members().len()).collect();
        Some(format!("after healing, claims still undecided at this many nodes each: {missing:?}; members in each view {views:?}"))
    }
}

/// Explore every interleaving within the bounds.
#[must_use]
pub fn explore(cfg: McConfig) -> McReport {
    let ids: Vec<EndpointId> = (0..cfg.nodes as u32).map(EndpointId::from_index).collect();
    let gc = config(&ids, cfg.convergent, cfg.digest_broadcast, cfg.prompt_ack_ms);
    let mut init = State {
        now: 2_000,
        replicas: ids.iter().map(|i| Replica::new(*i, gc.clone(), 2_000)).collect(),
        disks: vec![Vec::new(); cfg.nodes],
        net: Vec::new(),
        crashes: 0,
        ticks: 0,
        losses: 0,
        claimants: if cfg.convergent { 0 } else { cfg.claimants.min(cfg.nodes) },
        path: Vec::new(),
        last_delivery: vec![vec![0; cfg.nodes]; cfg.nodes],
        broken: None,
        proposals: 0,
    };
    if cfg.convergent {
        for i in 0..cfg.nodes {
            let op = Op::Field { reg: TASK, field: FieldId(0), action: Action::Set(Value::F64(i as f64)) };
            if init.replicas[i].write(2_000, vec![op]).is_err() {
                return McReport { violations: vec!["a write was refused".into()], ..McReport::default() };
            }
            init.settle(i);
        }
    }
    for (i, &client) in ids.iter().enumerate().take(init.claimants) {
        let txn = Txn {
            id: OpId { client, seq: 1 },
            deadline_ms: 2_000 + 60_000,
            after: vec![],
            preconditions: vec![Precondition::Absent { reg: TASK, field: OWNER }],
            writes: vec![TxnWrite { reg: TASK, field: OWNER, value: Value::I64(i as i64), lease_ms: None }],
        };
        if init.replicas[i].submit(2_000, txn).is_err() {
            return McReport { violations: vec!["a claim was refused".into()], ..McReport::default() };
        }
        init.settle(i);
    }
    let mut report = McReport::default();
    let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    dfs(init, 0, &cfg, &gc, &mut seen, &mut report);
    report
}

/// Depth-first, so memory holds one path, not a level.
fn dfs(st: State, depth: usize, cfg: &McConfig, gc: &GroupConfig, seen: &mut std::collections::HashSet<Vec<u8>>, report: &mut McReport) {
    if report.truncated || !seen.insert(st.fingerprint()) {
        return;
    }
    report.states += 1;
    report.max_depth = report.max_depth.max(depth);
    if let Some(v) = st.check() {
        report.violations.push(format!("{v} after {:?}", st.path));
        return;
    }
    if report.states >= cfg.max_states {
        report.truncated = true;
        return;
    }
    if depth == cfg.depth {
        if report.leaves_checked < cfg.max_leaves {
            report.leaves_checked += 1;
            report.leaves_with_removals += usize::from(st.proposals > 0);
            let path = st.path.clone();
            if let Some(v) = st.heal_and_check_termination(cfg.step_ms) {
                report.violations.push(format!("{v} after {path:?}"));
            }
        }
        return;
    }
    // Deliver or lose each message in flight.
    for k in 0..st.net.len() {
        let mut s = st.clone();
        let (from, to, m) = s.net.remove(k);
        s.path.push(format!("deliver {from}->{to}"));
        let f = s.replicas[from].me();
        let now = s.now;
        s.last_delivery[to][from] = now;
        s.replicas[to].handle_frame(f, &m, now);
        s.settle(to);
        dfs(s, depth + 1, cfg, gc, seen, report);
        if st.losses < cfg.losses {
            let mut s = st.clone();
            s.net.remove(k);
            s.losses += 1;
            s.path.push(format!("lose {from}->{to}"));
            dfs(s, depth + 1, cfg, gc, seen, report);
        }
    }
    if st.ticks < cfg.ticks {
        let mut s = st.clone();
        s.now += cfg.step_ms;
        s.ticks += 1;
        s.path.push("tick".into());
        for i in 0..s.replicas.len() {
            let now = s.now;
            s.replicas[i].handle_timeout(now);
            s.settle(i);
        }
        dfs(s, depth + 1, cfg, gc, seen, report);
    }
    if st.crashes < cfg.crashes {
        for i in 0..st.replicas.len() {
            let mut s = st.clone();
            s.crashes += 1;
            s.path.push(format!("crash+restart {i}"));
            let me = s.replicas[i].me();
            s.replicas[i] = Replica::restore(me, gc.clone(), &s.disks[i], s.now);
            s.settle(i);
            dfs(s, depth + 1, cfg, gc, seen, report);
        }
    }
}
