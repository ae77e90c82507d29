//! The one error type of the client: whichever way the client reaches its node, a failure is
//! one of these, with the message a user should see.

use serde_json::Value as Json;

use crate::proto::ErrorCode;
use crate::remote::RemoteError;

/// Why a client call failed.
///
/// ```
/// use spook_client::Error;
/// let e = Error::from_response(&serde_json::json!({"ok": false, "code": "not_found", "error": "no group named \"x\""}));
/// assert!(matches!(e, Error::NotFound(_)));
/// assert_eq!(e.to_string(), "no group named \"x\"");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such group, field or session.
    #[error("{0}")]
    NotFound(String),
    /// A value or field that does not fit the group's schema, or a malformed argument.
    #[error("{0}")]
    BadValue(String),
    /// The node does not allow this (administration over zenoh, another client's session).
    #[error("{0}")]
    NotAllowed(String),
    /// The node cannot store it (full disk, broken ledger): nothing was written.
    #[error("{0}")]
    StorageUnavailable(String),
    /// The node refused the request for the reason given.
    #[error("{0}")]
    Refused(String),
    /// The node went away (stopped, died, unreachable) with the request unanswered.
    /// `may_have_applied` says whether a write could have landed before it went: read it back
    /// (through another node, or once it is back) before writing it again. A transaction can
    /// be resent with the same seq: it executes once.
    #[error("{message}")]
    NodeLost {
        /// What happened, for people.
        message: String,
        /// Whether the request reached the node before it went.
        may_have_applied: bool,
    },
    /// The local socket cannot be reached: no node runs there.
    #[error("cannot reach the node at {path} ({source}): is spookd running? (`spook up` starts one)")]
    Unreachable {
        /// The control socket.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Attaching over zenoh failed (no node answered, handshake refused).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The node answered something this client cannot read.
    #[error("the node answered something this client cannot read: {0}")]
    Protocol(String),
}

impl Error {
    /// The error an `{"ok": false, ...}` response reports.
    ///
    /// ```
    /// use spook_client::Error;
    /// let e = Error::from_response(&serde_json::json!({"ok": false, "code": "storage_unavailable", "error": "disk full"}));
    /// assert!(matches!(e, Error::StorageUnavailable(_)));
    /// // A refusal without a code (an older node) is still an error, with its message.
    /// assert_eq!(Error::from_response(&serde_json::json!({"ok": false, "error": "no"})).to_string(), "no");
    /// ```
    #[must_use]
    pub fn from_response(j: &Json) -> Error {
        let msg = j.get("error").and_then(Json::as_str).unwrap_or("the node refused the request").to_string();
        let code = j.get("code").and_then(|c| serde_json::from_value::<ErrorCode>(c.clone()).ok());
        match code {
            Some(ErrorCode::NotFound) => Error::NotFound(msg),
            Some(ErrorCode::BadValue | ErrorCode::BadRequest) => Error::BadValue(msg),
            Some(ErrorCode::NotAllowed) => Error::NotAllowed(msg),
            Some(ErrorCode::StorageUnavailable) => Error::StorageUnavailable(msg),
            Some(ErrorCode::Stopped) => Error::NodeLost { message: msg, may_have_applied: false },
            Some(ErrorCode::Refused) | None => Error::Refused(msg),
        }
    }

    /// Whether the node is gone (rather than refusing): another node of the domain may serve
    /// the request.
    ///
    /// ```
    /// use spook_client::Error;
    /// assert!(Error::NodeLost { message: "gone".into(), may_have_applied: false }.node_lost());
    /// assert!(!Error::NotFound("no group".into()).node_lost());
    /// ```
    #[must_use]
    pub fn node_lost(&self) -> bool {
        match self {
            Error::NodeLost { .. } | Error::Unreachable { .. } => true,
            Error::Remote(e) => e.node_lost(),
            _ => false,
        }
    }
}

/// The body of an `{"ok": true, ...}` response, or its error.
pub(crate) fn check(j: Json) -> Result<Json, Error> {
    if j.get("ok") == Some(&Json::Bool(true)) {
        Ok(j)
    } else {
        Err(Error::from_response(&j))
    }
}
