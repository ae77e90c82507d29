//! An endpoint's identity: a static X25519 key (its `EndpointId` is the public half) and an
//! Ed25519 signing key; and the allow-list of expected peers.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use spook_core::EndpointId;

/// An identity that does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Stored identities are 96 bytes.
    #[error("an identity is 96 bytes, got {0}")]
    Length(usize),
    /// The stored public key is not the one the secret key gives.
    #[error("the stored X25519 public key does not match its secret key")]
    Mismatch,
}

/// An endpoint's keys. The secret parts never leave this type except through
/// [`Identity::to_bytes`], for the ledger (a file of mode 0600).
///
/// ```
/// # use spook_secure::Identity;
/// let me = Identity::generate();
/// let again = Identity::from_bytes(&me.to_bytes()).unwrap();
/// assert_eq!(again.id(), me.id());
/// assert_eq!(again.signing_public(), me.signing_public());
/// ```
pub struct Identity {
    x_secret: [u8; 32],
    x_public: [u8; 32],
    signing: SigningKey,
}

impl Identity {
    /// A new identity from the operating system's randomness.
    #[must_use]
    pub fn generate() -> Identity {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        let public = x25519_dalek::PublicKey::from(&secret);
        Identity { x_secret: secret.to_bytes(), x_public: public.to_bytes(), signing: SigningKey::generate(&mut rand_core::OsRng) }
    }

    /// The endpoint id: the X25519 public key.
    #[must_use]
    pub fn id(&self) -> EndpointId {
        EndpointId(self.x_public)
    }

    /// The Ed25519 verifying key.
    #[must_use]
    pub fn signing_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Sign `msg` with the Ed25519 key.
    #[must_use]
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    pub(crate) fn duplicate(&self) -> Identity {
        Identity { x_secret: self.x_secret, x_public: self.x_public, signing: self.signing.clone() }
    }

    pub(crate) fn x_secret(&self) -> &[u8; 32] {
        &self.x_secret
    }

    /// 96 bytes: X25519 secret, X25519 public, Ed25519 secret.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(96);
        v.extend_from_slice(&self.x_secret);
        v.extend_from_slice(&self.x_public);
        v.extend_from_slice(&self.signing.to_bytes());
        v
    }

    /// Load what [`Identity::to_bytes`] wrote, checking that the keys belong together.
    pub fn from_bytes(b: &[u8]) -> Result<Identity, IdentityError> {
        if b.len() != 96 {
            return Err(IdentityError::Length(b.len()));
        }
        let mut x_secret = [0u8; 32];
        let mut x_public = [0u8; 32];
        let mut ed = [0u8; 32];
        x_secret.copy_from_slice(&b[..32]);
        x_public.copy_from_slice(&b[32..64]);
        ed.copy_from_slice(&b[64..]);
        let derived = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(x_secret));
        if derived.to_bytes() != x_public {
            return Err(IdentityError::Mismatch);
        }
        Ok(Identity { x_secret, x_public, signing: SigningKey::from_bytes(&ed) })
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        // The Ed25519 key wipes itself; the X25519 secret is a plain array.
        zeroize::Zeroize::zeroize(&mut self.x_secret);
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?})", self.id())
    }
}

/// A peer this endpoint expects: its id, its Ed25519 key once a handshake has bound it, and a
/// display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// The peer's endpoint id (X25519 public key).
    pub id: EndpointId,
    /// Its Ed25519 verifying key, learned in the first handshake and pinned after.
    pub signing: Option<[u8; 32]>,
    /// A name for humans.
    pub name: String,
}

impl PeerEntry {
    /// How an entry is stored (keyed by its id): `0 | name` or `1 | signing key | name`.
    ///
    /// ```
    /// # use spook_secure::PeerEntry;
    /// # use spook_core::EndpointId;
    /// let e = PeerEntry { id: EndpointId([4; 32]), signing: Some([5; 32]), name: "drone-4".into() };
    /// assert_eq!(PeerEntry::from_stored(e.id, &e.to_stored()), Some(e));
    /// assert_eq!(PeerEntry::from_stored(EndpointId([4; 32]), &[1, 2, 3]), None);
    /// ```
    #[must_use]
    pub fn to_stored(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(33 + self.name.len());
        match self.signing {
            Some(k) => {
                v.push(1);
                v.extend_from_slice(&k);
            }
            None => v.push(0),
        }
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// Read what [`PeerEntry::to_stored`] wrote; `None` if it is malformed.
    #[must_use]
    pub fn from_stored(id: EndpointId, b: &[u8]) -> Option<PeerEntry> {
        let (signing, name) = match b.split_first()? {
            (0, rest) => (None, rest),
            (1, rest) if rest.len() >= 32 => (rest[..32].try_into().ok(), &rest[32..]),
            _ => return None,
        };
        Some(PeerEntry { id, signing, name: String::from_utf8(name.to_vec()).ok()? })
    }
}

/// The peers this endpoint accepts handshakes from.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    peers: BTreeMap<EndpointId, PeerEntry>,
}

impl AllowList {
    /// Add or replace an entry.
    pub fn allow(&mut self, e: PeerEntry) {
        self.peers.insert(e.id, e);
    }
    /// The entry of `id`.
    #[must_use]
    pub fn get(&self, id: &EndpointId) -> Option<&PeerEntry> {
        self.peers.get(id)
    }
    /// Remove an entry.
    pub fn remove(&mut self, id: &EndpointId) -> Option<PeerEntry> {
        self.peers.remove(id)
    }
    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &PeerEntry> {
        self.peers.values()
    }
    /// Whether `id` is allowed.
    #[must_use]
    pub fn contains(&self, id: &EndpointId) -> bool {
        self.peers.contains_key(id)
    }
    /// How many peers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.peers.len()
    }
    /// No peers.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}
