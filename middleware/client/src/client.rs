//! [`Client`]: the one way an application, binding or bridge reaches a domain, whichever of
//! the three ways in it takes.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value as Json;
use spook_core::EndpointId;
use tokio::sync::mpsc;

use crate::error::{check, Error};
use crate::failover::{Failover, RemoteOptions};
use crate::group::Group;
use crate::local::Local;
use crate::proto::Request;
use crate::watch::{AbortOnDrop, Watch};

/// A boxed future, for [`Embedded`].
///
/// ```
/// let answer: spook_client::BoxFuture<'_, u32> = Box::pin(async { 42 });
/// # drop(answer);
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node running in this process, as `spook-node` provides it (`spook_node::embedded`):
/// the client hands it requests as they are, with no socket and no serialisation.
///
/// ```no_run
/// // spook_node::embedded::start(config) returns a client of a node it starts in this process;
/// // any other implementation plugs in the same way:
/// # fn f(node: std::sync::Arc<dyn spook_client::Embedded>) {
/// let client = spook_client::Client::embedded(node);
/// assert_eq!(client.mode(), spook_client::Mode::Embedded);
/// # }
/// ```
pub trait Embedded: Send + Sync + 'static {
    /// Answer a request (`{"ok": ...}`).
    fn request(&self, r: Request) -> BoxFuture<'_, Json>;
    /// Start a watch ([`Request::Watch`]): the first answer, then the event lines.
    fn watch(&self, r: Request) -> BoxFuture<'_, (Json, mpsc::Receiver<Json>)>;
}

/// Which way in a client took.
///
/// ```no_run
/// # async fn f() -> Result<(), spook_client::Error> {
/// use spook_client::Mode;
/// let client = spook_client::Client::local("/run/spook/control.sock").await?;
/// assert_eq!(client.mode(), Mode::Local);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A node in this process.
    Embedded,
    /// A `spookd` on this machine, over its control socket.
    Local,
    /// Nodes over zenoh, with failover.
    Remote,
}

// One per client, shared by its clones: the remote variant's size does not matter.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Embedded(Arc<dyn Embedded>),
    Local(Local),
    Remote(tokio::sync::Mutex<Failover>),
}

struct Inner {
    /// Shared by the clients [`Client::with_session`] makes.
    conn: Arc<Conn>,
    /// The client's session: the `client` of its transactions' (client, seq).
    session: EndpointId,
    next_seq: AtomicU64,
}

/// A client of a Spook domain. Cheap to clone (clones share the connection); `Send + Sync`.
///
/// ```no_run
/// # async fn f() -> Result<(), spook_client::Error> {
/// use spook_client::{Client, View};
/// let client = Client::local("/run/spook/control.sock").await?;
/// let fleet = client.group("fleet");
/// fleet.set(7, "battery", 0.82).await?;
/// let fields = fleet.get(7, View::Pending).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:?}, session {})", self.mode(), self.inner.session)
    }
}

/// A seq no earlier run of this client used: the time in microseconds.
fn first_seq() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64)
}

impl Client {
    fn new(conn: Conn, session: EndpointId) -> Client {
        Client::with_conn(Arc::new(conn), session)
    }

    fn with_conn(conn: Arc<Conn>, session: EndpointId) -> Client {
        Client { inner: Arc::new(Inner { conn, session, next_seq: AtomicU64::new(first_seq()) }) }
    }

    /// A client of the node running in this process. Its transactions' session is a fresh
    /// random id unless [`Client::with_session`] names one.
    ///
    /// ```no_run
    /// # fn f(node: std::sync::Arc<dyn spook_client::Embedded>) {
    /// let client = spook_client::Client::embedded(node);
    /// # }
    /// ```
    #[must_use]
    pub fn embedded(node: Arc<dyn Embedded>) -> Client {
        Client::new(Conn::Embedded(node), spook_secure::Identity::generate().id())
    }

