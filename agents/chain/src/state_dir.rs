//! Where an agent keeps its state: one folder per chain, so that checkpoints, result folders
//! and re-runs of one chain are never read back on another.
//!
//! A chain is known by its id, the market's address and the hash of the deployment block
//! ([`ChainKey`], read once when a [`ChainClient`] connects). Two devnets one after the other
//! share the chain id and (deployed by the same account) the market's address, but not the
//! deployment block's hash, so each gets its own folder:
//!
//! ```text
//! <data-dir>/chains/<chainId>-<market short>-<deploy block hash short>/
//!     chain.json                 the full key, checked on every start
//!     provider/<address>/...     (what each agent keeps)
//! <data-dir>/stale/...           state set aside: an older, unkeyed layout
//! ```
//!
//! [`StateDir::open`] makes (or checks) the chain's folder; [`StateDir::set_aside`] moves state
//! an older version kept outside any chain's folder under `<data-dir>/stale/`, with one log line,
//! rather than reuse it.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::ChainError;

/// Name of the folder holding every chain's state folder.
pub const CHAINS_DIR: &str = "chains";
/// Name of the folder where state that belongs to no known chain is moved.
pub const STALE_DIR: &str = "stale";
/// The file in a chain's state folder that records its full key.
const KEY_FILE: &str = "chain.json";
/// The lock file under `<data_dir>/chains/` that agents sharing a data folder hold while they
/// make, check or move state folders (a solver, provider and mediator started together must
/// not set aside the folder another is making).
const LOCK_FILE: &str = ".lock";

/// What tells one deployment of the market from any other: the chain, the market's address
/// and the hash of the block the deployment file starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainKey {
    /// The chain id the RPC node reports.
    pub chain_id: u64,
    /// The market contract's address.
    pub market: Address,
    /// The block the deployment file starts at.
    pub deploy_block: u64,
    /// That block's hash on this chain (a restarted devnet has another).
    pub deploy_block_hash: B256,
}

impl ChainKey {
    /// The folder name: `<chainId>-<first 8 hex digits of the market>-<first 12 of the hash>`.
    pub fn folder_name(&self) -> String {
        let market = hex::encode(self.market.as_slice());
        let hash = hex::encode(self.deploy_block_hash.as_slice());
        format!("{}-{}-{}", self.chain_id, &market[..8], &hash[..12])
    }

    /// The same key as a name for state kept elsewhere (a database cursor): `<base>@<folder>`.
    pub fn scoped(&self, base: &str) -> String {
        format!("{base}@{}", self.folder_name())
    }
}

impl std::fmt::Display for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chain {} market {} deployed at block {} ({})", self.chain_id, self.market, self.deploy_block, self.deploy_block_hash)
    }
}

/// One chain's state folder under a data folder. See the module's documentation.
#[derive(Clone, Debug)]
pub struct StateDir {
    data_dir: PathBuf,
    root: PathBuf,
    key: ChainKey,
}

impl StateDir {
    /// Makes (or checks) `<data_dir>/chains/<key>/`. A folder of that name whose `chain.json`
    /// records another key (a short-name clash) or does not read is set aside under
    /// `<data_dir>/stale/`, with one log line; folders of other chains are left where they
    /// are, unused (one log line says how many).
    pub fn open(data_dir: &Path, key: &ChainKey) -> Result<Self, ChainError> {
        let chains = data_dir.join(CHAINS_DIR);
        let root = chains.join(key.folder_name());
        let dir = Self { data_dir: data_dir.to_path_buf(), root: root.clone(), key: *key };
        let _lock = dir.lock()?;
        let key_file = root.join(KEY_FILE);
        match std::fs::read_to_string(&key_file) {
            Ok(text) => match serde_json::from_str::<ChainKey>(&text) {
                Ok(saved) if saved == *key => {}
                Ok(saved) => {
                    dir.move_to_stale(&root, &format!("it belongs to {saved}, not {key}"))?;
                }
                Err(e) => {
                    dir.move_to_stale(&root, &format!("its {KEY_FILE} does not read ({e})"))?;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if root.exists() {
                    dir.move_to_stale(&root, &format!("it has no {KEY_FILE}"))?;
                }
            }
            Err(e) => return Err(dir.error(&key_file, format!("cannot read it: {e}"))),
        }
        if !key_file.exists() {
            std::fs::create_dir_all(&root).map_err(|e| dir.error(&root, format!("cannot create it: {e}")))?;
            let text = serde_json::to_vec_pretty(key).map_err(|e| dir.error(&key_file, format!("cannot encode: {e}")))?;
            let tmp = key_file.with_extension(format!("tmp-{}", std::process::id()));
            write_private(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, &key_file))
                .map_err(|e| dir.error(&key_file, format!("cannot write it: {e}")))?;
        }
        let others = dir.other_chains().len();
        if others > 0 {
            info!(chains = %chains.display(), others, "state of other chains left in place, not used");
        }
        info!(state = %root.display(), %key, "state of this chain");
        Ok(dir)
    }

