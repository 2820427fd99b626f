//! Result folders (`stdout`, `stderr`, `exitCode`, `outputs/`): published by CID, pinned to an
//! IPFS node, fetched (verified) into a clean folder, and the half-written ones a killed run
//! left removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{B256, U256};
use std::time::Duration;

use lilypad_executor::Limits;
use lilypad_store::{Cid, DiskBlockstore, FetchLimits, KuboClient, StoreError};
use tracing::{info, warn};

use crate::error::RunError;

/// Adds the result folder `dir` of job `job` to `store`; returns its CID and the result hash
/// (the CID's sha2-256 digest), what a provider posts.
pub async fn publish(job: U256, store: &DiskBlockstore, dir: &Path) -> Result<(Cid, B256), RunError> {
    let store = store.clone();
    let dir = dir.to_path_buf();
    let cid = tokio::task::spawn_blocking(move || lilypad_store::add_path(&dir, &store))
        .await
        .map_err(|_| RunError::Panicked { job, task: "publishing the result" })?
        .map_err(|source| RunError::Publish { job, source })?;
    let hash = lilypad_module::spec_hash_of(&cid).ok_or(RunError::NotSha256 { job, cid })?;
    Ok((cid, hash))
}

/// The exit code a failure result records: the job could not be run at all (as a shell's 126
/// for a command that cannot be executed).
pub const CANNOT_RUN_EXIT_CODE: i64 = 126;

/// Writes into `dir` the result of job `job` when the job itself cannot be run ([`RunError::is_job_fault`]:
/// its inputs do not fit its module): an empty `stdout`, `stderr` saying why, `exitCode`
/// [`CANNOT_RUN_EXIT_CODE`], no `outputs/`, and publishes it like a run's result. It depends
/// only on the job and the pinned module, so a mediator's re-run of the job writes the same
/// folder (the same CID): the provider is paid for saying the job cannot run, rather than
/// giving it back to be matched again, and late.
pub async fn publish_failure(job: U256, store: &DiskBlockstore, dir: &Path, reason: &RunError) -> Result<(Cid, B256), RunError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { job, action, path, source }
    };
    if !dir.exists() {
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
        let files = [
            ("stdout", String::new()),
            ("stderr", format!("lilypad: this job cannot run: {reason}\n")),
            ("exitCode", format!("{CANNOT_RUN_EXIT_CODE}\n")),
        ];
        for (name, text) in files {
            let path = tmp.join(name);
            std::fs::write(&path, text).map_err(io("writing", &path))?;
        }
        std::fs::rename(&tmp, dir).map_err(io("moving", dir))?;
    }
    publish(job, store, dir).await
}

/// Also adds the result folder to an IPFS node (same importer settings: it must compute the
/// same `cid`). A node that cannot be reached is logged and passed over (the outputs are still
/// served by the agent); one that computes another CID is an error.
pub async fn pin(job: U256, kubo: &Arc<KuboClient>, dir: &Path, cid: &Cid) -> Result<(), RunError> {
    match kubo.add_path(dir).await {
        Ok(pinned) if &pinned == cid => {
            info!(job = %job, %cid, "pinned to IPFS");
            Ok(())
        }
        Ok(pinned) => Err(RunError::PinMismatch { job, cid: *cid, pinned }),
        Err(e) => {
            warn!(job = %job, error = %e, "pinning to IPFS failed; outputs are still served here");
            Ok(())
        }
    }
}

/// Why [`fetch_fresh`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchFreshError {
    /// Clearing the folder, or creating its parent, failed.
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, #[source] source: std::io::Error },
    /// The fetch itself failed (the gateway, or blocks that do not match the CID).
    #[error("fetching {cid} from {gateway}: {source}")]
    Fetch { cid: Cid, gateway: String, #[source] source: StoreError },
    /// No source to fetch from: no gateway configured and no http(s) endpoint announced on
    /// chain (libp2p multiaddrs are not fetched from here).
    #[error("fetching {cid}: no source (its provider announced no http(s) endpoint on chain and no gateway is configured; pass one)")]
    NoSource { cid: Cid },
    /// Several sources were tried and none served it whole: each one's reason, in the order
    /// tried (one source failing gives its own error, not this).
    #[error("fetching {cid}: none of {} sources served it whole: {}", failures.len(), describe(failures))]
    AllSourcesFailed { cid: Cid, failures: Vec<(String, FetchFreshError)> },
}

fn describe(failures: &[(String, FetchFreshError)]) -> String {
    let reasons: Vec<String> = failures
        .iter()
        .map(|(source, e)| match e {
            // the source is in the line already
            FetchFreshError::Fetch { source: why, .. } => format!("{source}: {why}"),
            other => format!("{source}: {other}"),
        })
        .collect();
    reasons.join("; ")
}

