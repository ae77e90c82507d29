//! The control protocol between `spookd` and its clients (the `spook` CLI, applications):
//! one JSON object per line over a local Unix socket. A request gets one response line; a
//! `watch` gets a stream of event lines until the client hangs up.

use serde_json::Value as Json;

pub use spook_client::proto::{ErrorCode, FieldWrite, Request};

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

/// An error response: a [`crate::refusal::Refusal`], or a message (code `refused`).
#[must_use]
pub fn error(r: impl Into<crate::refusal::Refusal>) -> Json {
    r.into().json()
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
                        Err(e) => error(crate::refusal::Refusal::new(ErrorCode::BadRequest, format!("bad request: {e}"))),
                        Ok(r @ Request::Watch { .. }) => {
                            let (first, mut rx) = node.watch_request(r).await;
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
