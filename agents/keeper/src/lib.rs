//! The keeper: every non-final job state of the market has a deadline after which anyone may
//! end it (`expireJob`, `timeoutResult`, `settle`, `timeoutMediation`). The parties usually do
//! (a provider settles its own results), but a creator who is gone never expires its job and a
//! provider that crashed never settles. The keeper follows the market ([`Follower`]) and calls
//! each exit once its deadline has passed (plus a grace period that lets the parties go first),
//! so no payment or collateral sits past its deadline.
//!
//! Results due together are settled in one `settleMany`; a refused batch (one of its jobs ended
//! by someone else first) is retried job by job. A refusal holds that job back with a growing
//! pause ([`Refusals`]); a job that reaches a final state is forgotten.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_bindings::{JobState, Settlement};
use lilypad_chain::{run_until, ChainClient, ChainError, Checkpoint, Follower, JobChange, JobRecord, NoState, Refusals, Retryable};
use tracing::info;

/// How the keeper runs.
#[derive(Clone, Debug)]
pub struct KeeperOptions {
    /// How often to look for new blocks.
    pub poll: Duration,
    /// Seconds past a deadline before the keeper acts (the parties' turn first).
    pub grace_secs: u64,
    /// The most results settled in one `settleMany`.
    pub max_batch: usize,
    /// Where to keep the checkpoint; `None` rebuilds from the deployment block on each start.
    pub checkpoint: Option<PathBuf>,
}

impl Default for KeeperOptions {
    fn default() -> Self {
        Self { poll: Duration::from_millis(250), grace_secs: 0, max_batch: 50, checkpoint: None }
    }
}

/// What stops the keeper: only the chain (each exit a job can take is tried, and one refused is
/// logged and left for the next pass).
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// Reading the chain or sending a transaction failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl Retryable for KeeperError {
    fn is_retryable(&self) -> bool {
        match self {
            KeeperError::Chain(e) => e.is_retryable(),
        }
    }
}

/// A permissionless exit of the market.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `expireJob`: open, nobody matched it before its match deadline.
    Expire,
    /// `timeoutResult`: matched, no result before its run deadline.
    TimeoutResult,
    /// `settle`: a result whose challenge window has passed.
    Settle,
    /// `timeoutMediation`: challenged, no ruling before the mediation deadline (the result stands).
    TimeoutMediation,
}

impl Exit {
    /// The market function it calls.
    pub fn function(self) -> &'static str {
        match self {
            Exit::Expire => "expireJob",
            Exit::TimeoutResult => "timeoutResult",
            Exit::Settle => "settle",
            Exit::TimeoutMediation => "timeoutMediation",
        }
    }
}

/// The exit `record` is due for at block time `now`, waiting `grace_secs` past its deadline
/// (the market opens each exit once `block.timestamp > deadline`).
pub fn due(record: &JobRecord, now: u64, grace_secs: u64) -> Option<Exit> {
    let deadline = record.deadline()?;
    if now <= deadline.saturating_add(grace_secs) {
        return None;
    }
    match record.state() {
        JobState::Open => Some(Exit::Expire),
        JobState::Matched => Some(Exit::TimeoutResult),
        JobState::Submitted if record.data_id.is_some() => Some(Exit::Settle),
        JobState::Submitted => None,
        JobState::Challenged => Some(Exit::TimeoutMediation),
        JobState::None => None,
    }
}

/// The keeper's state and loop.
pub struct Keeper {
    client: ChainClient,
    options: KeeperOptions,
    follower: Follower,
    /// Jobs whose exit the market refused: tried again after a growing pause.
    refused: Refusals<U256>,
    /// Exits sent so far, by kind (for logs and tests).
    ended: u64,
}

/// The longest pause before an exit the market refused is tried again.
const MAX_REFUSED_PAUSE: Duration = Duration::from_secs(120);

impl Keeper {
    /// Loads the checkpoint (if any). The keeper needs no role: its calls are open to anyone.
    pub async fn start(client: ChainClient, options: KeeperOptions) -> Result<Self, KeeperError> {
        let start_block = client.deployment().start_block;
        let follower = match options.checkpoint.clone() {
            Some(path) => Follower::resume::<NoState>(client.clone(), Checkpoint::new(path))?.0,
            None => Follower::new(client.clone(), start_block),
        };
        let follower = follower.poll_interval(options.poll);
        client.address()?; // a keeper sends transactions: fail now without a key
        Ok(Self { client, options, follower, refused: Refusals::with_max_pause("keeper exit", MAX_REFUSED_PAUSE), ended: 0 })
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), KeeperError> {
        info!(keeper = %self.client.address()?, from_block = self.follower.next_block(), grace_secs = self.options.grace_secs, "keeper running");
        run_until("the keeper", shutdown, &mut self, |k| Box::pin(k.step())).await
    }

    /// Reads new events (waiting for a new block), then calls every exit that is due.
    pub async fn step(&mut self) -> Result<(), KeeperError> {
        let applied = self.follower.next().await?;
        for change in applied.changes() {
            if let JobChange::Finished { id, .. } = change {
                self.refused.forget(id);
            }
        }
        self.call_due().await?;
        self.follower.save(&NoState {})?;
        Ok(())
    }

    /// Exits sent and mined so far.
    pub fn ended(&self) -> u64 {
        self.ended
    }