    /// The chain's state folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A path inside the chain's state folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// The chain this folder belongs to.
    pub fn key(&self) -> &ChainKey {
        &self.key
    }

    /// Moves `<data_dir>/<rel>`, state an older version kept outside any chain's folder, under
    /// `<data_dir>/stale/`, with one log line saying where. Nothing when it does not exist.
    /// Returns where it went.
    pub fn set_aside(&self, rel: impl AsRef<Path>) -> Result<Option<PathBuf>, ChainError> {
        let from = self.data_dir.join(rel.as_ref());
        if !from.exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        if !from.exists() {
            return Ok(None);
        }
        self.move_to_stale(&from, "it is not keyed by chain (an older layout)").map(Some)
    }

    /// `rel` inside this chain's folder, for an agent's state that an older version kept at
    /// `<data_dir>/<rel>`: that is set aside first ([`StateDir::set_aside`]).
    pub fn claim(&self, rel: impl AsRef<Path>) -> Result<PathBuf, ChainError> {
        self.set_aside(rel.as_ref())?;
        Ok(self.root.join(rel))
    }

    /// Moves every other chain's state folder under `<data_dir>/stale/` (for a devnet, whose
    /// earlier chains are gone for good), with one log line. Returns how many were moved.
    pub fn set_aside_other_chains(&self) -> Result<usize, ChainError> {
        let _lock = self.lock()?;
        let others = self.other_chains();
        for dir in &others {
            self.move_to_stale(dir, "its chain is not this one")?;
        }
        Ok(others.len())
    }

    /// The folders under `<data_dir>/chains/` other than this chain's.
    fn other_chains(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join(CHAINS_DIR)) else { return Vec::new() };
        let mut out: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir() && *p != self.root).collect();
        out.sort();
        out
    }

    /// Moves `from` (inside the data folder) to `<data_dir>/stale/<its path there>-<n>`.
    fn move_to_stale(&self, from: &Path, why: &str) -> Result<PathBuf, ChainError> {
        let rel = from.strip_prefix(&self.data_dir).unwrap_or(from);
        let name = rel.to_string_lossy().replace(['/', '\\'], "_");
        let stale = self.data_dir.join(STALE_DIR);
        std::fs::create_dir_all(&stale).map_err(|e| self.error(&stale, format!("cannot create it: {e}")))?;
        let mut to = stale.join(&name);
        let mut n = 1;
        while to.exists() {
            n += 1;
            to = stale.join(format!("{name}.{n}"));
        }
        std::fs::rename(from, &to).map_err(|e| self.error(from, format!("cannot move it to {}: {e}", to.display())))?;
        warn!(from = %from.display(), to = %to.display(), "saved state set aside, not reused: {why}");
        Ok(to)
    }

    /// Takes the data folder's lock (released when the returned file is dropped), waiting for
    /// another agent that holds it.
    fn lock(&self) -> Result<std::fs::File, ChainError> {
        let chains = self.data_dir.join(CHAINS_DIR);
        std::fs::create_dir_all(&chains).map_err(|e| self.error(&chains, format!("cannot create it: {e}")))?;
        let path = chains.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.error(&path, format!("cannot open the lock file: {e}")))?;
        file.lock().map_err(|e| self.error(&path, format!("cannot take the lock: {e}")))?;
        Ok(file)
    }

    fn error(&self, path: &Path, reason: String) -> ChainError {
        ChainError::State { path: path.to_path_buf(), reason }
    }
}