impl FetchFreshError {
    /// Whether trying again later may succeed (the gateway was unreachable).
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchFreshError::Io { .. } | FetchFreshError::NoSource { .. } => false,
            FetchFreshError::Fetch { source, .. } => source.is_retryable(),
            FetchFreshError::AllSourcesFailed { failures, .. } => failures.iter().any(|(_, e)| e.is_retryable()),
        }
    }
}

/// What fetching a result folder of a module with sandbox `limits` may take: its outputs caps
/// (`outputs_bytes` plus stdout and stderr at `log_bytes` each, `outputs_files` plus the four
/// entries of the folder itself), blocks for chunks of at least 4 KiB (the importer's are
/// 256 KiB), and `deadline` for the whole fetch. A result larger than its module lets a run
/// write is not a result of that module: it is refused before it fills the disk.
pub fn result_fetch_limits(limits: &Limits, deadline: Duration) -> FetchLimits {
    let max_bytes = limits.outputs_bytes.saturating_add(limits.log_bytes.saturating_mul(2)).saturating_add(64);
    let max_files = u64::from(limits.outputs_files).saturating_add(4);
    FetchLimits {
        max_bytes,
        max_files,
        max_blocks: (max_bytes / 4096).saturating_add(max_files.saturating_mul(2)).saturating_add(1024),
        max_depth: 128,
        deadline,
    }
}

/// Fetches `cid` from `gateway` into `dest`, verifying every block, after removing whatever
/// `dest` held (a fetch cut short, an older result), under the store's default limits (a
/// user's own fetch). Returns the files written. Services pass their own: [`fetch_fresh_with`].
pub async fn fetch_fresh(gateway: &str, cid: &Cid, dest: &Path) -> Result<Vec<PathBuf>, FetchFreshError> {
    fetch_fresh_with(gateway, cid, dest, &FetchLimits::default()).await
}

/// [`fetch_fresh`] within `limits` (bytes, files, blocks, depth, overall deadline), e.g.
/// [`result_fetch_limits`] for a job's result.
pub async fn fetch_fresh_with(gateway: &str, cid: &Cid, dest: &Path, limits: &FetchLimits) -> Result<Vec<PathBuf>, FetchFreshError> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|source| FetchFreshError::Io { action: "clearing", path: dest.to_path_buf(), source })?;
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|source| FetchFreshError::Io { action: "creating", path: parent.to_path_buf(), source })?;
    }
    lilypad_store::fetch_with(gateway, cid, dest, limits)
        .await
        .map_err(|source| FetchFreshError::Fetch { cid: *cid, gateway: gateway.to_string(), source })
}

/// [`fetch_fresh_with`] from each of `sources` in turn (untrusted URLs are fine: every block
/// is verified against `cid`) until one serves it whole; returns the source that did. When
/// none did: the one source's error, or every source's reason
/// ([`FetchFreshError::AllSourcesFailed`]).
pub async fn fetch_fresh_from_any(sources: &[String], cid: &Cid, dest: &Path, limits: &FetchLimits) -> Result<(String, Vec<PathBuf>), FetchFreshError> {
    let mut failures = Vec::new();
    for source in sources {
        // announced endpoints also hold libp2p multiaddrs (bitswap), which this HTTP fetch
        // cannot use: skipped, not a failure
        if !lilypad_store::is_gateway_url(source) {
            tracing::debug!(%cid, %source, "not an http(s) URL; skipped");
            continue;
        }
        match fetch_fresh_with(source, cid, dest, limits).await {
            Ok(files) => return Ok((source.clone(), files)),
            Err(e @ FetchFreshError::Io { .. }) => return Err(e),
            Err(e) => {
                warn!(%cid, %source, error = %e, "could not fetch from this source; trying the next");
                failures.push((source.clone(), e));
            }
        }
    }
    match failures.len() {
        0 => Err(FetchFreshError::NoSource { cid: *cid }),
        1 => Err(failures.remove(0).1),
        _ => Err(FetchFreshError::AllSourcesFailed { cid: *cid, failures }),
    }
}

