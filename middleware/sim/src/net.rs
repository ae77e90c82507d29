//! A simulated network that hosts application code. Each member of one group is a core
//! replica on a virtual clock; frames move between them only through the link model (loss,
//! duplication, reordering, delay, partitions, crashes). Code reaches a member through
//! [`SimGroup`], the same [`GroupApi`] a client's group on a real node offers, so the agent
//! patterns and the fleet twin run here the code they run against real nodes.
//!
//! Agents are futures spawned on a member ([`SimNet::spawn`]). Every [`SimNet::step`] moves
//! the clock one tick, delivers the frames due, fires the replicas' timers, then polls each
//! agent once, in spawn order, with a no-op waker: a [`SimGroup`] call completes at once
//! (the replica is in this process), and [`GroupApi::sleep_ms`] is ready once the virtual
//! clock has passed. A run is a pure function of its seed and the agents' code.
//!
//! ```
//! use spook_core::api::{GroupApi, Outcome, Test, TxSpec};
//! use spook_core::{GroupKind, RegisterId, Schema};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let mut net = SimNet::new(NetConfig { seed: 7, loss: 0.1, ..NetConfig::default() }, Schema::fleet(), GroupKind::Serial, 3);
//! let won = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
//! for i in 0..3 {
//!     let (g, won) = (net.group(i), won.clone());
//!     net.spawn(i, async move {
//!         let tx = TxSpec::new().when(RegisterId(1), "owner", Test::Absent).set(RegisterId(1), "owner", g.id().to_string());
//!         if let Ok(Outcome::Committed { .. }) = g.transact(tx).await {
//!             won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         }
//!     });
//! }
//! net.run_for(15_000);
//! assert_eq!(won.load(std::sync::atomic::Ordering::SeqCst), 1, "one claim commits");
//! assert!(net.converged());
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use spook_core::api::{Change, Event, Fields, GroupApi, Outcome, TxSpec, WatchStream};
use spook_core::{Dest, EndpointId, GroupConfig, GroupId, GroupKind, Op, OpId, Record, RegisterId, Replica, Schema, ValueError, View, WriteError};

use crate::rng::Rng;

/// The link model and clocks of a [`SimNet`]. Defaults: no faults, 1–10 ms of delay, 1 ms
/// ticks, 1–3 ms to make a batch durable.
///
/// ```
/// let lossy = spook_sim::net::NetConfig { seed: 42, loss: 0.3, delay_ms: (5, 80), ..Default::default() };
/// assert_eq!(lossy.step_ms, 1);
/// ```
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The seed: a run is a pure function of it, the group and the agents.
    pub seed: u64,
    /// Per-frame loss probability.
    pub loss: f64,
    /// Per-frame duplication probability.
    pub dup: f64,
    /// Probability that a frame is held back behind later ones.
    pub reorder: f64,
    /// One-way delay range (ms).
    pub delay_ms: (u64, u64),
    /// Each member's clock is offset by a value in ±skew (ms).
    pub skew_ms: u64,
    /// One tick of the virtual clock (ms).
    pub step_ms: u64,
    /// Time to make a batch durable (ms range): a crash meanwhile loses the batch, as the
    /// durability contract allows.
    pub persist_ms: (u64, u64),
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig { seed: 1, loss: 0.0, dup: 0.0, reorder: 0.0, delay_ms: (1, 10), skew_ms: 0, step_ms: 1, persist_ms: (1, 3) }
    }
}

/// Why a simulated group call failed.
///
/// ```
/// use spook_core::api::GroupApi;
/// use spook_sim::net::SimError;
/// use spook_sim::net::{NetConfig, SimNet};
/// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
/// net.crash(2);
/// let e = futures_lite_block_on(net.group(2).members());
/// assert_eq!(e, Err(SimError::Down(2)));
/// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
/// #         std::task::Poll::Ready(v) => v,
/// #         std::task::Poll::Pending => unreachable!("simulated calls complete at once"),
/// #     }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The member is crashed.
    #[error("member {0} is down")]
    Down(usize),
    /// A field the schema lacks or a value that does not fit it.
    #[error(transparent)]
    BadValue(#[from] ValueError),
    /// The replica refused the write.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Frames and faults so far.
///
/// ```
/// use spook_sim::net::{NetConfig, SimNet};
/// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
/// net.run_for(2_000);
/// let s = net.stats();
/// assert!(s.frames > 0 && s.lost == 0, "{s:?}");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames sent (per recipient).
    pub frames: u64,
    /// Bytes sent (per recipient).
    pub bytes: u64,
    /// Frames lost on a link.
    pub lost: u64,
    /// Frames lost to a partition or a crashed recipient.
    pub cut: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
}

