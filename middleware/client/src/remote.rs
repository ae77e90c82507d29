//! Remote clients: an application attaches to any node of its domain over zenoh, with no
//! local socket. The client proves its key in a Noise IK handshake (the same one nodes pair
//! with), so the node knows which EndpointId it serves and only allowed clients get an
//! answer; every request and response after it is sealed on that channel.
//!
//! A client's session is its EndpointId, not the node: the node refuses a
//! transaction or session read that names another client, and a client that loses its node
//! attaches to another one and resends the same (client, seq).
//!
//! On the wire: one queryable per node at `spook/<domain>/c/<keyed hash of the node id>`.
//! A query carries a hello (answered with the handshake reply) or a sealed request (answered
//! with the sealed response). Administration (allow-list, groups, pairing, shutdown) stays on
//! the local socket. A watch is one long query answered with a reply per change; the node
//! ends it once the client has been silent for [`WATCH_IDLE_MS`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use spook_core::EndpointId;
use spook_secure::{ChannelError, HandshakeError, Identity, Initiator, PairChannel};
use zenoh::Wait;

use crate::domain_key::DomainKey;
use crate::proto::Request;

/// How long a handshake may take before the node counts as unreachable.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time between two hellos of one attach; doubled after each unanswered one, up to
/// [`HELLO_SPACING_MAX`]: a client a node does not allow sends about 8 hellos in
/// [`HANDSHAKE_TIMEOUT`], not thousands.
const HELLO_SPACING_FIRST: Duration = Duration::from_millis(100);
/// See [`HELLO_SPACING_FIRST`].
const HELLO_SPACING_MAX: Duration = Duration::from_secs(1);

/// A node ends a remote watch once the client has sent nothing for this long (ms): it cannot
/// see a querier that went away. [`Remote::watch`] asks something every
/// [`WATCH_KEEPALIVE`] meanwhile.
///
/// ```
/// use spook_client::remote::{WATCH_IDLE_MS, WATCH_KEEPALIVE};
/// assert!(WATCH_KEEPALIVE.as_millis() * 2 < u128::from(WATCH_IDLE_MS), "a keepalive or two fit in the idle time");
/// ```
pub const WATCH_IDLE_MS: u64 = 30_000;

/// How often a watching client shows the node it is still there.
///
/// ```
/// assert!(spook_client::remote::WATCH_KEEPALIVE.as_secs() >= 1);
/// ```
pub const WATCH_KEEPALIVE: Duration = Duration::from_secs(10);

/// Why a remote request failed.
///
/// ```
/// use spook_client::remote::RemoteError;
/// let e = RemoteError::WatchEnded { node: spook_core::EndpointId([1; 32]) };
/// assert!(e.node_lost(), "{e}");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The zenoh session could not be opened or the query not sent.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// Nothing came back in time. A node stays silent to clients it does not allow.
    #[error("no answer from node {node} within {waited:?}: it is not reachable on domain {domain:?}, this client lacks the domain key (--domain-key), or the node does not allow this client (run `spook allow {client}` on that node)")]
    NoAnswer {
        /// The node asked.
        node: EndpointId,
        /// The domain.
        domain: String,
        /// This client.
        client: EndpointId,
        /// How long we waited.
        waited: Duration,
    },
    /// The node's handshake reply did not verify.
    #[error("handshake with the node failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// A response that does not open on the channel (tampered, or from another channel).
    #[error("the node's response cannot be opened: {0}")]
    Channel(#[from] ChannelError),
    /// A response that opened but is not JSON.
    #[error("the node's response is not JSON: {0}")]
    NotJson(String),
    /// The node refused a watch: its response (`{"ok": false, "error": …, "code": …}`).
    #[error("{}", .0.get("error").and_then(Json::as_str).unwrap_or("the node refused the watch"))]
    Watch(Json),
    /// The node ended a watch: it stopped, or lost this client's channel.
    #[error("node {node} ended the watch")]
    WatchEnded {
        /// The node.
        node: EndpointId,
    },
    /// None of the nodes tried answered.
    #[error("no node of domain {domain:?} answered: {}", .tried.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; "))]
    NoNode {
        /// The domain.
        domain: String,
        /// Each node tried, and why it failed.
        tried: Vec<(EndpointId, String)>,
    },
}