    async fn call_due(&mut self) -> Result<(), KeeperError> {
        let live: Vec<&JobRecord> = self.follower.book().live().filter(|r| r.deadline().is_some()).collect();
        if live.is_empty() {
            return Ok(());
        }
        let now = self.client.latest_timestamp().await?;
        let grace = self.options.grace_secs;
        let mut settles = Vec::new();
        let mut singles = Vec::new();
        for r in live {
            if !self.refused.may_try(&r.id) {
                continue;
            }
            match due(r, now, grace) {
                Some(Exit::Settle) => settles.push(r.clone()),
                Some(exit) => singles.push((r.clone(), exit)),
                None => {}
            }
        }
        let mut retry_later: Option<ChainError> = None;
        for batch in settles.chunks(self.options.max_batch.max(1)) {
            if let Err(e) = self.settle_batch(batch).await {
                retry_later.get_or_insert(e);
            }
        }
        if let Err(e) = self.send_each(singles).await {
            retry_later.get_or_insert(e);
        }
        match retry_later {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Settles `batch` in one `settleMany` (one job alone: `settle`); a refused batch is sent
    /// again job by job, so one stale job does not hold the others back.
    async fn settle_batch(&mut self, batch: &[JobRecord]) -> Result<(), ChainError> {
        if batch.len() > 1 {
            let items: Vec<Settlement> = batch
                .iter()
                .map(|r| Settlement { id: r.id, job: r.job.clone(), dataId: r.data_id.clone().unwrap_or_default(), resultHash: r.result_hash.unwrap_or_default() })
                .collect();
            let market = self.client.market();
            match self.client.send(&format!("settleMany({} jobs)", batch.len()), market.settleMany(items)).await {
                Ok(receipt) => {
                    self.ended += batch.len() as u64;
                    info!(jobs = batch.len(), gas = receipt.gas_used, "settled results past their challenge windows");
                    batch.iter().for_each(|r| self.refused.forget(&r.id));
                    return Ok(());
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => info!(jobs = batch.len(), error = %e, "settleMany refused; settling job by job"),
            }
        }
        self.send_each(batch.iter().map(|r| (r.clone(), Exit::Settle)).collect()).await
    }

    /// Sends each exit in its own transaction, together (consecutive nonces, shared blocks).
    async fn send_each(&mut self, exits: Vec<(JobRecord, Exit)>) -> Result<(), ChainError> {
        let market = self.client.market();
        let client = &self.client;
        let sends = exits.iter().map(|(r, exit)| {
            let market = &market;
            async move {
                let action = format!("{}(job {})", exit.function(), r.id);
                match exit {
                    Exit::Expire => client.send(&action, market.expireJob(r.id, r.job.clone())).await,
                    Exit::TimeoutResult => client.send(&action, market.timeoutResult(r.id, r.job.clone())).await,
                    Exit::TimeoutMediation => {
                        let (data_id, result_hash) = (r.data_id.clone().unwrap_or_default(), r.result_hash.unwrap_or_default());
                        client.send(&action, market.timeoutMediation(r.id, r.job.clone(), data_id, result_hash)).await
                    }
                    Exit::Settle => {
                        let data_id = r.data_id.clone().unwrap_or_default();
                        client.send(&action, market.settle(r.id, r.job.clone(), data_id, r.result_hash.unwrap_or_default())).await
                    }
                }
            }
        });
        let results = futures_util::future::join_all(sends).await;
        let mut retry_later = None;
        for ((r, exit), result) in exits.iter().zip(results) {
            match result {
                Ok(receipt) => {
                    self.ended += 1;
                    self.refused.forget(&r.id);
                    info!(job = %r.id, exit = exit.function(), payee = %r.job.payee, gas = receipt.gas_used, "ended a job past its deadline");
                }
                Err(e) if e.is_retryable() => {
                    retry_later.get_or_insert(e);
                }
                // someone else ended it first, or the book is behind: held back, logged rarely
                Err(e) => self.refused.refused(r.id, &format_args!("{}: {e}", exit.function())),
            }
        }
        match retry_later {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::aliases::U40;
    use lilypad_bindings::Job;

    fn record(state: JobState, data_id: Option<&str>) -> JobRecord {
        let job = Job {
            state: state as u8,
            createdAt: U40::from(100),
            matchTimeout: 300,
            matchedAt: U40::from(200),
            runTimeout: 60,
            submittedAt: U40::from(250),
            challengeWindow: 30,
            challengedAt: U40::from(260),
            mediationTimeout: 600,
            ..Default::default()
        };
        JobRecord { id: U256::from(1), job, inputs: vec![], data_id: data_id.map(str::to_string), result_hash: None, updated_block: 1 }
    }

    #[test]
    fn each_state_gets_its_own_exit_only_after_its_deadline() {
        let cases = [
            (JobState::Open, 400, Exit::Expire),
            (JobState::Matched, 260, Exit::TimeoutResult),
            (JobState::Submitted, 280, Exit::Settle),
            (JobState::Challenged, 860, Exit::TimeoutMediation),
        ];
        for (state, deadline, exit) in cases {
            let r = record(state, Some("bafyresult"));
            assert_eq!(due(&r, deadline, 0), None, "{state:?}: not at the deadline itself (the market wants block time > deadline)");
            assert_eq!(due(&r, deadline + 1, 0), Some(exit), "{state:?}: due one second after");
            assert_eq!(due(&r, deadline + 5, 5), None, "{state:?}: the grace period is the parties' turn");
            assert_eq!(due(&r, deadline + 6, 5), Some(exit), "{state:?}: then the keeper's");
        }
    }

    #[test]
    fn a_result_without_its_data_id_is_not_settled_and_a_final_job_is_never_due() {
        assert_eq!(due(&record(JobState::Submitted, None), 10_000, 0), None, "settle needs the result's data id");
        assert_eq!(due(&record(JobState::None, None), 10_000, 0), None);
    }
}
