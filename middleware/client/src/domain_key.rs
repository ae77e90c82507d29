//! The domain key: a 32-byte secret every node (and remote client) of a domain holds, with
//! which zenoh's own user/password authentication admits a session. Spook's layer is end to
//! end encrypted, but a zenoh peer that opened a session would still see every key expression,
//! frame size and timing, and a queryable of its own on `spook/**` would receive the nodes'
//! sync queries. With the key, a peer outside the domain cannot open a session at all.
//!
//! zenoh checks the key when a link is accepted: the connecting side answers the acceptor's
//! 64-bit challenge with an HMAC of the password, so the key never crosses the wire. It
//! authenticates the connecting side only: a node that dials a configured endpoint where an
//! impostor listens is not protected by it (Spook's Noise layer still is). The key travels as
//! a token (`spookdk1…`), handed to other nodes and clients like the node ids: it is a secret.

/// The prefix of a domain key token.
const TOKEN_PREFIX: &str = "spookdk1";

/// A domain key of one generation (one more at each rotation).
///
/// ```
/// use spook_client::domain_key::DomainKey;
/// let k = DomainKey::generate(1);
/// assert_eq!(DomainKey::from_token(&k.token()).unwrap(), k);
/// assert!(!format!("{k:?}").contains(&k.password()), "Debug hides the secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DomainKey {
    /// The generation: zenoh's user name is `spook-g<generation>`.
    pub generation: u32,
    secret: [u8; 32],
}

impl std::fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DomainKey(generation {}, secret hidden)", self.generation)
    }
}

/// A token or stored key that cannot be read.
///
/// ```
/// use spook_client::domain_key::{DomainKey, DomainKeyError};
/// assert_eq!(DomainKey::from_token("hello"), Err(DomainKeyError::NotAToken));
/// assert_eq!(DomainKey::from_token("spookdk1abc"), Err(DomainKeyError::Damaged));
/// ```
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainKeyError {
    /// It does not start with `spookdk1`.
    #[error("a domain key starts with {TOKEN_PREFIX} (from `spook domain-key` on a node of the domain)")]
    NotAToken,
    /// Wrong length or not hex.
    #[error("the domain key is damaged (expected {TOKEN_PREFIX} and 72 hex digits)")]
    Damaged,
}

impl DomainKey {
    /// A fresh random key of `generation`.
    ///
    /// ```
    /// let k = spook_client::domain_key::DomainKey::generate(3);
    /// assert_eq!((k.generation, k.user()), (3, "spook-g3".to_string()));
    /// ```
    #[must_use]
    pub fn generate(generation: u32) -> DomainKey {
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        DomainKey { generation, secret }
    }

    /// The bytes kept in the ledger and in the token: generation (LE) then secret.
    ///
    /// ```
    /// use spook_client::domain_key::DomainKey;
    /// let k = DomainKey::generate(2);
    /// assert_eq!(DomainKey::from_bytes(&k.to_bytes()).unwrap(), k);
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..4].copy_from_slice(&self.generation.to_le_bytes());
        b[4..].copy_from_slice(&self.secret);
        b
    }

    /// Read [`DomainKey::to_bytes`].
    ///
    /// # Errors
    /// [`DomainKeyError::Damaged`] unless there are exactly 36 bytes.
    ///
    /// ```
    /// assert!(spook_client::domain_key::DomainKey::from_bytes(&[0; 5]).is_err());
    /// ```
    pub fn from_bytes(b: &[u8]) -> Result<DomainKey, DomainKeyError> {
        let b: [u8; 36] = b.try_into().map_err(|_| DomainKeyError::Damaged)?;
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&b[4..]);
        Ok(DomainKey { generation: u32::from_le_bytes([b[0], b[1], b[2], b[3]]), secret })
    }

    /// The token to hand to another node or a client.
    ///
    /// ```
    /// use spook_client::domain_key::DomainKey;
    /// let k = DomainKey::generate(3);
    /// assert_eq!(DomainKey::from_token(&k.token()).unwrap(), k);
    /// assert!(DomainKey::from_token("spookdk1zz").is_err());
    /// ```
    #[must_use]
    pub fn token(&self) -> String {
        format!("{TOKEN_PREFIX}{}", crate::keys::hex(&self.to_bytes()))
    }

    /// Read a token (surrounding white space ignored).
    ///
    /// # Errors
    /// [`DomainKeyError`] when it is not a domain key token.
    ///
    /// ```
    /// use spook_client::domain_key::DomainKey;
    /// let token = DomainKey::generate(1).token();
    /// assert!(token.starts_with("spookdk1"));
    /// assert_eq!(DomainKey::from_token(&format!("  {token}\n")).unwrap().token(), token);
    /// ```
    pub fn from_token(s: &str) -> Result<DomainKey, DomainKeyError> {
        let h = s.trim().strip_prefix(TOKEN_PREFIX).ok_or(DomainKeyError::NotAToken)?;
        if h.len() != 72 || !h.is_ascii() {
            return Err(DomainKeyError::Damaged);
        }
        let bytes = (0..36).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>().map_err(|_| DomainKeyError::Damaged)?;
        DomainKey::from_bytes(&bytes)
    }

    /// The zenoh user name this key presents (`spook-g<generation>`): with [`Self::password`],
    /// what a `zenohd` router of the domain needs in its dictionary file and its
    /// `transport/auth/usrpwd` settings (`spook domain-key --zenoh` prints them).
    ///
    /// ```
    /// assert_eq!(spook_client::domain_key::DomainKey::generate(7).user(), "spook-g7");
    /// ```
    #[must_use]
    pub fn user(&self) -> String {
        format!("spook-g{}", self.generation)
    }

    /// The zenoh password: the secret, as hex. Handle it as the key itself.
    ///
    /// ```
    /// let k = spook_client::domain_key::DomainKey::generate(1);
    /// assert_eq!(k.password().len(), 64);
    /// ```
    #[must_use]
    pub fn password(&self) -> String {
        crate::keys::hex(&self.secret)
    }

    /// Have a client's `z` present this key (a client accepts no links).
    ///
    /// # Errors
    /// zenoh refuses the settings.
    ///
    /// ```
    /// let mut z = zenoh::Config::default();
    /// spook_client::domain_key::DomainKey::generate(1).configure_client(&mut z).unwrap();
    /// ```
    pub fn configure_client(&self, z: &mut zenoh::Config) -> Result<(), String> {
        let set = |z: &mut zenoh::Config, k: &str, v: String| z.insert_json5(k, &v).map_err(|e| format!("zenoh config {k}: {e}"));
        set(z, "transport/auth/usrpwd/user", format!("{:?}", self.user()))?;
        set(z, "transport/auth/usrpwd/password", format!("{:?}", self.password()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_damage_is_refused() {
        let k = DomainKey::generate(7);
        let t = k.token();
        assert_eq!(DomainKey::from_token(&format!("  {t}\n")).unwrap(), k);
        assert_eq!(DomainKey::from_token("spook1abc"), Err(DomainKeyError::NotAToken));
        assert_eq!(DomainKey::from_token(&t[..t.len() - 2]), Err(DomainKeyError::Damaged));
        let mut bad = t.clone();
        bad.replace_range(10..11, "g");
        assert_eq!(DomainKey::from_token(&bad), Err(DomainKeyError::Damaged));
        assert_ne!(DomainKey::generate(7).token(), t, "each key is fresh");
        assert!(!format!("{k:?}").contains(&k.password()), "Debug hides the secret");
    }
}
