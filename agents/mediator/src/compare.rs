//! Comparing a re-run with the provider's result under the module's declared comparison: the
//! provider's result fetched (verified against its CID) and the two folders compared.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_module::{Module, Verdict};
use lilypad_runner::FetchFreshError;
use lilypad_store::FetchLimits;
use tracing::{info, warn};

/// Why no ruling can be made from a comparison.
#[derive(Debug, thiserror::Error)]
pub enum ComparisonError {
    /// No gateway to fetch the provider's result from.
    #[error("job {job}: no gateway to fetch the provider's result from (its provider announced no endpoint on chain; pass --gateway)")]
    NoGateway { job: U256 },
    /// The data id posted on chain is not a CID.
    #[error("job {job}: the submitted data id {data_id:?} is not a CID: {source}")]
    BadDataId { job: U256, data_id: String, #[source] source: lilypad_store::StoreError },
    /// The provider's result could not be had (or did not match its CID).
    #[error("job {job}: the provider's result: {source}")]
    Fetch { job: U256, #[source] source: FetchFreshError },
    /// The folders could not be compared.
    #[error("job {job}: comparing with the provider's result: {source}")]
    Compare { job: U256, #[source] source: lilypad_module::CompareError },
    /// The comparison's task panicked.
    #[error("job {job}: the comparison panicked")]
    Panicked { job: U256 },
}

impl ComparisonError {
    /// Whether trying again later may succeed (the provider's gateway was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ComparisonError::Fetch { source, .. } if source.is_retryable())
    }
}

/// Attempts at fetching the provider's result before giving up.
const FETCH_RETRIES: u32 = 5;

/// Fetches the provider's result `theirs` from the first of `sources` that serves it (its
/// provider's announced endpoints, a configured gateway) into `fetched` (verified against its
/// CID, within `limits`: the module's output caps and a deadline per attempt) and compares it
/// with the re-run in `mine` under the module's declared comparison.
pub(crate) async fn compare_declared(
    id: U256,
    module: &Module,
    mine: &Path,
    theirs: &str,
    sources: &[String],
    fetched: &Path,
    limits: &FetchLimits,
) -> Result<Verdict, ComparisonError> {
    if sources.is_empty() {
        return Err(ComparisonError::NoGateway { job: id });
    }
    let cid = lilypad_store::parse_cid(theirs).map_err(|source| ComparisonError::BadDataId { job: id, data_id: theirs.to_string(), source })?;
    let mut attempt = 0;
    loop {
        match lilypad_runner::fetch_fresh_from_any(sources, &cid, fetched, limits).await {
            Ok(_) => break,
            // A server that used the whole deadline is not tried again: it would hold this
            // ruling FETCH_RETRIES times as long.
            Err(e) if e.is_retryable() && !stalled(&e) && attempt < FETCH_RETRIES => {
                attempt += 1;
                warn!(job = %id, %cid, error = %e, attempt, "fetching the provider's result failed; retrying");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
            Err(source) => return Err(ComparisonError::Fetch { job: id, source }),
        }
    }
    let (mine, theirs_dir, cmp) = (mine.to_path_buf(), fetched.to_path_buf(), module.comparison().clone());
    let verdict = tokio::task::spawn_blocking(move || lilypad_module::compare_results(&mine, &theirs_dir, &cmp))
        .await
        .map_err(|_| ComparisonError::Panicked { job: id })?
        .map_err(|source| ComparisonError::Compare { job: id, source })?;
    info!(job = %id, module = %module.reference(), %verdict, "compared under the module's declared comparison");
    Ok(verdict)
}

/// Whether the fetch (or one of its sources) ran out of its deadline.
fn stalled(e: &FetchFreshError) -> bool {
    match e {
        FetchFreshError::Fetch { source: lilypad_store::StoreError::DeadlineExceeded { .. }, .. } => true,
        // one source that held the fetch to its deadline would hold every retry as long
        FetchFreshError::AllSourcesFailed { failures, .. } => failures.iter().any(|(_, e)| stalled(e)),
        _ => false,
    }
}

/// Compares two re-runs of the same job made here (`first`, `second`) under the module's
/// comparison: a difference means the module is not deterministic on this hardware, and no
/// difference from the provider's result can be held against it.
pub(crate) async fn compare_reruns(id: U256, module: &Module, first: &Path, second: &Path) -> Result<Verdict, ComparisonError> {
    let (a, b, cmp) = (first.to_path_buf(), second.to_path_buf(), module.comparison().clone());
    tokio::task::spawn_blocking(move || lilypad_module::compare_results(&a, &b, &cmp))
        .await
        .map_err(|_| ComparisonError::Panicked { job: id })?
        .map_err(|source| ComparisonError::Compare { job: id, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider's outputs gateway that accepts connections and never answers: the fetch of
    /// its result ends at the deadline (per attempt) instead of holding the mediator for ever.
    #[tokio::test]
    async fn a_result_server_that_never_answers_ends_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket); // read nothing, answer nothing
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let module_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules/lilysay");
        let module = Module::load(&module_dir).unwrap();
        let limits = lilypad_runner::result_fetch_limits(&module.limits(), Duration::from_millis(300));
        let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        let start = std::time::Instant::now();
        let gateway = format!("http://{addr}");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            compare_declared(U256::from(1), &module, dir.path(), cid, &[gateway], &dir.path().join("theirs"), &limits),
        )
        .await
        .expect("the fetch must end at its deadline, not hang");
        let err = out.unwrap_err();
        assert!(matches!(err, ComparisonError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("did not finish within"), "says it ran out of time: {err}");
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
        held.abort();
    }
}
