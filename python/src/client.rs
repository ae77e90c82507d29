//! `Client`: the three ways into a domain (a node embedded in this process, a local `spookd`,
//! nodes over zenoh with failover), each `spook_client::Client` underneath, and the node's
//! administration an embedded or local client may do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use spook_client::{GroupSpec, Mode, RemoteOptions};
use spook_core::EndpointId;

use crate::errors;
use crate::group::{Group, Inner};
use crate::runtime::awaitable;

fn endpoint(s: &str) -> PyResult<EndpointId> {
    s.trim().parse().map_err(|e| errors::bad_value(format!("{s:?} is not an endpoint id ({e}): ids are what `spook id` prints")))
}

/// A group to create, from the arguments Python gives `create_group` and `open_group`.
fn group_spec(name: &str, members: &[String], kind: &str, schema: Option<&str>) -> PyResult<GroupSpec> {
    let mut spec = match kind {
        "convergent" => GroupSpec::new(name),
        "serial" => GroupSpec::new(name).serial(),
        _ => return Err(errors::bad_value(format!("kind is \"convergent\" or \"serial\", got {kind:?}"))),
    };
    for m in members {
        spec = spec.member(endpoint(m)?);
    }
    if let Some(s) = schema {
        spec = spec.schema(spook_client::schema::from_toml(s).map_err(|e| errors::bad_value(e.to_string()))?);
    }
    Ok(spec)
}

/// A client of a Spook domain. Open one with `embedded`, `local` or `remote`; `close()`
/// lets go of it (an embedded node stops, writing its pending batches to its ledger first).
#[pyclass(module = "spook._spook", frozen)]
pub(crate) struct Client {
    client: spook_client::Client,
    node: Arc<tokio::sync::Mutex<Option<spook_node::embedded::EmbeddedNode>>>,
}

impl Client {
    fn new(client: spook_client::Client, node: Option<spook_node::embedded::EmbeddedNode>) -> Client {
        Client { client, node: Arc::new(tokio::sync::Mutex::new(node)) }
    }
}

