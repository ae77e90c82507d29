//! Pair formation between expected peers (`Noise_IK_25519_AESGCM_SHA256`) and the pair channel
//! it yields: explicit nonces (snow's stateless transport) and a replay window, so it works
//! over lossy, reordering links.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use snow::{Builder, HandshakeState, StatelessTransportState};
use spook_core::{EndpointId, PairId};

use crate::identity::{AllowList, Identity};
use crate::replay::{ReplayError, ReplayWindow};

/// First byte of a hello (IK message 1).
pub const HELLO: u8 = 0x01;
/// First byte of a reply (IK message 2).
pub const REPLY: u8 = 0x02;
/// First byte of a pair-channel message.
pub const DATA: u8 = 0x03;

const IK: &str = "Noise_IK_25519_AESGCM_SHA256";
const PROLOGUE: &[u8] = b"spook pair v1";
const PAYLOAD_VERSION: u8 = 1;
const TAG: usize = 16;

/// Why the initiator's side of a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A message of another kind arrived (its first byte).
    #[error("unexpected handshake message kind {0:#04x}")]
    UnexpectedMessage(u8),
    /// The message is too short.
    #[error("handshake message truncated")]
    Truncated,
    /// Noise refused the message (it does not decrypt or authenticate).
    #[error("noise: {0}")]
    Noise(String),
    /// The peer's signing key is not bound to this pair by a valid signature.
    #[error("the peer's signing key is not bound to the pair")]
    BadBinding,
    /// The peer presented another signing key than the one pinned for it.
    #[error("the peer's signing key changed")]
    SigningKeyChanged,
    /// The handshake payload is malformed.
    #[error("handshake payload: {0}")]
    Payload(&'static str),
}

/// Why a responder stays silent. The caller sends nothing back and counts it: a scanner
/// learns nothing, not even that a Spook endpoint is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Silent {
    /// Not a hello.
    #[error("not a hello")]
    NotAHello,
    /// Message 1 does not decrypt with this endpoint's key (garbage, truncated, or meant for
    /// another endpoint).
    #[error("undecryptable hello")]
    Undecryptable,
    /// The initiator is not on the allow-list.
    #[error("unknown peer {0}")]
    UnknownPeer(EndpointId),
    /// The hello's timestamp is not newer than the last one accepted from this initiator.
    #[error("replayed hello from {0}")]
    ReplayedHello(EndpointId),
    /// The signing key is not bound to the pair by a valid signature.
    #[error("bad signing-key binding from {0}")]
    BadBinding(EndpointId),
    /// The signing key differs from the one pinned in the allow-list.
    #[error("signing key changed for {0}")]
    SigningKeyChanged(EndpointId),
}

/// A pair channel failure; nothing of the message is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Not a pair-channel message.
    #[error("not a pair-channel message")]
    NotData,
    /// Shorter than a header and tag.
    #[error("pair message truncated")]
    Truncated,
    /// The nonce was seen before.
    #[error("replayed pair message (nonce {0})")]
    Replayed(u64),
    /// The nonce is older than the replay window.
    #[error("pair message too old (nonce {0})")]
    TooOld(u64),
    /// Authentication failed.
    #[error("pair message does not authenticate")]
    Tampered,
    /// The send counter is used up: a new handshake is needed.
    #[error("pair channel exhausted; handshake again")]
    Exhausted,
    /// The plaintext is larger than a Noise message allows.
    #[error("pair message of {0} bytes is too large")]
    TooLarge(usize),
}

fn noise(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

fn params() -> snow::params::NoiseParams {
    IK.parse().unwrap_or_else(|_| unreachable!("the IK pattern name is valid"))
}

/// Signed statement binding an Ed25519 key to a pair.
fn binding(label: &[u8], pair: &PairId, signing: &[u8; 32], ts: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + 72);
    m.extend_from_slice(label);
    m.extend_from_slice(&pair.0);
    m.extend_from_slice(signing);
    m.extend_from_slice(&ts.to_le_bytes());
    m
}

pub(crate) fn verify(signing: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(signing).is_ok_and(|k| k.verify(msg, &Signature::from_bytes(sig)).is_ok())
}

/// payload: version | signing key (32) | timestamp (8) | signature (64)
fn payload(me: &Identity, label: &[u8], pair: &PairId, ts: u64) -> Vec<u8> {
    let signing = me.signing_public();
    let mut p = vec![PAYLOAD_VERSION];
    p.extend_from_slice(&signing);
    p.extend_from_slice(&ts.to_le_bytes());
    p.extend_from_slice(&me.sign(&binding(label, pair, &signing, ts)));
    p
}

fn parse_payload(p: &[u8], label: &[u8], pair: &PairId) -> Result<([u8; 32], u64), HandshakeError> {
    if p.len() != 1 + 32 + 8 + 64 || p[0] != PAYLOAD_VERSION {
        return Err(HandshakeError::Payload("unknown version or length"));
    }
    let mut signing = [0u8; 32];
    signing.copy_from_slice(&p[1..33]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&p[33..41]);
    let ts = u64::from_le_bytes(ts);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&p[41..]);
    if !verify(&signing, &binding(label, pair, &signing, ts), &sig) {
        return Err(HandshakeError::BadBinding);
    }
    Ok((signing, ts))
}

