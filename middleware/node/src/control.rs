//! The control protocol between `spookd` and its clients (the `spook` CLI, applications):
//! one JSON object per line over a local Unix socket. A request gets one response line; a
//! `watch` gets a stream of event lines until the client hangs up.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A request. Groups are named by the name given at create/join time or by their hex id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// This node's endpoint id.
    Id,
    /// Add a peer to the allow-list.
    Allow {
        /// The peer's endpoint id (base32).
        peer: String,
        /// A display name.
        #[serde(default)]
        name: String,
    },
    /// Remove a peer from the allow-list: its channels close, its group frames are refused,
    /// and this node's sender key of every group it is in is replaced (the peer never gets
    /// the new one).
    Disallow {
        /// The peer's endpoint id (base32).
        peer: String,
    },
    /// Create a group with this node and `members`.
    GroupCreate {
        /// Local name.
        name: String,
        /// The other members' endpoint ids.
        #[serde(default)]
        members: Vec<String>,
        /// `convergent` (default) or `serial`.
        #[serde(default)]
        kind: Option<String>,
        /// Frames without origin signatures (see DESIGN.md "Security"): cheaper on constrained
        /// radio, but any member could forge another member's deltas. Default false.
        #[serde(default)]
        trusted_members: bool,
    },
    /// Join a group from the invite `group create` printed.
    GroupJoin {
        /// The invite.
        invite: String,
        /// Local name (defaults to the creator's).
        #[serde(default)]
        name: Option<String>,
    },
    /// Leave a group (forget it locally).
    GroupLeave {
        /// The group.
        group: String,
    },
    /// Remove a member from a group by operator decision: for a member that is not coming
    /// back (a lost drone, a revoked peer). Members prune a silent member by themselves after
    /// the decoherence timeout, but a serial group needs a majority for it: a pair, or a group
    /// that lost its majority, waits for this. Either way a removed member that is heard again is
    /// re-added, as after a prune: to keep it out, `disallow` it on every member. Answered
    /// once the removal is durable.
    GroupRemove {
        /// The group.
        group: String,
        /// The member's endpoint id (base32).
        member: String,
    },
    /// The groups this node holds.
    GroupList,
    /// Write one field of a register (last-writer-wins set, counter add, set insert or log
    /// append, by the field's policy).
    Set {
        /// The group.
        group: String,
        /// The register.
        register: u32,
        /// The field name (e.g. `battery`, `pose.rotation`).
        field: String,
        /// The value, as JSON.
        value: Json,
    },
    /// Write several fields, of one or many registers, as one delta: atomically, in one frame
    /// and one ledger record (how a 100-drone pose stream is sent cheaply).
    Write {
        /// The group.
        group: String,
        /// The writes, applied in order.
        set: Vec<FieldWrite>,
    },
    /// Read a register (all fields) or one field.
    Get {
        /// The group.
        group: String,
        /// The register.
        register: u32,
        /// One field, or all.
        #[serde(default)]
        field: Option<String>,
        /// `pending` (default) or `committed`.
        #[serde(default)]
        view: Option<String>,
    },
    /// Stream changes of a group.
    Watch {
        /// The group.
        group: String,
        /// `pending` (default) or `committed`.
        #[serde(default)]
        view: Option<String>,
        /// First every register written so far, as events marked `"snapshot": true`, then
        /// the changes: a watcher that starts late, or comes back through another node,
        /// misses nothing.
        #[serde(default)]
        snapshot: bool,
    },
    /// Submit a serial transaction as operation `seq` of `client` (serial groups only).
    /// Resending the same (client, seq) through any node of the domain is safe: it executes
    /// once. With `wait`, the response comes when the outcome is known here or the deadline
    /// passes (state `decohered`: unknown yet, ask again with `session`).
    Tx {
        /// The group.
        group: String,
        /// The client's endpoint id (base32): the session the operation belongs to.
        client: String,
        /// The client's sequence number for this operation.
        seq: u64,
        /// Conditions on the committed serial state; all must hold.
        #[serde(default, rename = "if")]
        conditions: Vec<crate::session::TxCondition>,
        /// Writes applied if it commits.
        set: Vec<crate::session::TxSet>,
        /// Seqs of this client's operations that must commit before this one.
        #[serde(default)]
        after: Vec<u64>,
        /// Abort if not evaluated within this many ms of submission (default 10 000).
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Answer when the outcome is known rather than at submission.
        #[serde(default)]
        wait: bool,
    },
    /// A client's session in a group: the outcome of each of its operations known here.
    Session {
        /// The group.
        group: String,
        /// The client's endpoint id.
        client: String,
    },
    /// Open a pairing window: meet another node whose operator opened one too.
    PairOpen {
        /// The name the other side stores for this node.
        #[serde(default)]
        name: String,
        /// How long the window stays open (default 120 s).
        #[serde(default)]
        seconds: Option<u64>,
    },
    /// The pairing window: open or not, and the code to compare once a peer answered.
    PairStatus,
    /// The operator confirms with the code the other node shows; that peer is allowed.
    PairConfirm {
        /// The six digits the other node shows.
        code: String,
    },
    /// Node and group status.
    Status,
    /// Drop the zenoh session and open a fresh one (new zenoh id, new links and
    /// declarations): the way out when zenoh's routing is wedged, as plain UDP can leave it
    /// (see docs/protocol.md).
    Reconnect,
    /// Show the domain key's token ([`crate::domain_key`]), or replace it with `set` (joining
    /// another domain, or taking a rotation by hand); the node then renews its zenoh session.
    DomainKey {
        /// A token from `spook domain-key` on a node of the domain.
        #[serde(default)]
        set: Option<String>,
    },
    /// Stop the node (as SIGTERM does).
    Shutdown,
}