/// Removes the unfinished result folders (`<id>.tmp`) a killed run left in `results`: a job
/// that is still live is run again from scratch, and one that ended meanwhile never would be.
/// Call it at start-up, before any run.
pub fn remove_unfinished_results(results: &Path) {
    let Ok(entries) = std::fs::read_dir(results) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tmp" || e == "inputs") {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => info!(path = %path.display(), "removed an unfinished result folder"),
                Err(e) => warn!(path = %path.display(), error = %e, "cannot remove an unfinished result folder"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn when_every_source_fails_each_ones_reason_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let cid = lilypad_store::parse_cid("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").unwrap();
        let dest = dir.path().join("d");
        let limits = FetchLimits { deadline: Duration::from_secs(5), ..Default::default() };
        // nothing listens on these ports (bound, then closed)
        let closed = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (a, b) = (closed(), closed());
        let sources = vec![format!("http://127.0.0.1:{a}"), "/ip4/127.0.0.1/tcp/4001".to_string(), format!("http://127.0.0.1:{b}")];
        let e = fetch_fresh_from_any(&sources, &cid, &dest, &limits).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, FetchFreshError::AllSourcesFailed { ref failures, .. } if failures.len() == 2), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{a}")) && text.contains(&format!("127.0.0.1:{b}")), "both named: {text}");
        assert!(!text.contains("/ip4/"), "a multiaddr is skipped, not a failure: {text}");
        assert!(e.is_retryable(), "an unreachable server may come back");
        // one source: its own error, as before; none usable: no source
        let e = fetch_fresh_from_any(&sources[..1], &cid, &dest, &limits).await.unwrap_err();
        assert!(matches!(e, FetchFreshError::Fetch { .. }), "{e}");
        let e = fetch_fresh_from_any(&sources[1..2], &cid, &dest, &limits).await.unwrap_err();
        assert!(matches!(e, FetchFreshError::NoSource { .. }), "{e}");
    }

    #[tokio::test]
    async fn announced_multiaddrs_are_skipped_not_fetched_from() {
        let dir = tempfile::tempdir().unwrap();
        let cid = lilypad_store::cid_of_path(&{
            let f = dir.path().join("f");
            std::fs::write(&f, b"x").unwrap();
            f
        })
        .unwrap();
        let sources = vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".to_string()];
        let err = fetch_fresh_from_any(&sources, &cid, &dir.path().join("out"), &FetchLimits::default()).await.unwrap_err();
        assert!(matches!(err, FetchFreshError::NoSource { .. }), "a multiaddr is no HTTP source: {err}");
    }

    #[tokio::test]
    async fn a_failure_result_is_the_same_wherever_it_is_made() {
        let job = U256::from(7);
        let source = lilypad_module::parse_inputs(&["no equals sign"]).unwrap_err();
        let reason = RunError::Inputs { job, source };
        assert!(reason.is_job_fault());
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut cids = Vec::new();
        for root in [&a, &b] {
            let store = DiskBlockstore::open(root.path().join("blocks")).unwrap();
            let dir = root.path().join("results").join("7");
            let (cid, hash) = publish_failure(job, &store, &dir, &reason).await.unwrap();
            assert_eq!(std::fs::read_to_string(dir.join("exitCode")).unwrap(), "126\n");
            assert!(std::fs::read_to_string(dir.join("stderr")).unwrap().contains("cannot run"));
            assert_eq!(publish_failure(job, &store, &dir, &reason).await.unwrap(), (cid, hash), "made once, then reused");
            cids.push(cid);
        }
        assert_eq!(cids[0], cids[1], "a provider and a mediator post the same CID");
        assert!(!RunError::NoTimeLeft { job }.is_job_fault(), "a provider's own failure is not the job's");
    }

    #[test]
    fn result_fetch_limits_follow_the_module_caps() {
        let limits = Limits { outputs_bytes: 1 << 20, outputs_files: 10, log_bytes: 1 << 10, ..Limits::default() };
        let f = result_fetch_limits(&limits, Duration::from_secs(30));
        assert_eq!(f.max_bytes, (1 << 20) + 2 * (1 << 10) + 64);
        assert_eq!(f.max_files, 14);
        assert_eq!(f.deadline, Duration::from_secs(30));
        assert!(f.max_blocks >= 256 + 28, "room for every 4 KiB chunk and node: {}", f.max_blocks);
    }

    #[test]
    fn unfinished_result_folders_are_removed_and_finished_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        std::fs::create_dir_all(results.join("7.tmp/outputs")).unwrap();
        std::fs::write(results.join("7.tmp/stdout"), "half").unwrap();
        std::fs::create_dir_all(results.join("8/outputs")).unwrap();
        remove_unfinished_results(&results);
        assert!(!results.join("7.tmp").exists(), "a killed run's folder is removed");
        assert!(results.join("8/outputs").is_dir(), "a finished result is kept");
        remove_unfinished_results(&dir.path().join("missing")); // no folder: nothing to do
    }
}
