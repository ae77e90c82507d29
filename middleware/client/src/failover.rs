//! The remote way in, over several nodes: attach to the first of them that answers, and move
//! on to the next when it stops answering. A client's session is its key, not its node, so
//! reads, watches and (client, seq) transactions go on through the next node; a plain set or
//! write has no identity to be resent by and is not repeated.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use spook_core::EndpointId;
use spook_secure::Identity;

use crate::domain_key::DomainKey;
use crate::error::Error;
use crate::proto::Request;
use crate::remote::Remote;

/// How a remote client reaches its domain.
///
/// ```
/// use spook_client::RemoteOptions;
/// let node: spook_core::EndpointId = spook_core::EndpointId([7; 32]);
/// let o = RemoteOptions::new(spook_secure::Identity::generate(), "lab").node(node).connect("tcp/127.0.0.1:7447");
/// assert_eq!(o.nodes, vec![node]);
/// ```
#[derive(Debug)]
pub struct RemoteOptions {
    /// The client's key (its session): `spook allow <its id>` on the nodes.
    pub identity: Identity,
    /// The domain.
    pub domain: String,
    /// The nodes to attach to, in order of preference.
    pub nodes: Vec<EndpointId>,
    /// zenoh endpoints of the domain (`tcp/10.0.0.5:7447`).
    pub connect: Vec<String>,
    /// The domain key its nodes admit zenoh sessions with.
    pub domain_key: Option<DomainKey>,
    /// How long a request may wait for its answer (a transaction waits up to its own deadline
    /// on top of this).
    pub timeout: Duration,
}

impl RemoteOptions {
    /// Options for `identity` in `domain`; name nodes and endpoints with the builders.
    ///
    /// ```
    /// let o = spook_client::RemoteOptions::new(spook_secure::Identity::generate(), "lab");
    /// assert_eq!((o.domain.as_str(), o.nodes.len()), ("lab", 0));
    /// ```
    #[must_use]
    pub fn new(identity: Identity, domain: &str) -> RemoteOptions {
        RemoteOptions { identity, domain: domain.to_string(), nodes: Vec::new(), connect: Vec::new(), domain_key: None, timeout: Duration::from_secs(10) }
    }

    /// Add a node to attach to.
    ///
    /// ```
    /// let (a, b) = (spook_core::EndpointId([1; 32]), spook_core::EndpointId([2; 32]));
    /// let o = spook_client::RemoteOptions::new(spook_secure::Identity::generate(), "lab").node(a).node(b);
    /// assert_eq!(o.nodes, vec![a, b], "tried in this order");
    /// ```
    #[must_use]
    pub fn node(mut self, id: EndpointId) -> RemoteOptions {
        self.nodes.push(id);
        self
    }

    /// Add a zenoh endpoint.
    ///
    /// ```
    /// let o = spook_client::RemoteOptions::new(spook_secure::Identity::generate(), "lab").connect("tcp/10.0.0.5:7447");
    /// assert_eq!(o.connect, vec!["tcp/10.0.0.5:7447".to_string()]);
    /// ```
    #[must_use]
    pub fn connect(mut self, locator: &str) -> RemoteOptions {
        self.connect.push(locator.to_string());
        self
    }

    /// Present the domain key.
    ///
    /// ```
    /// use spook_client::domain_key::DomainKey;
    /// let key = DomainKey::generate(1);
    /// let o = spook_client::RemoteOptions::new(spook_secure::Identity::generate(), "lab").domain_key(key.clone());
    /// assert_eq!(o.domain_key, Some(key));
    /// ```
    #[must_use]
    pub fn domain_key(mut self, key: DomainKey) -> RemoteOptions {
        self.domain_key = Some(key);
        self
    }
}

/// The node attached now, and where the next attach starts.
pub(crate) struct Failover {
    opts: RemoteOptions,
    next: usize,
    remote: Option<Arc<Remote>>,
    /// [`Client::close`](crate::Client::close) was called: attach no more.
    closed: bool,
}

impl Failover {
    pub(crate) fn new(opts: RemoteOptions) -> Failover {
        Failover { opts, next: 0, remote: None, closed: false }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    pub(crate) fn nodes(&self) -> usize {
        self.opts.nodes.len()
    }

    /// The attached node, attaching to the first from `next` on that answers.
    pub(crate) async fn attached(&mut self) -> Result<Arc<Remote>, Error> {
        if let Some(r) = &self.remote {
            return Ok(r.clone());
        }
        if self.closed {
            return Err(Error::NotAllowed("this client was closed".into()));
        }
        let n = self.opts.nodes.len();
        let order: Vec<_> = (0..n).map(|i| self.opts.nodes[(self.next + i) % n]).collect();
        let r = Arc::new(Remote::attach_any(&self.opts.identity, &order, &self.opts.domain, &self.opts.connect, self.opts.domain_key.as_ref()).await?);
        self.next = self.opts.nodes.iter().position(|id| *id == r.node()).unwrap_or(0);
        self.remote = Some(r.clone());
        Ok(r)
    }

    /// Close the zenoh session and attach no more.
    pub(crate) async fn close(&mut self) {
        self.closed = true;
        if let Some(r) = self.remote.take() {
            r.close_session().await;
        }
    }

    /// `node` stopped answering: detach from it (unless another caller already moved on); the
    /// next attach starts after it.
    pub(crate) fn lost(&mut self, node: EndpointId) {
        if self.remote.as_ref().is_some_and(|r| r.node() == node) {
            self.remote = None;
            self.next = (self.next + 1) % self.opts.nodes.len().max(1);
        }
    }
}

/// `r` through the attached node; through the next one when it stops answering, unless
/// repeating `r` could apply it twice.
pub(crate) async fn request(f: &tokio::sync::Mutex<Failover>, r: &Request) -> Result<Json, Error> {
    // A set or write has no identity of its own: one that reached a node which then died
    // may have been applied. A transaction's is (client, seq), and reads repeat freely.
    let resend_safe = !matches!(r, Request::Set { .. } | Request::Write { .. });
    let (nodes, base) = {
        let g = f.lock().await;
        (g.nodes(), g.timeout())
    };
    // A transaction that waits for its outcome may take its own deadline.
    let timeout = match r {
        Request::Tx { timeout_ms, .. } => base + Duration::from_millis(timeout_ms.unwrap_or(10_000)),
        _ => base,
    };
    let mut last = None;
    for _ in 0..nodes.max(1) {
        let remote = f.lock().await.attached().await?;
        let node = remote.node();
        match remote.request(r, timeout).await {
            Ok(j) => return Ok(j),
            Err(e) if e.node_lost() => {
                f.lock().await.lost(node);
                if !resend_safe {
                    return Err(Error::NodeLost { message: format!("{e}. The write may or may not have been applied there: read it back through another node before writing it again"), may_have_applied: true });
                }
                tracing::warn!(%node, "node stopped answering ({e}); trying the next node");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| Error::Protocol("no node to ask".into()), Error::from))
}