#[pymethods]
impl Client {
    /// Start a node in this process (its ledger, identity, zenoh endpoints, as `spookd`
    /// would, with no control socket) from a `spookd.toml` at `config`, or from TOML text, or
    /// from the defaults; `SPOOK_<SECTION>_<KEY>` variables override either.
    #[staticmethod]
    #[pyo3(signature = (config = None, *, toml = None))]
    fn embedded<'py>(py: Python<'py>, config: Option<PathBuf>, toml: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let cfg = match (config, toml) {
            (Some(_), Some(_)) => return Err(errors::bad_value("give a config file or TOML text, not both")),
            (Some(p), None) => spook_node::Config::load(Some(&p)),
            (None, Some(t)) => spook_node::Config::from_toml(&t, "<toml>".as_ref()).and_then(|mut c| c.apply_env(std::env::vars()).map(|()| c)),
            (None, None) => spook_node::Config::load(None),
        }
        .map_err(|e| errors::raise("ConfigError", e.to_string()))?;
        awaitable(py, async move {
            let (client, node) = spook_node::embedded::start(cfg).await.map_err(|e| errors::raise("StartFailed", format!("{e:#}")))?;
            Ok(Client::new(client, Some(node)))
        })
    }

    /// Attach to the `spookd` whose control socket is at `path`.
    #[staticmethod]
    fn local(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
        awaitable(py, async move { spook_client::Client::local(path).await.map(|c| Client::new(c, None)).map_err(errors::client) })
    }

    /// Attach over zenoh to the first of `nodes` that answers, proving the key in `key_file`
    /// (created on first use: `spook allow` its id on the nodes); move on to the next node
    /// when one stops answering.
    #[staticmethod]
    #[pyo3(signature = (key_file, domain, nodes, connect, domain_key = None, timeout_s = 10.0))]
    fn remote<'py>(py: Python<'py>, key_file: PathBuf, domain: String, nodes: Vec<String>, connect: Vec<String>, domain_key: Option<String>, timeout_s: f64) -> PyResult<Bound<'py, PyAny>> {
        let me = spook_client::identity::load_or_create(&key_file).map_err(|e| errors::raise("ConfigError", e.to_string()))?;
        let mut o = RemoteOptions::new(me, &domain);
        for n in &nodes {
            o = o.node(endpoint(n)?);
        }
        for c in &connect {
            o = o.connect(c);
        }
        if let Some(k) = domain_key {
            o = o.domain_key(spook_client::domain_key::DomainKey::from_token(&k).map_err(|e| errors::bad_value(format!("domain key: {e}")))?);
        }
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(errors::bad_value(format!("timeout_s must be a positive number of seconds, got {timeout_s}")));
        }
        o.timeout = Duration::from_secs_f64(timeout_s);
        awaitable(py, async move { spook_client::Client::remote(o).await.map(|c| Client::new(c, None)).map_err(errors::client) })
    }

    /// The id of a client key file (created on first use), to `spook allow` on the nodes.
    #[staticmethod]
    fn key_id(key_file: PathBuf) -> PyResult<String> {
        Ok(spook_client::identity::load_or_create(&key_file).map_err(|e| errors::raise("ConfigError", e.to_string()))?.id().to_string())
    }

    /// `"embedded"`, `"local"` or `"remote"`.
    #[getter]
    fn mode(&self) -> &'static str {
        match self.client.mode() {
            Mode::Embedded => "embedded",
            Mode::Local => "local",
            Mode::Remote => "remote",
        }
    }

    /// The session id: the `client` of this client's transactions.
    #[getter]
    fn session_id(&self) -> String {
        self.client.session_id().to_string()
    }

    fn __repr__(&self) -> String {
        format!("Client(mode={:?}, session={})", self.mode(), self.client.session_id())
    }

    /// A handle on a group of the node (nothing is asked yet).
    fn group(&self, name: &str) -> Group {
        Group { inner: Inner::new(self.client.group(name)) }
    }

    /// The id of the node serving this client now.
    fn node_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client.clone();
        awaitable(py, async move { Ok(c.node_id().await.map_err(errors::client)?.to_string()) })
    }

    /// The names of the groups the node holds.
    fn groups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client.clone();
        awaitable(py, async move { c.groups().await.map_err(errors::client) })
    }

    /// Allow a peer (a node, or a remote client's key) to pair with the node.
    #[pyo3(signature = (peer, name = ""))]
    fn allow<'py>(&self, py: Python<'py>, peer: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let (c, id, name) = (self.client.clone(), endpoint(peer)?, name.to_string());
        awaitable(py, async move { c.allow(id, &name).await.map_err(errors::client) })
    }

    /// Create a group with the other `members`; the answer is its invite. `schema` is a
    /// schema in TOML (`spook.schema()` writes one); the node's fleet schema otherwise.
    #[pyo3(signature = (name, members = Vec::new(), kind = "convergent", schema = None))]
    fn create_group<'py>(&self, py: Python<'py>, name: &str, members: Vec<String>, kind: &str, schema: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let spec = group_spec(name, &members, kind, schema)?;
        let c = self.client.clone();
        awaitable(py, async move { c.create_group(spec).await.map_err(errors::client) })
    }

    /// The group named `name`, created (as `create_group` would, with this node alone) if the
    /// node does not hold it yet: for scripts that run again and again.
    #[pyo3(signature = (name, kind = "convergent", schema = None))]
    fn open_group<'py>(&self, py: Python<'py>, name: &str, kind: &str, schema: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let spec = group_spec(name, &[], kind, schema)?;
        let (c, name) = (self.client.clone(), name.to_string());
        awaitable(py, async move {
            if !c.groups().await.map_err(errors::client)?.contains(&name) {
                c.create_group(spec).await.map_err(errors::client)?;
            }
            Ok(Group { inner: Inner::new(c.group(&name)) })
        })
    }

    /// Join a group from its invite; the answer is its name here.
    #[pyo3(signature = (invite, name = None))]
    fn join_group<'py>(&self, py: Python<'py>, invite: String, name: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client.clone();
        awaitable(py, async move { c.join_group(&invite, name.as_deref()).await.map_err(errors::client) })
    }

    /// The domain key's token (a secret: hand it only to nodes and clients of the domain).
    fn domain_key<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client.clone();
        awaitable(py, async move { c.domain_key().await.map_err(errors::client) })
    }

    /// Take a domain's key (its token, from `domain_key()` on a node of it): the node joins
    /// that domain and renews its zenoh session.
    fn set_domain_key<'py>(&self, py: Python<'py>, token: String) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client.clone();
        awaitable(py, async move { c.set_domain_key(&token).await.map_err(errors::client) })
    }

    /// Let go: an embedded node stops (pending batches reach its ledger first), a remote
    /// client closes its zenoh session. Calling it again does nothing.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (c, node) = (self.client.clone(), self.node.clone());
        awaitable(py, async move {
            c.close().await;
            if let Some(n) = node.lock().await.take() {
                n.shutdown().await.map_err(|e| errors::raise("NodeLost", format!("the node failed while it ran: {e:#}")))?;
            }
            Ok(())
        })
    }
}