/// Most events a watch holds for its consumer before it counts a lag (as many as a
/// client's watch).
///
/// ```
/// assert!(spook_sim::net::WATCH_QUEUE >= 256);
/// ```
pub const WATCH_QUEUE: usize = 256;

struct WatchQueue {
    node: usize,
    view: View,
    events: VecDeque<Event>,
    missed: u64,
    lagged: BTreeSet<RegisterId>,
    ended: bool,
    /// The end was reported to the consumer (an error, then `None`).
    reported: bool,
}

struct Node {
    id: EndpointId,
    replica: Option<Replica>,
    disk: Vec<Record>,
    /// Batches being made durable: (due, batch id, records), in id order.
    persisting: VecDeque<(u64, u64, Vec<Record>)>,
    skew: i64,
    wake_at: u64,
}

/// A session: the `client` of its transactions, and its next seq.
struct Session {
    id: EndpointId,
    next_seq: u64,
}

/// Calls one tick may take before the simulator calls it a busy loop.
const CALLS_PER_TICK: u64 = 1_000_000;

struct Net {
    cfg: NetConfig,
    rng: Rng,
    now: u64,
    group: GroupConfig,
    nodes: Vec<Node>,
    side: Vec<u32>,
    in_flight: BTreeMap<(u64, u64), (usize, usize, Vec<u8>)>,
    sent: u64,
    stats: NetStats,
    watches: Vec<Weak<Mutex<WatchQueue>>>,
    /// Index = member for the members' own sessions; more from [`SimNet::session`].
    sessions: Vec<Session>,
    calls: u64,
}

