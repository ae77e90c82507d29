//! The group data plane: each member encrypts its frames once under its own sender key
//! (AES-256-GCM), handed to the other members over pair channels, and signs them (Ed25519) so
//! one member cannot forge another's deltas. Routers carry ciphertext only: in clear is the
//! 16-byte header (sender-key id, salt, counter). All three are drawn at random for each key
//! (the counter starts at a random point), so the clear header tells neither when a node
//! started nor how many frames it sent before, and repeats nothing across restarts. The key's
//! epoch, which orders a member's keys (a stale key is refused), travels only inside the
//! announcement, over the encrypted pair channel.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{CryptoRng, RngCore};
use spook_core::{EndpointId, GroupId};

use crate::identity::Identity;
use crate::replay::{ReplayError, ReplayWindow};

const TAG: usize = 16;
const SIG: usize = 64;

/// A frame that was not accepted; nothing of it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header and tag.
    #[error("group frame truncated")]
    Truncated,
    /// No member's key has this id (not a member, a pruned one, or its key has not arrived).
    #[error("unknown sender key {0:#010x}")]
    UnknownKey(u32),
    /// The header's salt is not the key's.
    #[error("wrong key salt: the key's is {expected:#010x}, the frame says {got:#010x}")]
    WrongSalt {
        /// The key's salt.
        expected: u32,
        /// The frame's.
        got: u32,
    },
    /// The key was replaced and its grace period is over.
    #[error("sender key {0:#010x} expired")]
    KeyExpired(u32),
    /// The counter was seen before.
    #[error("replayed group frame (counter {0})")]
    Replayed(u64),
    /// The counter is older than the replay window.
    #[error("group frame too old (counter {0})")]
    TooOld(u64),
    /// Authentication failed.
    #[error("group frame does not authenticate")]
    Tampered,
    /// The origin's signature does not verify: another member forged it.
    #[error("group frame signature does not verify (forged origin)")]
    BadSignature,
    /// An unsigned frame in a group that requires signatures.
    #[error("unsigned group frame in a group that requires signatures")]
    Unsigned,
    /// The own counter is used up: rotate the key.
    #[error("sender key exhausted; rotate")]
    Exhausted,
}

/// A key announcement that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A member may only announce its own key.
    #[error("a member may only announce its own key")]
    NotOwnKey,
    /// Another group's key.
    #[error("the key is for another group")]
    WrongGroup,
    /// Malformed.
    #[error("malformed key announcement: {0}")]
    Malformed(&'static str),
    /// Another member's key has this id.
    #[error("key id {0:#010x} is taken by another member")]
    KeyIdCollision(u32),
    /// The announcement's epoch is older than a key already installed for its origin (a
    /// delayed or replayed announcement): installing it would retire the current key.
    #[error("the announced key's epoch is older than the origin's current key")]
    StaleEpoch,
}

/// A member's sender key, as handed to the other members (inside a pair channel only).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyAnnouncement {
    /// The group.
    pub group: GroupId,
    /// The member that sends under it.
    pub origin: EndpointId,
    /// The key's id (in clear in every frame; random).
    pub key_id: u32,
    /// Its epoch: orders the origin's keys (never in clear).
    pub epoch: u32,
    /// The nonce prefix under this key (in clear in every frame; random).
    pub salt: u32,
    /// The AES-256 key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for KeyAnnouncement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyAnnouncement(origin {:?}, key {:#010x}, epoch {})", self.origin, self.key_id, self.epoch)
    }
}

const ANNOUNCEMENT: u8 = b'K';

impl KeyAnnouncement {
    /// `K | group (16) | origin (32) | key id (4) | epoch (4) | key (32) | salt (4)`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(ANNOUNCEMENT);
        v.extend_from_slice(&self.group.0);
        v.extend_from_slice(&self.origin.0);
        v.extend_from_slice(&self.key_id.to_le_bytes());
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.extend_from_slice(&self.key);
        v.extend_from_slice(&self.salt.to_le_bytes());
        v
    }

    /// Encoded length.
    pub const LEN: usize = 93;

    /// Decode [`KeyAnnouncement::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, KeyError> {
        if b.len() != Self::LEN {
            return Err(KeyError::Malformed("length"));
        }
        if b[0] != ANNOUNCEMENT {
            return Err(KeyError::Malformed("not a key announcement"));
        }
        let field = |r: std::ops::Range<usize>| &b[r];
        let (mut group, mut origin, mut key) = ([0u8; 16], [0u8; 32], [0u8; 32]);
        group.copy_from_slice(field(1..17));
        origin.copy_from_slice(field(17..49));
        key.copy_from_slice(field(57..89));
        Ok(KeyAnnouncement {
            group: GroupId(group),
            origin: EndpointId(origin),
            key_id: u32::from_le_bytes([b[49], b[50], b[51], b[52]]),
            epoch: u32::from_le_bytes([b[53], b[54], b[55], b[56]]),
            key,
            salt: u32::from_le_bytes([b[89], b[90], b[91], b[92]]),
        })
    }
}