    /// Attach to the `spookd` whose control socket is at `path`.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when no node answers there.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), spook_client::Error> {
    /// match spook_client::Client::local("/run/spook/control.sock").await {
    ///     Ok(client) => println!("attached to node {}", client.node_id().await?),
    ///     Err(spook_client::Error::Unreachable { path, .. }) => eprintln!("no spookd at {}", path.display()),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn local(path: impl AsRef<Path>) -> Result<Client, Error> {
        let c = Client::new(Conn::Local(Local::new(path.as_ref())), spook_secure::Identity::generate().id());
        c.node_id().await?;
        Ok(c)
    }

    /// Attach over zenoh to the first of `opts.nodes` that answers, proving `opts.identity`
    /// in a Noise handshake; the client moves on to the next node when its node stops
    /// answering. The session is the identity's id.
    ///
    /// # Errors
    /// [`Error::Remote`] when no node answers (each one's reason inside).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), spook_client::Error> {
    /// use spook_client::{identity, Client, RemoteOptions};
    /// let me = identity::load_or_create("agent.key".as_ref()).expect("a key file");
    /// let node = "0f3c…".parse().unwrap_or(me.id()); // a node's id, from `spook id` on it
    /// let client = Client::remote(RemoteOptions::new(me, "lab").node(node).connect("tcp/127.0.0.1:7447")).await?;
    /// assert_eq!(client.mode(), spook_client::Mode::Remote);
    /// # Ok(()) }
    /// ```
    pub async fn remote(opts: RemoteOptions) -> Result<Client, Error> {
        if opts.nodes.is_empty() {
            return Err(Error::BadValue("a remote client needs at least one node to attach to (RemoteOptions::node)".into()));
        }
        let session = opts.identity.id();
        let mut f = Failover::new(opts);
        f.attached().await?;
        Ok(Client::new(Conn::Remote(tokio::sync::Mutex::new(f)), session))
    }

    /// A client on the same connection whose session (the `client` of its transactions) is
    /// `id`: for an embedded or local client that resumes a session of an earlier run, or
    /// several agents sharing one node.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for a remote client: its session is the key it proved.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// let saved = client.session_id();          // kept from an earlier run
    /// let resumed = client.with_session(saved)?;  // its transactions are (saved, seq)
    /// assert_eq!(resumed.session_id(), saved);
    /// # Ok(()) }
    /// ```
    pub fn with_session(&self, id: EndpointId) -> Result<Client, Error> {
        if matches!(*self.inner.conn, Conn::Remote(_)) {
            return Err(Error::NotAllowed("a remote client's session is the key it proved in its handshake: attach with that key instead".into()));
        }
        Ok(Client::with_conn(self.inner.conn.clone(), id))
    }

    /// Which way in this client took.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// println!("reached the domain {:?}", client.mode());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn mode(&self) -> Mode {
        match *self.inner.conn {
            Conn::Embedded(_) => Mode::Embedded,
            Conn::Local(_) => Mode::Local,
            Conn::Remote(_) => Mode::Remote,
        }
    }

    /// The client's session id (the `client` of its transactions).
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// println!("my transactions are ({}, seq)", client.session_id());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn session_id(&self) -> EndpointId {
        self.inner.session
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.inner.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Let go of the connection: a remote client closes its zenoh session (its watches end)
    /// and answers every later call with [`Error::NotAllowed`]. An embedded node is stopped by
    /// its owner (`EmbeddedNode::shutdown`), a local `spookd` runs on. Clones share the
    /// connection, so closing one closes them all.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// client.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        if let Conn::Remote(f) = &*self.inner.conn {
            f.lock().await.close().await;
        }
    }

    /// A handle on the group named `name` on the node (or its hex id). Nothing is asked yet.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// let fleet = client.group("fleet");
    /// assert_eq!(fleet.name(), "fleet");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn group(&self, name: &str) -> Group {
        Group::new(self.clone(), name)
    }

    /// The id of the node serving this client now.
    ///
    /// # Errors
    /// [`Error::NodeLost`] or [`Error::Unreachable`].
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// println!("served by {}", client.node_id().await?);
    /// # Ok(()) }
    /// ```
    pub async fn node_id(&self) -> Result<EndpointId, Error> {
        let j = self.call(&Request::Id).await?;
        j.get("id").and_then(Json::as_str).and_then(|s| s.parse().ok()).ok_or_else(|| Error::Protocol(format!("an id answer without an id: {j}")))
    }

    /// The names of the groups the node holds.
    ///
    /// # Errors
    /// [`Error::NodeLost`] or [`Error::Unreachable`].
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// for name in client.groups().await? {
    ///     println!("{name}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn groups(&self) -> Result<Vec<String>, Error> {
        let j = self.call(&Request::GroupList).await?;
        Ok(j.get("groups").and_then(Json::as_array).map(|g| g.iter().filter_map(|g| g.get("name").and_then(Json::as_str).map(str::to_string)).collect()).unwrap_or_default())
    }

    /// Any request, answered with the node's response body (`{"ok": true, ...}`): for
    /// administration (allow, pairing, group create, ...) on a local or embedded client, and
    /// for what the typed calls do not cover.
    ///
    /// # Errors
    /// The node's refusal as an [`Error`]; [`Error::NotAllowed`] for administration over
    /// zenoh.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// use spook_client::proto::Request;
    /// let answer = client.call(&Request::GroupList).await?;
    /// println!("{}", answer["groups"]);
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, r: &Request) -> Result<Json, Error> {
        let j = match &*self.inner.conn {
            Conn::Embedded(n) => n.request(r.clone()).await,
            Conn::Local(l) => l.request(r).await?,
            Conn::Remote(f) => {
                if !r.allowed_remotely() {
                    return Err(Error::NotAllowed("this request is only served on the node's local control socket (administration stays local)".into()));
                }
                crate::failover::request(f, r).await?
            }
        };
        check(j)
    }

    /// Start a watch. A remote watch that loses its node goes on through the next one,
    /// starting there with a snapshot that shows only the registers that changed meanwhile.
    pub(crate) async fn watch(&self, r: Request, snapshot: bool) -> Result<Watch, Error> {
        let typed = matches!(r, Request::Watch { typed: true, .. });
        let (tx, rx) = mpsc::channel(crate::watch::WATCH_QUEUE);
        let task = match &*self.inner.conn {
            Conn::Embedded(n) => {
                let (first, mut events) = n.watch(r).await;
                check(first)?;
                tokio::spawn(async move {
                    while let Some(j) = events.recv().await {
                        if tx.send(Ok(j)).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Err(Error::NodeLost { message: "the node stopped: the watch ended".into(), may_have_applied: false })).await;
                })
            }
            Conn::Local(l) => {
                let (first, mut lines, w) = l.watch(&r).await?;
                check(first)?;
                tokio::spawn(async move {
                    let _keep_open = w;
                    loop {
                        match lines.next_line().await {
                            Ok(Some(line)) => {
                                let item = serde_json::from_str::<Json>(&line).map_err(|e| Error::Protocol(format!("{e}: {line}")));
                                if tx.send(item).await.is_err() {
                                    return;
                                }
                            }
                            _ => {
                                let _ = tx.send(Err(Error::NodeLost { message: "the node stopped: the watch ended (start it again once the node is back)".into(), may_have_applied: false })).await;
                                return;
                            }
                        }
                    }
                })
            }
            Conn::Remote(f) => {
                let client = self.clone();
                // The first attach is checked here, so that a refused watch fails the call.
                let remote = f.lock().await.attached().await?;
                let (first_tx, first_rx) = tokio::sync::oneshot::channel();
                let task = tokio::spawn(async move { remote_watch(client, remote, r, snapshot, tx, first_tx).await });
                if let Ok(Err(e)) = first_rx.await {
                    return Err(e);
                }
                task
            }
        };
        Ok(Watch::pump(rx, typed, vec![AbortOnDrop(task)]))
    }
}

