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

/// Serve the control protocol on a Unix socket until the returned task is dropped. A bad line
/// gets an error response and the connection stays open.
pub fn serve(path: &std::path::Path, node: crate::NodeHandle) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
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
