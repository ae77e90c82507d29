//! The node's side of the domain key ([`DomainKey`], defined in `spook-client`): a 32-byte
//! secret every node (and remote client) of a domain holds, with which zenoh's own user/password authentication admits a session. Spook's layer is end to
//! end encrypted, but a zenoh peer that opened a session would still see every key expression,
//! frame size and timing, and a queryable of its own on `spook/**` would receive the nodes'
//! sync queries. With the key, a peer outside the domain cannot open a session at all.
//!
//! zenoh checks the key when a link is accepted: the connecting side answers the acceptor's
//! 64-bit challenge with an HMAC of the password, so the key never crosses the wire. It
//! authenticates the connecting side only: a node that dials a configured endpoint where an
//! impostor listens is not protected by it (Spook's Noise layer still is). The key travels as
//! a token (`spookdk1…`), handed to other nodes and clients like the node ids: it is a secret.

use std::path::{Path, PathBuf};

pub use spook_client::domain_key::{DomainKey, DomainKeyError};

/// Have `z` present `key` on every link it opens, and admit only links that present
/// one of `accept` (this key and, during a rotation, the one before). zenoh reads the
/// accepted keys from a dictionary file: written at `dictionary` (mode 0600).
///
/// # Errors
/// The dictionary cannot be written, or zenoh refuses the settings.
pub fn configure(key: &DomainKey, z: &mut zenoh::Config, accept: &[&DomainKey], dictionary: &Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(dictionary).map_err(|e| format!("{}: {e}", dictionary.display()))?;
    for k in accept {
        writeln!(f, "{}:{}", k.user(), k.password()).map_err(|e| format!("{}: {e}", dictionary.display()))?;
    }
    let set = |z: &mut zenoh::Config, k: &str, v: String| z.insert_json5(k, &v).map_err(|e| format!("zenoh config {k}: {e}"));
    set(z, "transport/auth/usrpwd/user", format!("{:?}", key.user()))?;
    set(z, "transport/auth/usrpwd/password", format!("{:?}", key.password()))?;
    set(z, "transport/auth/usrpwd/dictionary_file", serde_json::to_string(&dictionary.display().to_string()).map_err(|e| e.to_string())?)?;
    Ok(())
}

/// Where a node keeps the dictionary file zenoh reads: beside its ledger.
#[must_use]
pub fn dictionary_path(ledger: &Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".zenoh-users");
    PathBuf::from(p)
}

/// How long each step of a rotation lasts (ms). A new key spreads over the pair channels in
/// well under this, so neighbours are never more than one step apart.
pub const ROTATION_STEP_MS: u64 = 10_000;

/// The key a node presents and the keys it accepts, through a rotation (sans-IO: time is an
/// argument). A node that learns a newer key goes through three steps, one zenoh session each:
/// accept both and present the old one (so nodes that have not heard of the new key yet still
/// admit us), then present the new one, then, [`ROTATION_STEP_MS`] later, accept only the new
/// one: from then on a holder of the old key (a disallowed peer) is refused. A key replaced
/// during a rotation is accepted for two steps from its replacement, so rotations that overlap
/// never shut a neighbour out.
///
/// ```
/// use spook_node::domain_key::{DomainKey, Rotation, ROTATION_STEP_MS};
/// let (old, new) = (DomainKey::generate(1), DomainKey::generate(2));
/// let mut r = Rotation::new(old.clone());
/// assert!(r.adopt(new.clone(), 1_000));
/// assert_eq!((r.presented(1_000), r.accepted(1_000).len()), (&old, 2));
/// assert_eq!((r.presented(1_000 + ROTATION_STEP_MS), r.accepted(1_000 + ROTATION_STEP_MS).len()), (&new, 2));
/// assert_eq!(r.accepted(1_000 + 2 * ROTATION_STEP_MS), vec![&new]);
/// assert!(!r.adopt(old, 5_000), "an older key is ignored");
/// ```
#[derive(Clone, Debug)]
pub struct Rotation {
    key: DomainKey,
    /// Keys replaced, with when (ms), while they are still accepted.
    replaced: Vec<(DomainKey, u64)>,
    /// What the last zenoh session was opened with: presented key and accepted count.
    opened: Option<(u32, [u8; 36], usize)>,
}

impl Rotation {
    /// No rotation running: present and accept `key`.
    #[must_use]
    pub fn new(key: DomainKey) -> Rotation {
        let opened = Some((key.generation, key.to_bytes(), 1));
        Rotation { key, replaced: Vec::new(), opened }
    }

    /// The current (newest) key.
    #[must_use]
    pub fn key(&self) -> &DomainKey {
        &self.key
    }

    /// The key to present on links this node opens: the one before for the first step after
    /// a replacement, else the newest.
    #[must_use]
    pub fn presented(&self, now_ms: u64) -> &DomainKey {
        match self.replaced.last() {
            Some((old, at)) if now_ms.saturating_sub(*at) < ROTATION_STEP_MS => old,
            _ => &self.key,
        }
    }

    /// The keys links are admitted with: the newest, and each replaced one for two steps.
    #[must_use]
    pub fn accepted(&self, now_ms: u64) -> Vec<&DomainKey> {
        let live = self.replaced.iter().rev().filter(|(_, at)| now_ms.saturating_sub(*at) < 2 * ROTATION_STEP_MS).map(|(k, _)| k);
        std::iter::once(&self.key).chain(live).collect()
    }

    /// Take `new` if it is newer: a higher generation, or the same generation with a larger
    /// secret (two nodes that rotated at once end on the same key). True if taken: the
    /// caller stores it, passes it on and opens a fresh zenoh session.
    pub fn adopt(&mut self, new: DomainKey, now_ms: u64) -> bool {
        if (new.generation, new.to_bytes()) <= (self.key.generation, self.key.to_bytes()) {
            return false;
        }
        self.replaced.retain(|(_, at)| now_ms.saturating_sub(*at) < 2 * ROTATION_STEP_MS);
        self.replaced.push((std::mem::replace(&mut self.key, new), now_ms));
        true
    }

    /// Whether what to present or accept changed since the last session was opened (the
    /// caller then opens a fresh one); marks it opened.
    pub fn session_due(&mut self, now_ms: u64) -> bool {
        self.replaced.retain(|(_, at)| now_ms.saturating_sub(*at) < 2 * ROTATION_STEP_MS);
        let p = self.presented(now_ms);
        let now = Some((p.generation, p.to_bytes(), self.accepted(now_ms).len()));
        let due = now != self.opened;
        self.opened = now;
        due
    }
}
