//! The solver: watches jobs and provider offers on chain and records valid matches.
//!
//! Its whole state comes from the market's events ([`MarketView`] and a [`JobBook`], kept by a
//! [`Follower`]); a checkpoint file lets it resume where it stopped. A match it records is checked again by
//! the market (offer and its terms, price cap, collateral, mediators that are none of the job's parties,
//! the job's named solver), so the solver can choose among valid
//! providers but cannot make an invalid match; two solvers racing for a job cost the loser a
//! reverted estimate, nothing more.

#![forbid(unsafe_code)]

pub mod matching;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{run_until, ChainClient, ChainError, Checkpoint, Follower, JobBook, JobChange, MarketEvent, Refusals, Retryable, Roles};
use serde::{Deserialize, Serialize};
use tracing::info;

pub use lilypad_chain::market_view::{self as view, MarketView, MediatorInfo, ProviderInfo, ResourcesView};
pub use matching::{choose, choose_excluding, choose_indexed, choose_indexed_excluding, Choice, NoMatch, OfferIndex, Terms};

/// How the solver runs.
#[derive(Clone, Debug)]
pub struct SolverOptions {
    /// How often to look for new blocks.
    pub poll: Duration,
    /// The most unfinished jobs the solver gives one provider that did not announce how many
    /// it runs at once (one that did gets twice that: [`lilypad_chain::capacity`]).
    pub max_active_per_provider: u32,
    /// Where to keep the checkpoint; `None` rebuilds from the deployment block on each start.
    pub checkpoint: Option<PathBuf>,
}

impl Default for SolverOptions {
    fn default() -> Self {
        Self { poll: Duration::from_millis(250), max_active_per_provider: 4, checkpoint: None }
    }
}

/// Why the solver stopped.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    /// Reading the chain or sending a transaction failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl Retryable for SolverError {
    fn is_retryable(&self) -> bool {
        match self {
            SolverError::Chain(e) => e.is_retryable(),
        }
    }
}

/// What the solver saves next to the follower's book (the checkpoint's JSON object keeps the
/// fields it had: `next_block`, `book`, `view`, `released`).
#[derive(Default, Serialize, Deserialize)]
struct Saved {
    view: MarketView,
    #[serde(default)]
    released: HashMap<U256, Vec<Address>>,
}

/// The longest pause before a match the market refused is tried again.
const MAX_REFUSED_PAUSE: Duration = Duration::from_secs(30);

/// The solver's state and loop.
pub struct Solver {
    client: ChainClient,
    options: SolverOptions,
    follower: Follower,
    /// The market view and the providers that gave each open job back: a job is never matched
    /// again to a provider that released it (the release carries no reason, and a provider's
    /// runner already retries passing failures before it gives a job back). Only the matched
    /// provider can release a job, so a provider can only ever exclude itself: releasing jobs
    /// never stops the solver matching them to others, until their match deadline.
    saved: Saved,
    terms: Terms,
    /// The last reason logged per job, so a job waiting for a provider is logged once per change.
    waiting: HashMap<U256, NoMatch>,
    /// Jobs whose match the market refused: tried again after a growing pause, logged rarely.
    refused: Refusals<U256>,
}

impl Solver {
    /// Loads the checkpoint (if any) and registers the signer as a solver if it is not one yet.
    pub async fn start(client: ChainClient, options: SolverOptions) -> Result<Self, SolverError> {
        let d = client.deployment().clone();
        let (follower, saved) = match options.checkpoint.clone() {
            Some(path) => Follower::resume(client.clone(), Checkpoint::new(path))?,
            None => (Follower::new(client.clone(), d.start_block), Saved::default()),
        };
        let follower = follower.poll_interval(options.poll);
        let me = client.address()?;
        if !client.account(me).await?.roles.contains(Roles::SOLVER) {
            client.send("registerSolver", client.market().registerSolver()).await?;
            info!(solver = %me, "registered as a solver");
        }
        let terms = Terms { solver: me, solver_fee_bps: d.solver_fee_bps, collateral_bps: d.collateral_bps, mediator_fee: d.mediator_fee };
        let refused = Refusals::with_max_pause("matchJob", MAX_REFUSED_PAUSE);
        Ok(Self { client, options, follower, saved, terms, waiting: HashMap::new(), refused })
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), SolverError> {
        info!(solver = %self.client.address()?, from_block = self.follower.next_block(), "solver running");
        run_until("the solver", shutdown, &mut self, |s| Box::pin(s.step())).await
    }

