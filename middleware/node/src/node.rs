//! The node: one task owns the identity, the ledger, the pair channels and the groups, and is
//! fed by zenoh samples, control requests and a timer (the shape of quinn's connection
//! driver). Everything that touches protocol state happens on that task, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use spook_core::{
    Event, EndpointId, FieldId, GroupConfig, GroupId, GroupKind, Op, OpId, RegisterId, Replica, Schema, TxnState, View,
};
use spook_ledger::{GroupStore, Ledger, LocalWriteError};
use spook_secure::{AllowList, GroupCrypto, GroupKeys, HelloGuard, Identity, Initiator, KeyAnnouncement, PairChannel, PeerEntry};
use tokio::sync::{mpsc, oneshot};
use zenoh::qos::Reliability;
use zenoh::Wait;

use crate::config::Config;
use crate::domain_key::{DomainKey, Rotation};
use crate::control::{self, Request};
use crate::refusal::Refusal;
use crate::renewal_check::{RenewalCheck, Verdict};
use crate::watchers::{Watcher, WATCHER_QUEUE};
pub use spook_client::keys::hex;
use spook_client::keys::{tag, tag_key};
use crate::metrics::Metrics;
use crate::session;
use crate::values;

/// How long a stopping node waits for its zenoh session to close (the whole stop must fit in
/// 2 s, what a service manager or an operator expects of SIGTERM).
const SESSION_CLOSE_BOUND: std::time::Duration = std::time::Duration::from_millis(800);

/// First byte of a group frame carried inside a pair channel (digests and wants to a member
/// this node counts as pruned); key announcements start with `K`.
const PAIR_GROUP_FRAME: u8 = b'D';

/// First byte of a domain key handed over a pair channel (a rotation, [`crate::domain_key`]).
const PAIR_DOMAIN_KEY: u8 = b'Z';

/// How often sender keys are announced again to every paired member (ms).
const KEY_REANNOUNCE_MS: u64 = 3_000;

/// A handshake not answered within this long is started again (ms). Longer than a slow
/// radio's round trip: each retry makes the responder finish one more channel, and the
/// initiator ends up holding only the one whose reply arrived first.
const HANDSHAKE_RETRY_MS: u64 = 3_000;

/// A pair silent this long gets a fresh handshake although it has channels (ms): more than
/// three rounds of key announcements ([`KEY_REANNOUNCE_MS`]) lost in a row.
const PAIR_SILENCE_MS: u64 = 10_000;

/// Channels kept per peer for receiving (see [`Pair::chans`]).
const KEPT_CHANNELS: usize = 4;

/// Publications up to this size go best effort (one datagram on a mixed-reliability link,
/// whose batches are 1,150 bytes).
const BEST_EFFORT_MAX: usize = 1_024;

/// How often a ledger that failed (a full disk) is reopened (ms).
const LEDGER_REOPEN_MS: u64 = 5_000;

/// How often subscriptions are declared again while a member is unreachable (ms).
const REDECLARE_MS: u64 = 5_000;

/// Why a renewal is made when members went silent with the one before.
const SILENT_AFTER_RENEWAL: &str = "members silent since the last renewal";

/// Remote clients whose channels are kept. Past this, one is forgotten (the lowest id, not
/// the oldest: a bound on memory, not a policy) and shakes hands again at its next attach.
const MAX_CLIENTS: usize = 1_024;

/// A digest or want query is given up after this long (a member that vanished mid-query).
const SYNC_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Signing nonces made per tick (each is one fixed-base scalar multiplication, tens of µs).
const NONCES_PER_TICK: usize = 4;

/// A declaration this node holds on its zenoh session (declared again by `redeclare`).
#[expect(dead_code, reason = "held only so that dropping it undeclares it")]
enum Declared {
    Subscriber(zenoh::pubsub::Subscriber<()>),
    Queryable(zenoh::query::Queryable<()>),
}

/// Where a sealed group frame goes.
enum Route {
    /// Published on this key.
    Publish(String),
    /// Asked as a query on this key (a digest or a want).
    Query(String),
    /// A reply to the open query with this index in `drain`'s list.
    Reply(usize),
}

/// Inputs of the node task.
enum Cmd {
    Sample { key: String, payload: Vec<u8> },
    /// A member's digest or want, asked as a zenoh query: what this node sends that member
    /// while handling it goes back as replies (see `drain`); or a remote client's hello or
    /// request ([`spook_client::remote`]).
    Query { key: String, payload: Vec<u8>, query: zenoh::query::Query },
    /// The response to a remote client's request, to seal on the channel it came on.
    ClientAnswer { client: EndpointId, channel: [u8; 8], query: zenoh::query::Query, response: Json },
    Control(Request, oneshot::Sender<Json>),
    Watch { group: String, view: View, snapshot: bool, typed: bool, tx: mpsc::Sender<Json>, reply: oneshot::Sender<Json> },
}

impl Cmd {
    /// A zenoh sample (a publication, or a reply to one of our queries) for the node task.
    fn sample(s: &zenoh::sample::Sample) -> Cmd {
        Cmd::Sample { key: s.key_expr().as_str().to_string(), payload: s.payload().to_bytes().into_owned() }
    }
}

/// A handle on a running node.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Cmd>,
    /// This node's endpoint id.
    pub id: EndpointId,
    /// Its counters.
    pub metrics: Arc<Metrics>,
}

impl NodeHandle {
    /// Send a control request and wait for its response.
    pub async fn request(&self, r: Request) -> Json {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Control(r, tx)).await.is_err() {
            return control::error(crate::refusal::Refusal::new(spook_client::proto::ErrorCode::Stopped, "the node has stopped"));
        }
        rx.await.unwrap_or_else(|_| control::error(crate::refusal::Refusal::new(spook_client::proto::ErrorCode::Stopped, "the node has stopped")))
    }

    /// A [`Request::Watch`] as the control socket and an embedded client send it: its view
    /// read as a remote client's is ([`NodeHandle::watch`] then).
    pub async fn watch_request(&self, r: Request) -> (Json, mpsc::Receiver<Json>) {
        // A refusal, and no events (the sender is gone at once).
        let refused = |e: Refusal| (control::error(e), mpsc::channel(1).1);
        let Request::Watch { group, view, snapshot, typed } = r else {
            return refused(Refusal::new(spook_client::proto::ErrorCode::BadRequest, "not a watch request"));
        };
        match parse_view(view.as_deref()) {
            Ok(view) => self.watch(group, view, snapshot, typed).await,
            Err(e) => refused(e),
        }
    }

    /// Subscribe to a group's changes; the first value is the response. With `snapshot`,
    /// every register written so far comes first ([`Request::Watch`]).
    /// With `typed`, values are serde `Value`s rather than schema-typed JSON. The queue is
    /// bounded: a consumer that falls behind gets a lag notice and a snapshot of what changed
    /// ([`crate::watchers`]).
    pub async fn watch(&self, group: String, view: View, snapshot: bool, typed: bool) -> (Json, mpsc::Receiver<Json>) {
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        let (reply, r) = oneshot::channel();
        if self.tx.send(Cmd::Watch { group, view, snapshot, typed, tx, reply }).await.is_err() {
            return (control::error(crate::refusal::Refusal::new(spook_client::proto::ErrorCode::Stopped, "the node has stopped")), rx);
        }
        (r.await.unwrap_or_else(|_| control::error(crate::refusal::Refusal::new(spook_client::proto::ErrorCode::Stopped, "the node has stopped"))), rx)
    }
}

/// What the ledger keeps about a group, beyond its log.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct GroupInfo {
    name: String,
    id: String,
    kind: String,
    genesis_ms: u64,
    members: Vec<String>,
    /// Frames carry no origin signature: members trust each other's origin claims (for
    /// constrained radio; DESIGN.md "Security"). Absent in invites of older nodes: signed.
    #[serde(default)]
    trusted_members: bool,
    /// The group's schema, declared at create; absent: the fleet schema (and in invites of
    /// older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<Schema>,
}

impl GroupInfo {
    fn config(&self, t: &crate::config::TimingSection) -> anyhow::Result<GroupConfig> {
        let id = parse_hex::<16>(&self.id).ok_or_else(|| anyhow::anyhow!("group id {:?} is not 32 hex digits", self.id))?;
        let members = self.members.iter().map(|m| m.parse::<EndpointId>()).collect::<Result<Vec<_>, _>>()?;
        let schema = self.schema.clone().unwrap_or_else(Schema::fleet);
        schema.validate().map_err(|e| anyhow::anyhow!("the group's schema: {e}"))?;
        let mut cfg = GroupConfig::new(GroupId(id), schema, self.genesis_ms, members);
        cfg.kind = match self.kind.as_str() {
            "serial" => GroupKind::Serial,
            "convergent" => GroupKind::Convergent,
            k => anyhow::bail!("group kind {k:?} is neither convergent nor serial"),
        };
        cfg.digest_interval_ms = t.digest_interval_ms;
        cfg.decohere_after_ms = t.decohere_after_ms;
        cfg.decohere_max_ms = t.decohere_max_ms;
        cfg.rejoin_after_ms = t.rejoin_after_ms;
        cfg.join_grace_ms = t.join_grace_ms;
        cfg.prompt_ack_ms = t.prompt_ack_ms;
        Ok(cfg)
    }

    fn invite(&self) -> String {
        format!("spook1{}", hex(serde_json::to_string(self).unwrap_or_default().as_bytes()))
    }

