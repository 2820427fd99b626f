//! The solver: watches jobs and provider offers on chain and records valid matches.
//!
//! Its whole state comes from the market's events ([`MarketView`] and a [`JobBook`]); a
//! checkpoint file lets it resume where it stopped. A match it records is checked again by
//! the market (offer, price cap, collateral, mediators), so the solver can choose among valid
//! providers but cannot make an invalid match; two solvers racing for a job cost the loser a
//! reverted estimate, nothing more.

#![forbid(unsafe_code)]

pub mod matching;
pub mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{BookSnapshot, ChainClient, ChainError, Checkpoint, EventStream, JobBook, JobChange};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use matching::{choose, choose_excluding, choose_indexed, choose_indexed_excluding, Choice, NoMatch, OfferIndex, Terms};
pub use view::MarketView;

/// How the solver runs.
#[derive(Clone, Debug)]
pub struct SolverOptions {
    /// How often to look for new blocks.
    pub poll: Duration,
    /// The most unfinished jobs the solver gives one provider.
    pub max_active_per_provider: u32,
    /// Where to keep the checkpoint; `None` rebuilds from the deployment block on each start.
    pub checkpoint: Option<PathBuf>,
}

impl Default for SolverOptions {
    fn default() -> Self {
        Self { poll: Duration::from_millis(250), max_active_per_provider: 4, checkpoint: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    #[error(transparent)]
    Chain(#[from] ChainError),
}

#[derive(Serialize, Deserialize)]
struct Saved {
    next_block: u64,
    book: BookSnapshot,
    view: MarketView,
    #[serde(default)]
    released: HashMap<U256, Vec<Address>>,
}

/// The solver's state and loop.
pub struct Solver {
    client: ChainClient,
    options: SolverOptions,
    stream: EventStream,
    book: JobBook,
    view: MarketView,
    terms: Terms,
    /// The last reason logged per job, so a job waiting for a provider is logged once per change.
    waiting: HashMap<U256, NoMatch>,
    /// Providers that gave each open job back (not matched to it again).
    released: HashMap<U256, Vec<Address>>,
    checkpoint: Option<Checkpoint>,
}

impl Solver {
    /// Loads the checkpoint (if any) and registers the signer as a solver if it is not one yet.
    pub async fn start(client: ChainClient, options: SolverOptions) -> Result<Self, SolverError> {
        let d = client.deployment().clone();
        let checkpoint = options.checkpoint.clone().map(Checkpoint::new);
        let saved: Option<Saved> = match &checkpoint {
            Some(cp) => cp.load()?,
            None => None,
        };
        let (next_block, book, view, released) =
            match saved.and_then(|s| JobBook::from_snapshot(&s.book).map(|b| (s.next_block, b, s.view, s.released))) {
                Some(restored) => restored,
                None => (d.start_block, JobBook::new(), MarketView::default(), HashMap::new()),
            };
        let me = client.address()?;
        let account = client.read("reading the solver's account", || async {
            client.market().accountOf(me).call().await
        });
        let roles = account.await?.roles;
        if roles & view::ROLE_SOLVER == 0 {
            client.send("registerSolver", client.market().registerSolver()).await?;
            info!(solver = %me, "registered as a solver");
        }
        let stream = EventStream::new(client.clone(), next_block).poll_interval(options.poll);
        let terms = Terms { solver_fee_bps: d.solver_fee_bps, collateral_bps: d.collateral_bps, mediator_fee: d.mediator_fee };
        Ok(Self { client, options, stream, book, view, terms, waiting: HashMap::new(), released, checkpoint })
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), SolverError> {
        tokio::pin!(shutdown);
        info!(solver = %self.client.address()?, from_block = self.stream.next_block(), "solver running");
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                step = self.step() => match step {
                    Ok(()) => {}
                    Err(SolverError::Chain(e)) if e.is_retryable() => {
                        warn!(error = %e, "chain unavailable; will retry");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(e),
                },
            }
        }
    }

    /// Reads new events (waiting for some), then tries to match every open job.
    pub async fn step(&mut self) -> Result<(), SolverError> {
        let batch = self.stream.next_batch().await?;
        for log in &batch.logs {
            self.view.apply(log);
            if let lilypad_chain::MarketEvent::JobReleased(e) = &log.event {
                self.released.entry(e.id).or_default().push(e.provider);
            }
            match self.book.apply(log) {
                Some(JobChange::Finished { id, .. }) => {
                    self.waiting.remove(&id);
                    self.released.remove(&id);
                }
                Some(JobChange::Released(id)) => {
                    self.waiting.remove(&id);
                }
                _ => {}
            }
        }
        self.recount_active();
        self.match_open_jobs().await?;
        if let Some(cp) = &self.checkpoint {
            cp.save(&Saved {
                next_block: self.stream.next_block(),
                book: self.book.snapshot(),
                view: self.view.clone(),
                released: self.released.clone(),
            })?;
        }
        Ok(())
    }

    async fn match_open_jobs(&mut self) -> Result<(), SolverError> {
        let open: Vec<_> = self.book.live().filter(|r| r.state() == JobState::Open).cloned().collect();
        if open.is_empty() {
            return Ok(());
        }
        let now = self.client.latest_timestamp().await?;
        let mut balances: HashMap<Address, u128> = HashMap::new();
        // offers change only with events: index them once per pass (busy counts are read live)
        let index = OfferIndex::build(&self.view);
        let mut chosen = Vec::new();
        for record in open {
            let choice = loop {
                let known = balances.clone();
                let exclude = excluded(self.released.get(&record.id).map(Vec::as_slice).unwrap_or(&[]));
                let exclude = exclude.as_slice();
                match choose_indexed_excluding(
                    &record.job,
                    &self.view,
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
                    if let Some(p) = self.view.providers.get_mut(&c.provider) {
                        p.active_jobs += 1;
                    }
                    if let Some(b) = balances.get_mut(&c.provider) {
                        *b = b.saturating_sub(self.terms.collateral(c.price));
                    }
                    chosen.push((record, c));
                }
                Err(reason) => {
                    if self.waiting.get(&record.id) != Some(&reason) {
                        info!(job = %record.id, reason = %reason, "cannot match yet");
                        self.waiting.insert(record.id, reason);
                    }
                }
            }
        }
        // Send the pass's matches together: their nonces are consecutive and they share blocks.
        let market = self.client.market();
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
                }
                Err(e) if e.is_retryable() => {
                    retry_later.get_or_insert(e);
                }
                Err(e) => warn!(job = %record.id, provider = %c.provider, error = %e, "match refused by the market"),
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
        for p in self.view.providers.values_mut() {
            p.active_jobs = 0;
        }
        for r in self.book.live() {
            if r.state() == JobState::Matched && r.job.provider != Address::ZERO {
                if let Some(p) = self.view.providers.get_mut(&r.job.provider) {
                    p.active_jobs += 1;
                }
            }
        }
    }

    async fn balance_of(&self, provider: Address) -> Result<u128, SolverError> {
        let market = self.client.market();
        let b = self.client.read("reading a provider's balance", || async { market.balanceOf(provider).call().await }).await?;
        Ok(u128::try_from(b).unwrap_or(u128::MAX))
    }

    pub fn book(&self) -> &JobBook {
        &self.book
    }
}

/// Providers not to match a job to again: those that gave it back twice. One release may be a
/// passing failure (the Docker engine hiccuped), so the provider gets a second chance; a second
/// release means it cannot run the job, and matching it again would only go round in circles.
fn excluded(released: &[Address]) -> Vec<Address> {
    let mut out: Vec<Address> = released.iter().filter(|a| released.iter().filter(|b| b == a).count() >= 2).copied().collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_excluded_from_a_job_after_giving_it_back_twice() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        assert!(excluded(&[]).is_empty());
        assert!(excluded(&[a]).is_empty(), "one release: a second chance");
        assert_eq!(excluded(&[a, b, a]), vec![a]);
        assert_eq!(excluded(&[b, a, b, a, a]), vec![a, b]);
    }
}