/// One field write of [`Request::Write`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldWrite {
    /// The register.
    pub register: u32,
    /// The field name.
    pub field: String,
    /// The value, as JSON.
    pub value: Json,
}

/// A response: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
#[must_use]
pub fn ok(body: Json) -> Json {
    let mut b = body;
    if let Some(o) = b.as_object_mut() {
        o.insert("ok".into(), Json::Bool(true));
        b
    } else {
        serde_json::json!({"ok": true, "result": b})
    }
}

/// An error response.
#[must_use]
pub fn error(msg: impl std::fmt::Display) -> Json {
    serde_json::json!({"ok": false, "error": msg.to_string()})
}

/// Why a node cannot take its control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// Another live process answers on the path (a second `spookd` with the same `control`).
    #[error("control socket {0}: another node is running there (it accepted a connection); stop it first, or give this node another [node] control path")]
    Busy(std::path::PathBuf),
    /// The path exists and is not a socket: it is not ours to delete.
    #[error("control socket {0}: the path exists and is not a socket; refusing to replace it")]
    NotASocket(std::path::PathBuf),
    /// Creating or binding the socket failed.
    #[error("control socket {0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
}

/// A control socket this node holds. A stale socket (left by a node that died) is replaced; a
/// live one is never taken over. On [`ControlSocket::release`] the file is removed only if it
/// is still the one this node bound.
#[derive(Debug)]
pub struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: std::path::PathBuf,
    /// (device, inode) of the socket file this node bound.
    file: (u64, u64),
}

impl ControlSocket {
    /// Bind the control socket at `path`.
    ///
    /// # Errors
    /// [`ControlSocketError::Busy`] if a live node answers there, [`ControlSocketError::NotASocket`]
    /// if something else is at the path, [`ControlSocketError::Io`] if binding fails.
    pub fn claim(path: &std::path::Path) -> Result<ControlSocket, ControlSocketError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let io = |e| ControlSocketError::Io(path.to_path_buf(), e);
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(ControlSocketError::NotASocket(path.to_path_buf()));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlSocketError::Busy(path.to_path_buf()));
            }
            // Nobody accepts on it: left by a node that died.
            tracing::info!(path = %path.display(), "removing a stale control socket");
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let m = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(ControlSocket { listener, path: path.to_path_buf(), file: (m.dev(), m.ino()) })
    }

    /// The socket's path.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Remove the socket file, if it is still the one bound here (never another node's).
    pub fn release(self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serve the control protocol on a Unix socket until the returned task is dropped. A bad line
/// gets an error response and the connection stays open. Call it inside a tokio runtime.
///
/// # Errors
/// If the socket cannot be registered with the runtime.
pub fn serve(socket: &ControlSocket, node: crate::NodeHandle) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::UnixListener::from_std(socket.listener.try_clone()?)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let node = node.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let resp = match serde_json::from_str::<Request>(&line) {
                        Err(e) => error(format!("bad request: {e}")),
                        Ok(Request::Watch { group, view, snapshot }) => {
                            let view = match view.as_deref().unwrap_or("pending") {
                                "committed" => spook_core::View::Committed,
                                _ => spook_core::View::Pending,
                            };
                            let (first, mut rx) = node.watch(group, view, snapshot).await;
                            let failed = first.get("ok") != Some(&Json::Bool(true));
                            if w.write_all(format!("{first}\n").as_bytes()).await.is_err() || failed {
                                continue;
                            }
                            while let Some(ev) = rx.recv().await {
                                if w.write_all(format!("{ev}\n").as_bytes()).await.is_err() {
                                    break;
                                }
                            }
                            return;
                        }
                        Ok(req) => node.request(req).await,
                    };
                    if w.write_all(format!("{resp}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
}