/// The virtual time a net starts at (ms), so skewed clocks stay positive.
const START: u64 = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking agent poisons nothing the simulation cannot go on with.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Net {
    fn local(&self, i: usize) -> u64 {
        (self.now as i64 + self.nodes[i].skew).max(0) as u64
    }

    fn replica(&mut self, i: usize) -> Result<&mut Replica, SimError> {
        self.nodes.get_mut(i).and_then(|n| n.replica.as_mut()).ok_or(SimError::Down(i))
    }

    /// Count a call of an agent: one that never sleeps would stop virtual time.
    fn call(&mut self) {
        self.calls += 1;
        assert!(
            self.calls <= CALLS_PER_TICK,
            "an agent made {CALLS_PER_TICK} calls in one tick without waiting: a loop over a simulated group must sleep_ms (virtual time only moves between polls)"
        );
    }

    /// Everything member `i` asks for after an input: durable records (written at once),
    /// frames, events, the next wake-up.
    fn drain(&mut self, i: usize) {
        let (lo, hi) = self.cfg.persist_ms;
        let mut persists = Vec::new();
        let mut sends = Vec::new();
        let mut events = Vec::new();
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else { return };
        while let Some(p) = r.poll_persist() {
            persists.push(p);
        }
        while let Some(t) = r.poll_transmit() {
            sends.push(t);
        }
        while let Some(e) = r.poll_event() {
            events.push(e);
        }
        node.wake_at = r.poll_timeout();
        for p in persists {
            // Batches complete in id order, never before an earlier one.
            let due = (self.now + self.rng.range(lo, hi.max(lo))).max(self.nodes[i].persisting.back().map_or(0, |b| b.0));
            self.nodes[i].persisting.push_back((due, p.id, p.records));
        }
        for t in sends {
            let to: Vec<usize> = match t.dest {
                Dest::Members => (0..self.nodes.len()).filter(|&j| j != i).collect(),
                Dest::Peer(p) => self.nodes.iter().position(|n| n.id == p).into_iter().collect(),
            };
            for j in to {
                self.send(i, j, &t.bytes);
            }
        }
        for e in events {
            self.publish(i, e);
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: &[u8]) {
        self.stats.frames += 1;
        self.stats.bytes += bytes.len() as u64;
        if self.side[from] != self.side[to] {
            self.stats.cut += 1;
            return;
        }
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.cfg.dup) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = self.cfg.delay_ms;
            let mut d = self.rng.range(lo, hi.max(lo));
            if self.rng.chance(self.cfg.reorder) {
                d += self.rng.range(hi, hi * 4 + 10);
            }
            self.sent += 1;
            self.in_flight.insert((self.now + d.max(1), self.sent), (from, to, bytes.to_vec()));
        }
    }

    fn fields(&self, i: usize, reg: RegisterId, view: View) -> Fields {
        let Some(r) = self.nodes[i].replica.as_ref() else { return Fields::new() };
        let schema = r.schema();
        (0..schema.fields.len())
            .filter_map(|f| {
                let fid = spook_core::FieldId(u16::try_from(f).ok()?);
                Some((schema.fields[f].name.clone(), r.get(view, reg, fid)?))
            })
            .collect()
    }

    /// Hand a replica's event to the watches on its member.
    fn publish(&mut self, i: usize, e: spook_core::Event) {
        self.watches.retain(|w| w.strong_count() > 0);
        let watches: Vec<Arc<Mutex<WatchQueue>>> = self.watches.iter().filter_map(Weak::upgrade).collect();
        for w in watches {
            let mut q = lock(&w);
            if q.node != i || q.ended {
                continue;
            }
            let out: Vec<Event> = match &e {
                spook_core::Event::RegistersChanged { view, registers } if *view == q.view => {
                    registers.iter().map(|&register| Event::Change(Change { register, view: *view, fields: self.fields(i, register, *view), snapshot: false })).collect()
                }
                spook_core::Event::Committed { frontier, .. } => vec![Event::Committed { frontier_ms: frontier.ms() }],
                spook_core::Event::Decohered(m) => vec![Event::Decohered(*m)],
                spook_core::Event::MemberJoined(m) => vec![Event::MemberJoined(*m)],
                spook_core::Event::MemberLeft(m) => vec![Event::MemberLeft(*m)],
                spook_core::Event::ReEntangled { registers } => vec![Event::ReEntangled { registers: registers.clone() }],
                _ => Vec::new(),
            };
            for ev in out {
                if q.missed > 0 || q.events.len() >= WATCH_QUEUE {
                    q.missed += 1;
                    if let Event::Change(c) = ev {
                        q.lagged.insert(c.register);
                    }
                } else {
                    q.events.push_back(ev);
                }
            }
        }
    }

    fn end_watches(&mut self, i: usize) {
        for w in self.watches.iter().filter_map(Weak::upgrade) {
            let mut q = lock(&w);
            if q.node == i {
                q.ended = true;
            }
        }
    }
}

type Agent = (usize, Pin<Box<dyn Future<Output = ()> + Send>>);

/// One group's members on a virtual clock, hosting agents. See the [module docs](self).
///
/// ```
/// use spook_sim::net::{NetConfig, SimNet};
/// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
/// net.isolate(2);
/// net.run_for(1_000);
/// net.heal();
/// assert!(net.run_until(30_000, SimNet::converged));
/// ```
pub struct SimNet {
    net: Arc<Mutex<Net>>,
    agents: Vec<Option<Agent>>,
}

impl SimNet {
    /// `members` replicas of one group of `schema` and `kind`, started at once.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// assert!(net.with_replica(2, |r| r.members().len()) == Some(3));
    /// ```
    #[must_use]
    pub fn new(cfg: NetConfig, schema: Schema, kind: GroupKind, members: usize) -> SimNet {
        let ids: Vec<EndpointId> = (0..members).filter_map(|i| u32::try_from(i).ok()).map(EndpointId::from_index).collect();
        let mut group = GroupConfig::new(GroupId([9; 16]), schema, 1_000, ids.clone());
        group.kind = kind;
        group.max_future_ms = 2 * cfg.skew_ms + cfg.delay_ms.1 * 5 + 100;
        SimNet::with_group(cfg, group)
    }