/// Which lines of a remote watch go on to the consumer, across the nodes it moves through:
/// the first attach's own snapshot only if asked for; after a move, the snapshot lines of
/// registers that did not change are dropped; the node's acceptance signals the caller.
struct Passing {
    /// The caller asked for a snapshot first.
    snapshot: bool,
    /// Still in the snapshot of the first attach.
    initial: bool,
    /// Each register's fields as last passed on (its id as text).
    last_shown: std::collections::HashMap<String, Json>,
    /// Told once the node accepted the watch, or why not.
    first: Option<tokio::sync::oneshot::Sender<Result<(), Error>>>,
}

impl Passing {
    /// Whether `j` goes on.
    fn admit(&mut self, j: &Json) -> bool {
        if j.get("ok").is_some() {
            // The node accepted the watch.
            if let Some(f) = self.first.take() {
                let _ = f.send(Ok(()));
            }
            return false;
        }
        let is_snapshot = j.get("snapshot") == Some(&Json::Bool(true));
        if j.get("event").is_none() {
            let reg = j.get("register").map(ToString::to_string).unwrap_or_default();
            let fields = j.get("fields").cloned().unwrap_or(Json::Null);
            if is_snapshot && self.last_shown.get(&reg) == Some(&fields) {
                return false;
            }
            self.last_shown.insert(reg, fields);
            if is_snapshot && self.initial && !self.snapshot {
                return false;
            }
        }
        // Snapshot lines after this are the node's catch-up after a lag.
        self.initial &= is_snapshot;
        true
    }
}

