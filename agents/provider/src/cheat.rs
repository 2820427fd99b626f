//! TEST ONLY: a provider that posts wrong results, so that challenges, audits and mediators
//! can be tested against a real cheater on a real network. Nothing here runs unless
//! [`crate::ProviderOptions::cheat`] is set (the hidden `--cheat-rate` flag of
//! `lilypad resource-provider`); the honest path only asks [`Cheat::applies`].

use std::path::Path;

use alloy::primitives::{keccak256, B256, U256};
use lilypad_store::{Cid, DiskBlockstore};

/// What replaces a tampered result's `stdout`.
pub const TAMPERED_STDOUT: &str =
    "this result was tampered with by a test-only cheating provider\n";

/// Which jobs get a wrong result: a share `rate` (0 to 1) of them, picked by a hash of `seed`
/// and the job id (the same jobs on every run with the same seed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cheat {
    pub rate: f64,
    pub seed: u64,
}

impl Cheat {
    /// Whether job `id` gets a wrong result.
    pub fn applies(&self, id: U256) -> bool {
        pick(self.seed, id, self.rate)
    }
}

/// A seeded pick at `rate` for job `id`: keccak256(seed, id) read as a fraction of 2^64.
/// Shared with the auditor, which picks the jobs it challenges the same way.
pub fn pick(seed: u64, id: U256, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    let mut bytes = [0u8; 40];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8..].copy_from_slice(&id.to_be_bytes::<32>());
    let h = keccak256(bytes);
    let x = u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]));
    (x as f64) < rate * (u64::MAX as f64)
}

/// Overwrites the result's `stdout` (the same bytes every time, so a restarted provider makes
/// the same wrong result) and publishes the folder again: the CID and result hash change.
pub(crate) async fn tamper(store: &DiskBlockstore, dir: &Path) -> Result<(Cid, B256), String> {
    std::fs::write(dir.join("stdout"), TAMPERED_STDOUT)
        .map_err(|e| format!("tampering with {}: {e}", dir.display()))?;
    let store = store.clone();
    let dir = dir.to_path_buf();
    let cid = tokio::task::spawn_blocking(move || lilypad_store::add_path(&dir, &store))
        .await
        .map_err(|e| format!("publishing the tampered result panicked: {e}"))?
        .map_err(|e| format!("publishing the tampered result failed: {e}"))?;
    let hash = lilypad_module::spec_hash_of(&cid).ok_or("the result's CID is not sha2-256")?;
    Ok((cid, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_zero_and_one_pick_none_and_all() {
        for id in 1..200u64 {
            assert!(!pick(7, U256::from(id), 0.0));
            assert!(pick(7, U256::from(id), 1.0));
        }
    }

    #[test]
    fn a_rate_picks_about_that_share_and_the_same_jobs_for_the_same_seed() {
        let picked = |seed| {
            (1..=10_000u64)
                .filter(|&id| pick(seed, U256::from(id), 0.1))
                .collect::<Vec<_>>()
        };
        let a = picked(1);
        assert!(
            (800..1200).contains(&a.len()),
            "{} of 10000 at rate 0.1",
            a.len()
        );
        assert_eq!(a, picked(1), "seeded: the same jobs again");
        assert_ne!(a, picked(2), "another seed, other jobs");
    }
}