/// Per-group choices.
#[derive(Clone, Copy, Debug)]
pub struct GroupCrypto {
    /// Members trust each other's origin claims: no signatures (constrained radio).
    pub trusted_members: bool,
    /// How long a replaced key of a member is still accepted (ms).
    pub grace_ms: u64,
}

impl Default for GroupCrypto {
    fn default() -> Self {
        GroupCrypto { trusted_members: false, grace_ms: 10_000 }
    }
}

/// The clear header of a group frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Sender-key id.
    pub key_id: u32,
    /// The key's nonce prefix.
    pub salt: u32,
    /// Counter under that key (from a random start).
    pub counter: u64,
}

impl Header {
    /// Bytes in clear.
    pub const LEN: usize = 16;

    /// Parse the clear header.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<Header> {
        let h = b.get(..Self::LEN)?;
        Some(Header {
            key_id: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            salt: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            counter: u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]),
        })
    }

    fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.key_id.to_le_bytes());
        b[4..8].copy_from_slice(&self.salt.to_le_bytes());
        b[8..].copy_from_slice(&self.counter.to_le_bytes());
        b
    }

    fn nonce(&self) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt.to_le_bytes());
        n[4..].copy_from_slice(&self.counter.to_le_bytes());
        n
    }
}

/// An accepted frame.
#[derive(Debug)]
pub struct Opened {
    /// The member that sent it (authenticated by its signature unless the group trusts its
    /// members).
    pub origin: EndpointId,
    /// The core frame.
    pub frame: Vec<u8>,
    /// Its header.
    pub header: Header,
    /// Fingerprint of the key it was sealed under.
    pub key_fingerprint: [u8; 8],
}

struct OwnKey {
    key_id: u32,
    epoch: u32,
    salt: u32,
    key: [u8; 32],
    cipher: Aes256Gcm,
    next: u64,
}

impl Drop for OwnKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

struct PeerKey {
    origin: EndpointId,
    epoch: u32,
    salt: u32,
    key: [u8; 32],
    fingerprint: [u8; 8],
    cipher: Aes256Gcm,
    /// Parsed once here: decompressing the point costs about as much as a tenth of a verify.
    /// `None` for bytes that are no key: every signature then fails.
    signing: Option<ed25519_dalek::VerifyingKey>,
    window: ReplayWindow,
    /// When a newer key of the same origin arrived; accepted until `retired_at + grace_ms`.
    retired_at: Option<u64>,
}

impl Drop for PeerKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// What the origin signs: a label, the group, the clear header and the frame. The label keeps
/// frame signatures apart from the handshake bindings made with the same Ed25519 key; the group
/// keeps a frame from being replayed into another group.
fn signed_message(group: &GroupId, header: &[u8], frame: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(FRAME_LABEL.len() + 16 + header.len() + frame.len());
    m.extend_from_slice(FRAME_LABEL);
    m.extend_from_slice(&group.0);
    m.extend_from_slice(header);
    m.extend_from_slice(frame);
    m
}

const FRAME_LABEL: &[u8] = b"spook frame v1";

fn fingerprint(key: &[u8; 32]) -> [u8; 8] {
    let h = blake3::derive_key("spook sender key fingerprint v1", key);
    let mut f = [0u8; 8];
    f.copy_from_slice(&h[..8]);
    f
}