/// A completed handshake.
#[derive(Debug)]
pub struct Established {
    /// The channel to the peer.
    pub channel: PairChannel,
    /// The peer.
    pub peer: EndpointId,
    /// The peer's Ed25519 key, bound to the pair.
    pub peer_signing: [u8; 32],
    /// The pair.
    pub pair: PairId,
}

/// The initiator's half of an IK handshake in progress.
pub struct Initiator {
    hs: HandshakeState,
    me: EndpointId,
    peer: EndpointId,
    expected: Option<[u8; 32]>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Initiator(to {:?})", self.peer)
    }
}

impl Initiator {
    /// Open a handshake to `peer` (whose id, its static key, we know): returns the hello to send.
    ///
    /// ```
    /// # use spook_secure::*;
    /// let (a, b) = (Identity::generate(), Identity::generate());
    /// let mut allow_b = AllowList::default();
    /// allow_b.allow(PeerEntry { id: a.id(), signing: None, name: "a".into() });
    /// let (init, hello) = Initiator::start(&a, b.id(), 1_000).unwrap();
    /// let (mut at_b, reply) = respond(&b, &allow_b, &mut HelloGuard::default(), &hello).unwrap();
    /// let mut at_a = init.finish(&reply).unwrap();
    /// let msg = at_a.channel.seal(b"hello").unwrap();
    /// assert_eq!(at_b.channel.open(&msg).unwrap(), b"hello");
    /// assert_eq!(at_b.peer, a.id());
    /// ```
    pub fn start(me: &Identity, peer: EndpointId, now_ms: u64) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        Self::start_expecting(me, peer, None, now_ms)
    }

    /// As [`Initiator::start`], refusing the reply if the peer's signing key is not `expected`.
    pub fn start_expecting(me: &Identity, peer: EndpointId, expected: Option<[u8; 32]>, now_ms: u64) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        let mut hs = Builder::new(params())
            .local_private_key(me.x_secret())
            .and_then(|b| b.remote_public_key(&peer.0))
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(Builder::build_initiator)
            .map_err(noise)?;
        let pair = PairId::of(me.id(), peer);
        let p = payload(me, b"spook ik hello v1", &pair, now_ms);
        let mut buf = vec![0u8; 1 + 256];
        buf[0] = HELLO;
        let n = hs.write_message(&p, &mut buf[1..]).map_err(noise)?;
        buf.truncate(1 + n);
        Ok((Initiator { hs, me: me.id(), peer, expected }, buf))
    }

    /// The peer this handshake goes to.
    #[must_use]
    pub fn peer(&self) -> EndpointId {
        self.peer
    }

    /// Read the responder's reply: the channel is up.
    pub fn finish(mut self, msg2: &[u8]) -> Result<Established, HandshakeError> {
        let (&kind, body) = msg2.split_first().ok_or(HandshakeError::Truncated)?;
        if kind != REPLY {
            return Err(HandshakeError::UnexpectedMessage(kind));
        }
        let mut p = vec![0u8; body.len()];
        let n = self.hs.read_message(body, &mut p).map_err(noise)?;
        let pair = PairId::of(self.me, self.peer);
        let (signing, _) = parse_payload(&p[..n], b"spook ik reply v1", &pair)?;
        if self.expected.is_some_and(|e| e != signing) {
            return Err(HandshakeError::SigningKeyChanged);
        }
        let channel = PairChannel::new(self.hs, self.peer, true).map_err(noise)?;
        Ok(Established { channel, peer: self.peer, peer_signing: signing, pair })
    }
}

/// The newest hello timestamp accepted from each initiator (WireGuard's defence against a
/// replayed message 1).
#[derive(Debug, Default)]
pub struct HelloGuard {
    last: BTreeMap<EndpointId, u64>,
}

