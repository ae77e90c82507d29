//! An endpoint's identity: a static X25519 key (its `EndpointId` is the public half) and an
//! Ed25519 signing key; and the allow-list of expected peers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{Signer, SigningKey};
use rand_core::RngCore;
use sha2::{Digest, Sha512};
use spook_core::EndpointId;

/// Most signing nonces an identity holds ready (see [`Identity::prepare_nonces`]).
pub const NONCE_POOL: usize = 64;

/// The costly half of an Ed25519 signature, made before the message is known: a secret
/// scalar `r` and the point `R = rB`. Signing with it is one hash and one multiply-add.
/// Each is used for one signature only: it is moved out of the pool and dropped.
struct Nonce {
    r: Scalar,
    big_r: [u8; 32],
}

impl Drop for Nonce {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.r);
    }
}

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
    expanded: ExpandedSecretKey,
    nonces: Mutex<Vec<Nonce>>,
    nonces_made: AtomicU64,
}

impl Identity {
    /// A new identity from the operating system's randomness.
    #[must_use]
    pub fn generate() -> Identity {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        let public = x25519_dalek::PublicKey::from(&secret);
        Identity::new(secret.to_bytes(), public.to_bytes(), SigningKey::generate(&mut rand_core::OsRng))
    }

    fn new(x_secret: [u8; 32], x_public: [u8; 32], signing: SigningKey) -> Identity {
        let expanded = ExpandedSecretKey::from(&signing.to_bytes());
        // Room for the whole pool from the start: a growing Vec would leave copies of secret
        // nonces behind in the memory it frees.
        let nonces = Mutex::new(Vec::with_capacity(NONCE_POOL));
        Identity { x_secret, x_public, signing, expanded, nonces, nonces_made: AtomicU64::new(0) }
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

    /// Sign `msg` with the Ed25519 key: with a nonce made ahead of time when one is ready
    /// ([`Identity::prepare_nonces`]), which takes the costly part off the caller's path;
    /// otherwise deterministically (RFC 8032). Either way it is a standard Ed25519 signature.
    ///
    /// ```
    /// # use spook_secure::Identity;
    /// use ed25519_dalek::{Signature, VerifyingKey};
    /// let me = Identity::generate();
    /// let key = VerifyingKey::from_bytes(&me.signing_public()).unwrap();
    /// assert_eq!(me.prepare_nonces(2), 2);
    /// let (fast, slow) = (me.sign(b"frame"), me.sign(b"frame"));
    /// let plain = me.sign(b"frame"); // the pool is empty now: deterministic
    /// for sig in [fast, slow, plain] {
    ///     assert!(key.verify_strict(b"frame", &Signature::from_bytes(&sig)).is_ok());
    /// }
    /// assert_ne!(fast, slow); // a fresh nonce each
    /// assert_eq!(plain, me.sign(b"frame"));
    /// ```
    #[must_use]
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let ready = self.nonces.lock().ok().and_then(|mut p| p.pop());
        let Some(n) = ready else { return self.signing.sign(msg).to_bytes() };
        // RFC 8032 5.1.6 steps 4 to 6 with r chosen beforehand: k = H(R || A || M), S = r + ka.
        let mut h = Sha512::new();
        h.update(n.big_r);
        h.update(self.signing.verifying_key().as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = k * self.expanded.scalar + n.r;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&n.big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    /// Make up to `n` signing nonces ahead of time, keeping at most [`NONCE_POOL`] ready;
    /// returns how many are ready. An async shell calls this when idle, so that a frame's
    /// signature costs about a microsecond instead of a fixed-base scalar multiplication.
    ///
    /// A nonce must never sign twice, and unlike RFC 8032's it cannot be derived from the
    /// message: it hashes the secret nonce prefix, a counter and fresh randomness from the
    /// operating system, so that neither a repeated random draw nor a guessable one reveals
    /// the key.
    pub fn prepare_nonces(&self, n: usize) -> usize {
        let have = self.nonces.lock().map(|p| p.len()).unwrap_or(NONCE_POOL);
        for _ in 0..n.min(NONCE_POOL.saturating_sub(have)) {
            let mut fresh = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut fresh);
            let mut h = Sha512::new();
            h.update(b"spook signing nonce v1");
            h.update(self.expanded.hash_prefix);
            h.update(self.nonces_made.fetch_add(1, Ordering::Relaxed).to_le_bytes());
            h.update(fresh);
            let r = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
            let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
            if let Ok(mut p) = self.nonces.lock() {
                p.push(Nonce { r, big_r });
            }
        }
        self.nonces_ready()
    }

    /// How many signing nonces are ready.
    #[must_use]
    pub fn nonces_ready(&self) -> usize {
        self.nonces.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// A copy of the keys with no signing nonces: two holders never share one.
    ///
    /// ```
    /// # use spook_secure::Identity;
    /// let me = Identity::generate();
    /// me.prepare_nonces(3);
    /// let copy = me.duplicate();
    /// assert_eq!((copy.id(), copy.nonces_ready()), (me.id(), 0));
    /// ```
    #[must_use]
    pub fn duplicate(&self) -> Identity {
        Identity::new(self.x_secret, self.x_public, self.signing.clone())
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
        Ok(Identity::new(x_secret, x_public, SigningKey::from_bytes(&ed)))
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