impl RemoteError {
    /// Whether the node is gone (silent, or it ended a watch) rather than refusing: another
    /// node of the domain may serve the client.
    ///
    /// ```
    /// use spook_client::remote::RemoteError;
    /// let node = spook_core::EndpointId([1; 32]);
    /// assert!(RemoteError::WatchEnded { node }.node_lost());
    /// assert!(!RemoteError::Watch(serde_json::json!({"ok": false, "error": "no group named \"x\""})).node_lost());
    /// ```
    #[must_use]
    pub fn node_lost(&self) -> bool {
        matches!(self, RemoteError::NoAnswer { .. } | RemoteError::WatchEnded { .. })
    }
}

/// A client attached to one node over zenoh.
///
/// ```no_run
/// # async fn f() -> Result<(), spook_client::remote::RemoteError> {
/// use spook_client::{proto::Request, remote::Remote};
/// let me = spook_secure::Identity::generate();
/// let node = "…node id from `spook id`…".parse().unwrap();
/// let mut r = Remote::attach(me, node, "lab", &["tcp/127.0.0.1:7447".into()]).await?;
/// let status = r.request(&Request::Status, std::time::Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
pub struct Remote {
    session: zenoh::Session,
    key: String,
    domain: String,
    me: Identity,
    node: EndpointId,
    /// Sealing and opening advance the channel's counters: one request at a time touches it.
    chan: std::sync::Mutex<PairChannel>,
}