    /// The members of `group` (its `members`), started at once.
    ///
    /// ```
    /// use spook_core::{EndpointId, GroupConfig, GroupId, Schema};
    /// let ids = vec![EndpointId::from_index(0), EndpointId::from_index(1)];
    /// let mut group = GroupConfig::new(GroupId([1; 16]), Schema::fleet(), 1_000, ids);
    /// group.decohere_after_ms = 1_000;
    /// let net = spook_sim::net::SimNet::with_group(spook_sim::net::NetConfig::default(), group);
    /// ```
    #[must_use]
    pub fn with_group(cfg: NetConfig, group: GroupConfig) -> SimNet {
        let mut rng = Rng::new(cfg.seed);
        let nodes = group
            .members
            .iter()
            .map(|&id| {
                let skew = if cfg.skew_ms == 0 { 0 } else { rng.range(0, 2 * cfg.skew_ms) as i64 - cfg.skew_ms as i64 };
                Node { id, replica: None, disk: Vec::new(), persisting: VecDeque::new(), skew, wake_at: 0 }
            })
            .collect::<Vec<_>>();
        let side = vec![0; nodes.len()];
        let sessions = nodes.iter().map(|n| Session { id: n.id, next_seq: 1 }).collect();
        let mut net = Net { cfg, rng, now: START, group, nodes, side, in_flight: BTreeMap::new(), sent: 0, stats: NetStats::default(), watches: Vec::new(), sessions, calls: 0 };
        for i in 0..net.nodes.len() {
            let local = net.local(i);
            net.nodes[i].replica = Some(Replica::new(net.nodes[i].id, net.group.clone(), local));
            net.drain(i);
        }
        SimNet { net: Arc::new(Mutex::new(net)), agents: Vec::new() }
    }

    /// Member `i`'s group, as code sees it, in the member's own session (its transactions'
    /// client is the member).
    ///
    /// ```
    /// use spook_core::api::GroupApi;
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// assert_eq!(net.group(1).id(), spook_core::EndpointId::from_index(1));
    /// ```
    #[must_use]
    pub fn group(&self, i: usize) -> SimGroup {
        SimGroup { net: self.net.clone(), node: i, session: i }
    }

