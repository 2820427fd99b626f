//! Following a job to its result, and fetching the result.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{ChainClient, EventStream, JobBook, JobChange, Outcome};

use crate::ClientError;

/// What happened to a followed job on the way to its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A provider took it at `price`.
    Matched { provider: Address, price: u128 },
    /// Its provider gave it back; it waits for another.
    Released,
}

/// Follows job `id` (created in `from_block`) until a result is posted: returns its data id
/// (CID). Gives up at `deadline` ([`ClientError::NoResult`], `secs` being the time given) and
/// stops at a final state without a standing result ([`ClientError::Ended`]).
pub async fn follow(
    client: &ChainClient,
    id: U256,
    from_block: u64,
    deadline: Instant,
    secs: u64,
    mut progress: impl FnMut(Progress),
) -> Result<String, ClientError> {
    let mut stream = EventStream::new(client.clone(), from_block).poll_interval(Duration::from_millis(50));
    let mut book = JobBook::new();
    loop {
        if Instant::now() > deadline {
            return Err(ClientError::NoResult { job: id, secs });
        }
        let batch = match tokio::time::timeout(Duration::from_secs(2), stream.next_batch()).await {
            Ok(b) => b?,
            Err(_) => continue,
        };
        let mut result = None;
        for log in &batch.logs {
            match book.apply(log) {
                Some(JobChange::Matched(j)) if j == id => {
                    if let Some(r) = book.get(id) {
                        progress(Progress::Matched { provider: r.job.provider, price: r.job.price });
                    }
                }
                Some(JobChange::Released(j)) if j == id => progress(Progress::Released),
                Some(JobChange::Submitted(j)) if j == id => result = book.get(id).and_then(|r| r.data_id.clone()),
                Some(JobChange::Finished { id: j, outcome, record }) if j == id => match outcome {
                    Outcome::Settled { .. } => result = record.data_id.clone(),
                    outcome => return Err(ClientError::Ended { job: id, outcome }),
                },
                _ => {}
            }
        }
        if let Some(r) = book.get(id) {
            if r.state() == JobState::Submitted && result.is_none() {
                result = r.data_id.clone();
            }
        }
        if let Some(cid) = result {
            return Ok(cid);
        }
    }
}

/// A job's result, fetched and verified.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// The result folder (`stdout`, `stderr`, `exitCode`, `outputs/`).
    pub dir: PathBuf,
    /// Its program's stdout.
    pub stdout: String,
    /// Its program's exit code (-1 when the folder has none).
    pub exit_code: i64,
}

/// Fetches the result `data_id` from `gateway` into `dest` (cleared first), every block
/// verified against the CID.
pub async fn fetch_result(gateway: &str, data_id: &str, dest: &Path) -> Result<JobResult, ClientError> {
    let cid = lilypad_store::parse_cid(data_id).map_err(|source| ClientError::BadDataId { source })?;
    lilypad_runner::fetch_fresh(gateway, &cid, dest).await?;
    let stdout = std::fs::read_to_string(dest.join("stdout")).unwrap_or_default();
    let exit_code = std::fs::read_to_string(dest.join("exitCode")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(-1);
    Ok(JobResult { dir: dest.to_path_buf(), stdout, exit_code })
}