    /// Reads new events (waiting for some), then tries to match every open job.
    pub async fn step(&mut self) -> Result<(), SolverError> {
        let applied = self.follower.next().await?;
        for (log, change) in &applied.entries {
            self.saved.view.apply(log);
            if let MarketEvent::JobReleased(e) = &log.event {
                let gave_back = self.saved.released.entry(e.id).or_default();
                if !gave_back.contains(&e.provider) {
                    gave_back.push(e.provider);
                }
            }
            match change {
                Some(JobChange::Finished { id, .. }) => {
                    self.waiting.remove(id);
                    self.saved.released.remove(id);
                    self.refused.forget(id);
                }
                Some(JobChange::Released(id)) => {
                    self.waiting.remove(id);
                }
                _ => {}
            }
        }
        self.recount_active();
        self.forget_ended_jobs();
        self.match_open_jobs().await?;
        self.follower.save(&self.saved)?;
        Ok(())
    }

    async fn match_open_jobs(&mut self) -> Result<(), SolverError> {
        let open: Vec<_> = self
            .follower
            .book()
            .live()
            .filter(|r| r.state() == JobState::Open && self.refused.may_try(&r.id))
            .cloned()
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let now = self.client.latest_timestamp().await?;
        let mut balances: HashMap<Address, u128> = HashMap::new();
        // offers change only with events: index them once per pass (busy counts are read live)
        let index = OfferIndex::build(&self.saved.view);
        let mut chosen = Vec::new();
        for record in open {
            let choice = loop {
                let known = balances.clone();
                let exclude = self.saved.released.get(&record.id).map(Vec::as_slice).unwrap_or(&[]);
                match choose_indexed_excluding(
                    &record.job,
                    &self.saved.view,
                    &index,
                    &self.terms,
                    now,
                    self.options.max_active_per_provider,
                    |a| known.get(&a).copied(),
                    exclude,
                ) {
                    Ok(c) if !balances.contains_key(&c.provider) => {
                        // learn its free balance, then decide again with it
                        let b = self.balance_of(c.provider).await?;
                        balances.insert(c.provider, b);
                    }
                    other => break other,
                }
            };
            match choice {
                Ok(c) => {
                    // count it now so the next job in this pass sees the provider busier
                    // (recount_active rebuilds the counts from the book on the next step)
                    if let Some(p) = self.saved.view.providers.get_mut(&c.provider) {
                        p.active_jobs += 1;
                    }
                    if let Some(b) = balances.get_mut(&c.provider) {
                        *b = b.saturating_sub(self.terms.collateral(c.price));
                    }
                    chosen.push((record, c));
                }
                // another solver's job: nothing to say about it
                Err(NoMatch::OtherSolver { .. }) => {}
                Err(reason) => {
                    if self.waiting.get(&record.id) != Some(&reason) {
                        info!(job = %record.id, reason = %reason, "cannot match yet");
                        self.waiting.insert(record.id, reason);
                    }
                }
            }
        }
        let market = self.client.market();
        // Several matches at once go in one matchMany: one transaction's intrinsic gas and the
        // cold reads (solver, provider, offer, mediator) are shared. When the market refuses the
        // batch (one of its jobs went stale: another solver matched it, say), each is sent on its
        // own below, so one refusal does not hold up the others.
        if chosen.len() > 1 {
            let items: Vec<lilypad_bindings::Match> = chosen
                .iter()
                .map(|(record, c)| lilypad_bindings::Match { id: record.id, job: record.job.clone(), provider: c.provider, mediator: c.mediator })
                .collect();
            match self.client.send(&format!("matchMany({} jobs)", items.len()), market.matchMany(items)).await {
                Ok(receipt) => {
                    let matched = matched_ids(&receipt);
                    for (record, c) in &chosen {
                        // a job that ended meanwhile is skipped by the market: nothing to record
                        if matched.contains(&record.id) {
                            info!(job = %record.id, provider = %c.provider, price = c.price, mediator = c.mediator, batch = chosen.len(), gas = receipt.gas_used, "matched (matchMany)");
                        }
                        self.waiting.remove(&record.id);
                        self.refused.forget(&record.id);
                    }
                    return Ok(());
                }
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => info!(jobs = chosen.len(), error = %e, "matchMany refused; matching each job on its own"),
            }
        }
        // One match, or a refused batch: each on its own, sent together (consecutive nonces).
        let client = &self.client;
        let sends = chosen.iter().map(|(record, c)| {
            let call = market.matchJob(record.id, record.job.clone(), c.provider, c.mediator);
            async move { client.send(&format!("matchJob(job {})", record.id), call).await }
        });
        let results = futures_util::future::join_all(sends).await;
        let mut retry_later = None;
        for ((record, c), result) in chosen.iter().zip(results) {
            match result {
                Ok(receipt) => {
                    info!(job = %record.id, provider = %c.provider, price = c.price, mediator = c.mediator, gas = receipt.gas_used, "matched");
                    self.waiting.remove(&record.id);
                    self.refused.forget(&record.id);
                }
                Err(e) if e.is_retryable() => {
                    retry_later.get_or_insert(e);
                }
                // logged once, then as its pause grows (a stale job is refused until the events
                // catch up with it)
                Err(e) => self.refused.refused(record.id, &format_args!("match with provider {} refused: {e}", c.provider)),
            }
        }
        if let Some(e) = retry_later {
            return Err(e.into());
        }
        Ok(())
    }

