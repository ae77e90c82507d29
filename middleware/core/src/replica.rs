//! The group replica: one endpoint's copy of one entanglement group, as a sans-IO state
//! machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::codec::{self, Ack, Ballot, DecodeError, Digest, Frame, FrameKind, GroupView, Limits, PaxosMsg, StateMsg};
use crate::field::{CounterPart, Fact, Write};
use crate::membership::MembershipFold;
use crate::silence::SilenceDetector;
use crate::state::{SetHash, StateBlock};
use crate::serial::{SerialState, TxnOutcome};
use crate::{Action, CausalContext, Clock, Delta, Dot, EndpointId, FieldId, GroupId, Hlc, Op, OpId, RegisterId, Schema, Txn, Value};

/// Everything every member of a group agrees on before the first delta: identity, schema,
/// creation stamp, first members, and tuning.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The group.
    pub group: GroupId,
    /// Its schema.
    pub schema: Schema,
    /// Creation time (ms); stamps travel as offsets from it.
    pub genesis_ms: u64,
    /// The first members.
    pub members: Vec<EndpointId>,
    /// Key for digests and state hashes (keyed, so crafted updates cannot steer them).
    pub hash_key: [u8; 32],
    /// Decoding and write limits.
    pub limits: Limits,
    /// A stamp more than this ahead of local time is held back (≥ 2 × max skew + max delay).
    pub max_future_ms: u64,
    /// How often a digest goes out.
    pub digest_interval_ms: u64,
    /// To how many peers each digest round goes (round robin).
    pub digest_fanout: usize,
    /// Each digest round goes to every member as one frame ([`Dest::Members`]), for a
    /// broadcast medium (a radio's multicast group), where that is one message on the air
    /// rather than one per member; endpoints counted as pruned still get theirs one by one
    /// (they lack the group's current sender key). `digest_fanout` is then unused. A digest
    /// then prompts no unasked state push (every member would push the same state): the
    /// member that lacks something asks with a want, at most one per `resend_after_ms`.
    pub digest_broadcast: bool,
    /// Least time between two unsolicited state pushes or wants to the same peer.
    pub resend_after_ms: u64,
    /// Prompt acks: once this replica's ack moves over something not yet committed
    /// everywhere (a delta it made durable, or another member's ack it may now vouch by), it
    /// sends its ack to the members at once, as one small [`FrameKind::Ack`] frame, and at
    /// most one per this many milliseconds, however many deltas or batches it covers. The
    /// committed view then follows the pending view within a few link delays instead of a
    /// digest period. 0: acks ride the digests only (a radio, where air bytes count more
    /// than commit latency).
    pub prompt_ack_ms: u64,
    /// How far ahead of local time the durable HLC high-water mark is reserved.
    pub hwm_window_ms: u64,
    /// Most deltas in one `Deltas` frame.
    pub max_batch: usize,
    /// Convergent or serial.
    pub kind: GroupKind,
    /// A member not heard for its timeout decoheres: it is reported ([`Event::Decohered`]) and,
    /// if this replica and the members it hears are a majority, proposed for removal. The
    /// timeout adapts to each member's link (`silence.rs`: twice the longest gap between its
    /// frames in the last minute) between this lower bound and [`Self::decohere_max_ms`].
    pub decohere_after_ms: u64,
    /// The upper bound of the adaptive timeout: a member really gone decoheres within it. At
    /// or below `decohere_after_ms`, the timeout is fixed.
    pub decohere_max_ms: u64,
    /// A pruned member must be heard steadily for this long before it is re-added
    /// (hysteresis, so a flapping radio does not prune and re-add in a loop).
    pub rejoin_after_ms: u64,
    /// Extra time before a member that this replica has neither heard nor been told is
    /// reachable ([`Replica::note_reachable`]) since it started counts as silent: a member
    /// invited that has not joined yet, or peers whose channels are still forming after a
    /// restart. 0 counts silence from the start.
    pub join_grace_ms: u64,
}

/// The two kinds of groups (DESIGN.md, "Two kinds of groups").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GroupKind {
    /// Every delta applies; a silent member is pruned by any member; a heal merges by
    /// original stamps and reports `ReEntangled`.
    #[default]
    Convergent,
    /// Transactions with preconditions. Membership changes need a majority (not built yet:
    /// a serial group does not prune on its own; an operator may force-remove).
    Serial,
}

impl GroupConfig {
    /// A configuration with defaults for everything but identity, schema and members.
    #[must_use]
    pub fn new(group: GroupId, schema: Schema, genesis_ms: u64, members: Vec<EndpointId>) -> Self {
        let mut h = blake3::Hasher::new_derive_key("spook group hash key v1");
        h.update(&group.0);
        GroupConfig {
            group,
            schema,
            genesis_ms,
            members,
            hash_key: *h.finalize().as_bytes(),
            limits: Limits::default(),
            max_future_ms: 2_000,
            digest_interval_ms: 250,
            digest_fanout: 2,
            digest_broadcast: false,
            resend_after_ms: 300,
            prompt_ack_ms: 1,
            hwm_window_ms: 1_000,
            max_batch: 256,
            kind: GroupKind::Convergent,
            decohere_after_ms: 3_000,
            decohere_max_ms: 10_000,
            rejoin_after_ms: 3_000,
            join_grace_ms: 0,
        }
    }

    /// The longest a member really gone stays undecohered: the adaptive timeout's upper
    /// bound, or the fixed timeout when the bounds do not leave room.
    #[must_use]
    pub fn decohere_bound_ms(&self) -> u64 {
        self.decohere_max_ms.max(self.decohere_after_ms)
    }
}

/// Which view of the group a reader means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// All known deltas.
    Pending,
    /// Causally stable deltas only.
    Committed,
}

/// What an application can observe.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A delta became known (pending).
    CandidateAdded(Dot),
    /// The committed frontier advanced to `frontier`, committing `candidates` candidates.
    Committed {
        /// The new frontier.
        frontier: Hlc,
        /// How many candidates it committed.
        candidates: usize,
    },
    /// Registers whose value changed in a view.
    RegistersChanged {
        /// The view.
        view: View,
        /// The registers.
        registers: Vec<RegisterId>,
    },
    /// Late deltas (from a member that was cut off) committed below the frontier and changed
    /// these registers' committed values: the heal of a split.
    ReEntangled {
        /// The registers whose committed value changed.
        registers: Vec<RegisterId>,
    },
    /// A member has been silent past its decoherence timeout (reported once per silence). Its
    /// removal follows only where a majority hears without it ([`Stats::decohered`] counts
    /// the removals this replica proposed).
    Decohered(EndpointId),
    /// A member joined (committed view).
    MemberJoined(EndpointId),
    /// A member left (committed view).
    MemberLeft(EndpointId),
    /// A serial transaction submitted through this replica moved on in its lifecycle
    /// (Pending → Resolving → Committed | Aborted, or Decohered at its deadline and then
    /// Committed or Aborted once the outcome is known here).
    Txn {
        /// The operation.
        id: OpId,
        /// Where it is now.
        state: TxnState,
    },
    /// A frame was rejected; nothing of it was applied.
    Rejected {
        /// The sender.
        from: EndpointId,
        /// Why.
        error: DecodeError,
    },
}

/// The lifecycle of a serial transaction as seen by the replica it was submitted through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// Known here, not yet durable.
    Pending,
    /// Durable and sent; waiting to become causally stable.
    Resolving,
    /// Its deadline passed before its outcome was known here: the outcome is unknown (it may
    /// still commit or abort; a later event says which, the same answer as on every node).
    Decohered,
    /// Evaluated: committed or aborted.
    Resolved(TxnOutcome),
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Every other member (a publish on the group's key).
    Members,
    /// One peer.
    Peer(EndpointId),
}

/// A frame to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    /// Where.
    pub dest: Dest,
    /// What kind (for accounting).
    pub kind: FrameKind,
    /// How many deltas or facts it carries (for accounting).
    pub items: usize,
    /// The encoded frame.
    pub bytes: Vec<u8>,
}

/// Something the core asks to be made durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A delta (own or received).
    Delta(Delta),
    /// State adopted from a peer.
    State(StateMsg),
    /// The HLC high-water mark: no stamp at or below it is ever issued again.
    Hwm(Hlc),
    /// The committed frontier.
    Frontier(Hlc),
    /// An acceptor's durable consensus state for one membership epoch.
    Paxos {
        /// The epoch being decided.
        epoch: u64,
        /// The highest ballot promised.
        promised: Ballot,
        /// The value accepted, with its ballot.
        accepted: Option<(Ballot, Vec<Op>)>,
        /// Members it promised not to vouch for beyond these sequence numbers.
        frozen: Vec<(EndpointId, u64)>,
    },
}

/// A batch of records to write durably, then report with [`Replica::handle_persisted`].
/// Batches must complete in id order.
#[derive(Clone, Debug, PartialEq)]
pub struct PersistRequest {
    /// The batch id.
    pub id: u64,
    /// What to write.
    pub records: Vec<Record>,
}

/// Errors of a local write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// The write names an unknown field, does not fit its policy or kind, or is too large.
    #[error("invalid write: {0}")]
    Invalid(#[from] DecodeError),
    /// A write must change something.
    #[error("a write needs at least one operation")]
    Empty,
    /// This endpoint is not a member of the group.
    #[error("this endpoint is not a member of the group")]
    NotAMember,
    /// Transactions belong in serial groups.
    #[error("serial transactions need a serial group; this group is convergent")]
    NotSerial,
}

/// Counters an operator reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames accepted.
    pub frames_in: u64,
    /// Frames rejected (malformed, unknown origin).
    pub frames_rejected: u64,
    /// Frames held back for a stamp too far ahead.
    pub frames_held: u64,
    /// Deltas created here.
    pub deltas_created: u64,
    /// Deltas received that were new.
    pub deltas_received: u64,
    /// Deltas received that were already known.
    pub deltas_duplicate: u64,
    /// State messages applied.
    pub states_applied: u64,
    /// State pushes postponed because they would carry own deltas not yet durable.
    pub pushes_deferred: u64,
    /// Digests whose context equals ours but whose hash does not: must stay 0.
    pub hash_mismatches: u64,
    /// Members this replica proposed to prune (decoherence).
    pub decohered: u64,
    /// Pruned members this replica proposed to re-add.
    pub readded: u64,
    /// Commits below the frontier that changed committed values (re-entanglement).
    pub reentangled: u64,
    /// Prompt ack frames sent ([`GroupConfig::prompt_ack_ms`]).
    pub acks_sent: u64,
    /// Digests replaced by an ack alone: the peer already showed this very state.
    pub digests_skipped: u64,
}