impl Remote {
    /// Open a zenoh session to `connect` (peer mode, no scouting) and shake hands with `node`.
    ///
    /// # Errors
    /// zenoh cannot start, the node does not answer (unreachable, or this client is not on its
    /// allow-list), or its reply does not verify.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), spook_client::remote::RemoteError> {
    /// use spook_client::remote::Remote;
    /// let node = "…node id from `spook id`…".parse().unwrap();
    /// let r = Remote::attach(spook_secure::Identity::generate(), node, "lab", &["tcp/127.0.0.1:7447".into()]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn attach(me: Identity, node: EndpointId, domain: &str, connect: &[String]) -> Result<Remote, RemoteError> {
        Remote::attach_keyed(me, node, domain, connect, None).await
    }

    /// As [`Remote::attach`], presenting the domain key to zenoh (the nodes of a domain with
    /// a key admit no session without it: [`crate::domain_key`]).
    ///
    /// # Errors
    /// As [`Remote::attach`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), spook_client::remote::RemoteError> {
    /// use spook_client::{domain_key::DomainKey, remote::Remote};
    /// let key = DomainKey::from_token("spookdk1…from `spook domain-key`…").unwrap();
    /// let node = "…node id…".parse().unwrap();
    /// let r = Remote::attach_keyed(spook_secure::Identity::generate(), node, "lab", &["tcp/127.0.0.1:7447".into()], Some(&key)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn attach_keyed(me: Identity, node: EndpointId, domain: &str, connect: &[String], key: Option<&DomainKey>) -> Result<Remote, RemoteError> {
        let mut z = zenoh::Config::default();
        if let Some(k) = key {
            k.configure_client(&mut z).map_err(RemoteError::Zenoh)?;
        }
        let endpoints = serde_json::to_string(connect).map_err(|e| RemoteError::Zenoh(e.to_string()))?;
        for (k, v) in [("mode", "\"peer\""), ("listen/endpoints", "[]"), ("scouting/multicast/enabled", "false"), ("connect/endpoints", endpoints.as_str())] {
            z.insert_json5(k, v).map_err(|e| RemoteError::Zenoh(format!("config {k}: {e}")))?;
        }
        let session = zenoh::open(z).await.map_err(|e| RemoteError::Zenoh(e.to_string()))?;
        let key = crate::keys::client_key(domain, &node);
        let probe = Probe { session: &session, key: &key, domain, client: me.id(), node };
        // zenoh may still be connecting, or a message was lost: ask again, with a fresh hello
        // each time (a node takes each hello timestamp once, so a resent one gets no answer).
        // A node that does not allow this client drops the query at once, so an attempt can
        // end long before its timeout: attempts are spaced out, further each time.
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let mut spacing = HELLO_SPACING_FIRST;
        let (init, reply) = loop {
            let started = tokio::time::Instant::now();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let (init, hello) = Initiator::start(&me, node, now)?;
            match probe.ask(hello, Duration::from_millis(500)).await {
                Ok(r) => break (init, r),
                Err(RemoteError::NoAnswer { .. }) if started + spacing < deadline => {
                    tokio::time::sleep_until(started + spacing).await;
                    spacing = (spacing * 2).min(HELLO_SPACING_MAX);
                }
                Err(RemoteError::NoAnswer { node, domain, client, .. }) => return Err(RemoteError::NoAnswer { node, domain, client, waited: HANDSHAKE_TIMEOUT }),
                Err(e) => return Err(e),
            }
        };
        let est = init.finish(&reply)?;
        Ok(Remote { session, key, domain: domain.to_string(), me, node, chan: std::sync::Mutex::new(est.channel) })
    }

    /// Attach to the first of `nodes` that answers, in order: a client that knows several
    /// nodes of its domain survives any one of them (its session is its key, not the node).
    /// Each node that does not answer costs up to the handshake timeout (5 s).
    ///
    /// # Errors
    /// [`RemoteError::NoNode`] with each node's failure when none answered.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), spook_client::remote::RemoteError> {
    /// use spook_client::remote::Remote;
    /// let nodes = ["…first node…".parse().unwrap(), "…second…".parse().unwrap()];
    /// let r = Remote::attach_any(&spook_secure::Identity::generate(), &nodes, "lab", &["tcp/127.0.0.1:7447".into()], None).await?;
    /// println!("attached to {}", r.node());
    /// # Ok(()) }
    /// ```
    pub async fn attach_any(me: &Identity, nodes: &[EndpointId], domain: &str, connect: &[String], key: Option<&DomainKey>) -> Result<Remote, RemoteError> {
        let mut tried = Vec::new();
        for &node in nodes {
            match Remote::attach_keyed(me.duplicate(), node, domain, connect, key).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(%node, "cannot attach: {e}");
                    tried.push((node, e.to_string()));
                }
            }
        }
        Err(RemoteError::NoNode { domain: domain.to_string(), tried })
    }

    /// The node this client is attached to.
    ///
    /// ```no_run
    /// # async fn f(r: spook_client::remote::Remote) -> Result<(), spook_client::remote::RemoteError> {
    /// println!("attached to {}", r.node());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn node(&self) -> EndpointId {
        self.node
    }

    /// This client's id (its session).
    ///
    /// ```no_run
    /// # async fn f(r: spook_client::remote::Remote) -> Result<(), spook_client::remote::RemoteError> {
    /// println!("this client is {}", r.id());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn id(&self) -> EndpointId {
        self.me.id()
    }

    /// Send a request and wait up to `timeout` for the node's response (the JSON a local
    /// socket would give: `{"ok": true, …}` or `{"ok": false, "error": …}`). For `watch`, use
    /// [`Remote::watch`].
    ///
    /// # Errors
    /// No answer in time, or a response that does not open or parse.
    ///
    /// ```no_run
    /// # async fn f(r: spook_client::remote::Remote) -> Result<(), spook_client::remote::RemoteError> {
    /// use spook_client::proto::Request;
    /// let answer = r.request(&Request::Id, std::time::Duration::from_secs(5)).await?;
    /// println!("{answer}");
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, r: &Request, timeout: Duration) -> Result<Json, RemoteError> {
        let sealed = self.seal(r)?;
        let resp = self.probe().ask(sealed, timeout).await?;
        self.open(&resp)
    }

    fn probe(&self) -> Probe<'_> {
        Probe { session: &self.session, key: &self.key, domain: &self.domain, client: self.me.id(), node: self.node }
    }

    /// A request sealed on the channel.
    fn seal(&self, r: &Request) -> Result<Vec<u8>, RemoteError> {
        let pt = serde_json::to_vec(r).map_err(|e| RemoteError::NotJson(e.to_string()))?;
        Ok(self.chan.lock().map_err(|_| RemoteError::Zenoh("the channel's lock is poisoned".into()))?.seal(&pt)?)
    }

    /// A response opened from the channel.
    fn open(&self, sealed: &[u8]) -> Result<Json, RemoteError> {
        let pt = self.chan.lock().map_err(|_| RemoteError::Zenoh("the channel's lock is poisoned".into()))?.open(sealed)?;
        serde_json::from_slice(&pt).map_err(|e| RemoteError::NotJson(e.to_string()))
    }

    /// Stream a group's changes (the events a local `watch` gives) into `events` until
    /// `events` is closed: first the node's acceptance
    /// (`{"ok": true, ...}`), then with `snapshot` every register written so far, then the
    /// changes. Meanwhile it asks the node for its id every [`WATCH_KEEPALIVE`], so the
    /// node keeps the watch.
    ///
    /// # Errors
    /// The node refuses the watch (no such group), ends it (it stopped, or lost this client's
    /// channel), or stops answering.
    ///
    /// ```no_run
    /// # async fn f(r: spook_client::remote::Remote) -> Result<(), spook_client::remote::RemoteError> {
    /// use spook_client::proto::Request;
    /// let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    /// let w = Request::Watch { group: "fleet".into(), view: None, snapshot: false, typed: true };
    /// tokio::select! {
    ///     end = r.watch(&w, &tx) => end?,
    ///     Some(line) = rx.recv() => println!("{line}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, watch: &Request, events: &tokio::sync::mpsc::Sender<Json>) -> Result<(), RemoteError> {
        let sealed = self.seal(watch)?;
        // The watch lasts as long as the keep-alives: the node ends it.
        let replies = self.probe().get(sealed, Duration::from_secs(365 * 24 * 3600)).await?;
        let mut keepalive = tokio::time::interval(WATCH_KEEPALIVE);
        keepalive.tick().await;
        let mut first = true;
        loop {
            tokio::select! {
                reply = replies.recv_async() => {
                    let Ok(reply) = reply else { return Err(RemoteError::WatchEnded { node: self.node }) };
                    let Ok(sample) = reply.result() else { continue };
                    let j = self.open(&sample.payload().to_bytes())?;
                    if first {
                        first = false;
                        if j.get("ok") != Some(&Json::Bool(true)) {
                            return Err(RemoteError::Watch(j));
                        }
                    }
                    if events.send(j).await.is_err() {
                        return Ok(());
                    }
                }
                _ = keepalive.tick() => {
                    self.request(&Request::Id, HANDSHAKE_TIMEOUT).await?;
                }
                () = events.closed() => return Ok(()),
            }
        }
    }

    /// Close the zenoh session.
    ///
    /// ```no_run
    /// # async fn f(r: spook_client::remote::Remote) -> Result<(), spook_client::remote::RemoteError> {
    /// r.close();
    /// # Ok(()) }
    /// ```
    pub fn close(self) {
        let _ = self.session.close().wait();
    }

    /// Close the zenoh session from async code (watches sharing this attach end with it).
    pub(crate) async fn close_session(&self) {
        let _ = self.session.close().await;
    }
}