    /// Jobs each provider is running (matched, no result yet), derived from the book (the source
    /// of truth). A job whose result is posted no longer occupies the provider while its
    /// challenge window runs (its collateral stays locked: the balance check covers that), so it
    /// does not count: counting it held every provider to `max_active` jobs per challenge window.
    fn recount_active(&mut self) {
        let view = &mut self.saved.view;
        for p in view.providers.values_mut() {
            p.active_jobs = 0;
        }
        for r in self.follower.book().live() {
            if r.state() == JobState::Matched && r.job.provider != Address::ZERO {
                if let Some(p) = view.providers.get_mut(&r.job.provider) {
                    p.active_jobs += 1;
                }
            }
        }
    }

    /// Drops what is remembered of jobs that are no longer live (finished, or gone from the
    /// book since the checkpoint was written), so the list of providers that gave jobs back
    /// stays as long as the open jobs.
    fn forget_ended_jobs(&mut self) {
        let book = self.follower.book();
        self.saved.released.retain(|id, _| book.get(*id).is_some());
    }

    async fn balance_of(&self, provider: Address) -> Result<u128, SolverError> {
        let b = self.client.market_balance(provider).await?;
        Ok(u128::try_from(b).unwrap_or(u128::MAX))
    }

    /// The live jobs as of the last step.
    pub fn book(&self) -> &JobBook {
        self.follower.book()
    }
}

/// The jobs a matchMany receipt matched (its JobMatched events).
fn matched_ids(receipt: &alloy::rpc::types::TransactionReceipt) -> std::collections::HashSet<U256> {
    use alloy::sol_types::SolEvent;
    receipt.inner.logs().iter().filter_map(|l| lilypad_bindings::LilypadMarket::JobMatched::decode_log(&l.inner).ok()).map(|e| e.data.id).collect()
}