/// A member's keys for one group: its own sender key and the other members'.
///
/// ```
/// # use spook_secure::*;
/// # use spook_core::GroupId;
/// let (a, b) = (Identity::generate(), Identity::generate());
/// let g = GroupId([7; 16]);
/// let mut ka = GroupKeys::new(g, a.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
/// let mut kb = GroupKeys::new(g, b.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
/// // a's announcement reaches b over their pair channel:
/// kb.install(a.id(), ka.announcement(), a.signing_public(), 0).unwrap();
/// let wire = ka.seal(&a, b"core frame").unwrap();
/// let got = kb.open(&wire, 1).unwrap();
/// assert_eq!((got.origin, got.frame.as_slice()), (a.id(), &b"core frame"[..]));
/// assert!(kb.open(&wire, 2).is_err()); // a replay
/// assert!(ka.signs()); // unless the group is `trusted_members`
/// ```
pub struct GroupKeys {
    group: GroupId,
    me: EndpointId,
    cfg: GroupCrypto,
    own: OwnKey,
    peers: BTreeMap<u32, PeerKey>,
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupKeys(group {:?}, own key {:#010x}, {} member keys)", self.group, self.own.key_id, self.peers.len())
    }
}

fn own_key(epoch: u32, rng: &mut (impl RngCore + CryptoRng)) -> OwnKey {
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    // The counter starts at a random point below 2^32: frame counts stay private and the
    // space left (over 2^63) is never used up.
    OwnKey { key_id: rng.next_u32(), epoch, salt: rng.next_u32(), cipher: Aes256Gcm::new(&key.into()), key, next: u64::from(rng.next_u32()) }
}

impl GroupKeys {
    /// Keys for `group` with a fresh own sender key of `epoch`. Never built from storage: a
    /// restart always starts a new key, so no (key, nonce) pair is ever used twice.
    pub fn new(group: GroupId, me: EndpointId, epoch: u32, cfg: GroupCrypto, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        GroupKeys { group, me, cfg, own: own_key(epoch, rng), peers: BTreeMap::new() }
    }

    /// Whether this node signs the frames it seals (false in a `trusted-members` group).
    #[must_use]
    pub fn signs(&self) -> bool {
        !self.cfg.trusted_members
    }

    /// The own key, to hand to the other members over pair channels.
    #[must_use]
    pub fn announcement(&self) -> KeyAnnouncement {
        KeyAnnouncement { group: self.group, origin: self.me, key_id: self.own.key_id, epoch: self.own.epoch, salt: self.own.salt, key: self.own.key }
    }

    /// Fingerprint of the own current key.
    #[must_use]
    pub fn own_fingerprint(&self) -> [u8; 8] {
        fingerprint(&self.own.key)
    }

    /// Install a member's key received over the pair channel with `from` (the authenticated
    /// pair peer), with the origin's Ed25519 key from the allow-list. A key of the same or a
    /// newer epoch from the same member (a rotation, or a restart) retires its older keys,
    /// which stay valid for [`GroupCrypto::grace_ms`] after `now_ms`; an older epoch is
    /// refused ([`KeyError::StaleEpoch`]). Re-installing the same key is a no-op.
    pub fn install(&mut self, from: EndpointId, a: KeyAnnouncement, signing: [u8; 32], now_ms: u64) -> Result<(), KeyError> {
        if a.origin != from {
            return Err(KeyError::NotOwnKey);
        }
        if a.group != self.group {
            return Err(KeyError::WrongGroup);
        }
        if let Some(k) = self.peers.get(&a.key_id) {
            if k.origin == a.origin && k.key == a.key && k.epoch == a.epoch && k.salt == a.salt {
                return Ok(());
            }
            return Err(KeyError::KeyIdCollision(a.key_id));
        }
        if a.key_id == self.own.key_id {
            return Err(KeyError::KeyIdCollision(a.key_id));
        }
        let current = self.peers.values().filter(|k| k.origin == a.origin).map(|k| k.epoch).max();
        if current.is_some_and(|e| a.epoch < e) {
            return Err(KeyError::StaleEpoch);
        }
        // Forget keys whose grace period is over, then retire the origin's current ones.
        let grace = self.cfg.grace_ms;
        self.peers.retain(|_, k| k.retired_at.is_none_or(|t| now_ms <= t.saturating_add(grace)));
        for k in self.peers.values_mut().filter(|k| k.origin == a.origin) {
            k.retired_at.get_or_insert(now_ms);
        }
        let key = PeerKey {
            origin: a.origin,
            epoch: a.epoch,
            salt: a.salt,
            cipher: Aes256Gcm::new(&a.key.into()),
            fingerprint: fingerprint(&a.key),
            key: a.key,
            signing: ed25519_dalek::VerifyingKey::from_bytes(&signing).ok(),
            window: ReplayWindow::default(),
            retired_at: None,
        };
        self.peers.insert(a.key_id, key);
        Ok(())
    }