/// One query to a node's client queryable.
struct Probe<'a> {
    session: &'a zenoh::Session,
    key: &'a str,
    domain: &'a str,
    client: EndpointId,
    node: EndpointId,
}

impl Probe<'_> {
    /// Send the query; its replies as they arrive.
    async fn get(&self, payload: Vec<u8>, timeout: Duration) -> Result<zenoh::handlers::FifoChannelHandler<zenoh::query::Reply>, RemoteError> {
        self.session
            .get(self.key)
            .payload(payload)
            .allowed_destination(zenoh::sample::Locality::Remote)
            // Every reply is a distinct message on the same key (a watch's events): none may
            // be merged away or held back until the query ends.
            .consolidation(zenoh::query::ConsolidationMode::None)
            .timeout(timeout)
            .await
            .map_err(|e| RemoteError::Zenoh(e.to_string()))
    }

    /// The first reply.
    async fn ask(&self, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, RemoteError> {
        let replies = self.get(payload, timeout).await?;
        while let Ok(reply) = replies.recv_async().await {
            if let Ok(s) = reply.result() {
                return Ok(s.payload().to_bytes().into_owned());
            }
        }
        Err(RemoteError::NoAnswer { node: self.node, domain: self.domain.to_string(), client: self.client, waited: timeout })
    }
}