    fn from_invite(s: &str) -> anyhow::Result<GroupInfo> {
        let h = s.trim().strip_prefix("spook1").ok_or_else(|| anyhow::anyhow!("an invite starts with spook1"))?;
        let bytes = (0..h.len())
            .step_by(2)
            .map(|i| h.get(i..i + 2).and_then(|x| u8::from_str_radix(x, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| anyhow::anyhow!("the invite is damaged (not hex)"))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

struct GroupRt {
    info: GroupInfo,
    cfg: GroupConfig,
    replica: Replica,
    store: GroupStore,
    keys: GroupKeys,
    tag: String,
    watchers: Vec<Watcher>,
    /// The own sender key's epoch: one more at every prune.
    key_epoch: u32,
    /// Key ids of other members' keys installed (a new one is answered with ours).
    known_keys: std::collections::BTreeSet<u32>,
    /// Members that have our current sender key.
    keyed: std::collections::BTreeSet<EndpointId>,
    /// Local write times of own deltas not yet committed (for the latency histogram).
    written_at: BTreeMap<u64, (Instant, spook_core::Hlc)>,
    /// Clients waiting for the outcome of a transaction submitted here.
    tx_waiters: BTreeMap<OpId, Vec<oneshot::Sender<Json>>>,
    /// Writes accepted and not yet answered: a write is answered once the ledger write that
    /// holds it is done (or has failed), so an acknowledged write survives `kill -9`.
    durable_waiters: Vec<(Json, oneshot::Sender<Json>)>,
    /// Every log line about this group is inside this span (`group{name=…}`).
    span: tracing::Span,
    /// Members whose key announcements carry another schema's hash (refused).
    schema_mismatch: std::collections::BTreeSet<EndpointId>,
}

impl GroupRt {
    /// A new own sender key of the next epoch; `drain` hands it to the current members, as
    /// none of them has it yet.
    fn rotate_own_key(&mut self) {
        self.key_epoch += 1;
        let _ = self.keys.rotate(self.key_epoch, &mut rand_core::OsRng);
        self.keyed.clear();
    }
}

/// A remote client's channels, newest last, and when a request of it last opened (ms; its
/// watches end once it has been silent for [`spook_client::remote::WATCH_IDLE_MS`]).
#[derive(Default)]
struct RemoteClient {
    chans: std::collections::VecDeque<PairChannel>,
    seen: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Default)]
struct Pair {
    /// Channels with the peer, newest last, each with whether the peer has sent on it. Both
    /// sides may open a handshake at once, and a reply may be lost (the initiator then never
    /// holds the channel the responder finished): a few recent ones are kept for receiving,
    /// and sending prefers the newest the peer has proven it holds.
    chans: std::collections::VecDeque<(PairChannel, bool)>,
    pending: Option<(u32, Initiator)>,
    last_attempt: u64,
    /// When a message from the peer last opened on one of these channels (or a channel came
    /// up). Key announcements cross every pair every few seconds, so a long silence means the
    /// two sides may hold no channel in common: a fresh handshake repairs that.
    last_opened: u64,
}

impl Pair {
    fn is_up(&self) -> bool {
        !self.chans.is_empty()
    }
}

struct Node {
    cfg: Config,
    me: Identity,
    ledger: Ledger,
    allow: AllowList,
    guard: HelloGuard,
    /// The domain key zenoh admits links with, through its rotations ([`crate::domain_key`]),
    /// if the ledger has one.
    zenoh_auth: Option<Rotation>,
    /// Hellos (from peers and remote clients) read per second ([`crate::hello_budget`]),
    /// checked in zenoh's callbacks.
    hello_budget: Arc<std::sync::Mutex<crate::hello_budget::HelloBudget>>,
    pairs: BTreeMap<EndpointId, Pair>,
    groups: BTreeMap<GroupId, GroupRt>,
    session: zenoh::Session,
    tx: mpsc::Sender<Cmd>,
    domain_key: [u8; 32],
    metrics: Arc<Metrics>,
    /// Subscriptions and queryables, by key expression.
    declared: Vec<(String, Declared)>,
    /// Digest and want queries handled and not yet answered: (group, asking member, query).
    /// `drain` sends what the group has for that member as replies, then drops the query,
    /// which ends it.
    answering: Vec<(GroupId, EndpointId, zenoh::query::Query)>,
    /// Remote clients ([`spook_client::remote`]).
    clients: BTreeMap<EndpointId, RemoteClient>,
    /// When the subscriptions were last declared again (see `on_tick`).
    last_redeclare_ms: u64,
    /// A fresh zenoh session is due (`spook reconnect`, or the last one failed to open);
    /// the run loop opens it.
    renew_now: Option<&'static str>,
    /// Whether the last renewal left the members heard before it heard again.
    renewal_check: Option<RenewalCheck>,
    /// When the session was last checked for being closed.
    last_health_check_ms: u64,
    /// When the ledger was last reopened after an I/O error.
    last_reopen_ms: u64,
    /// An open pairing window (`spook pair`).
    pairing: Option<crate::pairing::PairingRt>,
    /// When our sender keys were last re-announced to every paired member.
    last_reannounce_ms: u64,
    /// The loss injector (`[faults]`): spook-relay's seeded schedule, consulted at every
    /// publication.
    faults: Option<std::cell::RefCell<spook_relay::Schedule>>,
    /// The radio's broadcast path (`[zenoh] multicast`), if configured.
    multicast: Option<crate::multicast::Multicast>,
}

/// A local write or transaction the node refused, as the client's error text. A refusal for
/// want of storage (full disk, broken ledger) is counted: an operator must act on it.
fn refused(metrics: &Metrics, e: LocalWriteError) -> Refusal {
    if matches!(e, LocalWriteError::StorageUnavailable(_)) {
        Metrics::add(&metrics.writes_refused, 1);
        return Refusal::new(spook_client::proto::ErrorCode::StorageUnavailable, e.to_string());
    }
    // A write that does not fit (unknown field, wrong kind, oversized) is the caller's value.
    if matches!(e, LocalWriteError::Invalid(spook_core::WriteError::Invalid(_))) {
        return Refusal::new(spook_client::proto::ErrorCode::BadValue, e.to_string());
    }
    Refusal::from(e.to_string())
}

/// Add a channel, keeping the [`KEPT_CHANNELS`] newest.
fn keep_newest<T>(chans: &mut std::collections::VecDeque<T>, chan: T) {
    chans.push_back(chan);
    while chans.len() > KEPT_CHANNELS {
        chans.pop_front();
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}


fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}


/// Create an identity in the ledger if it has none; return it.
pub fn ensure_identity(ledger: &mut Ledger) -> anyhow::Result<Identity> {
    match ledger.identity()? {
        Some(b) => Ok(Identity::from_bytes(&b)?),
        None => {
            let id = Identity::generate();
            ledger.set_identity(&id.to_bytes())?;
            Ok(id)
        }
    }
}

/// Add a peer to a ledger's allow-list (when the node is not running).
pub fn allow_in_ledger(ledger: &mut Ledger, peer: EndpointId, name: &str) -> anyhow::Result<()> {
    let entry = ledger.peers()?.into_iter().find(|(id, _)| *id == peer).and_then(|(id, b)| PeerEntry::from_stored(id, &b));
    let e = entry.unwrap_or(PeerEntry { id: peer, signing: None, name: name.to_string() });
    ledger.put_peer(&peer, &e.to_stored())?;
    Ok(())
}

/// The node's zenoh settings; with a domain key, zenoh admits only links that present it.
fn zenoh_config(cfg: &Config, auth: Option<&Rotation>, now: u64) -> anyhow::Result<zenoh::Config> {
    let mut z = zenoh::Config::default();
    if let Some(r) = auth {
        crate::domain_key::configure(r.presented(now), &mut z, &r.accepted(now), &crate::domain_key::dictionary_path(&cfg.node.ledger)).map_err(|e| anyhow::anyhow!("domain key: {e}"))?;
    }
    let set = |z: &mut zenoh::Config, k: &str, v: String| z.insert_json5(k, &v).map_err(|e| anyhow::anyhow!("zenoh config {k}: {e}"));
    set(&mut z, "mode", format!("{:?}", cfg.zenoh.mode))?;
    set(&mut z, "listen/endpoints", serde_json::to_string(&cfg.zenoh.listen)?)?;
    set(&mut z, "connect/endpoints", serde_json::to_string(&cfg.zenoh.connect)?)?;
    set(&mut z, "scouting/multicast/enabled", cfg.zenoh.multicast_scouting.to_string())?;
    // Keep trying configured peers: a node that starts first must still meet the others.
    set(&mut z, "connect/timeout_ms", "-1".into())?;
    for (k, v) in &cfg.zenoh.options {
        set(&mut z, k, v.clone())?;
    }
    Ok(z)
}

/// Start a node: open the ledger (creating the identity on first start), join zenoh, start
/// the metrics endpoint. Returns once it runs; the node stops when `shutdown` resolves.
pub async fn start(cfg: Config) -> anyhow::Result<(NodeHandle, tokio::task::JoinHandle<anyhow::Result<()>>, Option<std::net::SocketAddr>)> {
    let mut ledger = Ledger::open(&cfg.node.ledger)?;
    let me = ensure_identity(&mut ledger)?;
    let mut allow = AllowList::default();
    for (id, b) in ledger.peers()? {
        match PeerEntry::from_stored(id, &b) {
            Some(e) => allow.allow(e),
            None => tracing::warn!(peer = %id, "ignoring a malformed allow-list entry"),
        }
    }
    let zenoh_auth = ledger.domain_key()?.map(|b| DomainKey::from_bytes(&b)).transpose().map_err(|e| anyhow::anyhow!("the ledger's domain key: {e}"))?.map(Rotation::new);
    if zenoh_auth.is_none() {
        tracing::warn!("this ledger has no domain key: any zenoh peer that reaches this node can open a session (it sees key expressions and sizes, never values); `spook domain-key --new` makes one, `spook domain-key --set TOKEN` joins a domain");
    }
    let session = zenoh::open(zenoh_config(&cfg, zenoh_auth.as_ref(), now_ms())?).await.map_err(|e| anyhow::anyhow!("cannot start zenoh: {e}"))?;
    let multicast = if cfg.zenoh.multicast.is_empty() { None } else { Some(crate::multicast::Multicast::open(&cfg.zenoh.multicast, &cfg.zenoh.options).await?) };
    let metrics = Metrics::new();
    let metrics_addr = if cfg.metrics.listen.is_empty() {
        None
    } else {
        let l = match tokio::net::TcpListener::bind(&cfg.metrics.listen).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && cfg.metrics.listen == crate::config::DEFAULT_METRICS => {
                tracing::warn!("metrics: {} is taken (another node on this host?); listening on a free port instead: set [metrics] listen for a fixed one", cfg.metrics.listen);
                tokio::net::TcpListener::bind("127.0.0.1:0").await?
            }
            Err(e) => anyhow::bail!("metrics listen {}: {e}", cfg.metrics.listen),
        };
        let addr = l.local_addr()?;
        tokio::spawn(crate::metrics::serve(l, metrics.clone()));
        Some(addr)
    };
    let (tx, rx) = mpsc::channel(4096);
    let domain_key = tag_key(&cfg.node.domain);
    let id = me.id();
    let mut node = Node {
        cfg,
        me,
        ledger,
        allow,
        guard: HelloGuard::default(),
        zenoh_auth,
        hello_budget: Arc::new(std::sync::Mutex::new(crate::hello_budget::HelloBudget::new(now_ms()))),
        pairs: BTreeMap::new(),
        groups: BTreeMap::new(),
        session,
        tx: tx.clone(),
        domain_key,
        metrics: metrics.clone(),
        declared: Vec::new(),
        answering: Vec::new(),
        clients: BTreeMap::new(),
        last_redeclare_ms: 0,
        renew_now: None,
        renewal_check: None,
        last_health_check_ms: 0,
        last_reopen_ms: 0,
        pairing: None,
        last_reannounce_ms: 0,
        faults: None,
        multicast,
    };
    if node.cfg.faults.drop_pct > 0.0 {
        let imp = spook_relay::Impairment { loss_pct: node.cfg.faults.drop_pct, seed: node.cfg.faults.seed, ..Default::default() };
        node.faults = Some(std::cell::RefCell::new(spook_relay::Schedule::new(imp)?));
        tracing::warn!(drop_pct = node.cfg.faults.drop_pct, seed = node.cfg.faults.seed, "fault injection: dropping published messages");
    }
    node.subscribe(&format!("{}/p/{}", node.prefix(), node.peer_tag(&id)), false)?;
    node.subscribe(&node.pairing_key(), false)?;
    node.subscribe(&spook_client::keys::client_key(&node.cfg.node.domain, &id), true)?;
    for (gid, bytes) in node.ledger.groups()? {
        match serde_json::from_slice::<GroupInfo>(&bytes) {
            Ok(info) => {
                if let Err(e) = node.open_group(info) {
                    tracing::error!(group = %hex(&gid.0), "cannot open group: {e:#}");
                }
            }
            Err(e) => tracing::error!(group = %hex(&gid.0), "malformed group entry in the ledger: {e}"),
        }
    }
    tracing::info!(id = %id, domain = %node.cfg.node.domain, groups = node.groups.len(), "node started");
    let task = tokio::spawn(node.run(rx));
    Ok((NodeHandle { tx, id, metrics }, task, metrics_addr))
}

impl Node {
    fn prefix(&self) -> String {
        format!("spook/{}", self.cfg.node.domain)
    }

    /// An opaque tag for an endpoint or group within this domain (keyed hash).
    fn tag(&self, what: &[u8]) -> String {
        tag(&self.domain_key, what)
    }

    /// Members we hold a pair channel with.
    fn paired(&self) -> Vec<EndpointId> {
        self.pairs.iter().filter(|(_, p)| p.is_up()).map(|(id, _)| *id).collect()
    }

    /// Where pairing ceremonies meet (see [`crate::pairing`]).
    fn pairing_key(&self) -> String {
        format!("{}/pairing", self.prefix())
    }

    fn peer_tag(&self, id: &EndpointId) -> String {
        self.tag(&id.0)
    }

    fn subscribe(&mut self, key: &str, queryable: bool) -> anyhow::Result<()> {
        let d = self.declare(key, queryable)?;
        self.declared.push((key.to_string(), d));
        // What is published reaches us on the radio's multicast group too (queries never do).
        if let Some(session) = self.multicast.as_ref().filter(|_| !queryable).map(|m| m.session().clone()) {
            if let (Declared::Subscriber(sub), Some(m)) = (self.declare_on(&session, key, false)?, self.multicast.as_mut()) {
                m.keep(key, sub);
            }
        }
        Ok(())
    }

    fn declare(&self, key: &str, queryable: bool) -> anyhow::Result<Declared> {
        self.declare_on(&self.session, key, queryable)
    }

    /// Declare on `session` (the unicast one, or the multicast one for frames to all members).
    fn declare_on(&self, session: &zenoh::Session, key: &str, queryable: bool) -> anyhow::Result<Declared> {
        let tx = self.tx.clone();
        // Hellos past the budget are dropped right here, on zenoh's thread: a flood then
        // costs no copy, no queue slot (it would crowd out group frames) and no wake-up of
        // the node task.
        let (budget, metrics) = (self.hello_budget.clone(), self.metrics.clone());
        let over_budget = move |payload: &[u8], at: usize| {
            let over = payload.get(at) == Some(&spook_secure::HELLO) && !budget.lock().is_ok_and(|mut b| b.try_take(now_ms()));
            if over {
                metrics.reject("hello-over-budget");
            }
            over
        };
        if queryable {
            return session
                .declare_queryable(key)
                .allowed_origin(zenoh::sample::Locality::Remote)
                .callback(move |q| {
                    // A remote client's hello starts with the HELLO byte.
                    if q.payload().is_some_and(|p| over_budget(&p.to_bytes(), 0)) {
                        return;
                    }
                    let payload = q.payload().map(|p| p.to_bytes().into_owned()).unwrap_or_default();
                    let _ = tx.try_send(Cmd::Query { key: q.key_expr().as_str().to_string(), payload, query: q });
                })
                .wait()
                .map(Declared::Queryable)
                .map_err(|e| anyhow::anyhow!("zenoh queryable {key}: {e}"));
        }
        session
            .declare_subscriber(key)
            .allowed_origin(zenoh::sample::Locality::Remote)
            .callback(move |s| {
                // A peer's hello on its pair key: a 4-byte handshake id, then the HELLO byte.
                if over_budget(&s.payload().to_bytes(), 4) {
                    return;
                }
                let _ = tx.try_send(Cmd::sample(&s));
            })
            .wait()
            .map(Declared::Subscriber)
            .map_err(|e| anyhow::anyhow!("zenoh subscribe {key}: {e}"))
    }

    /// Declare every subscription and queryable again, on the current session. Over UDP,
    /// zenoh sends a declaration once and never again: a lost one leaves a peer that never
    /// routes us that key. Called while some member has no pair channel or is counted as
    /// gone, and after a renewal.
    fn redeclare(&mut self) {
        let keys: Vec<(String, bool)> = self.declared.iter().map(|(k, d)| (k.clone(), matches!(d, Declared::Queryable(_)))).collect();
        let mut fresh = Vec::with_capacity(keys.len());
        for (k, queryable) in keys {
            match self.declare(&k, queryable) {
                Ok(d) => fresh.push((k, d)),
                Err(e) => {
                    tracing::warn!("{e}");
                    return;
                }
            }
        }
        // The old ones are undeclared as they drop, after the new ones exist.
        self.declared = fresh;
    }

    /// Close the zenoh session and open a fresh one (a fresh zenoh id: new handshakes and
    /// declarations on every link), then declare the subscriptions on it. Pair channels and
    /// group keys are Spook's own and survive. If the open fails, `on_tick` tries again.
    async fn renew_session(&mut self, why: &'static str) {
        let started = std::time::Instant::now();
        let old = self.session.zid();
        // The listen endpoints must be free before the new session binds them.
        if let Err(e) = self.session.close().await {
            tracing::warn!("closing the zenoh session: {e}");
        }
        let now = now_ms();
        if let Some(r) = &mut self.zenoh_auth {
            let _ = r.session_due(now);
        }
        let opened = match zenoh_config(&self.cfg, self.zenoh_auth.as_ref(), now) {
            Ok(z) => zenoh::open(z).await.map_err(|e| anyhow::anyhow!("{e}")),
            Err(e) => Err(e),
        };
        match opened {
            Ok(s) => self.session = s,
            Err(e) => {
                tracing::error!("cannot open a fresh zenoh session: {e:#}; trying again in a second");
                return;
            }
        }
        self.redeclare();
        let heard = self.heard_since(now.saturating_sub(crate::renewal_check::CHECK_AFTER_MS));
        // Up to 2.5 s apart, by the first byte of the node's id.
        let stagger_ms = u64::from(self.me.id().0[0]) * 10;
        self.renewal_check = Some(RenewalCheck::after_renewal(self.renewal_check.take(), why == SILENT_AFTER_RENEWAL, now, stagger_ms, heard));
        Metrics::add(&self.metrics.renewals, 1);
        tracing::warn!(why, old = %old, new = %self.session.zid(), took_ms = started.elapsed().as_millis() as u64, "zenoh session renewed");
    }

    /// The members of any group heard at `since` or later that are still allowed.
    fn heard_since(&self, since: u64) -> BTreeSet<EndpointId> {
        let me = self.me.id();
        self.groups
            .values()
            .flat_map(|g| g.replica.roster().values().filter(|m| **m != me && g.replica.last_heard(m).is_some_and(|t| t >= since)).copied().collect::<Vec<_>>())
            .filter(|m| self.allow.contains(m))
            .collect()
    }

    /// After a renewal: renew again if members heard before it stay silent
    /// ([`crate::renewal_check`]).
    fn check_renewal(&mut self, now: u64) {
        let Some(c) = &self.renewal_check else { return };
        let heard = self.heard_since(c.renewed_at());
        match c.verdict(now, |m| heard.contains(m) || !self.allow.contains(m)) {
            Verdict::Wait => {}
            Verdict::Done => self.renewal_check = None,
            Verdict::Renew(silent) => {
                tracing::warn!(silent = ?silent.iter().map(ToString::to_string).collect::<Vec<_>>(), "members heard before the last zenoh session renewal are silent since: renewing again");
                self.renew_now = Some(SILENT_AFTER_RENEWAL);
            }
            Verdict::GiveUp(silent) => {
                tracing::info!(silent = ?silent.iter().map(ToString::to_string).collect::<Vec<_>>(), "members still silent after {} renewals: counted as gone, not as a broken link", crate::renewal_check::MAX_REPAIRS);
                self.renewal_check = None;
            }
        }
    }

    /// Some member of some group is counted as gone, or has no pair channel with us.
    fn some_member_unreachable(&self) -> bool {
        let me = self.me.id();
        self.groups.values().any(|g| {
            g.replica.roster().values().any(|m| *m != me && (!g.replica.members().contains(m) || !self.pairs.get(m).is_some_and(Pair::is_up)))
        })
    }

    /// The fault injector drops the next message (counted); every message this node sends
    /// asks it.
    fn injected_drop(&self) -> bool {
        let dropped = self.faults.as_ref().is_some_and(|f| f.borrow_mut().on_datagram(0).is_dropped());
        if dropped {
            Metrics::add(&self.metrics.injected_drops, 1);
        }
        dropped
    }

    fn publish(&self, key: &str, payload: Vec<u8>) {
        if self.injected_drop() {
            return;
        }
        Metrics::add(&self.metrics.bytes_out, payload.len() as u64);
        // Spook recovers lost, duplicated and reordered messages itself, so a small one goes
        // best effort: over a mixed-reliability link (`udp/…?rel=1;mixed_rel=1`) that is a
        // datagram, never held back behind a retransmission. A message that spans several
        // datagrams goes reliable: losing one fragment would lose all of it.
        let reliability = if payload.len() <= BEST_EFFORT_MAX { Reliability::BestEffort } else { Reliability::Reliable };
        // On a radio with a multicast group, a datagram goes on the air once, whoever it is
        // for, and no unicast link's congestion control holds it back ([`crate::multicast`]).
        if let Some(m) = self.multicast.as_ref().filter(|_| reliability == Reliability::BestEffort) {
            Metrics::add(&self.metrics.frames_multicast, 1);
            return m.publish(key, payload);
        }
        if let Err(e) = self.session.put(key, payload).reliability(reliability).wait() {
            tracing::warn!(key, "publish failed: {e}");
        }
    }

    /// Ask a digest or want as a query on `key`: the member that answers sends what it has
    /// for us (what we lack, or its own want) as replies, which arrive like samples.
    fn query(&self, key: &str, payload: Vec<u8>) {
        if self.injected_drop() {
            return;
        }
        Metrics::add(&self.metrics.bytes_out, payload.len() as u64);
        Metrics::add(&self.metrics.sync_queries_out, 1);
        let tx = self.tx.clone();
        let sent = self
            .session
            .get(key)
            .payload(payload)
            .target(zenoh::query::QueryTarget::All)
            // Every reply is a distinct frame on the same key: none may be merged away.
            .consolidation(zenoh::query::ConsolidationMode::None)
            .allowed_destination(zenoh::sample::Locality::Remote)
            .timeout(SYNC_QUERY_TIMEOUT)
            .callback(move |r| {
                if let Ok(s) = r.result() {
                    let _ = tx.try_send(Cmd::sample(s));
                }
            })
            .wait();
        if let Err(e) = sent {
            tracing::warn!(key, "query failed: {e}");
        }
    }

    /// Answer an open query with one message.
    fn reply(&self, query: &zenoh::query::Query, payload: Vec<u8>) {
        if self.injected_drop() {
            return;
        }
        Metrics::add(&self.metrics.bytes_out, payload.len() as u64);
        if let Err(e) = query.reply(query.key_expr().clone(), payload).wait() {
            tracing::warn!(key = %query.key_expr(), "reply failed: {e}");
        }
    }

    /// The group's configuration, if this node can open it (it is one of the members).
    fn group_config(&self, info: &GroupInfo) -> anyhow::Result<GroupConfig> {
        let mut cfg = info.config(&self.cfg.timing)?;
        // On a radio's multicast group a digest to every member is one message on the air.
        cfg.digest_broadcast = self.multicast.is_some();
        if !cfg.members.contains(&self.me.id()) {
            anyhow::bail!("this node ({}) is not a member of group {}: the invite was made for other nodes (ask for one made with `--member {}`)", self.me.id(), info.name, self.me.id());
        }
        Ok(cfg)
    }

    fn open_group(&mut self, info: GroupInfo) -> anyhow::Result<GroupId> {
        let cfg = self.group_config(&info)?;
        let gid = cfg.group;
        let now = now_ms();
        let records = self.ledger.load(&cfg)?;
        let replica = Replica::restore(self.me.id(), cfg.clone(), &records, now);
        // A fresh sender key at every start: never resumed, so no nonce is reused.
        // Receivers refuse a key epoch older than the newest they hold from us, and a restart
        // forgets our rotations: start from the clock (seconds), so epochs only grow.
        let key_epoch = u32::try_from(now / 1000).unwrap_or(u32::MAX);
        let keys = GroupKeys::new(gid, self.me.id(), key_epoch, GroupCrypto { trusted_members: info.trusted_members, grace_ms: 10_000 }, &mut rand_core::OsRng);
        let tag = self.tag(&gid.0);
        let base = format!("{}/g/{tag}", self.prefix());
        let own = self.peer_tag(&self.me.id());
        self.subscribe(&format!("{base}/all"), false)?;
        self.subscribe(&format!("{base}/{own}"), false)?;
        self.subscribe(&format!("{base}/q/{own}"), true)?;
        tracing::info!(group = %info.name, records = records.len(), members = cfg.members.len(), "group open");
        let span = tracing::info_span!("group", name = %info.name);
        self.groups.insert(gid, GroupRt { store: GroupStore::new(cfg.clone()), info, cfg, replica, keys, tag, watchers: Vec::new(), written_at: BTreeMap::new(), tx_waiters: BTreeMap::new(), durable_waiters: Vec::new(), span, key_epoch, known_keys: std::collections::BTreeSet::new(), keyed: std::collections::BTreeSet::new(), schema_mismatch: std::collections::BTreeSet::new() });
        // Hand our new key to members we already have channels with.
        for p in self.paired() {
            self.announce_keys(p);
        }
        Ok(gid)
    }

    fn find_group(&self, name: &str) -> Result<GroupId, Refusal> {
        self.groups
            .iter()
            .find(|(id, g)| g.info.name == name || hex(&id.0) == name)
            .map(|(id, _)| *id)
            .ok_or_else(|| Refusal::not_found(format!("no group named {name:?} on this node (see `spook group list`)")))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'run: loop {
            // A replica due before the next tick (a coalesced prompt ack) is woken on time:
            // the committed view must not wait up to a tick for it.
            let soon = self.groups.values().map(|g| g.replica.poll_timeout()).min().map(|t| t.saturating_sub(now_ms())).filter(|ms| *ms < 10);
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if self.on_cmd(cmd) {
                        break;
                    }
                    // Group commit: take what else is queued before the ledger write below.
                    for _ in 0..1024 {
                        let Ok(cmd) = rx.try_recv() else { break };
                        if self.on_cmd(cmd) {
                            break 'run;
                        }
                    }
                }
                _ = tick.tick() => self.on_tick(),
                () = tokio::time::sleep(Duration::from_millis(soon.unwrap_or(0).max(1))), if soon.is_some() => {
                    let now = now_ms();
                    for g in self.groups.values_mut().filter(|g| g.replica.poll_timeout() <= now) {
                        g.replica.handle_timeout(now);
                    }
                }
            }
            if let Some(why) = self.renew_now.take() {
                self.renew_session(why).await;
            }
            let gids: Vec<GroupId> = self.groups.keys().copied().collect();
            for g in gids {
                self.drain(g);
            }
        }
        // Clean shutdown: everything the replicas asked for is made durable first.
        let gids: Vec<GroupId> = self.groups.keys().copied().collect();
        for g in gids {
            self.drain(g);
        }
        // So that the next start has no commit log to replay.
        if let Err(e) = tokio::task::block_in_place(|| self.ledger.checkpoint()) {
            tracing::warn!("ledger checkpoint at shutdown: {e} (the commit log is replayed at the next start)");
        }
        // Close the zenoh session, so peers see this node leave at once rather than at their
        // lease; bounded, because over a lossy link the close handshake may never complete.
        // The multicast session closes at the same time, within the same bound: one after the
        // other, the two bounds would not fit the 2 s a stop is given.
        let multicast = self.multicast.take();
        let unicast = async {
            match tokio::time::timeout(SESSION_CLOSE_BOUND, self.session.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("closing the zenoh session at shutdown: {e}"),
                Err(_) => tracing::warn!(bound_ms = SESSION_CLOSE_BOUND.as_millis() as u64, "zenoh session still closing at shutdown: left to the process exit"),
            }
        };
        tokio::join!(unicast, async {
            if let Some(m) = multicast {
                m.close(SESSION_CLOSE_BOUND).await;
            }
        });
        self.explain_unknown_expr();
        tracing::info!("node stopped");
        Ok(())
    }

    /// Say once what zenoh's "Received Data for unknown expr_id" lines mean, after the first.
    fn explain_unknown_expr(&self) {
        if let Some(n) = crate::zenoh_noise::explanation_due() {
            tracing::warn!(
                so_far = n,
                "zenoh's \"Received Data for unknown expr_id\" means data arrived for a subscription this node's session had just undeclared (at a stop, or a redeclare after a member was unreachable); nothing Spook needs is lost, and further such lines are not shown"
            );
        }
    }

    /// Handle one input; true when the node is to stop.
    fn on_cmd(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Sample { key, payload } => self.on_sample(&key, payload),
            Cmd::Query { key, payload, query } => self.on_query(&key, &payload, query),
            Cmd::ClientAnswer { client, channel, query, response } => self.answer_client(client, channel, &query, &response),
            Cmd::Control(Request::Shutdown, reply) => {
                let _ = reply.send(control::ok(json!({"stopping": true})));
                return true;
            }
            Cmd::Control(r @ Request::Tx { .. }, reply) => self.on_tx(r, reply),
            Cmd::Control(Request::Set { group, register, field, value, typed }, reply) => self.on_write(&group, vec![crate::control::FieldWrite { register, field, value }], typed, reply),
            Cmd::Control(Request::Write { group, set, typed }, reply) => self.on_write(&group, set, typed, reply),
            Cmd::Control(Request::GroupRemove { group, member }, reply) => self.on_group_remove(&group, &member, reply),
            Cmd::Control(r, reply) => {
                let resp = self.on_request(r);
                let _ = reply.send(resp);
            }
            Cmd::Watch { group, view, snapshot, typed, tx, reply } => {
                let resp = match self.add_watcher(&group, view, snapshot, typed, tx) {
                    Ok(()) => control::ok(json!({"watching": group})),
                    Err(e) => control::error(e),
                };
                let _ = reply.send(resp);
            }
        }
        false
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        // Signing nonces are made here, off the write path; a frame signed when none is
        // ready costs the full signature. A few per tick: enough for 400 frames/s.
        if self.groups.values().any(|g| g.keys.signs()) {
            self.me.prepare_nonces(NONCES_PER_TICK);
        }
        self.check_renewal(now);
        // A rotation of the domain key moves on by steps, each with a fresh zenoh session.
        if self.zenoh_auth.as_mut().is_some_and(|r| r.session_due(now)) {
            self.renew_now = Some("domain key rotation");
        }
        if now.saturating_sub(self.last_health_check_ms) >= 1_000 {
            self.last_health_check_ms = now;
            self.explain_unknown_expr();
            if self.session.is_closed() {
                // The last renewal could not open a session (a QUIC listener's port is held
                // until its old connections are gone).
                self.renew_now = Some("no open session");
            }
        }
        // After an I/O error (a full disk) the ledger refuses writes until reopened; try
        // every few seconds, so that freeing space is all an operator has to do.
        if !self.ledger.is_healthy() && now.saturating_sub(self.last_reopen_ms) >= LEDGER_REOPEN_MS {
            self.last_reopen_ms = now;
            match tokio::task::block_in_place(|| self.ledger.reopen()) {
                Ok(()) => tracing::info!("ledger reopened; waiting writes are written at the next pump"),
                Err(e) => tracing::warn!("ledger still unavailable: {e}"),
            }
        }
        if now.saturating_sub(self.last_redeclare_ms) >= REDECLARE_MS {
            self.last_redeclare_ms = now;
            if self.some_member_unreachable() {
                self.redeclare();
                Metrics::add(&self.metrics.redeclarations, 1);
            }
        }
        // Key announcements travel as single best-effort messages: a lost one would leave a
        // member unable to read us for good. Every member with a channel hears them again.
        if now.saturating_sub(self.last_reannounce_ms) >= KEY_REANNOUNCE_MS {
            self.last_reannounce_ms = now;
            for p in self.paired() {
                self.announce_keys(p);
            }
            // While a domain key rotation runs, its key goes round again too: the message that
            // started it may have been lost with the zenoh session it renewed.
            if let Some(k) = self.zenoh_auth.as_ref().filter(|r| r.accepted(now).len() > 1).map(|r| r.key().to_bytes()) {
                let mut msg = vec![PAIR_DOMAIN_KEY];
                msg.extend_from_slice(&k);
                for p in self.paired() {
                    self.send_pair(p, &msg);
                }
            }
        }
        if let Some(p) = &mut self.pairing {
            if let Some(b) = p.beacon(now) {
                self.publish(&self.pairing_key(), b);
            }
        }
        for g in self.groups.values_mut() {
            g.replica.handle_timeout(now);
        }
        // Open pair channels to every allowed member we have none with.
        let wanted: Vec<EndpointId> = self
            .groups
            .values()
            .flat_map(|g| g.replica.roster().values().copied())
            .filter(|m| *m != self.me.id() && self.allow.contains(m))
            .collect();
        for m in wanted {
            let p = self.pairs.entry(m).or_default();
            let silent = now.saturating_sub(p.last_opened) >= PAIR_SILENCE_MS;
            if (!p.is_up() || silent) && now.saturating_sub(p.last_attempt) >= HANDSHAKE_RETRY_MS {
                if p.is_up() {
                    Metrics::add(&self.metrics.pair_repairs, 1);
                    tracing::debug!(peer = %m, "nothing opened from this peer for {PAIR_SILENCE_MS} ms: a fresh handshake");
                }
                p.last_attempt = now;
                match Initiator::start(&self.me, m, now) {
                    Ok((init, hello)) => {
                        let hid = rand_core::RngCore::next_u32(&mut rand_core::OsRng);
                        p.pending = Some((hid, init));
                        let mut msg = hid.to_le_bytes().to_vec();
                        msg.extend_from_slice(&hello);
                        let key = format!("{}/p/{}", self.prefix(), self.peer_tag(&m));
                        self.publish(&key, msg);
                    }
                    Err(e) => tracing::warn!(peer = %m, "cannot start a handshake: {e}"),
                }
            }
        }
    }

    fn on_sample(&mut self, key: &str, payload: Vec<u8>) {
        Metrics::add(&self.metrics.bytes_in, payload.len() as u64);
        let prefix = self.prefix();
        let Some(rest) = key.strip_prefix(&prefix) else { return };
        if rest.starts_with("/p/") {
            self.on_pair_message(payload);
        } else if rest == "/pairing" {
            self.on_pairing_message(&payload);
        } else if let Some(gid) = self.group_of(key) {
            self.on_group_frame(gid, &payload);
        }
    }

    /// The group whose key expression `key` is under.
    fn group_of(&self, key: &str) -> Option<GroupId> {
        let rest = key.strip_prefix(&self.prefix())?.strip_prefix("/g/")?;
        let tag = rest.split('/').next()?;
        self.groups.iter().find(|(_, r)| r.tag == tag).map(|(id, _)| *id)
    }

    /// A member's digest or want: handled like a sample; the query stays open until `drain`
    /// has sent the answer as replies. One that cannot be opened is dropped unanswered.
    fn on_query(&mut self, key: &str, payload: &[u8], query: zenoh::query::Query) {
        Metrics::add(&self.metrics.bytes_in, payload.len() as u64);
        if key.starts_with(&format!("{}/c/", self.prefix())) {
            return self.on_client_query(payload, query);
        }
        let Some(gid) = self.group_of(key) else {
            self.metrics.reject("query-unknown-group");
            return;
        };
        if let Some(from) = self.on_group_frame(gid, payload) {
            self.answering.push((gid, from, query));
        }
    }

    fn on_pair_message(&mut self, msg: Vec<u8>) {
        if msg.len() < 5 {
            self.metrics.reject("pair-truncated");
            return;
        }
        let (hid, body) = msg.split_at(4);
        let hid = u32::from_le_bytes([hid[0], hid[1], hid[2], hid[3]]);
        let now = now_ms();
        match body[0] {
            spook_secure::HELLO => match spook_secure::respond(&self.me, &self.allow, &mut self.guard, body) {
                Ok((est, reply)) => {
                    let mut out = hid.to_le_bytes().to_vec();
                    out.extend_from_slice(&reply);
                    self.publish(&format!("{}/p/{}", self.prefix(), self.peer_tag(&est.peer)), out);
                    self.pair_up(est, false);
                }
                Err(why) => {
                    // WireGuard's rule: nothing goes back.
                    tracing::debug!("silent to a hello: {why}");
                    self.metrics.reject(&format!("hello-{}", reason(&why.to_string())));
                }
            },
            spook_secure::REPLY => {
                let Some(peer) = self.pairs.iter().find(|(_, p)| p.pending.as_ref().is_some_and(|(h, _)| *h == hid)).map(|(id, _)| *id) else {
                    self.metrics.reject("reply-unexpected");
                    return;
                };
                let Some((_, init)) = self.pairs.get_mut(&peer).and_then(|p| p.pending.take()) else { return };
                match init.finish(body) {
                    // The responder finished this channel before replying: it is proven.
                    Ok(est) => self.pair_up(est, true),
                    Err(e) => {
                        tracing::warn!(%peer, "handshake failed: {e}");
                        self.metrics.reject("handshake-failed");
                    }
                }
            }
            spook_secure::DATA => {
                let mut opened = None;
                for (peer, p) in &mut self.pairs {
                    if let Some(pt) = p.chans.iter_mut().rev().find_map(|(c, proven)| {
                        let pt = c.open(body).ok()?;
                        *proven = true;
                        Some(pt)
                    }) {
                        p.last_opened = now;
                        opened = Some((*peer, pt));
                        break;
                    }
                }
                let Some((peer, pt)) = opened else {
                    self.metrics.reject("pair-data-unopened");
                    return;
                };
                if pt.first() == Some(&PAIR_GROUP_FRAME) && pt.len() > 17 {
                    let mut gid = [0u8; 16];
                    gid.copy_from_slice(&pt[1..17]);
                    match self.groups.get_mut(&GroupId(gid)) {
                        // Not from a member that holds another schema (`install_key`).
                        Some(g) if g.schema_mismatch.contains(&peer) => self.metrics.reject("schema-mismatch"),
                        Some(g) if g.replica.roster().values().any(|m| *m == peer) => g.replica.handle_frame(peer, &pt[17..], now),
                        _ => self.metrics.reject("pair-frame-unknown-group"),
                    }
                    return;
                }
                if pt.first() == Some(&PAIR_DOMAIN_KEY) {
                    return self.on_domain_key(peer, &pt[1..], now);
                }
                // An announcement, then the sender's schema hash (absent from older nodes).
                let (ann, schema_hash) = if pt.len() == KeyAnnouncement::LEN + 8 { (&pt[..KeyAnnouncement::LEN], pt.get(KeyAnnouncement::LEN..)) } else { (&pt[..], None) };
                match KeyAnnouncement::decode(ann) {
                    Ok(a) => self.install_key(peer, a, schema_hash, now),
                    Err(e) => {
                        tracing::warn!(%peer, "bad key announcement: {e}");
                        self.metrics.reject("key-announcement");
                    }
                }
            }
            _ => self.metrics.reject("pair-unknown-kind"),
        }
    }

    fn on_pairing_message(&mut self, msg: &[u8]) {
        let now = now_ms();
        let Some(p) = self.pairing.as_mut().filter(|p| p.is_open(now)) else { return };
        match p.handle(&self.me, msg, now) {
            Ok(crate::pairing::Step::Send(m)) => {
                self.publish(&self.pairing_key(), m);
            }
            Ok(crate::pairing::Step::Nothing) => {}
            Err(e) => {
                tracing::warn!("pairing message refused: {e}");
                self.metrics.reject("pairing");
            }
        }
    }

    fn pair_request(&mut self, r: Request) -> Result<Json, String> {
        let now = now_ms();
        match r {
            Request::PairOpen { name, seconds } => {
                let secs = seconds.unwrap_or(120);
                if !(1..=3600).contains(&secs) {
                    return Err(format!("a pairing window of {secs} s is outside 1..=3600"));
                }
                let sid = rand_core::RngCore::next_u32(&mut rand_core::OsRng);
                let name = if name.is_empty() { self.cfg.node.domain.clone() } else { name };
                let p = crate::pairing::PairingRt::open(&self.me, &name, sid, now, secs * 1000).map_err(|e| e.to_string())?;
                self.pairing = Some(p);
                tracing::info!(seconds = secs, "pairing window open");
                Ok(json!({"open": true, "seconds": secs}))
            }
            Request::PairStatus => {
                let open = self.pairing.as_ref().is_some_and(|p| p.is_open(now));
                Ok(json!({"open": open, "code": self.pairing.as_ref().filter(|_| open).and_then(crate::pairing::PairingRt::code)}))
            }
            Request::PairConfirm { code } => {
                let p = self.pairing.as_mut().filter(|p| p.is_open(now)).ok_or("no pairing window is open (spook pair)")?;
                let result = p.confirm(&code, now);
                self.pairing = None;
                let e = result.map_err(|e| format!("{e}: nothing was allowed; open a new window to try again"))?;
                self.ledger.put_peer(&e.id, &e.to_stored()).map_err(|e| e.to_string())?;
                tracing::info!(peer = %e.id, name = %e.name, "paired");
                let (id, name) = (e.id.to_string(), e.name.clone());
                self.allow.allow(e);
                Ok(json!({"allowed": id, "name": name}))
            }
            _ => Err("not a pairing request".into()),
        }
    }

    /// A channel is up; `proven` when the peer is known to hold it (we initiated it).
    fn pair_up(&mut self, est: spook_secure::Established, proven: bool) {
        Metrics::add(&self.metrics.handshakes, 1);
        if let Some(e) = self.allow.get(&est.peer).cloned() {
            if e.signing.is_none() {
                let e = PeerEntry { signing: Some(est.peer_signing), ..e };
                if let Err(err) = self.ledger.put_peer(&e.id, &e.to_stored()) {
                    tracing::error!("cannot store the peer's signing key: {err}");
                }
                self.allow.allow(e);
            }
        }
        tracing::info!(peer = %est.peer, "pair channel up");
        let p = self.pairs.entry(est.peer).or_default();
        keep_newest(&mut p.chans, (est.channel, proven));
        p.last_opened = now_ms();
        self.announce_keys(est.peer);
    }

    /// Cut `peer` off (`spook disallow`): off the allow-list here and in the ledger, its pair
    /// channels and remote-client channels dropped, its sender keys forgotten (its frames are
    /// refused as `frame-unknown-key`), and our own key replaced in every group it is in, so it
    /// cannot read what we send next. It stays in the groups' rosters until it decoheres and
    /// is pruned, as any silent member would; nodes that still allow it go on relaying what
    /// it wrote before (revocation is per node, as `allow` is).
    fn disallow(&mut self, peer: EndpointId) -> Result<Json, String> {
        let was_allowed = self.allow.remove(&peer).is_some();
        self.ledger.remove_peer(&peer).map_err(|e| format!("the ledger cannot drop the peer: {e}"))?;
        self.pairs.remove(&peer);
        self.clients.remove(&peer);
        let mut rekeyed = Vec::new();
        for g in self.groups.values_mut().filter(|g| g.replica.roster().values().any(|m| *m == peer)) {
            g.keys.remove_member(&peer);
            // Everyone else gets the new key from `drain`; `announce_keys` skips the peer,
            // which has no pair channel any more and cannot open one.
            g.rotate_own_key();
            rekeyed.push(g.info.name.clone());
        }
        // The domain key too: the peer holds the current one. The new one goes to every peer
        // this node still pairs with, and on from each of them.
        let rotated = self.zenoh_auth.as_ref().map(|r| DomainKey::generate(r.key().generation + 1));
        if let Some(k) = rotated.clone() {
            self.take_domain_key(k, None, now_ms());
        }
        tracing::warn!(%peer, groups = ?rekeyed, domain_key_generation = rotated.map(|k| k.generation), "peer disallowed: channels closed, sender keys replaced");
        Ok(json!({"disallowed": peer.to_string(), "was_allowed": was_allowed, "groups_rekeyed": rekeyed}))
    }

    /// A domain key handed over by a paired peer: taken if newer (and passed on).
    fn on_domain_key(&mut self, from: EndpointId, bytes: &[u8], now: u64) {
        match DomainKey::from_bytes(bytes) {
            Ok(k) => self.take_domain_key(k, Some(from), now),
            Err(e) => {
                tracing::warn!(peer = %from, "bad domain key message: {e}");
                self.metrics.reject("domain-key-malformed");
            }
        }
    }

    /// Take a newer domain key: store it, hand it to every paired peer but `from`, and step
    /// through the rotation ([`Rotation`]). An older or equal key changes nothing.
    fn take_domain_key(&mut self, k: DomainKey, from: Option<EndpointId>, now: u64) {
        let Some(r) = &mut self.zenoh_auth else { return };
        if !r.adopt(k.clone(), now) {
            return;
        }
        if let Err(e) = tokio::task::block_in_place(|| self.ledger.set_domain_key(&k.to_bytes())) {
            tracing::error!("cannot store the new domain key: {e} (it is used until the node stops)");
        }
        tracing::info!(generation = k.generation, from = ?from.map(|p| p.to_string()), "domain key rotated");
        let mut msg = vec![PAIR_DOMAIN_KEY];
        msg.extend_from_slice(&k.to_bytes());
        for p in self.paired().into_iter().filter(|p| Some(*p) != from) {
            self.send_pair(p, &msg);
        }
        self.renew_now = Some("domain key rotation");
    }

    /// Send our sender key of every group `peer` is a member of, over the pair channel (if
    /// there is one yet), and remember who has it.
    fn announce_keys(&mut self, peer: EndpointId) {
        if !self.pairs.get(&peer).is_some_and(Pair::is_up) {
            return;
        }
        let mut anns = Vec::new();
        for g in self.groups.values_mut().filter(|g| g.replica.members().contains(&peer)) {
            // The schema's hash rides with the key: a member that holds another schema is
            // refused it (`install_key`).
            let mut a = g.keys.announcement().encode();
            a.extend_from_slice(&g.cfg.schema.hash());
            anns.push(a);
            g.keyed.insert(peer);
        }
        for a in anns {
            self.send_pair(peer, &a);
        }
    }

    fn install_key(&mut self, peer: EndpointId, a: KeyAnnouncement, schema_hash: Option<&[u8]>, now: u64) {
        let Some(signing) = self.allow.get(&peer).and_then(|e| e.signing) else { return };
        let Some(g) = self.groups.get_mut(&a.group) else {
            // A member that created or joined the group before this node did: not an attack
            // (it came on an authenticated pair channel), nothing to count. The key comes
            // again once this node holds the group (it announces its own, and gets theirs).
            tracing::debug!(%peer, "a key of a group this node does not hold (yet)");
            return;
        };
        // Keys of pruned members are still accepted: a pruned member must be heard to be
        // re-added. (Ours go to current members only, so it cannot read what follows.)
        if !g.replica.roster().values().any(|m| *m == peer) {
            self.metrics.reject("key-not-a-member");
            return;
        }
        // A member that holds another schema would read and write other fields under the same
        // indices: it gets none of our keys and we take none of its (ours are withheld in
        // `announce_keys` by the same test on its side).
        if let Some(h) = schema_hash.filter(|h| *h != g.cfg.schema.hash()) {
            if g.schema_mismatch.insert(peer) {
                tracing::error!(group = %g.info.name, %peer, theirs = %hex(h), ours = %hex(&g.cfg.schema.hash()), "member holds another schema for this group: it was invited with a different one; its keys are refused (a schema never changes: give it this group's invite again, or make a new group)");
            }
            self.metrics.reject("schema-mismatch");
            return;
        }
        g.schema_mismatch.remove(&peer);
        let (gid, key_id, bytes) = (a.group, a.key_id, a.encode());
        let new = g.known_keys.insert(key_id);
        match g.keys.install(peer, a, signing, now) {
            Ok(()) if new => {
                tracing::debug!(%peer, key_id, "installed a member's sender key");
                // The member's node runs and has the group open: from now on it can be heard.
                g.replica.note_reachable(peer, now);
                if let Err(e) = self.ledger.put_sender_key(&gid, key_id, &bytes) {
                    tracing::warn!("cannot store a sender key: {e}");
                }
                // A new key means the peer (re)started or just joined: it may lack ours.
                self.announce_keys(peer);
            }
            Ok(()) => {}
            Err(e) => {
                g.known_keys.remove(&key_id);
                tracing::warn!(%peer, "key refused: {e}");
                self.metrics.reject("key-refused");
            }
        }
    }

    /// A remote client's hello (answered with the handshake reply, if the client is allowed)
    /// or sealed request (answered once the node has the response, by `answer_client`).
    /// Nothing goes back to what does not verify.
    fn on_client_query(&mut self, payload: &[u8], query: zenoh::query::Query) {
        if payload.first() == Some(&spook_secure::HELLO) {
            match spook_secure::respond(&self.me, &self.allow, &mut self.guard, payload) {
                Ok((est, reply)) => {
                    if !self.clients.contains_key(&est.peer) && self.clients.len() >= MAX_CLIENTS {
                        self.clients.pop_first();
                    }
                    let c = self.clients.entry(est.peer).or_default();
                    keep_newest(&mut c.chans, est.channel);
                    c.seen.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(client = %est.peer, "remote client attached");
                    self.reply(&query, reply);
                }
                Err(why) => {
                    tracing::debug!("silent to a client hello: {why}");
                    self.metrics.reject(&format!("client-hello-{}", reason(&why.to_string())));
                }
            }
            return;
        }
        let opened = self.clients.iter_mut().find_map(|(client, rc)| {
            let (channel, pt) = rc.chans.iter_mut().find_map(|c| c.open(payload).ok().map(|pt| (c.send_fingerprint(), pt)))?;
            rc.seen.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
            Some((*client, channel, pt, rc.seen.clone()))
        });
        let Some((client, channel, pt, seen)) = opened else {
            self.metrics.reject("client-unopened");
            return;
        };
        let refused = match serde_json::from_slice::<Request>(&pt) {
            Err(e) => control::error(format!("bad request: {e}")),
            Ok(r) if !r.allowed_remotely() => control::error(Refusal::not_allowed("this request is only served on the node's local control socket")),
            // The session is the authenticated key, not a claim.
            Ok(Request::Tx { client: c, .. } | Request::Session { client: c, .. }) if c != client.to_string() => control::error(Refusal::not_allowed(format!("client {c} is not the key this channel was opened with ({client})"))),
            Ok(Request::Watch { group, view, snapshot, typed }) => match self.remote_watch(&group, view.as_deref(), snapshot, typed) {
                Err(e) => control::error(e),
                Ok(events) => {
                    self.answer_client(client, channel, &query, &control::ok(json!({"watching": group, "idle_ms": spook_client::remote::WATCH_IDLE_MS})));
                    tokio::spawn(forward_watch(self.tx.clone(), client, channel, query, events, seen, self.metrics.clone()));
                    return;
                }
            },
            Ok(r) => {
                let (tx, rx) = oneshot::channel();
                // The same path as the local socket's requests (writes answer once durable).
                self.on_cmd(Cmd::Control(r, tx));
                let node = self.tx.clone();
                tokio::spawn(async move {
                    let response = rx.await.unwrap_or_else(|_| control::error(crate::refusal::Refusal::new(spook_client::proto::ErrorCode::Stopped, "the node has stopped")));
                    let _ = node.send(Cmd::ClientAnswer { client, channel, query, response }).await;
                });
                return;
            }
        };
        self.answer_client(client, channel, &query, &refused);
    }

    /// Register a watcher for a remote client.
    fn remote_watch(&mut self, group: &str, view: Option<&str>, snapshot: bool, typed: bool) -> Result<mpsc::Receiver<Json>, Refusal> {
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        self.add_watcher(group, parse_view(view)?, snapshot, typed, tx)?;
        Ok(rx)
    }

    /// Send `tx` the changes of `group`'s `view` from now on; with `snapshot`, first every
    /// register written so far. Both happen in this task, so nothing falls between them.
    fn add_watcher(&mut self, group: &str, view: View, snapshot: bool, typed: bool, tx: mpsc::Sender<Json>) -> Result<(), Refusal> {
        let gid = self.find_group(group)?;
        if snapshot {
            // Changes applied earlier in this turn are told to the watchers there are now,
            // not again to this one after its snapshot has shown them.
            self.dispatch_events(gid);
        }
        let g = self.groups.get_mut(&gid).ok_or("group vanished")?;
        let mut w = Watcher::new(view, typed, tx);
        if snapshot {
            // In register order, each register once, as the queue makes room.
            let mut regs: Vec<RegisterId> = g.replica.view(view).iter().map(|((r, _), _)| *r).collect();
            regs.dedup();
            w.snapshot(regs);
            w.catch_up(|reg| change_json(&g.info.name, &g.replica, view, reg, typed));
        }
        g.watchers.push(w);
        Ok(())
    }

    /// Seal a response on the client's channel it asked on, and reply.
    fn answer_client(&mut self, client: EndpointId, channel: [u8; 8], query: &zenoh::query::Query, response: &Json) {
        let Some(chan) = self.clients.get_mut(&client).and_then(|c| c.chans.iter_mut().find(|c| c.send_fingerprint() == channel)) else {
            tracing::debug!(%client, "the channel of a remote request is gone; it stays unanswered");
            return;
        };
        match chan.seal(response.to_string().as_bytes()) {
            Ok(ct) => self.reply(query, ct),
            Err(e) => tracing::warn!(%client, "cannot seal a response: {e}"),
        }
    }

    /// Open and handle a group frame; its origin if it opened.
    fn on_group_frame(&mut self, gid: GroupId, ct: &[u8]) -> Option<EndpointId> {
        let span = self.group_span(gid);
        let _in_group = span.enter();
        let now = now_ms();
        let g = self.groups.get_mut(&gid)?;
        match g.keys.open(ct, now) {
            Ok(o) => {
                Metrics::add(&self.metrics.frames_in, 1);
                let before = g.replica.stats().clone();
                g.replica.handle_frame(o.origin, &o.frame, now);
                let after = g.replica.stats();
                Metrics::add(&self.metrics.deltas_in, after.deltas_received - before.deltas_received);
                Metrics::add(&self.metrics.realignments, after.states_applied - before.states_applied);
                if after.frames_rejected > before.frames_rejected {
                    self.metrics.reject("frame-malformed");
                }
                Some(o.origin)
            }
            Err(e) => {
                self.metrics.reject(&format!("frame-{}", reason(&format!("{e:?}"))));
                None
            }
        }
    }

    fn group_span(&self, gid: GroupId) -> tracing::Span {
        self.groups.get(&gid).map_or_else(tracing::Span::none, |g| g.span.clone())
    }

    /// Hand what a group's replica reported to watchers, waiting clients, metrics and logs.
    /// A pruned member makes us rotate our sender key, before anything more is sealed.
    fn dispatch_events(&mut self, gid: GroupId) {
        let span = self.group_span(gid);
        let _in_group = span.enter();
        let metrics = &self.metrics;
        let Some(g) = self.groups.get_mut(&gid) else { return };
        let mut changed: Vec<(View, Vec<RegisterId>)> = Vec::new();
        let mut left = Vec::new();
        let mut outcomes = Vec::new();
        // Events other than changes, for every watcher.
        let mut told: Vec<Json> = Vec::new();
        while let Some(ev) = g.replica.poll_event() {
            match ev {
                Event::Txn { id, state: TxnState::Resolved(o) } => outcomes.push((id, session::outcome_json(&o))),
                Event::Txn { id, state: TxnState::Decohered } => {
                    outcomes.push((id, json!({"state": "decohered", "note": "its deadline passed before its outcome was known here; it may still commit or abort (ask again with `spook session`)"})));
                }
                Event::RegistersChanged { view, registers } => changed.push((view, registers)),
                Event::ReEntangled { registers } => {
                    told.push(json!({"event": "re_entangled", "registers": registers.iter().map(|r| r.0).collect::<Vec<_>>()}));
                    changed.push((View::Committed, registers));
                }
                Event::Decohered(m) => {
                    told.push(json!({"event": "decohered", "member": m.to_string()}));
                    Metrics::add(&metrics.decoherence_events, 1);
                    tracing::warn!(group = %g.info.name, member = %m, "member decohered");
                }
                Event::Committed { .. } => {
                    // Own deltas stamped at or below the frontier are committed.
                    let frontier = g.replica.frontier();
                    told.push(json!({"event": "committed", "frontier_ms": frontier.ms()}));
                    let done: Vec<u64> = g.written_at.iter().filter(|(_, (_, h))| *h <= frontier).map(|(s, _)| *s).collect();
                    for s in done {
                        if let Some((t, _)) = g.written_at.remove(&s) {
                            metrics.observe_commit_ms(t.elapsed().as_millis() as u64);
                        }
                    }
                }
                // Its key went out when it entered the pending membership (below).
                Event::MemberJoined(m) => {
                    told.push(json!({"event": "member_joined", "member": m.to_string()}));
                    tracing::info!(group = %g.info.name, member = %m, "member joined");
                }
                Event::MemberLeft(m) => {
                    told.push(json!({"event": "member_left", "member": m.to_string()}));
                    tracing::info!(group = %g.info.name, member = %m, "member left: rotating the sender key");
                    left.push(m);
                }
                Event::Rejected { from, error } => {
                    tracing::warn!(group = %g.info.name, %from, "frame rejected: {error}");
                    metrics.reject("frame-decode");
                }
                _ => {}
            }
        }
        for (id, mut j) in outcomes {
            j["seq"] = json!(id.seq);
            for w in g.tx_waiters.remove(&id).unwrap_or_default() {
                let _ = w.send(control::ok(j.clone()));
            }
        }
        if !g.watchers.is_empty() {
            g.watchers.retain(|w| !w.is_closed());
            let GroupRt { watchers, replica, info, .. } = &mut *g;
            for (view, regs) in changed {
                for reg in regs {
                    // Each line is made once for all the watchers of its form (typed or not).
                    let mut lines: [Option<Json>; 2] = [None, None];
                    for w in watchers.iter_mut().filter(|w| w.view == view) {
                        let typed = w.typed;
                        w.change(reg, || lines[usize::from(typed)].get_or_insert_with(|| change_json(&info.name, replica, view, reg, typed)).clone());
                    }
                }
            }
            for line in &told {
                for w in watchers.iter_mut() {
                    w.event(line);
                }
            }
            for w in watchers.iter_mut() {
                let (view, typed) = (w.view, w.typed);
                w.catch_up(|reg| change_json(&info.name, replica, view, reg, typed));
            }
        }
        // A pruned member must not read what follows: forget its keys, make a new own key and
        // hand it to the members that remain.
        // (Its own key stays installed here: we must go on hearing it to re-add it.)
        if !left.is_empty() {
            g.rotate_own_key();
        }
    }

    /// Persist, send and report what a group's replica asked for.
    fn drain(&mut self, gid: GroupId) {
        let span = self.group_span(gid);
        let _in_group = span.enter();
        // Watchers see the pending view as soon as a frame is applied: it is not waiting for
        // this node's ledger write (the sender made the delta durable before sending it).
        self.dispatch_events(gid);
        let now = now_ms();
        let prefix = self.prefix();
        let me = self.me.id();
        let Some(g) = self.groups.get_mut(&gid) else { return };
        // Only a write that is due leaves the async worker: handing it over costs wakeups,
        // and drain runs after every input and every tick.
        if g.store.gather(&mut g.replica) {
            let t = Instant::now();
            let res = tokio::task::block_in_place(|| g.store.pump(&mut self.ledger, &mut g.replica, now));
            match res {
                Ok(_) => self.metrics.observe_ledger_write_us(t.elapsed().as_micros() as u64),
                Err(e) => tracing::error!(group = %g.info.name, "ledger: {e}"),
            }
            self.metrics.ledger_checkpoints.store(self.ledger.checkpoints(), std::sync::atomic::Ordering::Relaxed);
        }
        // The writes this pump was for are answered once their deltas are on the way (below).
        let failed = g.store.error().map(ToString::to_string);
        let durable = std::mem::take(&mut g.durable_waiters);
        // What durability produced (commits, acks, consensus), and key rotation before sealing.
        self.dispatch_events(gid);
        // Queries from members of this group that this drain answers (then ends, by dropping).
        let (answering, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.answering).into_iter().partition(|(g, _, _)| *g == gid);
        self.answering = others;
        let Some(g) = self.groups.get_mut(&gid) else { return };
        let mut out = Vec::new();
        let mut via_pair = Vec::new();
        let base = format!("{prefix}/g/{}", g.tag);
        while let Some(t) = g.replica.poll_transmit() {
            if t.kind == spook_core::FrameKind::Deltas {
                Metrics::add(&self.metrics.deltas_out, t.items as u64);
            }
            // A member this replica counts as pruned has not got the current sender key (it
            // must not read what follows). It still needs to hear us to be re-added, and we
            // it: digests and wants (version vectors and a hash, no values) go to it over the
            // pair channel; nothing else does.
            if let spook_core::Dest::Peer(p) = t.dest {
                if !g.replica.members().contains(&p) {
                    if matches!(t.kind, spook_core::FrameKind::Digest | spook_core::FrameKind::Want) {
                        let mut pt = vec![PAIR_GROUP_FRAME];
                        pt.extend_from_slice(&gid.0);
                        pt.extend_from_slice(&t.bytes);
                        via_pair.push((p, pt));
                    }
                    continue;
                }
            }
            // Digests and wants are asked as queries; what a member sends to one that asked
            // goes back as replies; the rest is published.
            let route = match t.dest {
                spook_core::Dest::Members => Route::Publish(format!("{base}/all")),
                spook_core::Dest::Peer(p) => match answering.iter().position(|(_, from, _)| *from == p) {
                    Some(i) => Route::Reply(i),
                    // On a radio's multicast group a want is a datagram like the rest (its
                    // answer too): a query would wait behind QUIC's retransmissions.
                    None if matches!(t.kind, spook_core::FrameKind::Digest | spook_core::FrameKind::Want) && self.multicast.is_none() => Route::Query(format!("{base}/q/{}", tag(&self.domain_key, &p.0))),
                    None => Route::Publish(format!("{base}/{}", tag(&self.domain_key, &p.0))),
                },
            };
            let ahead = self.me.nonces_ready() > 0;
            match g.keys.seal(&self.me, &t.bytes) {
                Ok(ct) => {
                    self.metrics.frame_out(t.kind, ct.len());
                    if g.keys.signs() {
                        Metrics::add(&self.metrics.frames_signed, 1);
                        Metrics::add(&self.metrics.frames_signed_ahead, u64::from(ahead));
                    }
                    out.push((route, ct));
                }
                Err(e) => tracing::error!("cannot seal a frame: {e}"),
            }
        }
        // Every member of the pending membership (a re-added one included, before the re-add
        // commits, since committing needs its ack) gets the current key once.
        let remaining: Vec<EndpointId> = g.replica.members().iter().copied().filter(|m| *m != me && !g.keyed.contains(m)).collect();
        for (route, ct) in out {
            Metrics::add(&self.metrics.frames_out, 1);
            match route {
                Route::Publish(key) => self.publish(&key, ct),
                Route::Query(key) => self.query(&key, ct),
                Route::Reply(i) => {
                    if let Some((_, _, q)) = answering.get(i) {
                        Metrics::add(&self.metrics.sync_replies_out, 1);
                        self.reply(q, ct);
                    }
                }
            }
        }
        drop(answering);
        // A failed write stays queued in the store and is written once the ledger is
        // writable again (`on_tick` reopens it); say so.
        for (j, reply) in durable {
            let _ = reply.send(match &failed {
                None => control::ok(j),
                Some(e) => control::error(format!("write {} is not durable yet: {e}. It is kept and will be written when the ledger can be written again (see `spook status`)", j["seq"])),
            });
        }
        for m in remaining {
            self.announce_keys(m);
        }
        for (p, pt) in via_pair {
            self.send_pair(p, &pt);
        }
    }

    /// Seal `pt` on the pair channel with `peer` (if up) and publish it to its pair key.
    fn send_pair(&mut self, peer: EndpointId, pt: &[u8]) {
        let key = format!("{}/p/{}", self.prefix(), self.peer_tag(&peer));
        let Some(p) = self.pairs.get_mut(&peer) else { return };
        let newest_proven = p.chans.iter().rposition(|(_, proven)| *proven);
        let Some((chan, _)) = (match newest_proven {
            Some(i) => p.chans.get_mut(i),
            None => p.chans.back_mut(),
        }) else {
            return;
        };
        match chan.seal(pt) {
            Ok(ct) => {
                let mut msg = 0u32.to_le_bytes().to_vec();
                msg.extend_from_slice(&ct);
                self.publish(&key, msg);
            }
            Err(e) => tracing::warn!(%peer, "cannot seal a pair message: {e}"),
        }
    }

    /// A write is answered after the ledger write that holds it (see `drain`).
    fn on_write(&mut self, group: &str, set: Vec<crate::control::FieldWrite>, typed: bool, reply: oneshot::Sender<Json>) {
        match self.write(group, set, typed, now_ms()) {
            Ok((gid, j)) => match self.groups.get_mut(&gid) {
                Some(g) => g.durable_waiters.push((j, reply)),
                None => drop(reply.send(control::error("group vanished"))),
            },
            Err(e) => drop(reply.send(control::error(e))),
        }
    }

    /// An operator removes a member: a write, answered once durable. The member's keys go and
    /// our sender key is replaced when the removal applies (`MemberLeft` in `dispatch_events`).
    fn on_group_remove(&mut self, group: &str, member: &str, reply: oneshot::Sender<Json>) {
        let me = self.me.id();
        let res = (|| -> Result<_, Refusal> {
            let id: EndpointId = member.parse().map_err(|e| Refusal::bad_value(format!("member {member:?}: {e}")))?;
            if id == me {
                return Err(Refusal::bad_value("that is this node: to leave the group, use `spook group leave`"));
            }
            let gid = self.find_group(group)?;
            let g = self.groups.get_mut(&gid).ok_or("group vanished")?;
            if !g.replica.members().contains(&id) {
                return Err(Refusal::not_found(format!("{id} is not a member of {group} (see `spook status`)")));
            }
            let dot = g.store.force_remove(&mut g.replica, now_ms(), id).map_err(|e| refused(&self.metrics, e))?;
            Ok((gid, json!({"removed": id.to_string(), "group": group, "seq": dot.seq})))
        })();
        match res {
            Ok((gid, j)) => match self.groups.get_mut(&gid) {
                Some(g) => g.durable_waiters.push((j, reply)),
                None => drop(reply.send(control::error("group vanished"))),
            },
            Err(e) => drop(reply.send(control::error(e))),
        }
    }

    /// Submit a client's transaction; answer now, or once its outcome is known (`wait`).
    fn on_tx(&mut self, r: Request, reply: oneshot::Sender<Json>) {
        match self.submit_tx(r) {
            Ok((j, Some((gid, id)))) => match self.groups.get_mut(&gid) {
                Some(g) => g.tx_waiters.entry(id).or_default().push(reply),
                None => drop(reply.send(control::ok(j))),
            },
            Ok((j, None)) => drop(reply.send(control::ok(j))),
            Err(e) => drop(reply.send(control::error(e))),
        }
    }

    fn submit_tx(&mut self, r: Request) -> Result<(Json, Option<(GroupId, OpId)>), Refusal> {
        let Request::Tx { group, client, seq, conditions, set, after, timeout_ms, wait, typed } = r else {
            return Err("not a transaction".into());
        };
        let now = now_ms();
        let gid = self.find_group(&group)?;
        let g = self.groups.get_mut(&gid).ok_or("group vanished")?;
        if g.cfg.kind != GroupKind::Serial {
            return Err(Refusal::bad_value(format!("group {group} is convergent: transactions need a serial group (spook group create <name> --serial)")));
        }
        let client: EndpointId = client.parse().map_err(|e| Refusal::bad_value(format!("client: {e}")))?;
        let timeout = timeout_ms.unwrap_or(10_000);
        if !(1..=spook_core::api::MAX_DEADLINE_MS).contains(&timeout) {
            return Err(Refusal::bad_value(format!("timeout_ms {timeout} is outside 1..={}", spook_core::api::MAX_DEADLINE_MS)));
        }
        let id = OpId { client, seq };
        if let Some(o) = g.replica.serial().outcome(&id) {
            // A resend of an operation the group has evaluated: answer, execute nothing.
            let mut j = session::outcome_json(o);
            j["seq"] = json!(seq);
            j["resent"] = json!(true);
            return Ok((j, None));
        }
        // Deadlines are judged against stamps, which may run ahead of this node's clock: the budget
        // starts from the group clock's reading (`Replica::clock_now`).
        let deadline = g.replica.clock_now(now).ms() + timeout;
        let txn = session::build_txn(&g.cfg.schema, id, deadline, &after, &conditions, &set, typed).map_err(Refusal::bad_value)?;
        match g.store.submit(&mut g.replica, now, txn) {
            Ok(_) => Ok((json!({"seq": seq, "client": client.to_string(), "state": "pending"}), wait.then_some((gid, id)))),
            Err(e) => Err(refused(&self.metrics, e)),
        }
    }

    fn on_request(&mut self, r: Request) -> Json {
        match self.request(r) {
            Ok(j) => control::ok(j),
            Err(e) => control::error(e),
        }
    }

    fn request(&mut self, r: Request) -> Result<Json, Refusal> {
        let now = now_ms();
        match r {
            Request::Id => Ok(json!({"id": self.me.id().to_string()})),
            Request::Allow { peer, name } => {
                let id: EndpointId = peer.parse().map_err(|e| format!("{e}"))?;
                allow_in_ledger(&mut self.ledger, id, &name).map_err(|e| format!("{e:#}"))?;
                if !self.allow.contains(&id) {
                    self.allow.allow(PeerEntry { id, signing: None, name });
                }
                Ok(json!({"allowed": id.to_string()}))
            }
            Request::Disallow { peer } => {
                let id: EndpointId = peer.parse().map_err(|e| format!("{e}"))?;
                if id == self.me.id() {
                    return Err("that is this node's own id".into());
                }
                Ok(self.disallow(id)?)
            }
            Request::GroupCreate { name, members, kind, trusted_members, schema } => {
                if let Some(s) = &schema {
                    s.validate().map_err(|e| Refusal::bad_value(format!("schema: {e}")))?;
                }
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(Refusal::bad_value(format!("group name {name:?}: 1 to 64 characters, no control characters")));
                }
                if self.groups.values().any(|g| g.info.name == name) {
                    return Err(Refusal::bad_value(format!("a group named {name:?} exists already")));
                }
                let mut ids = vec![self.me.id().to_string()];
                for m in &members {
                    let id: EndpointId = m.parse().map_err(|e| format!("member {m:?}: {e}"))?;
                    if !self.allow.contains(&id) {
                        return Err(Refusal::bad_value(format!("member {id} is not on the allow-list: run `spook allow {id}` first")));
                    }
                    ids.push(id.to_string());
                }
                ids.sort();
                ids.dedup();
                let mut gid = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut gid);
                let kind = kind.unwrap_or_else(|| "convergent".into());
                let info = GroupInfo { name: name.clone(), id: hex(&gid), kind, genesis_ms: now, members: ids, trusted_members, schema };
                self.add_group(info)
            }
            Request::GroupJoin { invite, name } => {
                let mut info = GroupInfo::from_invite(&invite).map_err(|e| format!("invite: {e:#}"))?;
                if let Some(n) = name {
                    info.name = n;
                }
                let id = parse_hex::<16>(&info.id).ok_or("invite: bad group id")?;
                if self.groups.contains_key(&GroupId(id)) {
                    return Err(Refusal::bad_value(format!("already in group {}", info.name)));
                }
                self.add_group(info)
            }
            Request::GroupLeave { group } => self.leave(&group),
            Request::Schema { group } => {
                let gid = self.find_group(&group)?;
                let g = self.groups.get(&gid).ok_or("group vanished")?;
                Ok(json!({"group": g.info.name, "schema": g.cfg.schema, "hash": hex(&g.cfg.schema.hash())}))
            }
            // The members now (pruned and removed ones left out), not the founding roster.
            Request::GroupList => Ok(json!({"groups": self.groups.values().map(|g| json!({
                "name": g.info.name, "id": g.info.id, "kind": g.info.kind, "members": g.replica.members().iter().map(ToString::to_string).collect::<Vec<_>>(), "trusted_members": g.info.trusted_members,
            })).collect::<Vec<_>>()})),
            // Answered once durable: `on_cmd` sends them to `on_write`.
            Request::Set { .. } | Request::Write { .. } | Request::GroupRemove { .. } => Err("a write is answered by the node task".into()),
            Request::Get { group, register, field: None, view, typed } if view.as_deref() == Some("serial") => {
                let gid = self.find_group(&group)?;
                let g = self.groups.get(&gid).ok_or("group vanished")?;
                let schema = g.replica.schema();
                let reg = register.resolve(schema);
                let fields: serde_json::Map<String, Json> = g
                    .replica
                    .serial()
                    .cells()
                    .filter(|((r, _), _)| *r == reg)
                    .filter_map(|((_, f), c)| Some((schema.def(*f)?.name.clone(), session::cell_json(c, typed))))
                    .collect();
                Ok(json!({"register": reg.0, "view": "serial", "fields": fields}))
            }
            Request::Session { group, client } => {
                let gid = self.find_group(&group)?;
                let g = self.groups.get(&gid).ok_or("group vanished")?;
                let client: EndpointId = client.parse().map_err(|e| format!("client: {e}"))?;
                Ok(session::session_json(g.replica.serial(), client))
            }
            Request::Tx { .. } => Err("a transaction is answered by the node task".into()),
            r @ (Request::PairOpen { .. } | Request::PairStatus | Request::PairConfirm { .. }) => Ok(self.pair_request(r)?),
            Request::Get { group, register, field, view, typed } => {
                let gid = self.find_group(&group)?;
                let g = self.groups.get(&gid).ok_or("group vanished")?;
                let view = parse_view(view.as_deref())?;
                let reg = register.resolve(&g.cfg.schema);
                let fields = register_json(&g.replica, view, reg, typed);
                match field {
                    None => Ok(json!({"register": reg.0, "view": view_name(view), "fields": fields})),
                    Some(f) => {
                        g.cfg.schema.field_id(&f).ok_or_else(|| Refusal::not_found(format!("no field {f:?} in the schema ({})", field_names(&g.cfg.schema))))?;
                        Ok(json!({"register": reg.0, "view": view_name(view), "field": f, "value": fields.get(&f).cloned().unwrap_or(Json::Null)}))
                    }
                }
            }
            Request::Watch { .. } => Err("watch needs a streaming connection".into()),
            Request::Status => Ok(self.status()),
            Request::DomainKey { set: None } => match self.zenoh_auth.as_ref().map(Rotation::key) {
                Some(k) => Ok(json!({"token": k.token(), "generation": k.generation})),
                None => Err("this node has no domain key: `spook domain-key --new` makes one".into()),
            },
            Request::DomainKey { set: Some(token) } => {
                let k = DomainKey::from_token(&token).map_err(|e| e.to_string())?;
                tokio::task::block_in_place(|| self.ledger.set_domain_key(&k.to_bytes())).map_err(|e| e.to_string())?;
                let generation = k.generation;
                // The operator's word: no grace for the key before.
                self.zenoh_auth = Some(Rotation::new(k));
                self.renew_now = Some("domain key changed");
                Ok(json!({"token": token.trim(), "generation": generation}))
            }
            Request::Reconnect => {
                self.renew_now = Some("asked by the operator");
                Ok(json!({"reconnecting": true, "zid": self.session.zid().to_string()}))
            }
            Request::Shutdown => Ok(json!({})),
        }
    }

    /// A local write of one or more fields as one delta.
    fn write(&mut self, group: &str, set: Vec<crate::control::FieldWrite>, typed: bool, now: u64) -> Result<(GroupId, Json), Refusal> {
        let gid = self.find_group(group)?;
        let g = self.groups.get_mut(&gid).ok_or("group vanished")?;
        if set.is_empty() {
            return Err(Refusal::bad_value("nothing to write"));
        }
        let mut ops = Vec::with_capacity(set.len());
        for w in set {
            let fid = g.cfg.schema.field_id(&w.field).ok_or_else(|| Refusal::bad_value(format!("no field {:?} in the schema ({})", w.field, field_names(&g.cfg.schema))))?;
            let def = g.cfg.schema.def(fid).ok_or("field vanished")?;
            let reg = w.register.resolve(&g.cfg.schema);
            // A JSON list given to a set field inserts each element (one delta); the typed
            // API inserts a `Value::List` as one element.
            let elements = match (&w.value, def.policy) {
                (Json::Array(a), spook_core::MergePolicy::AddWinsSet) if !typed && !a.is_empty() => a.clone(),
                _ => vec![w.value.clone()],
            };
            for e in &elements {
                let action = values::action(&w.field, def.policy, def.kind, e, typed).map_err(|e| Refusal::bad_value(e.to_string()))?;
                ops.push(Op::Field { reg, field: fid, action });
            }
        }
        match g.store.write(&mut g.replica, now, ops) {
            Ok(dot) => {
                // The clock right after the write is at or above the delta's stamp.
                let h = g.replica.clock_now(now);
                g.written_at.insert(dot.seq, (Instant::now(), h));
                Ok((gid, json!({"seq": dot.seq})))
            }
            Err(e) => Err(refused(&self.metrics, e)),
        }
    }

    /// Create or join a group: checked first (this node a member, every other member allowed),
    /// so a refused invite leaves nothing in the ledger.
    fn add_group(&mut self, info: GroupInfo) -> Result<Json, Refusal> {
        let bytes = serde_json::to_vec(&info).map_err(|e| e.to_string())?;
        let gid = GroupId(parse_hex::<16>(&info.id).ok_or("bad group id")?);
        let cfg = self.group_config(&info).map_err(|e| Refusal::bad_value(format!("{e:#}")))?;
        for id in &cfg.members {
            if *id != self.me.id() && !self.allow.contains(id) {
                return Err(Refusal::bad_value(format!("member {id} is not on the allow-list: run `spook allow {id}` first")));
            }
        }
        self.ledger.put_group(&gid, &bytes).map_err(|e| e.to_string())?;
        let invite = info.invite();
        let name = info.name.clone();
        self.open_group(info).map_err(|e| format!("{e:#}"))?;
        Ok(json!({"group": name, "id": hex(&gid.0), "invite": invite}))
    }

    /// Leave a group for good: it is removed from the ledger (durably, before the answer) and
    /// closed. A group stored in the ledger that cannot be opened (a damaged entry) can be
    /// left too, by name or id.
    fn leave(&mut self, group: &str) -> Result<Json, Refusal> {
        let gid = match self.find_group(group) {
            Ok(g) => g,
            Err(not_open) => {
                let stored = self.ledger.groups().map_err(|e| e.to_string())?;
                let named = |(id, b): &(GroupId, Vec<u8>)| hex(&id.0) == group || serde_json::from_slice::<GroupInfo>(b).is_ok_and(|i| i.name == group);
                stored.iter().find(|e| named(e)).map(|(id, _)| *id).ok_or(not_open)?
            }
        };
        tokio::task::block_in_place(|| self.ledger.remove_group(&gid)).map_err(|e| Refusal::from(format!("cannot leave {group:?}: {e}")))?;
        if let Some(rt) = self.groups.remove(&gid) {
            // Its subscriptions and queryable go with it (undeclared as they drop).
            let base = format!("{}/g/{}/", self.prefix(), rt.tag);
            self.declared.retain(|(k, _)| !k.starts_with(&base));
            if let Some(m) = &mut self.multicast {
                m.forget(&base);
            }
        }
        tracing::info!(group, "left the group");
        Ok(json!({"left": group}))
    }

    fn status(&self) -> Json {
        let groups: Vec<Json> = self
            .groups
            .values()
            .map(|g| {
                let r = &g.replica;
                let st = r.stats();
                json!({
                    "name": g.info.name,
                    "id": g.info.id,
                    "kind": g.info.kind,
                    "trusted_members": g.info.trusted_members,
                    "members": r.members().iter().map(|m| json!({
                        "id": m.to_string(),
                        "me": *m == self.me.id(),
                        "seq": r.context().of(m).map_or(0, spook_core::IntervalSet::max),
                        "announced_seq": if *m == self.me.id() { None } else { r.announced_seq(m) },
                        "paired": *m == self.me.id() || self.pairs.get(m).is_some_and(Pair::is_up),
                    })).collect::<Vec<_>>(),
                    "frontier_ms": r.frontier().ms(),
                    "pending_candidates": r.pending_candidates(),
                    "oldest_candidate_ms": r.oldest_candidate().map(|h| h.ms()),
                    "summary": r.summary(),
                    "state_hash": hex(&r.state_hash().short()),
                    "committed_hash": hex(&r.committed_hash().short()),
                    "schema_version": g.cfg.schema.version,
                    "schema_hash": hex(&g.cfg.schema.hash()),
                    "schema_mismatch": g.schema_mismatch.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "deltas_received": st.deltas_received,
                    "states_applied": st.states_applied,
                    "decohered": st.decohered,
                    "ledger_waiting_batches": g.store.waiting(),
                    "ledger_error": g.store.error().map(ToString::to_string),
                })
            })
            .collect();
        let m = &self.metrics;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        json!({
            "id": self.me.id().to_string(),
            "domain": self.cfg.node.domain,
            "groups": groups,
            "bytes_in": load(&m.bytes_in),
            "bytes_out": load(&m.bytes_out),
            "frame_bytes_out": crate::metrics::FRAME_KINDS.iter().zip(&m.frame_bytes_out).map(|(k, c)| (k.to_string(), json!(load(c)))).collect::<serde_json::Map<_, _>>(),
            "rejected": m.rejected(),
        })
    }
}