/// A known, not yet committed piece of state: a delta's facts, or facts adopted as state.
/// Ordered by stamp (then arrival) as a min-heap: committing applies joins, so only which
/// candidates are at or below S matters, not their order among themselves.
/// A membership change being proposed (single-decree Paxos for one epoch).
#[derive(Clone, Debug)]
struct Proposer {
    epoch: u64,
    ballot: Ballot,
    value: Vec<Op>,
    voters: BTreeSet<EndpointId>,
    promises: BTreeMap<EndpointId, Option<(Ballot, Vec<Op>)>>,
    /// Most of each member to remove held by any promiser.
    coverage: BTreeMap<EndpointId, u64>,
    accepts: BTreeSet<EndpointId>,
    phase2: bool,
    started: u64,
}

#[derive(Clone, Debug)]
struct Candidate {
    stamp: Hlc,
    n: u64,
    facts: Vec<(RegisterId, FieldId, Fact)>,
    /// Transactions of the delta, with its origin and seq for the total order.
    txns: Vec<(EndpointId, u64, Txn)>,
    batch: u64,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        (self.stamp, self.n) == (o.stamp, o.n)
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.stamp, o.n).cmp(&(self.stamp, self.n))
    }
}

/// One endpoint's replica of one group.
///
/// Inputs: [`Replica::write`], [`Replica::handle_frame`], [`Replica::handle_timeout`],
/// [`Replica::handle_persisted`]. Outputs, polled after every input in this order:
/// [`Replica::poll_persist`] (write it durably, then report it), [`Replica::poll_transmit`],
/// [`Replica::poll_event`], and [`Replica::poll_timeout`] for the next wake-up. Time is always
/// an argument (ms); the replica never reads a clock, a socket or a random source.
///
/// ```
/// # use spook_core::*;
/// let (a, b) = (EndpointId::from_index(1), EndpointId::from_index(2));
/// let cfg = GroupConfig::new(GroupId([1; 16]), Schema::fleet(), 0, vec![a, b]);
/// let mut ra = Replica::new(a, cfg.clone(), 0);
/// let mut rb = Replica::new(b, cfg, 0);
/// let battery = ra.schema().field_id("battery").unwrap();
/// ra.set(10, RegisterId(7), battery, Value::F64(0.9)).unwrap();
/// // Make it durable (here: at once), then ship what the replica asks to send.
/// while let Some(p) = ra.poll_persist() { ra.handle_persisted(p.id, 10); }
/// while let Some(t) = ra.poll_transmit() { rb.handle_frame(a, &t.bytes, 11); }
/// assert_eq!(rb.get(View::Pending, RegisterId(7), battery), Some(Value::F64(0.9)));
/// ```
///
/// A replica is `Clone`, so a model checker can fork it at every step.
#[derive(Clone)]
pub struct Replica {
    me: EndpointId,
    cfg: GroupConfig,
    clock: Clock,
    seq: u64,
    pending: StateBlock,
    committed: StateBlock,
    context: CausalContext,
    ctx_hash: SetHash,
    durable: CausalContext,
    durable_hwm: Hlc,
    requested_hwm: Hlc,
    frontier: Hlc,
    frontier_persisted: Hlc,
    /// The largest stamp of any candidate ever added (what the high-water mark must pass).
    newest_candidate: Hlc,
    /// The causal context grew since the last [`Replica::reserve_hwm`].
    context_grew: bool,
    candidates: std::collections::BinaryHeap<Candidate>,
    cand_counter: u64,
    membership_log: BTreeMap<(Hlc, EndpointId, u64), Delta>,
    /// The membership fold of the whole log (pending view), recomputed when it changes.
    fold_cache: MembershipFold,
    /// Transactions inside a removal episode with no re-add yet: evaluated at the re-add.
    deferred: Vec<((Hlc, EndpointId, u64), Txn)>,
    /// Deltas that travel whole in state messages (transactions, membership), by dot.
    whole_log: BTreeMap<Dot, Delta>,
    roster: BTreeMap<u64, EndpointId>,
    committed_members: BTreeSet<EndpointId>,
    acks: BTreeMap<EndpointId, Ack>,
    /// Recent acks of each member, oldest first: (own_seq, own_hlc), both increasing.
    ack_history: BTreeMap<EndpointId, VecDeque<(u64, Hlc)>>,
    next_batch: u64,
    persisted_batch: u64,
    unpersisted: Vec<Record>,
    in_flight: BTreeMap<u64, (CausalContext, Option<Hlc>)>,
    unsent: Vec<(u64, Delta)>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    held: Vec<(u64, EndpointId, Frame)>,
    next_digest_at: u64,
    digest_rr: usize,
    /// The last prompt ack sent, and when the last one not prompted by a ledger batch went
    /// ([`GroupConfig::prompt_ack_ms`]).
    ack_sent: Option<(u64, Ack)>,
    /// The ack moved while the last one sent was too recent: send at the window's end.
    ack_due: bool,
    /// The ledger batch of the newest delta that changed the membership fold.
    fold_batch: u64,
    /// The last full digest sent to each peer (and to the members at once, under `None`).
    digest_sent: BTreeMap<Option<EndpointId>, Vec<u8>>,
    /// Each peer whose last digest showed this replica's context and state hash: that hash.
    in_sync: BTreeMap<EndpointId, [u8; 16]>,
    /// What we pushed to each peer recently, so a want that crosses a push is not answered twice.
    pushed: BTreeMap<EndpointId, (u64, CausalContext)>,
    last_want: BTreeMap<EndpointId, u64>,
    stats: Stats,
    serial: SerialState,
    /// When each member was last heard (directly, or through a newer relayed ack).
    last_heard: BTreeMap<EndpointId, u64>,
    /// When the shell last reported a member reachable ([`Replica::note_reachable`]).
    reachable_since: BTreeMap<EndpointId, u64>,
    /// Local time this replica started (a member never heard counts as heard then).
    started_at: u64,
    /// Since when each member has been heard without a long gap.
    heard_since: BTreeMap<EndpointId, u64>,
    /// Each member's link, as the gaps between its frames: its decoherence timeout.
    silence: BTreeMap<EndpointId, SilenceDetector>,
    /// Members reported decohered and not heard since.
    suspected: BTreeSet<EndpointId>,
    /// When this replica last proposed each member's removal (convergent groups), so that a
    /// proposal that turned out void is retried once per timeout, not on every wake-up.
    removal_proposed: BTreeMap<EndpointId, u64>,
    /// Acceptor state per epoch (durable before any reply).
    promised: BTreeMap<u64, Ballot>,
    accepted: BTreeMap<u64, (Ballot, Vec<Op>)>,
    /// The membership change this replica is proposing, if any.
    proposer: Option<Proposer>,
    /// Highest ballot number seen.
    max_ballot: u64,
    /// Members this acceptor stopped vouching for beyond a coverage, until the epoch is
    /// decided: member → (epoch, coverage).
    frozen: BTreeMap<EndpointId, (u64, u64)>,
    /// When this replica accepted a value for an epoch (local time), to complete stalled
    /// decisions.
    accepted_at: BTreeMap<u64, u64>,
    /// When this replica first promised for an epoch (local time).
    promised_at: BTreeMap<u64, u64>,
    /// Consensus replies waiting for their record to be durable: (batch, to, message).
    paxos_out: Vec<(u64, EndpointId, PaxosMsg)>,
    /// Transactions submitted here whose outcome is not known yet: deadline and whether
    /// they were reported decohered.
    tracked: BTreeMap<OpId, (u64, bool)>,
}

impl Replica {
    /// A new replica of the group at local time `now`.
    #[must_use]
    pub fn new(me: EndpointId, cfg: GroupConfig, now: u64) -> Self {
        let members: BTreeSet<EndpointId> = cfg.members.iter().copied().collect();
        let roster = members.iter().map(|m| (m.short(), *m)).collect();
        let mut clock = Clock::new(cfg.max_future_ms);
        clock.restore(Hlc::new(cfg.genesis_ms, 0));
        Replica {
            me,
            clock,
            seq: 0,
            pending: StateBlock::default(),
            committed: StateBlock::default(),
            context: CausalContext::default(),
            ctx_hash: SetHash::default(),
            durable: CausalContext::default(),
            durable_hwm: Hlc::new(cfg.genesis_ms, 0),
            requested_hwm: Hlc::new(cfg.genesis_ms, 0),
            frontier: Hlc::new(cfg.genesis_ms, 0),
            frontier_persisted: Hlc::new(cfg.genesis_ms, 0),
            newest_candidate: Hlc::new(cfg.genesis_ms, 0),
            context_grew: false,
            candidates: std::collections::BinaryHeap::new(),
            cand_counter: 0,
            membership_log: BTreeMap::new(),
            whole_log: BTreeMap::new(),
            fold_cache: MembershipFold { members: cfg.members.iter().copied().collect(), ..MembershipFold::default() },
            deferred: Vec::new(),
            roster,
            committed_members: members,
            acks: BTreeMap::new(),
            ack_history: BTreeMap::new(),
            next_batch: 1,
            persisted_batch: 0,
            unpersisted: Vec::new(),
            in_flight: BTreeMap::new(),
            unsent: Vec::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            held: Vec::new(),
            next_digest_at: now,
            digest_rr: 0,
            ack_sent: None,
            ack_due: false,
            fold_batch: 0,
            digest_sent: BTreeMap::new(),
            in_sync: BTreeMap::new(),
            pushed: BTreeMap::new(),
            last_want: BTreeMap::new(),
            stats: Stats::default(),
            serial: SerialState::default(),
            last_heard: BTreeMap::new(),
            reachable_since: BTreeMap::new(),
            started_at: now,
            heard_since: BTreeMap::new(),
            silence: BTreeMap::new(),
            suspected: BTreeSet::new(),
            removal_proposed: BTreeMap::new(),
            tracked: BTreeMap::new(),
            promised: BTreeMap::new(),
            accepted: BTreeMap::new(),
            proposer: None,
            max_ballot: 0,
            paxos_out: Vec::new(),
            frozen: BTreeMap::new(),
            accepted_at: BTreeMap::new(),
            promised_at: BTreeMap::new(),
            cfg,
        }
    }