    /// Member `i`'s group in a session of its own, as a client of a node has: its own id
    /// (drawn from the seed) and seqs, so that agents sharing a member do not share claims.
    ///
    /// ```
    /// use spook_core::api::GroupApi;
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Serial, 2);
    /// let (a, b) = (net.session(0), net.session(0));
    /// assert_ne!(a.id(), b.id());
    /// assert_ne!(a.id(), net.group(0).id());
    /// ```
    #[must_use]
    pub fn session(&self, i: usize) -> SimGroup {
        let mut net = lock(&self.net);
        let n = net.sessions.len() as u64;
        let h = blake3::Hasher::new_derive_key("spook sim session v1").update(&net.cfg.seed.to_le_bytes()).update(&n.to_le_bytes()).finalize();
        net.sessions.push(Session { id: EndpointId(*h.as_bytes()), next_seq: 1 });
        SimGroup { net: self.net.clone(), node: i, session: net.sessions.len() - 1 }
    }

    /// Run `agent` on member `i` until it ends or the member crashes.
    ///
    /// ```
    /// use spook_core::api::GroupApi;
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// let g = net.group(0);
    /// net.spawn(0, async move { g.sleep_ms(500).await; });
    /// net.run_for(499);
    /// assert_eq!(net.agents(), 1);
    /// net.run_for(2);
    /// assert_eq!(net.agents(), 0);
    /// ```
    pub fn spawn(&mut self, i: usize, agent: impl Future<Output = ()> + Send + 'static) {
        self.agents.push(Some((i, Box::pin(agent))));
    }

    /// The virtual clock (ms).
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// let t = net.now_ms();
    /// net.step();
    /// assert_eq!(net.now_ms(), t + 1);
    /// ```
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        lock(&self.net).now
    }

    /// One tick: frames due, timers due, then every agent polled once.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// for _ in 0..100 {
    ///     net.step();
    /// }
    /// ```
    pub fn step(&mut self) {
        {
            let mut net = lock(&self.net);
            net.now += net.cfg.step_ms.max(1);
            let now = net.now;
            while let Some(entry) = net.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (from, to, bytes) = entry.remove();
                let (from_id, local) = (net.nodes[from].id, net.local(to));
                match net.nodes[to].replica.as_mut() {
                    Some(r) => r.handle_frame(from_id, &bytes, local),
                    None => {
                        net.stats.cut += 1;
                        continue;
                    }
                }
                net.drain(to);
            }
            for i in 0..net.nodes.len() {
                while net.nodes[i].persisting.front().is_some_and(|b| b.0 <= now) {
                    let Some((_, id, records)) = net.nodes[i].persisting.pop_front() else { break };
                    let local = net.local(i);
                    let node = &mut net.nodes[i];
                    node.disk.extend(records);
                    if let Some(r) = node.replica.as_mut() {
                        r.handle_persisted(id, local);
                    }
                    net.drain(i);
                }
            }
            for i in 0..net.nodes.len() {
                let local = net.local(i);
                if net.nodes[i].wake_at <= local {
                    if let Some(r) = net.nodes[i].replica.as_mut() {
                        r.handle_timeout(local);
                        net.drain(i);
                    }
                }
            }
        }
        lock(&self.net).calls = 0;
        let mut cx = Context::from_waker(Waker::noop());
        for slot in &mut self.agents {
            if let Some((_, fut)) = slot {
                if fut.as_mut().poll(&mut cx).is_ready() {
                    *slot = None;
                }
            }
        }
        self.agents.retain(Option::is_some);
    }

    /// Step for `ms` of virtual time.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// let t = net.now_ms();
    /// net.run_for(250);
    /// assert_eq!(net.now_ms(), t + 250);
    /// ```
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now_ms() + ms;
        while self.now_ms() < end {
            self.step();
        }
    }

    /// Step until `done` holds or `ms` of virtual time pass; whether it held.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// assert!(net.run_until(10_000, |n| n.stats().frames > 10));
    /// ```
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&SimNet) -> bool) -> bool {
        let end = self.now_ms() + ms;
        while self.now_ms() < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Agents still running.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// assert_eq!(net.agents(), 0);
    /// ```
    #[must_use]
    pub fn agents(&self) -> usize {
        self.agents.len()
    }

    /// Cut member `i` off from every other (its radio fails); [`SimNet::heal`] ends it.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// net.isolate(0);
    /// let before = net.stats().cut;
    /// net.run_for(1_000);
    /// assert!(net.stats().cut > before);
    /// ```
    pub fn isolate(&mut self, i: usize) {
        let mut net = lock(&self.net);
        let fresh = net.side.iter().max().copied().unwrap_or(0) + 1;
        if let Some(s) = net.side.get_mut(i) {
            *s = fresh;
        }
    }

    /// Split the members in two: `a` on one side, the rest on the other.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// net.split(&[0]);
    /// net.run_for(1_000);
    /// net.heal();
    /// ```
    pub fn split(&mut self, a: &[usize]) {
        let mut net = lock(&self.net);
        for (i, s) in net.side.iter_mut().enumerate() {
            *s = u32::from(a.contains(&i));
        }
    }

    /// End every partition.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// net.isolate(1);
    /// net.heal();
    /// assert!(net.run_until(10_000, SimNet::converged));
    /// ```
    pub fn heal(&mut self) {
        lock(&self.net).side.iter_mut().for_each(|s| *s = 0);
    }

    /// Crash member `i`: its replica and agents stop, its watches end, batches not yet durable
    /// are lost; its disk (every record it persisted) stays.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// net.crash(1);
    /// assert!(net.with_replica(1, |_| ()).is_none());
    /// net.restart(1);
    /// assert!(net.with_replica(1, |_| ()).is_some());
    /// ```
    pub fn crash(&mut self, i: usize) {
        let dropped: Vec<Agent> = self.agents.iter_mut().filter(|a| a.as_ref().is_some_and(|(n, _)| *n == i)).filter_map(Option::take).collect();
        self.agents.retain(Option::is_some);
        {
            let mut net = lock(&self.net);
            if let Some(n) = net.nodes.get_mut(i) {
                n.replica = None;
                // What was not yet durable is lost.
                n.persisting.clear();
            }
            net.end_watches(i);
        }
        // Dropped outside the lock: an agent's drop may take it.
        drop(dropped);
    }

    /// Restart member `i` from its disk.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// net.crash(0);
    /// net.run_for(500);
    /// net.restart(0);
    /// assert!(net.run_until(30_000, SimNet::converged));
    /// ```
    pub fn restart(&mut self, i: usize) {
        let mut net = lock(&self.net);
        if i >= net.nodes.len() || net.nodes[i].replica.is_some() {
            return;
        }
        let local = net.local(i);
        let n = &net.nodes[i];
        let r = Replica::restore(n.id, net.group.clone(), &n.disk, local);
        let next = r.serial().outcomes_of(n.id).map(|(s, _)| s + 1).max().unwrap_or(1);
        net.sessions[i].next_seq = net.sessions[i].next_seq.max(next);
        net.nodes[i].replica = Some(r);
        net.drain(i);
    }

    /// Read member `i`'s replica (`None` while it is down).
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// let hash = net.with_replica(0, |r| r.state_hash());
    /// assert!(hash.is_some());
    /// ```
    pub fn with_replica<T>(&self, i: usize, f: impl FnOnce(&Replica) -> T) -> Option<T> {
        lock(&self.net).nodes.get(i).and_then(|n| n.replica.as_ref()).map(f)
    }

    /// Whether every live member holds the same deltas and the same committed state, and has
    /// committed all of it.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// assert!(net.run_until(10_000, SimNet::converged));
    /// ```
    #[must_use]
    pub fn converged(&self) -> bool {
        let net = lock(&self.net);
        let live: Vec<&Replica> = net.nodes.iter().filter_map(|n| n.replica.as_ref()).collect();
        live.windows(2).all(|w| w[0].state_hash() == w[1].state_hash() && w[0].committed_hash() == w[1].committed_hash())
            && live.iter().all(|r| r.pending_candidates() == 0)
    }

    /// Frames and faults so far.
    ///
    /// ```
    /// use spook_sim::net::{NetConfig, SimNet};
    /// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
    /// net.run_for(1_000);
    /// println!("{:?}", net.stats());
    /// ```
    #[must_use]
    pub fn stats(&self) -> NetStats {
        lock(&self.net).stats
    }
}

