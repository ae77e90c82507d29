//! A client's key file: the X25519/Ed25519 identity a remote client proves in its Noise
//! handshake, and the `client` of its transactions' (client, seq) identity.

use std::path::{Path, PathBuf};

use spook_secure::Identity;

/// Why a client key file cannot be used.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("spook-bad-id-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("client.key"), b"not a key").unwrap();
/// let e = spook_client::identity::load_or_create(&dir.join("client.key")).unwrap_err();
/// assert!(matches!(e, spook_client::identity::IdentityError::NotAnIdentity(..)), "{e}");
/// # std::fs::remove_dir_all(dir).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file holds something else.
    #[error("{0}: not a client identity ({1})")]
    NotAnIdentity(PathBuf, String),
    /// Reading or creating it failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The client identity at `path`, created (mode 0600, parent folders too) on first use.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("spook-id-doc-{}", std::process::id()));
/// let path = dir.join("client.key");
/// let a = spook_client::identity::load_or_create(&path).unwrap();
/// let b = spook_client::identity::load_or_create(&path).unwrap();
/// assert_eq!(a.id(), b.id());
/// # std::fs::remove_dir_all(dir).unwrap();
/// ```
///
/// # Errors
/// The file cannot be read or written, or holds no identity.
pub fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
    let io = |e| IdentityError::Io(path.to_path_buf(), e);
    match std::fs::read(path) {
        Ok(b) => Identity::from_bytes(&b).map_err(|e| IdentityError::NotAnIdentity(path.to_path_buf(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let id = Identity::generate();
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
            f.write_all(&id.to_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}