    /// The shell can now hear `m` in this group (it holds m's current sender key, so m's
    /// node runs and has the group open): silence is counted from now at the earliest.
    pub fn note_reachable(&mut self, m: EndpointId, now: u64) {
        self.reachable_since.insert(m, now);
    }

    /// Since when `m` counts as silent: its last frame, or the moment it became reachable;
    /// for a member never heard or reachable since this replica started (its node is still
    /// forming channels after our restart, or it has not joined yet), the start plus
    /// [`GroupConfig::join_grace_ms`].
    fn silent_since(&self, m: EndpointId) -> u64 {
        match (self.last_heard.get(&m), self.reachable_since.get(&m)) {
            (None, None) => self.started_at.saturating_add(self.cfg.join_grace_ms),
            (h, r) => h.copied().unwrap_or(0).max(r.copied().unwrap_or(0)),
        }
    }

    /// Removals by decoherence in the membership log that are void: not backed by a majority
    /// that hears (a cut-off minority's proposals, or ones overtaken by other changes).
    #[must_use]
    pub fn void_removals(&self) -> u64 {
        self.fold_cache.void_removals
    }

    /// Every removal that took effect in this replica's membership log (pending view), in
    /// total order: who proposed it, where it sorts, and who was in force.
    #[must_use]
    pub fn removals(&self) -> &[crate::Removal] {
        &self.fold_cache.removals
    }

    /// When `m` was last heard in this group (ms), if ever since this replica started.
    #[must_use]
    pub fn last_heard(&self, m: &EndpointId) -> Option<u64> {
        self.last_heard.get(m).copied()
    }

    /// How long `m` may stay silent at `now` before it decoheres (adaptive, within bounds).
    #[must_use]
    pub fn silence_timeout(&self, m: &EndpointId, now: u64) -> u64 {
        let (lo, hi) = (self.cfg.decohere_after_ms, self.cfg.decohere_max_ms);
        self.silence.get(m).map_or(lo, |d| d.timeout(now, lo, hi))
    }

    /// Whether `h` was heard throughout a silence that began at `since`: heard before it, and
    /// never silent for more than `max_gap` since (nor now).
    fn heard_throughout(&self, h: EndpointId, since: u64, max_gap: u64, now: u64) -> bool {
        let Some(last) = self.last_heard.get(&h).copied().filter(|t| *t > 0) else { return false };
        let before = self.heard_since.get(&h).is_some_and(|t| *t <= since);
        let gaps = self.silence.get(&h).map_or(0, |d| d.longest_gap_since(since));
        before && gaps <= max_gap && now.saturating_sub(last) <= max_gap
    }

    /// `m` was heard at `now` (a frame from it) or is known alive at that time (a fresh
    /// relayed ack, dated when it was made).
    fn note_heard(&mut self, m: EndpointId, now: u64) {
        let timeout = self.silence_timeout(&m, now);
        // 0 marks a member heard before its removal: that silence is not a gap of its link.
        match self.last_heard.get(&m).copied().filter(|t| *t > 0) {
            Some(t) if now <= t => return,
            Some(t) => {
                let gap = now.saturating_sub(t);
                if gap > timeout {
                    self.heard_since.insert(m, now);
                }
                // A gap past the upper bound counts as the bound: the timeout never exceeds it.
                let cap = self.cfg.decohere_bound_ms();
                self.silence.entry(m).or_default().record_gap(now, gap.min(cap));
            }
            None => {
                self.heard_since.insert(m, now);
            }
        }
        if self.suspected.remove(&m) {
            tracing::info!(member = %m, "decohered member heard again");
        }
        self.last_heard.insert(m, now);
    }

