//! A small JSON file that an agent writes atomically after it has handled events up to a block.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use crate::ChainError;

/// A checkpoint file holding a `T`. Writes go to a temporary file that is then renamed over
/// the old one, so a crash (even `kill -9`) leaves either the old or the new checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
}

impl Checkpoint {
    /// A checkpoint at `path` (written only on save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved value, or `None` when there is no checkpoint yet.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, ChainError> {
        match self.read_text()? {
            Some(text) => self.parse(&text).map(Some),
            None => Ok(None),
        }
    }

    /// The checkpoint's text, or `None` when there is no checkpoint yet.
    pub(crate) fn read_text(&self) -> Result<Option<String>, ChainError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(format!("cannot read it: {e}"))),
        }
    }

    /// `text` (this checkpoint's) as a `T`; an error says how to recover.
    pub(crate) fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, ChainError> {
        serde_json::from_str(text).map_err(|e| self.error(format!("corrupt ({e}); delete it to rebuild state from the chain")))
    }

    /// Replaces the checkpoint with `value`, atomically.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), ChainError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(format!("cannot create its folder: {e}")))?;
        }
        let text = serde_json::to_vec(value).map_err(|e| self.error(format!("cannot encode: {e}")))?;
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            // Agent state: this user's only (0600), also when a crash left the tmp file.
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| self.error(format!("cannot write it: {e}")))
    }

    fn error(&self, reason: String) -> ChainError {
        ChainError::Checkpoint { path: self.path.clone(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::new(dir.path().join("sub/agent.json"));
        assert_eq!(cp.load::<u64>().unwrap(), None);
        cp.save(&42u64).unwrap();
        cp.save(&43u64).unwrap();
        assert_eq!(cp.load::<u64>().unwrap(), Some(43));
        assert!(!dir.path().join("sub/agent.tmp").exists());
    }

    #[test]
    fn a_checkpoint_is_readable_by_its_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::new(dir.path().join("agent.json"));
        // a tmp file left by a crash, world-readable
        std::fs::write(dir.path().join("agent.tmp"), "x").unwrap();
        std::fs::set_permissions(dir.path().join("agent.tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();
        cp.save(&1u64).unwrap();
        assert_eq!(std::fs::metadata(cp.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_checkpoint_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::new(dir.path().join("agent.json"));
        std::fs::write(cp.path(), "{not json").unwrap();
        let err = cp.load::<u64>().unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