/// One member's group, as the code running on it sees it: a [`GroupApi`]. Cheap to clone.
///
/// ```
/// use spook_core::api::GroupApi;
/// use spook_sim::net::{NetConfig, SimNet};
/// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
/// let g = net.group(0);
/// net.spawn(0, async move {
///     let me = g.id().to_string();
///     g.write(spook_core::RegisterId(1), [("owner".to_string(), me.into())].into()).await.unwrap();
/// });
/// assert!(net.run_until(10_000, |n| n.agents() == 0 && n.converged()));
/// ```
#[derive(Clone)]
pub struct SimGroup {
    net: Arc<Mutex<Net>>,
    node: usize,
    session: usize,
}

impl SimGroup {
    /// Run `f` on the member's replica with its local time and this session (id, next seq),
    /// then send what it produced.
    fn with<T>(&self, f: impl FnOnce(&mut Replica, u64, &mut Session) -> Result<T, SimError>) -> Result<T, SimError> {
        let mut guard = lock(&self.net);
        let net = &mut *guard;
        net.call();
        let local = net.local(self.node);
        let session = &mut net.sessions[self.session];
        let r = net.nodes.get_mut(self.node).and_then(|n| n.replica.as_mut()).ok_or(SimError::Down(self.node))?;
        let out = f(r, local, session);
        net.drain(self.node);
        out
    }
}

/// A watch on a simulated member; see [`WatchStream`].
///
/// ```
/// use spook_core::api::{Event, GroupApi, WatchStream};
/// use spook_core::{RegisterId, Value, View};
/// use spook_sim::net::{NetConfig, SimNet};
/// let mut net = SimNet::new(NetConfig::default(), spook_core::Schema::fleet(), spook_core::GroupKind::Convergent, 3);
/// let (a, b) = (net.group(0), net.group(1));
/// net.spawn(1, async move {
///     let mut w = b.watch(View::Committed).await.unwrap();
///     while let Some(Ok(e)) = w.next().await {
///         if let Event::Change(c) = e {
///             assert_eq!(c.fields["battery"], Value::F64(0.5));
///             return;
///         }
///     }
/// });
/// net.spawn(0, async move {
///     a.write(RegisterId(4), [("battery".to_string(), Value::F64(0.5))].into()).await.unwrap();
/// });
/// assert!(net.run_until(10_000, |n| n.agents() == 0));
/// ```
pub struct SimWatch {
    net: Arc<Mutex<Net>>,
    queue: Arc<Mutex<WatchQueue>>,
}

