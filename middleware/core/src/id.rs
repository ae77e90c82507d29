//! Identifiers: endpoints, groups, registers, fields, pairs and dots.

use core::fmt;
use serde::{Deserialize, Serialize};

/// An endpoint's identity: its static X25519 public key itself, so whoever holds an id can
/// open a handshake to it. Shown as lowercase base32 (RFC 4648 alphabet, no padding).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointId(pub [u8; 32]);

impl EndpointId {
    /// A short tag for the id within one group: its first eight bytes. Frames name origins by
    /// this tag; a group refuses a member whose tag collides with another member's.
    ///
    /// ```
    /// # use spook_core::EndpointId;
    /// let id = EndpointId([7; 32]);
    /// assert_eq!(id.short(), u64::from_le_bytes([7; 8]));
    /// ```
    #[must_use]
    pub fn short(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }

    /// A deterministic id for tests and simulation (not a real public key).
    #[must_use]
    pub fn from_index(i: u32) -> Self {
        let h = blake3::hash(&i.to_le_bytes());
        EndpointId(*h.as_bytes())
    }
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(B32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32(&self.0))
    }
}

/// An endpoint id that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an endpoint id (52 base32 characters a-z, 2-7): {0:?}")]
pub struct ParseIdError(pub String);

impl core::str::FromStr for EndpointId {
    type Err = ParseIdError;

    /// Parse the base32 form that `Display` prints.
    ///
    /// ```
    /// # use spook_core::EndpointId;
    /// let id = EndpointId::from_index(3);
    /// assert_eq!(id.to_string().parse::<EndpointId>(), Ok(id));
    /// assert!("not-an-id".parse::<EndpointId>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError(s.chars().take(60).collect());
        if s.len() != 52 {
            return Err(err());
        }
        let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::with_capacity(32));
        for c in s.bytes() {
            let v = B32.iter().position(|x| *x == c).ok_or_else(err)? as u32;
            acc = (acc << 5) | v;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        // 52 characters carry 260 bits: the last 4 must be zero.
        if acc != 0 || out.len() != 32 {
            return Err(err());
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&out);
        Ok(EndpointId(id))
    }
}

impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointId({})", &base32(&self.0)[..8])
    }
}

/// A group's identity (16 random bytes chosen by its creator).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct GroupId(pub [u8; 16]);

/// A register within a group: a small index defined by the group's schema, stable for the
/// group's life. Entities of a fleet are numbered, so `drone/7` is register 7 of the group.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RegisterId(pub u32);

impl fmt::Display for RegisterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A field of a register: an index into the group schema's field list.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct FieldId(pub u16);

/// A link between two endpoints, independent of which side opened it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct PairId(pub [u8; 32]);

impl PairId {
    /// The pair of `a` and `b`: the same value whichever side computes it.
    ///
    /// ```
    /// # use spook_core::{EndpointId, PairId};
    /// let (a, b) = (EndpointId([1; 32]), EndpointId([2; 32]));
    /// assert_eq!(PairId::of(a, b), PairId::of(b, a));
    /// ```
    #[must_use]
    pub fn of(a: EndpointId, b: EndpointId) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut h = blake3::Hasher::new_derive_key("spook pair id v1");
        h.update(&lo.0);
        h.update(&hi.0);
        PairId(*h.finalize().as_bytes())
    }
}

/// One delta's identity: its origin and the origin's sequence number (from 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Dot {
    /// The endpoint that created the delta.
    pub origin: EndpointId,
    /// Its sequence number at that origin, starting at 1.
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_is_rfc4648_without_padding() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(EndpointId([0; 32]).to_string().len(), 52);
    }
}
