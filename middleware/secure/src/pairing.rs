//! The pairing ceremony: first contact between two endpoints that know nothing of each other
//! (`Noise_XX_25519_AESGCM_SHA256`), only inside a window an operator opened, ending with a
//! six-digit code both operators compare. It yields allow-list entries; ordinary pairs then
//! form with IK.

use snow::{Builder, HandshakeState};
use spook_core::{EndpointId, PairId};

use crate::identity::{Identity, PeerEntry};
use crate::pair::verify;

/// First byte of pairing message 1.
pub const PAIR1: u8 = 0x11;
/// First byte of pairing message 2.
pub const PAIR2: u8 = 0x12;
/// First byte of pairing message 3.
pub const PAIR3: u8 = 0x13;

const XX: &str = "Noise_XX_25519_AESGCM_SHA256";
const PROLOGUE: &[u8] = b"spook pairing v1";
const MAX_NAME: usize = 64;

/// The time an operator opened for pairing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairingWindow {
    /// Opens (ms).
    pub opens_at_ms: u64,
    /// Closes (ms).
    pub closes_at_ms: u64,
}

impl PairingWindow {
    /// A window from `now_ms` for `duration_ms`.
    #[must_use]
    pub fn open_for(now_ms: u64, duration_ms: u64) -> Self {
        PairingWindow { opens_at_ms: now_ms, closes_at_ms: now_ms.saturating_add(duration_ms) }
    }
    /// Whether `now_ms` is inside.
    #[must_use]
    pub fn contains(&self, now_ms: u64) -> bool {
        (self.opens_at_ms..self.closes_at_ms).contains(&now_ms)
    }
}

/// Why pairing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// Outside the operator's window.
    #[error("the pairing window is closed")]
    WindowClosed,
    /// The codes the operators compared differ: someone is in the middle.
    #[error("the pairing codes differ")]
    ChallengeMismatch,
    /// The handshake has not finished.
    #[error("the pairing handshake is not complete")]
    NotComplete,
    /// A message of another kind arrived.
    #[error("unexpected pairing message kind {0:#04x}")]
    UnexpectedMessage(u8),
    /// Too short.
    #[error("pairing message truncated")]
    Truncated,
    /// Noise refused the message.
    #[error("noise: {0}")]
    Noise(String),
    /// The signing key is not bound by a valid signature.
    #[error("the peer's signing key is not bound to its identity")]
    BadBinding,
    /// Malformed payload.
    #[error("pairing payload: {0}")]
    Payload(&'static str),
}

fn noise(e: snow::Error) -> PairingError {
    PairingError::Noise(e.to_string())
}

fn statement(label: &[u8], ids: &[u8], signing: &[u8; 32], name: &str) -> Vec<u8> {
    let mut m = label.to_vec();
    m.extend_from_slice(ids);
    m.extend_from_slice(signing);
    m.extend_from_slice(name.as_bytes());
    m
}

/// payload: signing key (32) | signature (64) | name
fn payload(me: &Identity, label: &[u8], ids: &[u8], name: &str) -> Vec<u8> {
    let name: String = name.chars().take(MAX_NAME).collect();
    let signing = me.signing_public();
    let mut p = signing.to_vec();
    p.extend_from_slice(&me.sign(&statement(label, ids, &signing, &name)));
    p.extend_from_slice(name.as_bytes());
    p
}

fn parse(p: &[u8], label: &[u8], ids: &[u8]) -> Result<([u8; 32], String), PairingError> {
    if p.len() < 96 || p.len() > 96 + 4 * MAX_NAME {
        return Err(PairingError::Payload("length"));
    }
    let mut signing = [0u8; 32];
    signing.copy_from_slice(&p[..32]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&p[32..96]);
    let name = String::from_utf8(p[96..].to_vec()).map_err(|_| PairingError::Payload("name is not UTF-8"))?;
    if !verify(&signing, &statement(label, ids, &signing, &name), &sig) {
        return Err(PairingError::BadBinding);
    }
    Ok((signing, name))
}

fn remote(hs: &HandshakeState) -> Result<EndpointId, PairingError> {
    let rs = hs.get_remote_static().ok_or(PairingError::Payload("no static key"))?;
    let a: [u8; 32] = rs.try_into().map_err(|_| PairingError::Payload("static key length"))?;
    Ok(EndpointId(a))
}

/// One side of a pairing ceremony.
///
/// ```
/// # use spook_secure::*;
/// let (a, b) = (Identity::generate(), Identity::generate());
/// let w = PairingWindow::open_for(0, 60_000);
/// let (mut pa, m1) = Pairing::initiate(&a, "robot-a", w, 10).unwrap();
/// let (mut pb, m2) = Pairing::respond(&b, "robot-b", w, 11, &m1).unwrap();
/// let m3 = pa.handle(&m2, 12).unwrap().unwrap();
/// assert!(pb.handle(&m3, 13).unwrap().is_none());
/// let (ca, cb) = (pa.challenge().unwrap(), pb.challenge().unwrap());
/// assert_eq!(ca, cb); // the operators compare these
/// let entry_at_a = pa.confirm(&cb, 14).unwrap();
/// assert_eq!(entry_at_a.id, b.id());
/// assert_eq!(entry_at_a.name, "robot-b");
/// ```
pub struct Pairing {
    hs: Option<HandshakeState>,
    initiator: bool,
    window: PairingWindow,
    me: EndpointId,
    ident: Identity,
    name: String,
    peer: Option<PeerEntry>,
    code: Option<String>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pairing(initiator {}, complete {})", self.initiator, self.code.is_some())
    }
}

