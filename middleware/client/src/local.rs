//! The local way in: JSON lines on a running `spookd`'s control socket.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::error::Error;
use crate::proto::Request;

/// One connection: requests go one at a time, each answered by one line.
struct Conn {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

/// Idle connections kept for the next requests.
const KEPT_IDLE: usize = 16;

/// A client of the node at a control socket. A request takes an idle connection (or opens
/// one) and gives it back after its answer, so concurrent requests go at once and the node
/// can commit them together; a watch opens its own.
pub(crate) struct Local {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<Conn>>,
}

async fn connect(path: &Path) -> Result<Conn, Error> {
    let s = UnixStream::connect(path).await.map_err(|source| Error::Unreachable { path: path.to_path_buf(), source })?;
    let (r, w) = s.into_split();
    Ok(Conn { lines: BufReader::new(r).lines(), w })
}

/// Whether repeating `r` could apply it twice.
pub(crate) fn is_write(r: &Request) -> bool {
    matches!(r, Request::Set { .. } | Request::Write { .. } | Request::GroupRemove { .. } | Request::Tx { .. })
}

impl Local {
    pub(crate) fn new(path: &Path) -> Local {
        Local { path: path.to_path_buf(), idle: std::sync::Mutex::new(Vec::new()) }
    }

    /// Send `r`, return the node's response line. Cancel-safe: the connection belongs to the
    /// request while it is under way, so a request dropped half-way never leaves its answer
    /// for another one to read.
    pub(crate) async fn request(&self, r: &Request) -> Result<Json, Error> {
        let line = serde_json::to_string(r).map_err(|e| Error::Protocol(e.to_string()))? + "\n";
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match kept {
            Some(c) => c,
            None => connect(&self.path).await?,
        };
        if conn.w.write_all(line.as_bytes()).await.is_err() {
            // The node behind a kept connection went away (and perhaps came back): nothing was
            // delivered on it, so the request goes once on a fresh connection.
            conn = connect(&self.path).await?;
            conn.w.write_all(line.as_bytes()).await.map_err(|e| lost(r, &e.to_string()))?;
        }
        match conn.lines.next_line().await {
            Ok(Some(answer)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    if idle.len() < KEPT_IDLE {
                        idle.push(conn);
                    }
                }
                serde_json::from_str(&answer).map_err(|e| Error::Protocol(format!("{e}: {answer}")))
            }
            Ok(None) => Err(lost(r, "connection closed")),
            Err(e) => Err(lost(r, &e.to_string())),
        }
    }

    /// Start a watch on a connection of its own: the node's first answer, then its event lines.
    pub(crate) async fn watch(&self, r: &Request) -> Result<(Json, tokio::io::Lines<BufReader<OwnedReadHalf>>, OwnedWriteHalf), Error> {
        let mut conn = connect(&self.path).await?;
        let line = serde_json::to_string(r).map_err(|e| Error::Protocol(e.to_string()))? + "\n";
        conn.w.write_all(line.as_bytes()).await.map_err(|e| lost(r, &e.to_string()))?;
        match conn.lines.next_line().await {
            Ok(Some(first)) => Ok((serde_json::from_str(&first).map_err(|e| Error::Protocol(format!("{e}: {first}")))?, conn.lines, conn.w)),
            Ok(None) => Err(lost(r, "connection closed")),
            Err(e) => Err(lost(r, &e.to_string())),
        }
    }
}

/// The node went away after `r` was sent.
pub(crate) fn lost(r: &Request, why: &str) -> Error {
    let may_have_applied = is_write(r);
    let advice = match r {
        Request::Tx { .. } => "the transaction may or may not have run: send it again with the same seq (it executes once) through any node",
        _ if may_have_applied => "the write may or may not have been applied: read it back once the node is up (or through another node), then write it again if it is not there",
        _ => "try again once it is up",
    };
    Error::NodeLost { message: format!("the node went away before answering ({why}); {advice}"), may_have_applied }
}
