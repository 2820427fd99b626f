//! TEST ONLY (cargo feature `testing`): a provider that misbehaves, so that challenges,
//! audits, mediators and the supervision of runs can be tested against real misbehaviour on a
//! real network. Nothing here is compiled into release builds; with the feature, nothing runs
//! unless [`crate::TestHooks`] asks (the hidden `--cheat-rate` and `--test-panic-runs` flags of
//! `lilypad resource-provider`).

use std::path::Path;

use alloy::primitives::{B256, U256};
use lilypad_runner::RunError;
use lilypad_store::{Cid, DiskBlockstore};

/// What replaces a tampered result's `stdout`.
pub const TAMPERED_STDOUT: &str = "this result was tampered with by a test-only cheating provider\n";

/// Which jobs get a wrong result: a share `rate` (0 to 1) of them, picked by a hash of `seed`
/// and the job id (the same jobs on every run with the same seed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cheat {
    /// Share of jobs cheated on, from 0 to 1.
    pub rate: f64,
    /// Seed of the pick.
    pub seed: u64,
}

impl Cheat {
    /// Whether job `id` gets a wrong result.
    pub fn applies(&self, id: U256) -> bool {
        lilypad_runner::sample::pick(self.seed, id, self.rate)
    }
}

/// Overwrites the result's `stdout` (the same bytes every time, so a restarted provider makes
/// the same wrong result) and publishes the folder again: the CID and result hash change.
pub(crate) async fn tamper(job: U256, store: &DiskBlockstore, dir: &Path) -> Result<(Cid, B256), RunError> {
    std::fs::write(dir.join("stdout"), TAMPERED_STDOUT)
        .map_err(|source| RunError::Io { job, action: "tampering with", path: dir.to_path_buf(), source })?;
    lilypad_runner::outputs::publish(job, store, dir).await
}
