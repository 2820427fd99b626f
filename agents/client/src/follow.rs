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
    let mut stream = EventStream::new(client.clone(), from_block).poll_interval(follow_poll(client.rpc_url()));
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

/// How often to ask the node for new blocks while following a job: every 20 ms from a node on
/// this host (a devnet: as often as its own agents, so the result is seen as soon as it is
/// posted), every 50 ms from any other.
fn follow_poll(rpc_url: &str) -> Duration {
    Duration::from_millis(if is_local(rpc_url) { 20 } else { 50 })
}

/// Whether `rpc_url` names a node on this host (loopback, `localhost`, or an IPC path).
fn is_local(rpc_url: &str) -> bool {
    let Some((_, rest)) = rpc_url.split_once("://") else { return rpc_url.starts_with('/') };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn a_node_on_this_host_is_followed_more_often() {
        for local in ["http://127.0.0.1:8545", "http://localhost:8545/", "ws://[::1]:8546", "http://user:pw@127.0.0.2"] {
            assert_eq!(follow_poll(local), Duration::from_millis(20), "{local}");
        }
        for remote in ["https://rpc.example.org", "http://10.0.0.3:8545", "https://127.0.0.1.example.org"] {
            assert_eq!(follow_poll(remote), Duration::from_millis(50), "{remote}");
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