impl Pairing {
    fn builder(me: &Identity) -> Result<Builder<'_>, PairingError> {
        let p = XX.parse().map_err(noise)?;
        Builder::new(p).local_private_key(me.x_secret()).and_then(|b| b.prologue(PROLOGUE)).map_err(noise)
    }

    /// Start pairing (inside `window`): returns message 1.
    pub fn initiate(me: &Identity, name: &str, window: PairingWindow, now_ms: u64) -> Result<(Pairing, Vec<u8>), PairingError> {
        if !window.contains(now_ms) {
            return Err(PairingError::WindowClosed);
        }
        let mut hs = Self::builder(me)?.build_initiator().map_err(noise)?;
        let mut buf = vec![0u8; 1 + 128];
        buf[0] = PAIR1;
        let n = hs.write_message(&[], &mut buf[1..]).map_err(noise)?;
        buf.truncate(1 + n);
        Ok((Pairing { hs: Some(hs), initiator: true, window, me: me.id(), ident: me.duplicate(), name: name.into(), peer: None, code: None }, buf))
    }

    /// Answer message 1 (inside `window`): returns message 2.
    pub fn respond(me: &Identity, name: &str, window: PairingWindow, now_ms: u64, msg1: &[u8]) -> Result<(Pairing, Vec<u8>), PairingError> {
        if !window.contains(now_ms) {
            return Err(PairingError::WindowClosed);
        }
        let (&kind, body) = msg1.split_first().ok_or(PairingError::Truncated)?;
        if kind != PAIR1 {
            return Err(PairingError::UnexpectedMessage(kind));
        }
        let mut hs = Self::builder(me)?.build_responder().map_err(noise)?;
        let mut scratch = vec![0u8; body.len()];
        hs.read_message(body, &mut scratch).map_err(noise)?;
        let p = payload(me, b"spook xx responder v1", &me.id().0, name);
        let mut buf = vec![0u8; 1 + 512];
        buf[0] = PAIR2;
        let n = hs.write_message(&p, &mut buf[1..]).map_err(noise)?;
        buf.truncate(1 + n);
        let pairing = Pairing { hs: Some(hs), initiator: false, window, me: me.id(), ident: me.duplicate(), name: name.into(), peer: None, code: None };
        Ok((pairing, buf))
    }

    /// The initiator reads message 2 and returns message 3; the responder reads message 3.
    pub fn handle(&mut self, msg: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, PairingError> {
        if !self.window.contains(now_ms) {
            return Err(PairingError::WindowClosed);
        }
        let (&kind, body) = msg.split_first().ok_or(PairingError::Truncated)?;
        let expected = if self.initiator { PAIR2 } else { PAIR3 };
        if kind != expected || self.code.is_some() {
            return Err(PairingError::UnexpectedMessage(kind));
        }
        let mut hs = self.hs.take().ok_or(PairingError::NotComplete)?;
        let mut p = vec![0u8; body.len()];
        let n = match hs.read_message(body, &mut p) {
            Ok(n) => n,
            Err(e) => {
                self.hs = Some(hs);
                return Err(noise(e));
            }
        };
        let peer = remote(&hs)?;
        let out = if self.initiator {
            let (signing, name) = parse(&p[..n], b"spook xx responder v1", &peer.0)?;
            self.peer = Some(PeerEntry { id: peer, signing: Some(signing), name });
            return self.finish_initiator(hs, peer);
        } else {
            let pair = PairId::of(self.me, peer);
            let (signing, name) = parse(&p[..n], b"spook xx initiator v1", &pair.0)?;
            self.peer = Some(PeerEntry { id: peer, signing: Some(signing), name });
            None
        };
        self.code = Some(code(hs.get_handshake_hash()));
        Ok(out)
    }

    fn finish_initiator(&mut self, mut hs: HandshakeState, peer: EndpointId) -> Result<Option<Vec<u8>>, PairingError> {
        // The initiator signs over the pair: both ids are known by now.
        let pair = PairId::of(self.me, peer);
        let p = payload(&self.ident, b"spook xx initiator v1", &pair.0, &self.name);
        let mut buf = vec![0u8; 1 + 512];
        buf[0] = PAIR3;
        let n = hs.write_message(&p, &mut buf[1..]).map_err(noise)?;
        buf.truncate(1 + n);
        self.code = Some(code(hs.get_handshake_hash()));
        Ok(Some(buf))
    }

    /// The six-digit code to compare, once the handshake is complete.
    #[must_use]
    pub fn challenge(&self) -> Option<String> {
        self.code.clone()
    }

    /// The operator confirms the code the other side shows: the entry to add to the
    /// allow-list.
    pub fn confirm(self, code_shown_by_peer: &str, now_ms: u64) -> Result<PeerEntry, PairingError> {
        if !self.window.contains(now_ms) {
            return Err(PairingError::WindowClosed);
        }
        let mine = self.code.ok_or(PairingError::NotComplete)?;
        if mine != code_shown_by_peer.trim() {
            return Err(PairingError::ChallengeMismatch);
        }
        self.peer.ok_or(PairingError::NotComplete)
    }
}

fn code(hh: &[u8]) -> String {
    let h = blake3::derive_key("spook pairing code v1", hh);
    let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % 1_000_000;
    format!("{n:06}")
}
