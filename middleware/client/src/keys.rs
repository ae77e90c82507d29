//! The key expressions of a domain: every name a node and a client agree on over zenoh is an
//! opaque keyed hash within the domain, so the wire shows no endpoint or group id.

use spook_core::EndpointId;

/// Bytes as lower-case hex.
///
/// ```
/// assert_eq!(spook_client::keys::hex(&[0x0a, 0xff]), "0aff");
/// ```
#[must_use]
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The key every tag of `domain` is hashed with (not a secret: it only keeps the names of one
/// domain apart from another's).
///
/// ```
/// use spook_client::keys::tag_key;
/// assert_ne!(tag_key("lab"), tag_key("field"));
/// ```
#[must_use]
pub fn tag_key(domain: &str) -> [u8; 32] {
    let mut dk = blake3::Hasher::new_derive_key("spook domain key v1");
    dk.update(domain.as_bytes());
    *dk.finalize().as_bytes()
}

/// An opaque tag for an endpoint or group within a domain: the first 8 bytes of a keyed hash,
/// as hex.
///
/// ```
/// use spook_client::keys::{tag, tag_key};
/// assert_eq!(tag(&tag_key("lab"), b"x").len(), 16);
/// ```
#[must_use]
pub fn tag(tag_key: &[u8; 32], what: &[u8]) -> String {
    hex(&blake3::keyed_hash(tag_key, what).as_bytes()[..8])
}

/// The key expression a node answers remote clients on: `spook/<domain>/c/<tag of its id>`.
///
/// ```
/// let node = spook_core::EndpointId([7; 32]);
/// let k = spook_client::keys::client_key("lab", &node);
/// assert!(k.starts_with("spook/lab/c/") && !k.contains(&node.to_string()));
/// assert_ne!(k, spook_client::keys::client_key("other", &node));
/// ```
#[must_use]
pub fn client_key(domain: &str, node: &EndpointId) -> String {
    format!("spook/{domain}/c/{}", tag(&tag_key(domain), &node.0))
}