/// A remote watch over the client's nodes: when its node stops answering, the next one, with
/// a snapshot there of which only the registers that changed are passed on ([`Passing`]; so
/// that this holds for registers never shown, the first attach takes a snapshot too). It gives
/// up when watches end before passing anything on every node twice in a row.
async fn remote_watch(client: Client, mut remote: Arc<crate::remote::Remote>, r: Request, snapshot: bool, tx: mpsc::Sender<Result<Json, Error>>, first: tokio::sync::oneshot::Sender<Result<(), Error>>) {
    let Conn::Remote(f) = &*client.inner.conn else { return };
    let Request::Watch { group, view, typed, .. } = r else { return };
    let req = Request::Watch { group, view, snapshot: true, typed };
    let nodes = f.lock().await.nodes();
    let mut passing = Passing { snapshot, initial: true, last_shown: std::collections::HashMap::new(), first: Some(first) };
    let mut fruitless = 0;
    loop {
        // Lines go through a channel of their own so that `passing` can see them.
        let (inner_tx, mut inner_rx) = mpsc::channel::<Json>(crate::watch::WATCH_QUEUE);
        let mut shown = 0u64;
        let res = {
            let watch = remote.watch(&req, &inner_tx);
            tokio::pin!(watch);
            loop {
                tokio::select! {
                    res = &mut watch => break res,
                    Some(j) = inner_rx.recv() => {
                        if passing.admit(&j) {
                            shown += 1;
                            if tx.send(Ok(j)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        };
        // What the node sent before it ended.
        while let Ok(j) = inner_rx.try_recv() {
            if passing.admit(&j) {
                shown += 1;
                if tx.send(Ok(j)).await.is_err() {
                    return;
                }
            }
        }
        passing.initial = false;
        let node = remote.node();
        match res {
            Ok(()) => return,
            Err(e) if e.node_lost() => {
                fruitless = if shown == 0 { fruitless + 1 } else { 0 };
                if fruitless > 2 * nodes {
                    let _ = tx.send(Err(Error::NodeLost { message: format!("{e}; the watch ended {fruitless} times in a row without a change: giving up"), may_have_applied: false })).await;
                    return;
                }
                tracing::warn!(%node, "watch: {e}; attaching to the next node (it first shows the registers that changed meanwhile)");
                f.lock().await.lost(node);
                match f.lock().await.attached().await {
                    Ok(r) => remote = r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            Err(e) => {
                // A refusal reads as any other request's (NotFound for a group it lacks).
                let e = match e {
                    crate::remote::RemoteError::Watch(j) => Error::from_response(&j),
                    e => e.into(),
                };
                match passing.first.take() {
                    Some(f) => drop(f.send(Err(e))),
                    None => drop(tx.send(Err(e)).await),
                }
                return;
            }
        }
    }
}
