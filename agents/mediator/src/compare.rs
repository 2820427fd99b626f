//! Comparing a re-run with the provider's result under the module's declared comparison: the
//! provider's result fetched (verified against its CID) and the two folders compared.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_module::{Module, Verdict};
use lilypad_runner::FetchFreshError;
use tracing::{info, warn};

/// Why no ruling can be made from a comparison.
#[derive(Debug, thiserror::Error)]
pub enum ComparisonError {
    /// No gateway to fetch the provider's result from.
    #[error("job {job}: no gateway to fetch the provider's result from (--gateway)")]
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

/// Fetches the provider's result `theirs` from `gateway` into `fetched` (verified against its
/// CID) and compares it with the re-run in `mine` under the module's declared comparison.
pub(crate) async fn compare_declared(
    id: U256,
    module: &Module,
    mine: &Path,
    theirs: &str,
    gateway: Option<&str>,
    fetched: &Path,
) -> Result<Verdict, ComparisonError> {
    let gateway = gateway.ok_or(ComparisonError::NoGateway { job: id })?;
    let cid = lilypad_store::parse_cid(theirs).map_err(|source| ComparisonError::BadDataId { job: id, data_id: theirs.to_string(), source })?;
    let mut attempt = 0;
    loop {
        match lilypad_runner::fetch_fresh(gateway, &cid, fetched).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && attempt < FETCH_RETRIES => {
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