/// The responder's side: read a hello, reply, and get the channel; or stay silent.
pub fn respond(me: &Identity, allow: &AllowList, guard: &mut HelloGuard, msg1: &[u8]) -> Result<(Established, Vec<u8>), Silent> {
    let (&kind, body) = msg1.split_first().ok_or(Silent::NotAHello)?;
    if kind != HELLO {
        return Err(Silent::NotAHello);
    }
    let mut hs = Builder::new(params())
        .local_private_key(me.x_secret())
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(Builder::build_responder)
        .map_err(|_| Silent::Undecryptable)?;
    let mut p = vec![0u8; body.len()];
    let n = hs.read_message(body, &mut p).map_err(|_| Silent::Undecryptable)?;
    let rs = hs.get_remote_static().ok_or(Silent::Undecryptable)?;
    let mut id = [0u8; 32];
    if rs.len() != 32 {
        return Err(Silent::Undecryptable);
    }
    id.copy_from_slice(rs);
    let peer = EndpointId(id);
    let entry = allow.get(&peer).ok_or(Silent::UnknownPeer(peer))?;
    let pair = PairId::of(me.id(), peer);
    let (signing, ts) = parse_payload(&p[..n], b"spook ik hello v1", &pair).map_err(|_| Silent::BadBinding(peer))?;
    if entry.signing.is_some_and(|s| s != signing) {
        return Err(Silent::SigningKeyChanged(peer));
    }
    if guard.last.get(&peer).is_some_and(|last| ts <= *last) {
        return Err(Silent::ReplayedHello(peer));
    }
    let reply_payload = payload(me, b"spook ik reply v1", &pair, 0);
    let mut buf = vec![0u8; 1 + 256];
    buf[0] = REPLY;
    let n = hs.write_message(&reply_payload, &mut buf[1..]).map_err(|_| Silent::Undecryptable)?;
    buf.truncate(1 + n);
    let channel = PairChannel::new(hs, peer, false).map_err(|_| Silent::Undecryptable)?;
    guard.last.insert(peer, ts);
    Ok((Established { channel, peer, peer_signing: signing, pair }, buf))
}

/// An established pair channel. Each message carries its nonce in clear; a replay window of
/// [`ReplayWindow::SIZE`] counters accepts late messages once.
pub struct PairChannel {
    t: StatelessTransportState,
    peer: EndpointId,
    send: u64,
    window: ReplayWindow,
    send_fp: [u8; 8],
    recv_fp: [u8; 8],
}

impl std::fmt::Debug for PairChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairChannel(to {:?}, sent {})", self.peer, self.send)
    }
}

fn fp(hh: &[u8], role: u8) -> [u8; 8] {
    let mut h = blake3::Hasher::new_derive_key("spook pair key fingerprint v1");
    h.update(hh);
    h.update(&[role]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

impl PairChannel {
    fn new(hs: HandshakeState, peer: EndpointId, initiator: bool) -> Result<PairChannel, snow::Error> {
        let hh = hs.get_handshake_hash().to_vec();
        let (i, r) = (fp(&hh, b'i'), fp(&hh, b'r'));
        let (send_fp, recv_fp) = if initiator { (i, r) } else { (r, i) };
        Ok(PairChannel { t: hs.into_stateless_transport_mode()?, peer, send: 0, window: ReplayWindow::default(), send_fp, recv_fp })
    }

    /// The peer.
    #[must_use]
    pub fn peer(&self) -> EndpointId {
        self.peer
    }

    /// Identifies this side's sending key (equal to the peer's [`PairChannel::recv_fingerprint`]).
    #[must_use]
    pub fn send_fingerprint(&self) -> [u8; 8] {
        self.send_fp
    }

    /// Identifies the peer's sending key.
    #[must_use]
    pub fn recv_fingerprint(&self) -> [u8; 8] {
        self.recv_fp
    }

    /// The clear nonce of a pair message.
    #[must_use]
    pub fn nonce_of(msg: &[u8]) -> Option<u64> {
        let b: [u8; 8] = msg.get(1..9)?.try_into().ok()?;
        (msg.first() == Some(&DATA)).then(|| u64::from_le_bytes(b))
    }

    /// Encrypt under the next nonce: `DATA | nonce (u64 LE) | ciphertext + tag`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if plaintext.len() + TAG > 65_535 {
            return Err(ChannelError::TooLarge(plaintext.len()));
        }
        if self.send == u64::MAX {
            return Err(ChannelError::Exhausted);
        }
        let nonce = self.send;
        let mut out = vec![0u8; 9 + plaintext.len() + TAG];
        out[0] = DATA;
        out[1..9].copy_from_slice(&nonce.to_le_bytes());
        let n = self.t.write_message(nonce, plaintext, &mut out[9..]).map_err(|_| ChannelError::Exhausted)?;
        out.truncate(9 + n);
        self.send += 1;
        Ok(out)
    }

    /// Authenticate and decrypt a pair message; each nonce is accepted once.
    pub fn open(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        match msg.first() {
            Some(&DATA) => {}
            Some(_) => return Err(ChannelError::NotData),
            None => return Err(ChannelError::Truncated),
        }
        if msg.len() < 9 + TAG {
            return Err(ChannelError::Truncated);
        }
        let nonce = Self::nonce_of(msg).ok_or(ChannelError::Truncated)?;
        self.window.check(nonce).map_err(|e| match e {
            ReplayError::Replayed(n) => ChannelError::Replayed(n),
            ReplayError::TooOld(n) => ChannelError::TooOld(n),
        })?;
        let mut out = vec![0u8; msg.len() - 9];
        let n = self.t.read_message(nonce, &msg[9..], &mut out).map_err(|_| ChannelError::Tampered)?;
        out.truncate(n);
        self.window.mark(nonce);
        Ok(out)
    }
}