    /// Encrypt a core frame under the next counter, signed unless the group trusts its
    /// members. Retransmissions are sealed again under a new counter.
    pub fn seal(&mut self, me: &Identity, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        if self.own.next == u64::MAX {
            return Err(OpenError::Exhausted);
        }
        let h = Header { key_id: self.own.key_id, salt: self.own.salt, counter: self.own.next };
        self.own.next += 1;
        let hb = h.bytes();
        let mut pt = Vec::with_capacity(1 + frame.len() + SIG);
        if self.cfg.trusted_members {
            pt.push(0);
            pt.extend_from_slice(frame);
        } else {
            pt.push(1);
            pt.extend_from_slice(frame);
            pt.extend_from_slice(&me.sign(&signed_message(&self.group, &hb, frame)));
        }
        let ct = self.own.cipher.encrypt(Nonce::from_slice(&h.nonce()), Payload { msg: &pt, aad: &hb }).map_err(|_| OpenError::Exhausted)?;
        let mut out = hb.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Authenticate, decrypt and verify a frame. In order: the length, the key id
    /// ([`OpenError::UnknownKey`]; a retired key is forgotten at the next install after its
    /// grace period), the salt, the grace period ([`OpenError::KeyExpired`]), the replay
    /// window (before decrypting), AES-GCM over header and body ([`OpenError::Tampered`]), then
    /// the origin's signature; the counter is marked seen only once all of that passed.
    pub fn open(&mut self, bytes: &[u8], now_ms: u64) -> Result<Opened, OpenError> {
        if bytes.len() < Header::LEN + TAG + 1 {
            return Err(OpenError::Truncated);
        }
        let h = Header::parse(bytes).ok_or(OpenError::Truncated)?;
        let grace = self.cfg.grace_ms;
        let trusted = self.cfg.trusted_members;
        let group = self.group;
        let k = self.peers.get_mut(&h.key_id).ok_or(OpenError::UnknownKey(h.key_id))?;
        if k.salt != h.salt {
            return Err(OpenError::WrongSalt { expected: k.salt, got: h.salt });
        }
        if k.retired_at.is_some_and(|t| now_ms > t.saturating_add(grace)) {
            return Err(OpenError::KeyExpired(h.key_id));
        }
        k.window.check(h.counter).map_err(|e| match e {
            ReplayError::Replayed(c) => OpenError::Replayed(c),
            ReplayError::TooOld(c) => OpenError::TooOld(c),
        })?;
        let hb = &bytes[..Header::LEN];
        let pt = k.cipher.decrypt(Nonce::from_slice(&h.nonce()), Payload { msg: &bytes[Header::LEN..], aad: hb }).map_err(|_| OpenError::Tampered)?;
        let (&flag, rest) = pt.split_first().ok_or(OpenError::Tampered)?;
        let frame = match flag {
            1 => {
                if rest.len() < SIG {
                    return Err(OpenError::Tampered);
                }
                let (frame, sig) = rest.split_at(rest.len() - SIG);
                let sig: [u8; 64] = sig.try_into().map_err(|_| OpenError::Tampered)?;
                let msg = signed_message(&group, hb, frame);
                if k.signing.is_none_or(|key| ed25519_dalek::Verifier::verify(&key, &msg, &ed25519_dalek::Signature::from_bytes(&sig)).is_err()) {
                    return Err(OpenError::BadSignature);
                }
                frame.to_vec()
            }
            0 if trusted => rest.to_vec(),
            0 => return Err(OpenError::Unsigned),
            _ => return Err(OpenError::Tampered),
        };
        k.window.mark(h.counter);
        Ok(Opened { origin: k.origin, frame, header: h, key_fingerprint: k.fingerprint })
    }

    /// A new own key for `epoch` (after a member is pruned): hand its announcement to the
    /// remaining members only.
    pub fn rotate(&mut self, epoch: u32, rng: &mut (impl RngCore + CryptoRng)) -> KeyAnnouncement {
        self.own = own_key(epoch, rng);
        self.announcement()
    }

    /// Forget every key of a pruned member.
    pub fn remove_member(&mut self, m: &EndpointId) {
        self.peers.retain(|_, k| k.origin != *m);
    }
}

/// The opaque routing tag of a group in a domain (a keyed hash: routers learn nothing).
#[must_use]
pub fn routing_tag(domain_key: &[u8; 32], group: &GroupId) -> [u8; 8] {
    let mut t = [0u8; 8];
    t.copy_from_slice(&blake3::keyed_hash(domain_key, &group.0).as_bytes()[..8]);
    t
}
