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
use lilypad_chain::{ChainClient, ChainError, EventStream, JobBook, JobRecord};
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct AuditorOptions {
    /// Share of results challenged, from 0 to 1.
    pub rate: f64,
    /// Seed of the pick.
    pub seed: u64,
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
    NoFunds { have: U256, need: U256 },
    /// Picked, but its challenge window had passed (or it was no longer challengeable).
    TooLate,
}

pub struct Auditor {
    client: ChainClient,
    me: Address,
    options: AuditorOptions,
    book: JobBook,
    stream: EventStream,
    seen: HashSet<U256>,
}

impl Auditor {
    pub async fn start(client: ChainClient, options: AuditorOptions) -> Result<Self, ChainError> {
        let me = client.address()?;
        let stream = EventStream::new(client.clone(), client.deployment().start_block)
            .poll_interval(options.poll);
        info!(auditor = %me, rate = options.rate, "auditor ready");
        Ok(Self {
            client,
            me,
            options,
            book: JobBook::new(),
            stream,
            seen: HashSet::new(),
        })
    }

    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ChainError> {
        tokio::pin!(shutdown);
        loop {
            let step = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.step() => r,
            };
            match step {
                Ok(_) => {}
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "chain unavailable; will retry");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads new events and audits every result posted since; returns what it did per job.
    pub async fn step(&mut self) -> Result<Vec<(U256, Audit)>, ChainError> {
        let batch = self.stream.next_batch().await?;
        for log in &batch.logs {
            self.book.apply(log);
        }
        let fresh: Vec<JobRecord> = self
            .book
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
        let market = self.client.market();
        let token = self.client.token();
        let me = self.me;
        let free = self
            .client
            .read("reading the auditor's balance", || async {
                market.balanceOf(me).call().await
            })
            .await?;
        if free < need {
            let held = self
                .client
                .read("reading the auditor's tokens", || async {
                    token.balanceOf(me).call().await
                })
                .await?;
            if held < need {
                warn!(job = %id, balance = %free, tokens = %held, deposit = %need, "picked for audit, but the challenge deposit cannot be paid; skipping (fund the auditor)");
                return Ok(Audit::NoFunds {
                    have: free.max(held),
                    need,
                });
            }
            let allowance = self
                .client
                .read("reading the allowance", || async {
                    token.allowance(me, d.market).call().await
                })
                .await?;
            if allowance < need {
                self.client
                    .send("approve", token.approve(d.market, need))
                    .await?;
            }
        }
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