fn reason(s: &str) -> String {
    let head: String = s.chars().take_while(|c| c.is_alphanumeric()).collect();
    head.to_lowercase()
}

/// Send a remote watch's events as replies to its query until the client has been silent for
/// [`spook_client::remote::WATCH_IDLE_MS`] (it asks something at least every few seconds while it
/// watches: the node cannot see a querier that went away). Dropping the query ends the stream
/// at the client; dropping `events` unregisters the watcher.
async fn forward_watch(node: mpsc::Sender<Cmd>, client: EndpointId, channel: [u8; 8], query: zenoh::query::Query, mut events: mpsc::Receiver<Json>, seen: Arc<std::sync::atomic::AtomicU64>, metrics: Arc<Metrics>) {
    Metrics::add(&metrics.remote_watches, 1);
    loop {
        let idle = now_ms().saturating_sub(seen.load(std::sync::atomic::Ordering::Relaxed));
        let Some(left) = spook_client::remote::WATCH_IDLE_MS.checked_sub(idle).filter(|l| *l > 0) else { break };
        match tokio::time::timeout(Duration::from_millis(left), events.recv()).await {
            Ok(Some(response)) => {
                if node.send(Cmd::ClientAnswer { client, channel, query: query.clone(), response }).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    metrics.remote_watches.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(%client, "remote watch ended");
}

fn parse_view(v: Option<&str>) -> Result<View, Refusal> {
    match v.unwrap_or("pending") {
        "pending" => Ok(View::Pending),
        "committed" => Ok(View::Committed),
        o => Err(Refusal::bad_value(format!("view {o:?} is not pending, committed or serial (serial shows whole registers)"))),
    }
}

fn view_name(v: View) -> &'static str {
    match v {
        View::Pending => "pending",
        View::Committed => "committed",
    }
}

fn field_names(s: &Schema) -> String {
    (0..64u16).filter_map(|i| s.def(FieldId(i)).map(|d| d.name.clone())).collect::<Vec<_>>().join(", ")
}

/// What a watcher is sent when `reg` changed in `view`.
fn change_json(group: &str, r: &Replica, view: View, reg: RegisterId, typed: bool) -> Json {
    json!({"group": group, "view": view_name(view), "register": reg.0, "fields": register_json(r, view, reg, typed)})
}

/// A register's fields; with `typed`, each a serde [`spook_core::Value`].
fn register_json(r: &Replica, view: View, reg: RegisterId, typed: bool) -> serde_json::Map<String, Json> {
    let schema = r.schema();
    let mut m = serde_json::Map::new();
    for i in 0..64u16 {
        let Some(def) = schema.def(FieldId(i)) else { break };
        if let Some(v) = r.get(view, reg, FieldId(i)) {
            m.insert(def.name.clone(), values::out(&v, typed));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::GroupInfo;

    #[test]
    fn an_invite_carries_trusted_members_and_one_without_it_means_signed() {
        let info = GroupInfo { name: "radio".into(), id: "00".repeat(16), kind: "convergent".into(), genesis_ms: 7, members: vec![], trusted_members: true, schema: None };
        let back = GroupInfo::from_invite(&info.invite()).expect("own invite parses");
        assert!(back.trusted_members);
        // An invite made before the option existed.
        let old = format!("spook1{}", super::hex(br#"{"name":"f","id":"00","kind":"convergent","genesis_ms":1,"members":[]}"#));
        assert!(!GroupInfo::from_invite(&old).expect("older invite parses").trusted_members);
    }
}
