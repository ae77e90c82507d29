//! Why the node refused a request: a message for people and an [`ErrorCode`] for programs
//! (`spook-client` turns it into its `Error`), carried in the `{"ok": false, ...}` response.

use serde_json::{json, Value as Json};
pub use spook_client::proto::ErrorCode;

/// A refused request.
///
/// ```
/// use spook_node::refusal::{ErrorCode, Refusal};
/// let r = Refusal::not_found("no group named \"x\"");
/// assert_eq!(r.json()["code"], "not_found");
/// assert_eq!(Refusal::from("busy").code, ErrorCode::Refused);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of failure.
    pub code: ErrorCode,
    /// The message users see.
    pub msg: String,
}

impl Refusal {
    /// One of `code`.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Refusal {
        Refusal { code, msg: msg.into() }
    }

    /// No such group, field or session.
    pub fn not_found(msg: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::NotFound, msg)
    }

    /// A value or argument that does not fit.
    pub fn bad_value(msg: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::BadValue, msg)
    }

    /// Not allowed to this client.
    pub fn not_allowed(msg: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::NotAllowed, msg)
    }

    /// The error response.
    #[must_use]
    pub fn json(&self) -> Json {
        json!({"ok": false, "error": self.msg, "code": self.code})
    }
}

impl From<String> for Refusal {
    fn from(msg: String) -> Refusal {
        Refusal::new(ErrorCode::Refused, msg)
    }
}

impl From<&str> for Refusal {
    fn from(msg: &str) -> Refusal {
        Refusal::new(ErrorCode::Refused, msg)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}
