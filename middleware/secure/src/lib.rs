//! `spook-secure`: Spook's sans-IO cryptography. It owns endpoint identities (a static X25519
//! key, whose public half is the `EndpointId`, and an Ed25519 signing key), the allow-list,
//! pair formation with `Noise_IK_25519_AESGCM_SHA256` (a responder stays silent towards
//! anything unexpected), the `Noise_XX` pairing ceremony for first contact, pair channels with
//! explicit nonces and a replay window, and the group data plane: per-sender AES-256-GCM keys
//! and one Ed25519 signature per frame.
//!
//! It must not depend on I/O, tokio, zenoh, a clock or storage: messages come in and go out as
//! bytes, time (`now_ms`) is an argument, and keys are persisted by the caller (the ledger).
//! Start reading at [`Initiator`] and [`GroupKeys`].

mod group;
mod identity;
mod pair;
mod pairing;
mod replay;

pub use group::{routing_tag, GroupCrypto, GroupKeys, Header, KeyAnnouncement, KeyError, OpenError, Opened};
pub use identity::{AllowList, Identity, IdentityError, PeerEntry, NONCE_POOL};
pub use pair::{respond, ChannelError, Established, HandshakeError, HelloGuard, Initiator, PairChannel, Silent, DATA, HELLO, REPLY};
pub use pairing::{Pairing, PairingError, PairingWindow, PAIR1, PAIR2, PAIR3};
pub use replay::{ReplayError, ReplayWindow};
