//! A node inside the application's process, reached through `spook-client` like any other:
//! [`start`] opens its ledger and identity and joins the domain as `spookd` would, and hands
//! back a [`spook_client::Client`] on it, with no socket and no daemon.

use serde_json::Value as Json;
use spook_client::proto::Request;
use spook_client::{BoxFuture, Client};
use tokio::sync::mpsc;

use crate::{Config, NodeHandle};

impl spook_client::Embedded for NodeHandle {
    fn request(&self, r: Request) -> BoxFuture<'_, Json> {
        Box::pin(NodeHandle::request(self, r))
    }

    fn watch(&self, r: Request) -> BoxFuture<'_, (Json, mpsc::Receiver<Json>)> {
        Box::pin(NodeHandle::watch_request(self, r))
    }
}

/// A node running in this process.
pub struct EmbeddedNode {
    handle: NodeHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Start a node in this process from `cfg` (its ledger, identity, zenoh endpoints and peers,
/// as `spookd` would: no control socket) and a client on it.
///
/// ```no_run
/// # async fn f() -> anyhow::Result<()> {
/// let cfg = spook_node::Config::load(None)?;
/// let (client, node) = spook_node::embedded::start(cfg).await?;
/// println!("node {} holds {:?}", client.node_id().await?, client.groups().await?);
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The ledger cannot be opened, or zenoh cannot start.
pub async fn start(cfg: Config) -> anyhow::Result<(Client, EmbeddedNode)> {
    let (handle, task, _metrics) = crate::start(cfg).await?;
    let client = Client::embedded(std::sync::Arc::new(handle.clone()));
    Ok((client, EmbeddedNode { handle, task }))
}

impl EmbeddedNode {
    /// The node's endpoint id.
    #[must_use]
    pub fn id(&self) -> spook_core::EndpointId {
        self.handle.id
    }

    /// Stop the node: pending batches are written to its ledger first.
    ///
    /// # Errors
    /// The node failed while it ran.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.handle.request(Request::Shutdown).await;
        self.task.await?
    }
}