/// Writes a new file readable and writable by this user only (0600).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(chain_id: u64, hash_byte: u8) -> ChainKey {
        ChainKey {
            chain_id,
            market: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap(),
            deploy_block: 1,
            deploy_block_hash: B256::repeat_byte(hash_byte),
        }
    }

    #[test]
    fn the_folder_name_holds_chain_market_and_block_hash() {
        assert_eq!(key(31337, 0xab).folder_name(), "31337-e7f1725e-abababababab");
        assert_ne!(key(31337, 0xab).folder_name(), key(31337, 0xac).folder_name());
        assert_eq!(key(1, 0xab).scoped("market"), "market@1-e7f1725e-abababababab");
    }

    #[test]
    fn each_chain_gets_its_own_folder_and_keeps_it() {
        let data = tempfile::tempdir().unwrap();
        let first = StateDir::open(data.path(), &key(31337, 1)).unwrap();
        std::fs::create_dir_all(first.join("provider")).unwrap();
        std::fs::write(first.join("provider/checkpoint.json"), "{}").unwrap();

        let second = StateDir::open(data.path(), &key(31337, 2)).unwrap();
        assert_ne!(first.path(), second.path());
        assert!(!second.join("provider/checkpoint.json").exists(), "a new chain starts empty");
        assert!(first.join("provider/checkpoint.json").exists(), "another chain's state is left");

        let again = StateDir::open(data.path(), &key(31337, 1)).unwrap();
        assert!(again.join("provider/checkpoint.json").exists(), "the same chain finds its state");
        assert_eq!(again.set_aside_other_chains().unwrap(), 1);
        assert!(!second.path().exists());
        assert!(data.path().join(STALE_DIR).read_dir().unwrap().count() == 1);
    }

    #[test]
    fn a_folder_recording_another_key_is_set_aside() {
        let data = tempfile::tempdir().unwrap();
        let mine = key(31337, 1);
        let mut clash = mine;
        clash.deploy_block = 9; // same folder name, different key
        let dir = StateDir::open(data.path(), &clash).unwrap();
        std::fs::write(dir.join("checkpoint.json"), "{}").unwrap();

        let dir = StateDir::open(data.path(), &mine).unwrap();
        assert!(!dir.join("checkpoint.json").exists(), "not reused");
        let saved: ChainKey = serde_json::from_str(&std::fs::read_to_string(dir.join(KEY_FILE)).unwrap()).unwrap();
        assert_eq!(saved, mine);
        let stale: Vec<_> = data.path().join(STALE_DIR).read_dir().unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(stale.len(), 1);
        assert!(stale[0].join("checkpoint.json").exists(), "set aside, not deleted");
    }

    #[test]
    fn unkeyed_state_of_an_older_layout_is_set_aside() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("provider/0xabc/results/1")).unwrap();
        std::fs::create_dir_all(data.path().join("stale/provider_0xabc")).unwrap();
        let dir = StateDir::open(data.path(), &key(31337, 1)).unwrap();
        let to = dir.set_aside("provider/0xabc").unwrap().unwrap();
        assert_eq!(to, data.path().join("stale/provider_0xabc.2"), "an earlier one is not overwritten");
        assert!(to.join("results/1").exists());
        assert!(!data.path().join("provider/0xabc").exists());
        assert_eq!(dir.set_aside("provider/0xabc").unwrap(), None, "nothing left to move");
        std::fs::write(data.path().join("solver.json"), "{}").unwrap();
        assert_eq!(dir.claim("solver.json").unwrap(), dir.join("solver.json"));
        assert!(data.path().join("stale/solver.json").exists());
    }

    #[test]
    fn agents_opening_one_data_folder_at_once_all_get_it_and_nothing_is_set_aside() {
        for _ in 0..20 {
            let data = tempfile::tempdir().unwrap();
            let threads: Vec<_> = (0..6)
                .map(|_| {
                    let path = data.path().to_path_buf();
                    std::thread::spawn(move || StateDir::open(&path, &key(31337, 1)).map(|d| d.path().to_path_buf()))
                })
                .collect();
            for t in threads {
                let opened = t.join().unwrap().expect("every agent opens the shared folder");
                assert!(opened.join(KEY_FILE).exists());
            }
            assert!(!data.path().join(STALE_DIR).exists(), "a folder being made is not taken for a stale one");
        }
    }
}
