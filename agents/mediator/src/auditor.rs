//! The auditor: watches results as they are posted and challenges a random share of them
//! within their challenge windows, paying the deposit (mediator fee + bond) from its balance
//! in the market, or else from its tokens. A provider that cannot tell which results are
//! audited must post right ones (or lose its collateral on the ones that are).
//!
//! The pick of each job is `keccak256(seed, job id) < rate` ([`lilypad_runner::sample::pick`]):
//! reproducible with a given seed (for tests), unpredictable to providers when the seed is
//! secret (the default seed is random).

use std::collections::HashSet;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{run_until, ChainClient, ChainError, Follower, JobRecord};
use tracing::{info, warn};

/// How the auditor picks the results it challenges.
#[derive(Clone, Debug)]
pub struct AuditorOptions {
    /// Share of results challenged, from 0 to 1.
    pub rate: f64,
    /// Seed of the pick.
    pub seed: u64,
    /// How often to ask the chain for new blocks when caught up.
    pub poll: Duration,
}

/// What the auditor did with one posted result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audit {
    /// Not picked at this rate.
    Skipped,
    /// Challenged.
    Challenged,
    /// Picked, but the deposit could not be paid.
    NoFunds {
        /// The most it could pay (its market balance or its tokens).
        have: U256,
        /// The challenge deposit.
        need: U256,
    },
    /// Picked, but its challenge window had passed (or it was no longer challengeable).
    TooLate,
}

/// A running auditor: follows the market from its deployment block (no checkpoint: the results
/// it saw are rebuilt from the chain) and challenges the picked ones.
pub struct Auditor {
    client: ChainClient,
    me: Address,
    options: AuditorOptions,
    follower: Follower,
    seen: HashSet<U256>,
}

impl Auditor {
    /// An auditor signing with `client`'s key.
    pub async fn start(client: ChainClient, options: AuditorOptions) -> Result<Self, ChainError> {
        let me = client.address()?;
        let follower = Follower::new(client.clone(), client.deployment().start_block).poll_interval(options.poll);
        info!(auditor = %me, rate = options.rate, "auditor ready");
        Ok(Self { client, me, options, follower, seen: HashSet::new() })
    }

    /// Audits until `shutdown` resolves; an unreachable chain is retried with backoff.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ChainError> {
        run_until("auditing results", shutdown, &mut self, |a| Box::pin(async move { a.step().await.map(drop) })).await
    }

    /// Reads new events and audits every result posted since; returns what it did per job.
    pub async fn step(&mut self) -> Result<Vec<(U256, Audit)>, ChainError> {
        self.follower.next().await?;
        let fresh: Vec<JobRecord> = self
            .follower
            .book()
            .live()
            .filter(|r| {
                r.state() == JobState::Submitted
                    && !self.seen.contains(&r.id)
                    && r.job.provider != self.me
            })
            .cloned()
            .collect();
        let mut done = Vec::new();
        for record in fresh {
            let audit = self.audit(&record).await?;
            self.seen.insert(record.id);
            done.push((record.id, audit));
        }
        Ok(done)
    }

    async fn audit(&self, record: &JobRecord) -> Result<Audit, ChainError> {
        let id = record.id;
        if !lilypad_runner::sample::pick(self.options.seed, id, self.options.rate) {
            return Ok(Audit::Skipped);
        }
        let now = self.client.latest_timestamp().await?;
        if record.deadline().is_none_or(|d| now > d) {
            warn!(job = %id, "picked for audit, but its challenge window has passed");
            return Ok(Audit::TooLate);
        }
        let d = self.client.deployment();
        let need = U256::from(d.challenge_deposit());
        let me = self.me;
        let free = self.client.market_balance(me).await?;
        if free < need {
            let held = self.client.token_balance(me).await?;
            if held < need {
                warn!(job = %id, balance = %free, tokens = %held, deposit = %need, "picked for audit, but the challenge deposit cannot be paid; skipping (fund the auditor)");
                return Ok(Audit::NoFunds { have: free.max(held), need });
            }
            if self.client.market_allowance(me).await? < need {
                self.client.send("approve", self.client.token().approve(d.market, need)).await?;
            }
        }
        let market = self.client.market();
        match self
            .client
            .send(
                &format!("challenge(job {id})"),
                market.challenge(id, record.job.clone()),
            )
            .await
        {
            Ok(_) => {
                info!(job = %id, provider = %record.job.provider, result = record.data_id.as_deref().unwrap_or(""), "audit: challenged; the mediator re-runs it");
                Ok(Audit::Challenged)
            }
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                // someone else challenged or settled it first, or the window closed meanwhile
                warn!(job = %id, error = %e, "audit: the challenge was refused");
                Ok(Audit::TooLate)
            }
        }
    }
}
