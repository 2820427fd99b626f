//! The node's identity: an ed25519 key kept in a file readable by its owner only, so that the
//! peer id (which others dial and which is announced on chain) stays the same across restarts.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libp2p::identity::Keypair;
use tracing::info;

use crate::error::P2pError;

/// Loads the identity key in `path` (libp2p's protobuf encoding), or makes a new ed25519 key
/// and writes it there (mode 0600, written atomically) when the file does not exist.
///
/// A key file that others can read is refused: anyone who reads it can answer as this peer.
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, P2pError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path).map_err(|source| P2pError::Identity { path: path.to_path_buf(), reason: source.to_string() })?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(P2pError::Identity {
                    path: path.to_path_buf(),
                    reason: format!("the key file is readable by others (mode {:o}); run chmod 600 on it", mode & 0o777),
                });
            }
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| P2pError::Identity {
                path: path.to_path_buf(),
                reason: format!("not a libp2p private key ({e}); move it away to make a new identity (the peer id changes)"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| P2pError::Identity { path: path.to_path_buf(), reason: e.to_string() })?;
            write_private(path, &bytes).map_err(|source| P2pError::Identity { path: path.to_path_buf(), reason: source.to_string() })?;
            info!(path = %path.display(), peer = %key.public().to_peer_id(), "made a new libp2p identity");
            Ok(key)
        }
        Err(source) => Err(P2pError::Identity { path: path.to_path_buf(), reason: source.to_string() }),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder (mode 0600 from the
/// start), renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-identity-").tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("p2p.key");
        let first = load_or_create_identity(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = load_or_create_identity(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id(), "the same peer id after a restart");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_key_others_can_read_or_one_that_is_not_a_key_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p.key");
        load_or_create_identity(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_identity(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains("p2p.key"), "{err}");

        std::fs::write(&path, b"not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_identity(&path).unwrap_err().to_string();
        assert!(err.contains("not a libp2p private key"), "{err}");
    }
}