    /// Rebuild a replica after a restart from the records that were durable.
    #[must_use]
    pub fn restore<'a>(me: EndpointId, cfg: GroupConfig, records: impl IntoIterator<Item = &'a Record>, now: u64) -> Self {
        let mut r = Replica::new(me, cfg, now);
        let mut frontier = r.frontier;
        for rec in records {
            match rec {
                Record::Delta(d) => {
                    r.ingest_delta(d.clone(), now);
                }
                Record::State(s) => r.adopt_state(s.clone()),
                Record::Hwm(h) => {
                    r.clock.restore(*h);
                    r.durable_hwm = r.durable_hwm.max(*h);
                }
                Record::Frontier(f) => frontier = frontier.max(*f),
                Record::Paxos { epoch, promised, accepted, frozen } => {
                    r.max_ballot = r.max_ballot.max(promised.n);
                    r.promised.insert(*epoch, *promised);
                    // A restored promise (and its frozen coverage) must still end in a
                    // decision: wait for one from now, as after a fresh promise, then
                    // propose (`drive_consensus`). Else nobody may ever close the epoch and
                    // the frozen coverage caps our ack for good.
                    r.promised_at.entry(*epoch).or_insert(now);
                    for (m, c) in frozen {
                        r.frozen.insert(*m, (*epoch, *c));
                    }
                    if let Some(a) = accepted {
                        r.accepted.insert(*epoch, a.clone());
                    }
                }
            }
        }
        r.requested_hwm = r.durable_hwm;
        r.seq = r.context.of(&me).map_or(0, crate::IntervalSet::max);
        r.durable = r.context.clone();
        r.unpersisted.clear();
        r.in_flight.clear();
        r.persisted_batch = r.next_batch;
        r.next_batch += 1;
        r.frontier_persisted = frontier;
        let _ = r.commit_to(frontier);
        r.events.clear();
        r
    }

    // ------------------------------------------------------------ getters

    /// This endpoint.
    #[must_use]
    pub fn me(&self) -> EndpointId {
        self.me
    }
    /// Every endpoint this replica knows by short id (members, pruned ones, added ones): it
    /// only grows. A store keeps it beside the records, to decode them.
    #[must_use]
    pub fn roster(&self) -> &BTreeMap<u64, EndpointId> {
        &self.roster
    }

    /// Records that restore this replica's durable state on their own, to replace its log
    /// (compaction): the whole-delta log (transactions, membership), the state with dots of
    /// every convergent field (pending facts, plus committed facts where the committed view
    /// differs, so the restored committed view is the same), the clock's high-water mark, the
    /// frontier and the consensus records. `None` while records wait to be persisted: a
    /// snapshot must not claim what is not durable yet.
    ///
    /// ```
    /// # use spook_core::{EndpointId, GroupConfig, GroupId, Replica, Schema, Value, RegisterId};
    /// let me = EndpointId::from_index(1);
    /// let cfg = GroupConfig::new(GroupId([1; 16]), Schema::fleet(), 0, vec![me]);
    /// let mut r = Replica::new(me, cfg.clone(), 0);
    /// let battery = r.schema().field_id("battery").unwrap();
    /// r.set(10, RegisterId(1), battery, Value::F64(0.9)).unwrap();
    /// assert!(r.snapshot().is_none()); // not durable yet
    /// while let Some(req) = r.poll_persist() {
    ///     r.handle_persisted(req.id, 11); // (a commit asks to persist the new frontier)
    /// }
    /// let snap = r.snapshot().unwrap();
    /// let back = Replica::restore(me, cfg, &snap, 12);
    /// assert_eq!(back.state_hash(), r.state_hash());
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> Option<Vec<Record>> {
        if !self.unpersisted.is_empty() || !self.in_flight.is_empty() {
            return None;
        }
        let mut out: Vec<Record> = self.whole_log.values().cloned().map(Record::Delta).collect();
        let mut state = self.state_for(&self.context);
        state.deltas.clear();
        let mut buf = Vec::new();
        for (key, st) in self.committed.iter() {
            let pending = self.pending.field_state(key.0, key.1);
            if pending != Some(st) {
                let mut have = Vec::new();
                if let Some(p) = pending {
                    p.facts_for(&self.context, &mut have);
                }
                st.facts_for(&self.context, &mut buf);
                state.facts.extend(buf.drain(..).filter(|f| !have.contains(f)).map(|f| (key.0, key.1, f)));
            }
        }
        out.push(Record::State(state));
        out.push(Record::Hwm(self.durable_hwm));
        out.push(Record::Frontier(self.frontier_persisted));
        let epochs: BTreeSet<u64> = self.promised.keys().chain(self.accepted.keys()).copied().collect();
        for epoch in epochs {
            out.push(Record::Paxos {
                epoch,
                promised: self.promised.get(&epoch).copied().unwrap_or(Ballot { n: 0, by: self.me }),
                accepted: self.accepted.get(&epoch).cloned(),
                frozen: self.frozen.iter().filter(|(_, (e, _))| *e == epoch).map(|(m, (_, c))| (*m, *c)).collect(),
            });
        }
        Some(out)
    }

    /// The newest own sequence number `member` has announced (in its acks), if heard: with
    /// [`Replica::context`], how far this replica is from holding everything it announced
    /// (re-alignment progress).
    #[must_use]
    pub fn announced_seq(&self, member: &EndpointId) -> Option<u64> {
        self.acks.get(member).map(|a| a.own_seq)
    }

    /// The group schema.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.cfg.schema
    }
    /// The group configuration.
    #[must_use]
    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }
    /// A view's state (an O(1) snapshot if cloned).
    #[must_use]
    pub fn view(&self, view: View) -> &StateBlock {
        match view {
            View::Pending => &self.pending,
            View::Committed => &self.committed,
        }
    }
    /// One field's value in a view.
    ///
    /// In a serial group a cell that transactions wrote reads as their last committed write,
    /// in either view (a transaction's outcome is decided, never pending): that is where a
    /// claim's owner or an auction's bid is read.
    #[must_use]
    pub fn get(&self, view: View, reg: RegisterId, field: FieldId) -> Option<Value> {
        match self.serial.cell(reg, field) {
            Some(c) => Some(c.value.clone()),
            None => self.view(view).get(reg, field),
        }
    }
    /// The pending-view hash: fields plus causal context. Equal delta sets give equal hashes.
    #[must_use]
    pub fn state_hash(&self) -> SetHash {
        self.pending.hash().plus(self.ctx_hash)
    }
    /// The committed-view hash.
    #[must_use]
    pub fn committed_hash(&self) -> SetHash {
        self.committed.hash()
    }
    /// Which deltas this replica holds.
    #[must_use]
    pub fn context(&self) -> &CausalContext {
        &self.context
    }
    /// The committed frontier: deltas stamped at or below it are committed.
    #[must_use]
    pub fn frontier(&self) -> Hlc {
        self.frontier
    }
    /// The stamp of the oldest candidate not yet committed (what the frontier must pass next).
    #[must_use]
    pub fn oldest_candidate(&self) -> Option<Hlc> {
        self.candidates.peek().map(|c| c.stamp)
    }
    /// Candidates not yet committed.
    #[must_use]
    pub fn pending_candidates(&self) -> usize {
        self.candidates.len()
    }
    /// Members in the pending view.
    #[must_use]
    pub fn members(&self) -> &BTreeSet<EndpointId> {
        &self.fold_cache.members
    }
    /// The committed serial state (cells written by transactions, and outcomes).
    #[must_use]
    pub fn serial(&self) -> &SerialState {
        &self.serial
    }

    /// Every membership decision this replica knows, in the total order: (epoch, operations).
    #[must_use]
    pub fn decisions(&self) -> Vec<(u64, Vec<Op>)> {
        self.membership_log
            .values()
            .flat_map(|d| d.ops.iter())
            .filter_map(|o| if let Op::Decided { epoch, ops } = o { Some((*epoch, ops.clone())) } else { None })
            .collect()
    }

    /// A one-line summary of membership and stability, for logs and debugging.
    #[must_use]
    pub fn summary(&self) -> String {
        let epoch = self.fold_cache.epoch;
        let short = |s: &BTreeSet<EndpointId>| s.iter().map(|m| m.to_string()[..4].to_string()).collect::<Vec<_>>().join(",");
        format!(
            "me {} epoch {epoch} members [{}] committed [{}] frontier {} candidates {} proposer {:?} acks {:?}",
            &self.me.to_string()[..4],
            short(&self.fold_cache.members),
            short(&self.committed_members),
            self.frontier.ms(),
            self.candidates.len(),
            self.proposer.as_ref().map(|p| (p.epoch, p.ballot.n, p.phase2, p.promises.len(), p.accepts.len())),
            self.acks.iter().map(|(m, a)| (m.to_string()[..4].to_string(), a.hlc.ms(), a.own_hlc.ms(), a.own_seq)).collect::<Vec<_>>()
        )
    }

    /// Operator counters.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Own deltas not yet durable or not yet sent.
    #[must_use]
    pub fn unsent(&self) -> usize {
        self.unsent.len()
    }

    // ------------------------------------------------------------ local writes

    /// Write one value (last-writer-wins, max or min field).
    ///
    /// # Errors
    /// [`WriteError`] if the field or value does not fit the schema.
    pub fn set(&mut self, now: u64, reg: RegisterId, field: FieldId, value: Value) -> Result<Dot, WriteError> {
        self.write(now, vec![Op::Field { reg, field, action: Action::Set(value) }])
    }

    /// Apply a delta of several operations atomically. The delta applies to the pending view
    /// at once, is handed to [`Replica::poll_persist`], and is sent only once durable.
    ///
    /// # Errors
    /// [`WriteError`] if any operation does not fit the schema; then nothing is applied.
    pub fn write(&mut self, now: u64, ops: Vec<Op>) -> Result<Dot, WriteError> {
        if ops.is_empty() {
            return Err(WriteError::Empty);
        }
        // A member pruned while cut off keeps writing: its deltas merge by their original
        // stamps when it re-entangles.
        if !self.roster.values().any(|m| *m == self.me) {
            return Err(WriteError::NotAMember);
        }
        for op in &ops {
            codec::check_op(&self.cfg.schema, &self.cfg.limits, op)?;
            if matches!(op, Op::Txn(_)) && self.cfg.kind != GroupKind::Serial {
                return Err(WriteError::NotSerial);
            }
        }
        let ops = self.coalesce_ops(ops);
        self.seq += 1;
        let d = Delta { origin: self.me, seq: self.seq, stamp: self.clock.tick(now), ops };
        self.stats.deltas_created += 1;
        let dot = d.dot();
        self.unsent.push((self.next_batch, d.clone()));
        self.ingest_delta(d, now);
        self.reserve_hwm(now);
        Ok(dot)
    }

    /// The group clock's reading at local time `now`. Deadlines are judged against stamps,
    /// which may run ahead of a slow local clock, so a client sets a deadline as this
    /// reading's milliseconds plus its budget.
    pub fn clock_now(&mut self, now: u64) -> Hlc {
        self.clock.read(now)
    }

    /// Submit a serial transaction. It applies nowhere until causally stable; then every node
    /// evaluates it at its place in the total order. Progress comes as [`Event::Txn`].
    ///
    /// # Errors
    /// [`WriteError`] if a write does not fit the schema.
    pub fn submit(&mut self, now: u64, txn: Txn) -> Result<OpId, WriteError> {
        let id = txn.id;
        let deadline = txn.deadline_ms;
        self.write(now, vec![Op::Txn(txn)])?;
        if self.serial.outcome(&id).is_none() {
            self.tracked.insert(id, (deadline, false));
            self.events.push_back(Event::Txn { id, state: TxnState::Pending });
        }
        Ok(id)
    }

    /// The adds this replica has seen of a set element, for a remove that cancels them.
    #[must_use]
    pub fn observed_adds(&self, reg: RegisterId, field: FieldId, value: &Value) -> Vec<Dot> {
        match self.pending.field_state(reg, field) {
            Some(crate::field::FieldState::Set(s)) => {
                s.adds.get(&value.canonical_bytes()).map(|(_, d)| d.keys().copied().collect()).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Within one delta, a later set of a field replaces an earlier one and adds are summed,
    /// so a delta carries each field once.
    fn coalesce_ops(&self, ops: Vec<Op>) -> Vec<Op> {
        let mut out: Vec<Op> = Vec::with_capacity(ops.len());
        for op in ops {
            if let Op::Field { reg, field, action } = &op {
                let prev = out.iter_mut().find(|o| matches!(o, Op::Field { reg: r, field: f, action: a }
                    if r == reg && f == field && matches!((a, action), (Action::Set(_), Action::Set(_)) | (Action::Add(_), Action::Add(_)))));
                if let Some(Op::Field { action: a, .. }) = prev {
                    match (a, action) {
                        (Action::Set(v), Action::Set(n)) => *v = n.clone(),
                        (Action::Add(x), Action::Add(n)) => *x = x.wrapping_add(*n),
                        _ => {}
                    }
                    continue;
                }
            }
            out.push(op);
        }
        out
    }

    // ------------------------------------------------------------ inputs

    /// A frame arrived from `from` at local time `now`. Malformed frames are rejected whole
    /// (an [`Event::Rejected`]); frames stamped too far ahead are held and retried.
    pub fn handle_frame(&mut self, from: EndpointId, bytes: &[u8], now: u64) {
        if !self.roster.values().any(|m| *m == from) {
            self.reject(from, DecodeError::UnknownOrigin(from.short()));
            return;
        }
        let g = GroupView { schema: &self.cfg.schema, genesis_ms: self.cfg.genesis_ms, roster: &self.roster, limits: self.cfg.limits };
        match codec::decode(&g, from, bytes) {
            Ok(frame) => {
                self.stats.frames_in += 1;
                self.note_heard(from, now);
                // Deltas alone never move S (acks and durability do), so only digests and
                // state trigger a commit attempt here.
                let may_commit = !matches!(frame, Frame::Deltas(_));
                self.handle_decoded(from, frame, now);
                if may_commit {
                    self.try_commit(now);
                    self.prompt_ack(now, false);
                }
            }
            Err(e) => self.reject(from, e),
        }
    }

    fn reject(&mut self, from: EndpointId, error: DecodeError) {
        tracing::debug!(%from, %error, "frame rejected");
        self.stats.frames_rejected += 1;
        self.events.push_back(Event::Rejected { from, error });
    }

    fn max_stamp(frame: &Frame) -> Hlc {
        match frame {
            Frame::Deltas(ds) => ds.iter().map(|d| d.stamp).max().unwrap_or_default(),
            Frame::Digest(d) => d.acks.iter().map(|a| a.hlc).max().unwrap_or_default(),
            Frame::Ack(a) => a.hlc,
            Frame::Want(_) | Frame::Paxos(_) => Hlc(0),
            Frame::State(s) => s
                .facts
                .iter()
                .map(|(_, _, f)| f.stamp())
                .chain(s.deltas.iter().map(|d| d.stamp))
                .max()
                .unwrap_or_default(),
        }
    }

    fn handle_decoded(&mut self, from: EndpointId, frame: Frame, now: u64) {
        let top = Self::max_stamp(&frame);
        if let Err(e) = self.clock.observe(top, now) {
            tracing::debug!(%from, retry_at = e.retry_at, "frame held: stamp ahead of local time");
            self.stats.frames_held += 1;
            self.held.push((e.retry_at, from, frame));
            return;
        }
        match frame {
            Frame::Deltas(ds) => {
                for d in ds {
                    self.ingest_delta(d, now);
                }
                let gap = self.context.of(&from).is_some_and(|s| s.ranges().len() > 1 || s.contiguous_max() == 0);
                if gap {
                    self.send_want(from, now);
                }
            }
            Frame::Digest(d) => self.handle_digest(from, d, now),
            Frame::Ack(a) => self.take_acks(&[a], now),
            Frame::Want(ctx) => self.push_state(from, &ctx, now, true),
            Frame::Paxos(m) => self.handle_paxos(from, m, now),
            Frame::State(s) => {
                for d in &s.deltas {
                    self.ingest_delta(d.clone(), now);
                }
                self.adopt_state(s);
            }
        }
    }

    /// Take acks heard directly or relayed in a digest: each member's greatest, and the
    /// history that vouching reads.
    fn take_acks(&mut self, acks: &[Ack], now: u64) {
        for a in acks {
            if self.roster.values().any(|m| *m == a.member) && a.member != self.me {
                // Both parts of an ack only grow at their source; relayed copies may arrive
                // out of order, so keep the greatest of each.
                // The first ack known of a member is new too: an idle member's ack stops moving,
                // so a replica restarted beside it may see only that one, and must vouch by it.
                let newer = self.acks.get(&a.member).is_none_or(|e| a.hlc > e.hlc || a.own_hlc > e.own_hlc);
                let e = self.acks.entry(a.member).or_insert(*a);
                e.hlc = e.hlc.max(a.hlc);
                if a.own_hlc > e.own_hlc {
                    e.own_hlc = a.own_hlc;
                    e.own_seq = a.own_seq;
                }
                // A relayed ack is evidence the member is alive only if it is fresh: a stale
                // one passed around inside one side of a split must not re-add the other side.
                // It is dated when the member made it, not when it got here: a relayed ack from
                // before a split, arriving late, must not make the other side look heard now.
                if newer && a.own_hlc.ms().saturating_add(self.cfg.decohere_after_ms / 2) >= now {
                    self.note_heard(a.member, a.own_hlc.ms().min(now));
                }
                if newer {
                    let cap = self.vouch_cap(&a.member);
                    let h = self.ack_history.entry(a.member).or_default();
                    if h.back().is_none_or(|(seq, own)| a.own_seq >= *seq && a.own_hlc > *own) {
                        h.push_back((a.own_seq, a.own_hlc));
                        // An entry is needed only until a later one is also within what we
                        // hold (or may vouch for).
                        while h.len() > 1 && h.get(1).is_some_and(|(seq, _)| *seq <= cap) {
                            h.pop_front();
                        }
                    }
                }
            }
        }
    }

    fn handle_digest(&mut self, from: EndpointId, d: Digest, now: u64) {
        self.take_acks(&d.acks, now);
        let they_lack = !self.context.difference(&d.context).is_empty();
        let i_lack = !d.context.difference(&self.context).is_empty();
        // A broadcast digest reaches every member: were each to push what the sender lacks,
        // it would get the same state from all of them. The sender asks instead (a want, to
        // one member at a time, below), and exactly one member answers.
        if they_lack && !self.cfg.digest_broadcast {
            self.push_state(from, &d.context, now, false);
        }
        if i_lack {
            self.send_want(from, now);
        }
        let hash = self.state_hash().short();
        if !they_lack && !i_lack && d.hash == hash {
            self.in_sync.insert(from, hash);
        } else {
            self.in_sync.remove(&from);
        }
        if !they_lack && !i_lack && d.hash != hash {
            self.stats.hash_mismatches += 1;
            tracing::warn!(%from, "equal causal contexts but different state hashes");
        }
    }

    fn send_want(&mut self, to: EndpointId, now: u64) {
        // With broadcast digests, every member's digest shows the same gap within a round:
        // one want per window to whichever showed it first, not one to each of them.
        let recent = |t: &u64| now < t + self.cfg.resend_after_ms;
        if self.last_want.get(&to).is_some_and(recent) || (self.cfg.digest_broadcast && self.last_want.values().any(recent)) {
            return;
        }
        self.last_want.insert(to, now);
        let bytes = codec::encode_want(&self.context);
        self.outbox.push_back(Transmit { dest: Dest::Peer(to), kind: FrameKind::Want, items: 0, bytes });
    }

    /// Send `to` what it lacks, as state: for each field the facts whose dots it is missing
    /// (for last-writer-wins fields only the winner), plus membership deltas.
    fn push_state(&mut self, to: EndpointId, theirs: &CausalContext, now: u64, asked: bool) {
        let missing = self.context.difference(theirs);
        if missing.is_empty() {
            return;
        }
        // No own delta leaves before it is durable, in a state push either: a crash would
        // reuse its seq for a different delta. It cannot simply be left out (its facts
        // replaced what it superseded), so the push waits until it is durable; the next
        // digest or want asks again.
        if let Some(own) = missing.of(&self.me) {
            let mut mine = CausalContext::default();
            mine.0.insert(self.me, own.clone());
            if !mine.difference(&self.durable).is_empty() {
                self.stats.pushes_deferred += 1;
                return;
            }
        }
        // Unasked pushes wait out the window; a want is answered unless everything it lacks
        // is already on its way. A state message always covers the whole difference: a
        // part of it could adopt a superseded dot without the winner that supersedes it.
        if let Some((t, sent)) = self.pushed.get(&to) {
            if now < t + self.cfg.resend_after_ms && (!asked || missing.difference(sent).is_empty()) {
                return;
            }
        }
        self.pushed.insert(to, (now, missing.clone()));
        let msg = self.state_for(&missing);
        let bytes = codec::encode_state(&self.cfg.schema, self.cfg.genesis_ms, &msg);
        let items = msg.facts.len() + msg.deltas.len();
        self.outbox.push_back(Transmit { dest: Dest::Peer(to), kind: FrameKind::State, items, bytes });
    }

    /// The state a replica lacking `missing` needs.
    #[must_use]
    pub fn state_for(&self, missing: &CausalContext) -> StateMsg {
        let mut facts = Vec::new();
        let mut buf = Vec::new();
        for ((reg, field), st) in self.pending.iter() {
            st.facts_for(missing, &mut buf);
            facts.extend(buf.drain(..).map(|f| (*reg, *field, f)));
        }
        let deltas = self.whole_log.values().filter(|d| missing.contains(d.dot())).cloned().collect();
        StateMsg { context: missing.clone(), facts, deltas }
    }

    /// Local time advanced to `now`: send digests when due, retry held frames.
    pub fn handle_timeout(&mut self, now: u64) {
        if !self.held.is_empty() {
            let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held).into_iter().partition(|(t, _, _)| *t <= now);
            self.held = later;
            for (_, from, frame) in ready {
                self.handle_decoded(from, frame, now);
            }
        }
        if now >= self.next_digest_at {
            self.next_digest_at = now + self.cfg.digest_interval_ms;
            self.send_digests(now);
        }
        self.check_decoherence(now);
        for (id, (deadline, decohered)) in self.tracked.iter_mut() {
            if !*decohered && now > *deadline {
                *decohered = true;
                self.events.push_back(Event::Txn { id: *id, state: TxnState::Decohered });
            }
        }
        self.reserve_hwm(now);
        self.try_commit(now);
        self.prompt_ack(now, false);
    }

    /// Send this replica's ack to the members at once if it moved over a delta that the last
    /// one sent did not cover ([`GroupConfig::prompt_ack_ms`]). Acks only grow and say no
    /// more than a digest sent now would, so sending them early changes when S moves, never
    /// what it may reach (DESIGN.md, stability). At most one goes per ledger batch made
    /// durable (`batch`), and one per `prompt_ack_ms` for what frames moved (another
    /// member's ack that this replica may now vouch by): a write then commits everywhere
    /// after two ledger writes and three link delays, with no wait for a window.
    fn prompt_ack(&mut self, now: u64, batch: bool) {
        if self.cfg.prompt_ack_ms == 0 || self.fold_cache.members.len() < 2 {
            return;
        }
        let last = self.ack_sent.map(|(_, a)| a);
        // Every delta seen here is covered by the ack sent (or none was ever seen): an idle
        // group sends no acks but its digests.
        if last.map_or(Hlc::new(self.cfg.genesis_ms, 0), |l| l.hlc) >= self.newest_candidate {
            self.ack_due = false;
            return;
        }
        let a = self.own_ack(now);
        let newest = self.newest_candidate;
        let moved = last.is_none_or(|l| a.hlc > l.hlc || a.own_seq > l.own_seq || (a.own_hlc >= newest && l.own_hlc < newest));
        if !moved {
            self.ack_due = false;
            return;
        }
        // An ack is computed over the membership this replica's log folds to. While the
        // delta that last changed it is not durable, a crash may lose it (a decided removal
        // this replica just wrote), and with it the basis of an ack already sent: measured, 5
        // of 2,000 seeds of the flapping serial mix then gave a transaction two outcomes.
        // The ack of the batch that makes it durable goes instead.
        if self.fold_batch > self.persisted_batch {
            self.ack_due = false;
            return;
        }
        let window = self.ack_sent.map_or(0, |(t, _)| t);
        if !batch && self.ack_sent.is_some() && now < window.saturating_add(self.cfg.prompt_ack_ms) {
            self.ack_due = true;
            return;
        }
        self.ack_due = false;
        self.ack_sent = Some((if batch { window } else { now }, a));
        self.stats.acks_sent += 1;
        let bytes = codec::encode_ack(self.cfg.genesis_ms, &a);
        self.outbox.push_back(Transmit { dest: Dest::Members, kind: FrameKind::Ack, items: 0, bytes });
    }

    /// How far this replica may vouch for `o`'s deltas: what it durably holds contiguously,
    /// capped while it has promised, in a pending consensus, to vouch no further for `o`.
    fn vouch_cap(&self, o: &EndpointId) -> u64 {
        let cov = self.durable.of(o).map_or(0, crate::IntervalSet::contiguous_max);
        match self.frozen.get(o) {
            Some((e, c)) if *e > self.fold_cache.epoch => cov.min(*c),
            _ => cov,
        }
    }

    /// This replica's ack. Its HLC vouches for what this replica durably holds: it is capped,
    /// for every other member in force, by the newest ack of that member whose own deltas this
    /// replica durably holds. So S ≥ t means every member in force durably holds every delta
    /// stamped at or below t, and a removal's cut taken from any member covers every delta of
    /// the removed member that anyone committed.
    fn own_ack(&mut self, now: u64) -> Ack {
        let mut hlc = self.clock.read(now).min(self.durable_hwm);
        if let Some((_, d)) = self.unsent.iter().find(|(b, _)| *b > self.persisted_batch) {
            hlc = hlc.min(Hlc(d.stamp.0.saturating_sub(1)));
        }
        let own_hlc = hlc;
        let genesis = Hlc::new(self.cfg.genesis_ms, 0);
        let members: Vec<EndpointId> = self.in_force().into_iter().filter(|o| *o != self.me).collect();
        for o in &members {
            let cov = self.vouch_cap(o);
            let vouched = self
                .ack_history
                .get(o)
                .and_then(|h| h.iter().rev().find(|(seq, _)| *seq <= cov))
                .map_or(genesis, |(_, h)| *h);
            hlc = hlc.min(vouched);
        }
        Ack { member: self.me, hlc, own_hlc, own_seq: self.durable.of(&self.me).map_or(0, crate::IntervalSet::contiguous_max) }
    }

    fn send_digests(&mut self, now: u64) {
        // Digests go to every endpoint that was ever a member, pruned ones included, so a
        // pruned member that comes back is heard and re-added.
        let peers: Vec<EndpointId> = self.roster.values().copied().filter(|m| *m != self.me).collect();
        if peers.is_empty() {
            return;
        }
        // A digest always carries a fresh own ack: members that hear this one only through
        // others' digests count it alive by how recent its ack is. (Holding it back while the
        // membership fold is not durable, as prompt acks do, made a lossy radio fleet decohere
        // live drones: 2 of 6 runs of `radio_udp`, 0 of 3 before.)
        let own = self.own_ack(now);
        let mut acks = vec![own];
        acks.extend(self.acks.values().filter(|a| self.fold_cache.members.contains(&a.member)).copied());
        let hash = self.state_hash().short();
        let digest = Digest { context: self.context.clone(), hash, acks };
        let bytes = codec::encode_digest(self.cfg.genesis_ms, &digest);
        // Lean anti-entropy: a peer whose last digest showed exactly this state, and that got
        // this very digest last time, learns nothing from it; it gets this replica's ack alone
        // (a few bytes), so it still hears a live member. Endpoints counted as pruned always
        // get the digest (it is what re-adds them, and only digests reach them).
        let members = &self.fold_cache.members;
        let lean = |to: Option<EndpointId>, this: &Self| {
            this.digest_sent.get(&to).is_some_and(|b| *b == bytes)
                && match to {
                    Some(p) => members.contains(&p) && this.in_sync.get(&p) == Some(&hash),
                    None => members.iter().filter(|m| **m != this.me).all(|m| this.in_sync.get(m) == Some(&hash)),
                }
        };
        let mut out = Vec::new();
        if self.cfg.digest_broadcast {
            for p in peers.iter().filter(|p| !self.fold_cache.members.contains(p)) {
                out.push((Dest::Peer(*p), false));
            }
            out.push((Dest::Members, lean(None, self)));
        } else {
            for i in 0..self.cfg.digest_fanout.min(peers.len()) {
                let to = peers[(self.digest_rr + i) % peers.len()];
                out.push((Dest::Peer(to), lean(Some(to), self)));
            }
            self.digest_rr = (self.digest_rr + self.cfg.digest_fanout) % peers.len();
        }
        for (dest, lean) in out {
            match lean {
                true => {
                    self.stats.digests_skipped += 1;
                    self.outbox.push_back(Transmit { dest, kind: FrameKind::Ack, items: 0, bytes: codec::encode_ack(self.cfg.genesis_ms, &own) });
                }
                false => {
                    let key = match dest {
                        Dest::Peer(p) => Some(p),
                        Dest::Members => None,
                    };
                    self.digest_sent.insert(key, bytes.clone());
                    self.outbox.push_back(Transmit { dest, kind: FrameKind::Digest, items: 0, bytes: bytes.clone() });
                }
            }
        }
    }

    /// Batches up to `id` are durable.
    pub fn handle_persisted(&mut self, id: u64, now: u64) {
        if id <= self.persisted_batch {
            return;
        }
        self.persisted_batch = id;
        let done: Vec<u64> = self.in_flight.range(..=id).map(|(k, _)| *k).collect();
        for k in done {
            if let Some((ctx, hwm)) = self.in_flight.remove(&k) {
                for (o, s) in ctx.0 {
                    self.durable.0.entry(o).or_default().union_with(&s);
                }
                if let Some(h) = hwm {
                    self.durable_hwm = self.durable_hwm.max(h);
                }
            }
        }
        let (replies, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.paxos_out).into_iter().partition(|(b, _, _)| *b <= id);
        self.paxos_out = waiting;
        for (_, to, m) in replies {
            self.send_paxos(to, m, now);
        }
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsent).into_iter().partition(|(b, _)| *b <= id);
        self.unsent = later;
        let ready: Vec<Delta> = ready.into_iter().map(|(_, d)| d).collect();
        for d in &ready {
            for op in &d.ops {
                if let Op::Txn(t) = op {
                    if self.tracked.get(&t.id).is_some_and(|(_, dec)| !dec) {
                        self.events.push_back(Event::Txn { id: t.id, state: TxnState::Resolving });
                    }
                }
            }
        }
        for chunk in ready.chunks(self.cfg.max_batch.max(1)) {
            let bytes = codec::encode_deltas(&self.cfg.schema, self.cfg.genesis_ms, chunk);
            self.outbox.push_back(Transmit { dest: Dest::Members, kind: FrameKind::Deltas, items: chunk.len(), bytes });
        }
        self.try_commit(now);
        self.prompt_ack(now, true);
    }

    // ------------------------------------------------------------ outputs

    /// The next batch to make durable.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<PersistRequest> {
        if self.unpersisted.is_empty() {
            return None;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let records = std::mem::take(&mut self.unpersisted);
        let mut ctx = CausalContext::default();
        let mut hwm = None;
        for r in &records {
            match r {
                Record::Delta(d) => {
                    ctx.insert(d.dot());
                }
                Record::State(s) => {
                    for (o, set) in &s.context.0 {
                        ctx.0.entry(*o).or_default().union_with(set);
                    }
                    for d in &s.deltas {
                        ctx.insert(d.dot());
                    }
                }
                Record::Hwm(h) => hwm = Some(hwm.map_or(*h, |x: Hlc| x.max(*h))),
                Record::Frontier(_) | Record::Paxos { .. } => {}
            }
        }
        self.in_flight.insert(id, (ctx, hwm));
        Some(PersistRequest { id, records })
    }

    /// The next frame to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next application event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Replica::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> u64 {
        let deadlines = self.tracked.values().filter(|(_, d)| !d).map(|(t, _)| t + 1);
        let ack = self.ack_sent.filter(|_| self.ack_due).map(|(t, _)| t.saturating_add(self.cfg.prompt_ack_ms));
        self.held.iter().map(|(t, _, _)| *t).chain(deadlines).chain(ack).fold(self.next_digest_at, u64::min)
    }

    // ------------------------------------------------------------ internals

    /// Keep the durable high-water mark half a window ahead of the newest delta this replica
    /// holds, so that its ack (capped by the durable mark) can pass every delta. Driven by the
    /// deltas, not by the clock: an idle replica, whose every delta is below the mark, writes
    /// nothing (its acks stop at the mark, and S with them, with nothing left to commit).
    fn reserve_hwm(&mut self, now: u64) {
        let half = self.cfg.hwm_window_ms / 2;
        // A delta set that grew is reason enough too (at most one reservation per half
        // window, as when the clock drove it): a delta may arrive by a path that adds no
        // candidate here (state adopted for what this replica held already), and the others
        // can commit it only once our ack passes it.
        let grew = std::mem::take(&mut self.context_grew) && now + half > self.requested_hwm.ms();
        if grew || self.newest_candidate.ms() + half > self.requested_hwm.ms() {
            let cur = self.clock.read(now);
            // Anchored to local time, not to the clock: a restarted replica starts its clock
            // at the old reservation, and reserving from there would push the clock another
            // window ahead of real time at every restart (a node crash-looping for a minute
            // ran minutes ahead, and its peers held its frames as from the future). So the
            // lead over local time stays below one window, whatever the restarts.
            let h = Hlc::new((now + self.cfg.hwm_window_ms).max(cur.ms() + 1), 0);
            if h > self.requested_hwm {
                self.requested_hwm = h;
                self.unpersisted.push(Record::Hwm(h));
            }
        }
    }

    fn facts_of(d: &Delta) -> Vec<(RegisterId, FieldId, Fact)> {
        let dot = d.dot();
        let mut out = Vec::with_capacity(d.ops.len());
        for op in &d.ops {
            let Op::Field { reg, field, action } = op else { continue };
            match action {
                Action::Set(v) => out.push((*reg, *field, Fact::Write(Write { value: v.clone(), stamp: d.stamp, dot }))),
                Action::Append(v) => out.push((*reg, *field, Fact::Entry(Write { value: v.clone(), stamp: d.stamp, dot }))),
                Action::Add(n) => {
                    let part = CounterPart { extras: [(d.seq, (*n, d.stamp))].into(), ..CounterPart::default() };
                    out.push((*reg, *field, Fact::Count { origin: d.origin, part }));
                }
                Action::Insert(v) => out.push((*reg, *field, Fact::Add { value: v.clone(), dot, stamp: d.stamp })),
                Action::Remove { observed, .. } => {
                    out.extend(observed.iter().map(|r| (*reg, *field, Fact::Tomb { removed: *r, by: dot, stamp: d.stamp })));
                }
            }
        }
        out
    }

    /// Apply facts to the pending view. Counter parts are normalised only after all facts are
    /// in: the context may already name dots whose facts come later in the same batch.
    fn apply_pending(&mut self, facts: &[(RegisterId, FieldId, Fact)], changed: &mut Vec<RegisterId>) {
        for (reg, field, fact) in facts {
            if self.pending.apply(&self.cfg.hash_key, &self.cfg.schema, *reg, *field, fact) && !changed.contains(reg) {
                changed.push(*reg);
            }
        }
    }

    fn normalize_counters<'a>(&mut self, facts: impl IntoIterator<Item = &'a (RegisterId, FieldId, Fact)>) {
        for (reg, field, fact) in facts {
            if matches!(fact, Fact::Count { .. }) {
                self.pending.normalize(*reg, *field, &self.context);
            }
        }
    }

    fn add_candidate(&mut self, stamp: Hlc, facts: Vec<(RegisterId, FieldId, Fact)>, txns: Vec<(EndpointId, u64, Txn)>) {
        self.newest_candidate = self.newest_candidate.max(stamp);
        self.cand_counter += 1;
        self.candidates.push(Candidate { stamp, n: self.cand_counter, facts, txns, batch: self.next_batch });
    }

    /// Add a delta to the pending view; false if it was already known.
    fn ingest_delta(&mut self, d: Delta, now: u64) -> bool {
        if self.context.contains(d.dot()) {
            self.stats.deltas_duplicate += 1;
            return false;
        }
        if d.origin != self.me {
            self.stats.deltas_received += 1;
        }
        self.context.insert(d.dot());
        self.context_grew = true;
        self.ctx_hash.add(&self.cfg.hash_key, &dot_bytes(d.dot()));
        let facts = Self::facts_of(&d);
        let mut changed = Vec::new();
        self.apply_pending(&facts, &mut changed);
        self.normalize_counters(&facts);
        let txns = d.ops.iter().filter_map(|o| if let Op::Txn(t) = o { Some((d.origin, d.seq, t.clone())) } else { None }).collect();
        self.add_candidate(d.stamp, facts, txns);
        if d.has_membership_ops() {
            self.whole_log.insert(d.dot(), d.clone());
        }
        if d.ops.iter().any(|o| matches!(o, Op::AddMember(_) | Op::RemoveMember { .. } | Op::Decided { .. })) {
            self.membership_log.insert(d.order_key(), d.clone());
            for op in &d.ops {
                let inner: &[Op] = match op {
                    Op::Decided { ops, .. } => ops,
                    other => std::slice::from_ref(other),
                };
                for o in inner {
                    if let Op::AddMember(m) = o {
                        self.roster.insert(m.short(), *m);
                    }
                }
            }
            let fold = self.compute_fold(None);
            self.fold_batch = self.next_batch;
            let before = std::mem::replace(&mut self.fold_cache, fold).members;
            // Hearing a member again starts afresh once it is removed: evidence from before
            // the removal never counts towards its re-add.
            for gone in before.difference(&self.fold_cache.members) {
                self.heard_since.remove(gone);
                self.last_heard.insert(*gone, 0);
            }
            // A member (re-)added is counted silent only from now: it could not have been
            // heard as a member before. (On a restart the replayed log re-adds members that
            // were once removed; without this they were decohered at once.)
            for added in self.fold_cache.members.difference(&before) {
                let t = self.last_heard.entry(*added).or_insert(now);
                *t = (*t).max(now);
            }
        }
        self.events.push_back(Event::CandidateAdded(d.dot()));
        if !changed.is_empty() {
            changed.sort_unstable();
            self.events.push_back(Event::RegistersChanged { view: View::Pending, registers: changed });
        }
        self.unpersisted.push(Record::Delta(d));
        true
    }

    /// Adopt state from a peer: its causal context (gaps kept) and its facts, atomically.
    fn adopt_state(&mut self, s: StateMsg) {
        let new = s.context.difference(&self.context);
        let mut changed = Vec::new();
        for d in new.dots() {
            self.ctx_hash.add(&self.cfg.hash_key, &dot_bytes(d));
            self.context.insert(d);
            self.context_grew = true;
        }
        for (reg, field, fact) in &s.facts {
            let one = vec![(*reg, *field, fact.clone())];
            self.apply_pending(&one, &mut changed);
            self.add_candidate(fact.stamp(), one, Vec::new());
        }
        self.normalize_counters(&s.facts);
        self.stats.states_applied += 1;
        if !changed.is_empty() {
            changed.sort_unstable();
            self.events.push_back(Event::RegistersChanged { view: View::Pending, registers: changed });
        }
        self.unpersisted.push(Record::State(s));
    }

    /// Membership in total order up to `upto` (`None`: the whole log); see
    /// [`MembershipFold::of`]. The fold of the whole log is kept in `fold_cache`, recomputed
    /// when it changes.
    fn compute_fold(&self, upto: Option<Hlc>) -> MembershipFold {
        MembershipFold::of(&self.cfg.members, self.cfg.kind == GroupKind::Serial, &self.membership_log, upto)
    }

    /// Where a delta (origin, seq, stamp) sorts among transactions: at its stamp, or, if it
    /// lies in a removal episode of its origin (seq past the cut, stamp before the re-add),
    /// at the re-add's stamp; `None` while the episode has no re-add yet (inert).
    fn rejoin_position(&self, origin: EndpointId, seq: u64, stamp: Hlc) -> Option<Hlc> {
        let mut position = stamp;
        for (m, cut, readd) in &self.fold_cache.episodes {
            if *m == origin && seq > *cut && readd.is_none_or(|t| stamp < t) {
                position = position.max((*readd)?);
            }
        }
        Some(position)
    }

    fn send_paxos(&mut self, to: EndpointId, m: PaxosMsg, now: u64) {
        if to == self.me {
            self.handle_paxos(to, m, now);
        } else {
            let bytes = codec::encode_paxos(&self.cfg.schema, &m);
            self.outbox.push_back(Transmit { dest: Dest::Peer(to), kind: FrameKind::Paxos, items: 0, bytes });
        }
    }

    fn reply_when_durable(&mut self, to: EndpointId, epoch: u64, m: PaxosMsg) {
        let promised = self.promised.get(&epoch).copied().unwrap_or(Ballot { n: 0, by: EndpointId([0; 32]) });
        let frozen = self.frozen.iter().filter(|(_, (e, _))| *e == epoch).map(|(m, (_, c))| (*m, *c)).collect();
        self.unpersisted.push(Record::Paxos { epoch, promised, accepted: self.accepted.get(&epoch).cloned(), frozen });
        self.paxos_out.push((self.next_batch, to, m));
    }

    /// Consensus on membership: one single-decree Paxos per epoch among the current members;
    /// promises and acceptances are durable before they are sent.
    fn handle_paxos(&mut self, from: EndpointId, m: PaxosMsg, now: u64) {
        if self.cfg.kind != GroupKind::Serial {
            return;
        }
        if !self.fold_cache.members.contains(&from) {
            return;
        }
        let cur = self.fold_cache.epoch;
        match m {
            PaxosMsg::Prepare { epoch, ballot, removing } => {
                self.max_ballot = self.max_ballot.max(ballot.n);
                if epoch != cur + 1 || self.promised.get(&epoch).is_some_and(|p| *p > ballot) {
                    return;
                }
                self.promised.insert(epoch, ballot);
                self.promised_at.entry(epoch).or_insert(now);
                let accepted = self.accepted.get(&epoch).cloned();
                // Report how far we hold each member to be removed, and vouch no further for
                // it until this epoch is decided: the decided cut then covers every delta of
                // it that anyone committed.
                let mut coverage = Vec::with_capacity(removing.len());
                for m in removing {
                    let cov = self.durable.of(&m).map_or(0, crate::IntervalSet::contiguous_max);
                    let c = match self.frozen.get(&m) {
                        Some((e, c)) if *e == epoch => (*c).min(cov),
                        _ => cov,
                    };
                    self.frozen.insert(m, (epoch, c));
                    coverage.push((m, c));
                }
                self.reply_when_durable(from, epoch, PaxosMsg::Promise { epoch, ballot, accepted, coverage });
            }
            PaxosMsg::Accept { epoch, ballot, value } => {
                self.max_ballot = self.max_ballot.max(ballot.n);
                if epoch != cur + 1 || self.promised.get(&epoch).is_some_and(|p| *p > ballot) {
                    return;
                }
                self.promised.insert(epoch, ballot);
                self.accepted.insert(epoch, (ballot, value));
                self.accepted_at.insert(epoch, now);
                self.reply_when_durable(from, epoch, PaxosMsg::Accepted { epoch, ballot });
            }
            PaxosMsg::Promise { epoch, ballot, accepted, coverage } => {
                let Some(p) = self.proposer.as_mut() else { return };
                if p.epoch != epoch || p.ballot != ballot || p.phase2 || !p.voters.contains(&from) {
                    return;
                }
                p.promises.insert(from, accepted);
                for (m, c) in coverage {
                    let e = p.coverage.entry(m).or_insert(0);
                    *e = (*e).max(c);
                }
                if 2 * p.promises.len() > p.voters.len() {
                    if let Some((_, v)) = p.promises.values().flatten().max_by_key(|(b, _)| *b) {
                        p.value = v.clone();
                    } else {
                        // Our own value, with each removal's cut the most any promiser holds.
                        for op in &mut p.value {
                            if let Op::RemoveMember { member, cut, .. } = op {
                                *cut = p.coverage.get(member).copied().unwrap_or(0);
                            }
                        }
                    }
                    p.phase2 = true;
                    let msg = PaxosMsg::Accept { epoch, ballot, value: p.value.clone() };
                    let voters: Vec<EndpointId> = p.voters.iter().copied().collect();
                    for v in voters {
                        self.send_paxos(v, msg.clone(), now);
                    }
                }
            }
            PaxosMsg::Accepted { epoch, ballot } => {
                let Some(p) = self.proposer.as_mut() else { return };
                if p.epoch != epoch || p.ballot != ballot || !p.phase2 || !p.voters.contains(&from) {
                    return;
                }
                p.accepts.insert(from);
                if 2 * p.accepts.len() > p.voters.len() {
                    let ops = p.value.clone();
                    self.proposer = None;
                    tracing::info!(epoch, ?ops, "membership change decided");
                    if let Err(e) = self.write(now, vec![Op::Decided { epoch, ops }]) {
                        tracing::warn!(error = %e, "could not record a decided membership change");
                    }
                }
            }
        }
    }

    /// Start (or restart with a higher ballot) a proposal for the next epoch.
    fn propose(&mut self, value: Vec<Op>, now: u64) {
        let (members, cur) = (self.fold_cache.members.clone(), self.fold_cache.epoch);
        self.max_ballot += 1;
        let ballot = Ballot { n: self.max_ballot, by: self.me };
        let epoch = cur + 1;
        self.proposer = Some(Proposer {
            epoch,
            ballot,
            value,
            voters: members.clone(),
            promises: BTreeMap::new(),
            coverage: BTreeMap::new(),
            accepts: BTreeSet::new(),
            phase2: false,
            started: now,
        });
        let removing: Vec<EndpointId> = self
            .proposer
            .as_ref()
            .map(|p| p.value.iter().filter_map(|o| if let Op::RemoveMember { member, .. } = o { Some(*member) } else { None }).collect())
            .unwrap_or_default();
        for v in members {
            self.send_paxos(v, PaxosMsg::Prepare { epoch, ballot, removing: removing.clone() }, now);
        }
    }

    /// Report members silent past their timeout, propose the removal of those a majority
    /// hears without (DESIGN.md, "Removals need a majority that hears"; serial groups through
    /// consensus), and propose the re-add of removed members heard steadily for the
    /// hysteresis time.
    fn check_decoherence(&mut self, now: u64) {
        if !self.fold_cache.members.contains(&self.me) {
            return;
        }
        let others: Vec<EndpointId> = self.fold_cache.members.iter().copied().filter(|m| *m != self.me).collect();
        let silent: Vec<(EndpointId, u64, u64)> = others
            .iter()
            .map(|m| (*m, self.silent_since(*m), self.silence_timeout(m, now)))
            .filter(|(_, since, timeout)| now.saturating_sub(*since) > *timeout)
            .collect();
        let serial = self.cfg.kind == GroupKind::Serial;
        let mut ops = Vec::new();
        for (m, since, timeout) in silent {
            if self.suspected.insert(m) {
                tracing::info!(member = %m, timeout_ms = timeout, "member decohered: silent past its timeout");
                self.events.push_back(Event::Decohered(m));
            }
            // The members heard throughout m's silence: heard before it began, and never silent
            // for more than half m's timeout since. So when this replica is the one cut off,
            // the others, falling silent a digest round apart, do not vouch for it; and at a
            // heal, members heard again just now, after a gap, do not either.
            let heard: Vec<EndpointId> = others.iter().copied().filter(|h| *h != m && self.heard_throughout(*h, since, timeout / 2, now)).collect();
            if !serial {
                // A minority proposes nothing: its removal would be void everywhere, and its
                // committed view waits for the heal instead.
                let backed = crate::membership::removal_is_backed(&self.fold_cache.members, self.me, m, Some(&heard));
                let recently = self.removal_proposed.get(&m).is_some_and(|t| now < t.saturating_add(timeout));
                if !backed || recently {
                    continue;
                }
                self.removal_proposed.insert(m, now);
            }
            let cut = self.durable.of(&m).map_or(0, crate::IntervalSet::contiguous_max);
            ops.push(Op::RemoveMember { member: m, cut, heard: Some(heard) });
        }
        for m in self.roster.values().filter(|m| **m != self.me && !self.fold_cache.members.contains(m)) {
            let timeout = self.silence_timeout(m, now);
            let recent = self.last_heard.get(m).is_some_and(|t| now.saturating_sub(*t) <= timeout);
            let steady = self.heard_since.get(m).is_some_and(|t| now.saturating_sub(*t) >= self.cfg.rejoin_after_ms);
            if recent && steady {
                ops.push(Op::AddMember(*m));
            }
        }
        if serial {
            self.drive_consensus(ops, now);
            return;
        }
        if ops.is_empty() {
            return;
        }
        self.announce(&ops);
        if let Err(e) = self.write(now, ops) {
            tracing::warn!(error = %e, "membership proposal refused");
        }
    }

    fn announce(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::RemoveMember { member, cut, heard } => {
                    tracing::info!(%member, cut, heard = heard.as_ref().map_or(0, Vec::len), "member decohered: proposing its removal");
                    self.stats.decohered += 1;
                }
                Op::AddMember(member) => {
                    tracing::info!(%member, "pruned member heard steadily: proposing its re-add");
                    self.stats.readded += 1;
                }
                _ => {}
            }
        }
    }

    /// Serial groups: one consensus decision per epoch. A proposal in flight is retried with a
    /// higher ballot after a delay that grows with this member's rank (so duelling proposers
    /// settle), with the value it now wants (possibly none: the epoch then closes without a
    /// change; phase 1 still adopts any value already accepted). A replica that promised or
    /// accepted but sees no decision proposes itself, so a promise never blocks for ever.
    fn drive_consensus(&mut self, ops: Vec<Op>, now: u64) {
        let (members, cur) = (self.fold_cache.members.clone(), self.fold_cache.epoch);
        let rank = members.iter().position(|m| *m == self.me).unwrap_or(0) as u64;
        let retry = self.cfg.resend_after_ms * (2 + rank);
        if let Some(p) = &self.proposer {
            if p.epoch == cur + 1 {
                if now >= p.started + retry {
                    self.propose(ops, now);
                }
                return;
            }
            self.proposer = None;
        }
        let waiting_since = self.promised_at.get(&(cur + 1)).into_iter().chain(self.accepted_at.get(&(cur + 1))).min().copied();
        if let Some(t) = waiting_since {
            if now > t + self.cfg.decohere_after_ms + retry {
                self.propose(ops, now);
                return;
            }
        }
        if ops.is_empty() {
            return;
        }
        self.announce(&ops);
        self.propose(ops, now);
    }

    /// Operator force-remove (for a pair that cannot prune its peer by itself, or a serial
    /// group without a majority). Logged as a warning: the removed member's operations after
    /// `cut` stay out until it is re-added.
    ///
    /// # Errors
    /// [`WriteError`] if this replica may not write.
    pub fn force_remove(&mut self, now: u64, member: EndpointId) -> Result<Dot, WriteError> {
        let cut = self.durable.of(&member).map_or(0, crate::IntervalSet::contiguous_max);
        tracing::warn!(%member, cut, "operator force-remove of a group member");
        let op = Op::RemoveMember { member, cut, heard: None };
        if self.cfg.kind == GroupKind::Serial {
            let epoch = self.fold_cache.epoch;
            return self.write(now, vec![Op::Decided { epoch: epoch + 1, ops: vec![op] }]);
        }
        self.write(now, vec![op])
    }

    /// The members S is computed over: the pending membership (valid proposals only). A
    /// pending removal is left out, so a prune can commit among the rest; a pending addition
    /// is already in, so S cannot pass the addition, and the new member's deltas after it,
    /// without that member's ack and without holding what it acknowledged.
    fn in_force(&self) -> Vec<EndpointId> {
        self.fold_cache.members.iter().copied().collect()
    }


    /// The stability frontier S: the smallest ack HLC over the members in force, if every
    /// member has acked and this replica durably holds every delta each origin acknowledged.
    fn stability_frontier(&mut self, now: u64) -> Option<Hlc> {
        // Survivors hold a removed member's deltas up to its cut before they commit past it.
        for (m, cut) in &self.fold_cache.cuts {
            if self.durable.of(m).map_or(0, crate::IntervalSet::contiguous_max) < *cut {
                return None;
            }
        }
        let own = self.own_ack(now);
        let mut s: Option<Hlc> = None;
        for m in &self.in_force() {
            let a = if *m == self.me { own } else { *self.acks.get(m)? };
            let have = self.durable.of(m).map_or(0, crate::IntervalSet::contiguous_max);
            if have < a.own_seq {
                return None;
            }
            s = Some(s.map_or(a.hlc, |x| x.min(a.hlc)));
        }
        s
    }

    fn try_commit(&mut self, now: u64) {
        let mut committed = false;
        if let Some(s) = self.stability_frontier(now) {
            if s > self.frontier {
                committed |= self.commit_to(s);
            }
        }
        if self.candidates.peek().is_some_and(|c| c.stamp <= self.frontier && c.batch <= self.persisted_batch) {
            committed |= self.commit_to(self.frontier);
        }
        // The frontier is written only when it committed something: a frontier that moved
        // over no candidate leaves the committed view as restored from the older one, and an
        // idle node must not write to its ledger (S moves with every ack while idle).
        if committed && self.frontier > self.frontier_persisted {
            self.frontier_persisted = self.frontier;
            self.unpersisted.push(Record::Frontier(self.frontier));
        }
    }

    /// Commit every stable candidate up to `s`; true if one was committed.
    fn commit_to(&mut self, s: Hlc) -> bool {
        let before_frontier = self.frontier;
        self.frontier = self.frontier.max(s);
        let mut late = BTreeSet::new();
        let mut committed = 0usize;
        let mut changed = BTreeSet::new();
        let mut txns = Vec::new();
        while self.candidates.peek().is_some_and(|c| c.stamp <= s) {
            // Transactions must be evaluated in the total order: stop at a candidate that is
            // not durable yet, and go on once it is.
            if self.candidates.peek().is_some_and(|c| c.batch > self.persisted_batch) {
                break;
            }
            let Some(c) = self.candidates.pop() else { break };
            committed += 1;
            let is_late = c.stamp <= before_frontier;
            for (reg, field, fact) in &c.facts {
                if self.committed.apply(&self.cfg.hash_key, &self.cfg.schema, *reg, *field, fact) {
                    changed.insert(*reg);
                    if is_late {
                        late.insert(*reg);
                    }
                }
            }
            txns.extend(c.txns.into_iter().map(|(o, seq, t)| ((c.stamp, o, seq), t)));
        }
        if committed == 0 {
            return false;
        }
        // Rejoin position (DESIGN.md): a transaction of an endpoint past the cut of one of its
        // removals, stamped before the re-add that ended it, sorts at (re-add stamp, origin,
        // seq) and its deadline is judged there; until a re-add it is inert (kept aside). No
        // node evaluated it earlier: the cut covers everything anyone committed.
        let mut ready = Vec::with_capacity(txns.len());
        let deferred = std::mem::take(&mut self.deferred);
        for ((stamp, origin, seq), t) in txns.into_iter().chain(deferred) {
            let position = self.rejoin_position(origin, seq, stamp);
            match position {
                Some(p) if p <= s => ready.push(((p, origin, seq), t)),
                _ => self.deferred.push(((stamp, origin, seq), t)),
            }
        }
        ready.sort_by_key(|a| a.0);
        // Cells a transaction wrote read alike in both views (`get`), so both hear of them.
        let mut written = BTreeSet::new();
        for ((position, _, _), t) in ready {
            if let Some(outcome) = self.serial.evaluate(&self.cfg.hash_key, position, &t) {
                tracing::trace!(id = ?t.id, ?outcome, "transaction evaluated");
                if matches!(outcome, TxnOutcome::Committed { .. }) {
                    written.extend(t.writes.iter().map(|w| w.reg));
                }
                if self.tracked.remove(&t.id).is_some() {
                    self.events.push_back(Event::Txn { id: t.id, state: TxnState::Resolved(outcome) });
                }
            }
        }
        let before = std::mem::take(&mut self.committed_members);
        self.committed_members = self.compute_fold(Some(self.frontier)).members;
        for m in self.committed_members.difference(&before) {
            self.events.push_back(Event::MemberJoined(*m));
        }
        for m in before.difference(&self.committed_members) {
            self.events.push_back(Event::MemberLeft(*m));
        }
        self.events.push_back(Event::Committed { frontier: self.frontier, candidates: committed });
        if !late.is_empty() {
            self.stats.reentangled += 1;
            self.events.push_back(Event::ReEntangled { registers: late.iter().copied().collect() });
        }
        if !written.is_empty() {
            self.events.push_back(Event::RegistersChanged { view: View::Pending, registers: written.iter().copied().collect() });
            changed.extend(written);
        }
        if !changed.is_empty() {
            self.events.push_back(Event::RegistersChanged { view: View::Committed, registers: changed.into_iter().collect() });
        }
        true
    }
}

fn dot_bytes(d: Dot) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[..32].copy_from_slice(&d.origin.0);
    b[32..].copy_from_slice(&d.seq.to_le_bytes());
    b
}