impl WatchStream for SimWatch {
    type Error = SimError;

    fn next(&mut self) -> impl Future<Output = Option<Result<Event, SimError>>> + Send {
        std::future::poll_fn(|_| {
            let net = lock(&self.net);
            let mut q = lock(&self.queue);
            if let Some(e) = q.events.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if q.missed > 0 && !q.ended {
                // Caught up with what was queued: say how much was missed, then the registers
                // that changed meanwhile as they are now.
                let missed = std::mem::take(&mut q.missed);
                let (node, view) = (q.node, q.view);
                let lagged = std::mem::take(&mut q.lagged);
                q.events.extend(lagged.into_iter().map(|register| Event::Change(Change { register, view, fields: net.fields(node, register, view), snapshot: true })));
                return Poll::Ready(Some(Ok(Event::Lagged(missed))));
            }
            if q.ended {
                if !q.reported {
                    q.reported = true;
                    return Poll::Ready(Some(Err(SimError::Down(q.node))));
                }
                return Poll::Ready(None);
            }
            Poll::Pending
        })
    }
}

impl GroupApi for SimGroup {
    type Error = SimError;
    type Watch = SimWatch;

    /// The session's id: the member's own for [`SimNet::group`], a fresh one for
    /// [`SimNet::session`].
    fn id(&self) -> EndpointId {
        lock(&self.net).sessions[self.session].id
    }

    /// The member's own (possibly skewed) clock.
    fn now_ms(&self) -> u64 {
        lock(&self.net).local(self.node)
    }

    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()> + Send {
        let until = self.now_ms().saturating_add(ms);
        let net = self.net.clone();
        let node = self.node;
        std::future::poll_fn(move |_| if lock(&net).local(node) >= until { Poll::Ready(()) } else { Poll::Pending })
    }

    // Each call acts when it is awaited, not when it is made, as a node's would: a future
    // dropped unpolled does nothing.
    async fn schema(&self) -> Result<Schema, SimError> {
        self.with(|r, _, _| Ok(r.schema().clone()))
    }

    async fn read(&self, register: RegisterId, view: View) -> Result<Fields, SimError> {
        let mut net = lock(&self.net);
        net.call();
        net.replica(self.node)?;
        Ok(net.fields(self.node, register, view))
    }

    async fn write(&self, register: RegisterId, fields: Fields) -> Result<u64, SimError> {
        self.with(|r, now, _| {
            let schema = r.schema();
            let ops = fields
                .into_iter()
                .map(|(name, v)| {
                    let (field, def) = schema.field_named(&name)?;
                    Ok(Op::Field { reg: register, field, action: def.action(v)? })
                })
                .collect::<Result<Vec<_>, ValueError>>()?;
            Ok(r.write(now, ops)?.seq)
        })
    }

    async fn submit(&self, tx: TxSpec) -> Result<u64, SimError> {
        self.with(|r, now, session| {
            let seq = tx.seq.unwrap_or(session.next_seq);
            let at = r.clock_now(now).ms();
            let txn = tx.to_txn(r.schema(), OpId { client: session.id, seq }, at)?;
            r.submit(now, txn)?;
            session.next_seq = session.next_seq.max(seq + 1);
            Ok(seq)
        })
    }

    async fn outcome(&self, seq: u64) -> Result<Option<Outcome>, SimError> {
        self.with(|r, _, session| Ok(r.serial().outcome(&OpId { client: session.id, seq }).map(|o| Outcome::of(seq, o))))
    }

    async fn members(&self) -> Result<Vec<EndpointId>, SimError> {
        self.with(|r, _, _| Ok(r.members().iter().copied().collect()))
    }

    async fn watch(&self, view: View) -> Result<SimWatch, SimError> {
        let mut net = lock(&self.net);
        net.call();
        net.replica(self.node)?;
        let queue = Arc::new(Mutex::new(WatchQueue { node: self.node, view, events: VecDeque::new(), missed: 0, lagged: BTreeSet::new(), ended: false, reported: false }));
        net.watches.push(Arc::downgrade(&queue));
        Ok(SimWatch { net: self.net.clone(), queue })
    }
}
