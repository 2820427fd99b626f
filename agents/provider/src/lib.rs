//! The resource provider: registers its offers, runs the jobs matched to it in a Docker
//! sandbox, publishes each job's result folder by CID (`stdout`, `stderr`, `exitCode`,
//! `outputs/`), serves it over HTTP (`/ipfs/<cid>`), posts the CID on chain and settles its
//! jobs once their challenge windows have passed.
//!
//! Its state comes from the chain: after a crash it finds its matched jobs in the market's
//! events again, reuses a result it already made (the result folder is kept by job id), and
//! the market refuses anything done twice.
//!
//! Getting, running and publishing a job is [`lilypad_runner`]'s; this crate holds the
//! options ([`ProviderOptions`]), registration ([`Provider::start`]), the main loop and the
//! supervised per-job runs (a run that panics is reported and its job given back).

#![forbid(unsafe_code)]

#[cfg(feature = "testing")]
pub mod cheat;
mod runs;
mod start;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use lilypad_bindings::{JobState, Settlement};
use lilypad_chain::{run_until, ChainClient, ChainError, Follower, JobRecord, NoState, Refusals, Retryable};
use lilypad_runner::{Engine, EngineError, JobTasks, ModuleResolver, RunError, TaskFailure};
use lilypad_store::{Cid, DiskBlockstore};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

/// How the provider runs.
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    /// Module folders this provider runs, each offered at `price`.
    pub modules: Vec<PathBuf>,
    /// Price asked per job (token units), for every module.
    pub price: u128,
    /// Free balance to keep deposited in the market as collateral.
    pub collateral: u128,
    /// Mediators accepted (bit i = mediator i).
    pub mediators: u64,
    /// Results, blocks and the like.
    pub data_dir: PathBuf,
    /// Where the outputs server listens: it serves this provider's results (`/ipfs/<cid>`).
    pub outputs_listen: SocketAddr,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Let modules that ask for a network have one.
    pub allow_network: bool,
    /// How often to ask the chain for new blocks when caught up.
    pub poll: Duration,
    /// A Kubo RPC API (e.g. http://127.0.0.1:5001): outputs are also added and pinned there.
    pub ipfs_api: Option<String>,
    /// Also offer any published module that fits these resources (an offer for module id 0).
    pub offer_any: Option<lilypad_bindings::Resources>,
    /// Run modules published from git repositories (github.com/org/repo:tag): fetched at the
    /// tag's commit and checked against the hash pinned on chain. Their build commands run on
    /// this host: allow only if you trust who can publish.
    pub allow_git_modules: bool,
    /// Which git modules: repository prefixes (`github.com/lilypad-tech`) and publishers
    /// allowed; a git module outside it is refused (an empty policy refuses every one).
    pub git_policy: lilypad_module::GitPolicy,
    /// Run published modules it has no folder for: the folder is fetched from IPFS by the CID
    /// the chain pins, and the image from the image archive pinned with it (never built here).
    pub fetch_modules: bool,
    /// IPFS gateways to fetch modules and image archives from (e.g. http://127.0.0.1:8080).
    pub ipfs_gateways: Vec<String>,
    /// TEST ONLY misbehaviour; empty (the default) in production, and in release builds.
    pub testing: TestHooks,
}

/// TEST ONLY ways for a provider to misbehave: with the `testing` feature, a share of jobs
/// answered with wrong results ([`cheat::Cheat`]) and runs that panic. Without it (release
/// builds), an empty struct.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestHooks {
    /// Post a wrong result for these jobs.
    #[cfg(feature = "testing")]
    pub cheat: Option<cheat::Cheat>,
    /// Make every run panic (its job must be given back).
    #[cfg(feature = "testing")]
    pub panic_runs: bool,
}

impl TestHooks {
    /// Whether this build has the hooks (the `testing` feature): without it, [`TestHooks::new`]
    /// gives hooks that do nothing, and the command line offers no flags for them.
    pub const AVAILABLE: bool = cfg!(feature = "testing");

    /// Hooks that post wrong results for a share of jobs (`cheat`: rate from 0 to 1, and the
    /// seed of the pick) and make runs panic. Without the `testing` feature: none.
    #[cfg(feature = "testing")]
    pub fn new(cheat: Option<(f64, u64)>, panic_runs: bool) -> Self {
        Self { cheat: cheat.map(|(rate, seed)| cheat::Cheat { rate, seed }), panic_runs }
    }

    /// Hooks that post wrong results for a share of jobs (`cheat`: rate from 0 to 1, and the
    /// seed of the pick) and make runs panic. Without the `testing` feature: none.
    #[cfg(not(feature = "testing"))]
    pub fn new(_cheat: Option<(f64, u64)>, _panic_runs: bool) -> Self {
        Self {}
    }
}

/// Why the provider could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Reading the chain or sending a transaction failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A module folder of the options does not load.
    #[error("module {}: {source}", path.display())]
    Module {
        /// The folder.
        path: PathBuf,
        /// Why it does not load.
        #[source]
        source: lilypad_module::LoadError,
    },
    /// A module folder of the options is not published on this chain.
    #[error("module {reference} is not published on chain: publish it first (lilypad module publish)")]
    NotPublished {
        /// The module's `name:version`.
        reference: String,
    },
    /// A module does not match what the chain pins.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The engine (Docker) is unavailable or refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The content store (results, outputs server) failed.
    #[error("content store: {0}")]
    Store(#[from] lilypad_store::StoreError),
    /// Too few tokens to deposit the collateral the options ask for.
    #[error("not enough tokens for collateral: balance {balance}, need {needed} more (fund this account)")]
    NoFunds {
        /// The tokens the account holds.
        balance: u128,
        /// The tokens still to deposit.
        needed: u128,
    },
}

impl Retryable for ProviderError {
    /// Only a chain that could not be reached: anything else stops the provider.
    fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Chain(e) if e.is_retryable())
    }
}

/// What a finished run reports back to the main loop.
struct Finished {
    id: U256,
    result: Result<(Cid, B256), RunError>,
    /// The module this run found or made ready on the engine.
    ready: Option<B256>,
}

/// A running resource provider.
pub struct Provider {
    client: ChainClient,
    options: ProviderOptions,
    me: Address,
    engine: Arc<dyn Engine>,
    store: DiskBlockstore,
    resolver: Arc<ModuleResolver>,
    /// Modules announced on chain as ready here (`announceModules`).
    announced: HashSet<B256>,
    /// The market's events, the live jobs rebuilt from them, and the checkpoint.
    follower: Follower,
    running: HashSet<U256>,
    submitted: HashSet<U256>,
    /// Settlements the market refused, tried again with backoff.
    settle_refusals: Refusals<U256>,
    settle_tick: tokio::time::Interval,
    outputs_server: SocketAddr,
    /// The runs in progress, one task per job, all joined.
    runs: JobTasks<Finished>,
    slots: Arc<Semaphore>,
    kubo: Option<Arc<lilypad_store::KuboClient>>,
}

impl Provider {
    /// The address the outputs server listens on (`http://<it>/ipfs/<cid>`).
    pub fn outputs_server(&self) -> SocketAddr {
        self.outputs_server
    }

    /// Runs until `shutdown` resolves; then cancels the runs in progress and waits for them
    /// (their containers are removed; a restarted provider runs their jobs again).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ProviderError> {
        info!(provider = %self.me, modules = self.resolver.local().len(), "resource provider running");
        self.warn_test_hooks();
        let result = async {
            self.announce_present().await?;
            run_until("running the provider", shutdown, &mut self, |p| Box::pin(p.step())).await
        }
        .await;
        self.runs.shutdown().await;
        result
    }

    /// One turn of the main loop: new events (runs started for new jobs), finished runs
    /// (results posted) or the settlement tick, whichever comes first.
    async fn step(&mut self) -> Result<(), ProviderError> {
        tokio::select! {
            applied = self.follower.next() => {
                applied?;
                self.start_new_jobs();
                // Saved after the runs are started: a crash before this re-reads the batch
                // and finds the same jobs (a result already made is reused).
                self.follower.save(&NoState {})?;
                Ok(())
            }
            Some(done) = self.runs.join_next() => {
                // post every run that has finished by now together: they share blocks
                let mut batch = vec![finished(done)];
                while let Some(more) = self.runs.try_join_next() {
                    batch.push(finished(more));
                }
                self.finish(batch).await
            }
            _ = self.settle_tick.tick() => self.settle_due().await,
        }
    }

    #[cfg(feature = "testing")]
    fn warn_test_hooks(&self) {
        if let Some(c) = self.options.testing.cheat {
            warn!(rate = c.rate, seed = c.seed, "TEST-ONLY CHEATING PROVIDER: wrong results will be posted for this share of jobs; its collateral will be slashed when challenged");
        }
        if self.options.testing.panic_runs {
            warn!("TEST-ONLY PROVIDER: every run panics; its jobs are given back");
        }
    }

    #[cfg(not(feature = "testing"))]
    fn warn_test_hooks(&self) {}

    /// Announces on chain the local modules the engine has ready already.
    async fn announce_present(&mut self) -> Result<(), ProviderError> {
        let mut present = Vec::new();
        for (id, module) in self.resolver.local() {
            if self.engine.is_ready(module).await? {
                present.push(*id);
            }
        }
        self.announce(present).await
    }

    /// `announceModules(ids, true)` for those not announced yet. A hint: failures are logged.
    async fn announce(&mut self, ids: Vec<B256>) -> Result<(), ProviderError> {
        let ids: Vec<B256> = ids.into_iter().filter(|id| !self.announced.contains(id)).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let market = self.client.market();
        match self.client.send("announceModules", market.announceModules(ids.clone(), true)).await {
            Ok(_) => {
                info!(modules = ids.len(), "announced modules ready here");
                self.announced.extend(ids);
            }
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => warn!(error = %e, "announcing ready modules failed"),
        }
        Ok(())
    }

    /// Posts finished runs' results (or gives jobs back that could not run), their
    /// transactions sent together.
    async fn finish(&mut self, batch: Vec<Finished>) -> Result<(), ProviderError> {
        let mut ready = Vec::new();
        for done in &batch {
            self.running.remove(&done.id);
            ready.extend(done.ready);
        }
        if !ready.is_empty() {
            ready.sort();
            ready.dedup();
            self.announce(ready).await?;
        }
        // the events may have moved on (a timeout, another transition): use the current record
        self.catch_up().await?;
        let market = self.client.market();
        let client = &self.client;
        let mut sends = Vec::new();
        for done in batch {
            let Some(record) = self.follower.book().get(done.id).cloned() else { continue };
            if record.state() != JobState::Matched || record.job.provider != self.me {
                continue;
            }
            let market = &market;
            sends.push(async move {
                match done.result {
                    Ok((cid, result_hash)) => {
                        let call = market.submitResult(done.id, record.job.clone(), cid.to_string(), result_hash);
                        match client.send(&format!("submitResult(job {})", done.id), call).await {
                            Ok(r) => {
                                info!(job = %done.id, %cid, gas = r.gas_used, "result submitted");
                                Ok(Some(done.id))
                            }
                            Err(e) if e.is_retryable() => Err(e),
                            Err(e) => {
                                error!(job = %done.id, error = %e, "the market refused the result");
                                Ok(None)
                            }
                        }
                    }
                    Err(reason) => {
                        warn!(job = %done.id, %reason, retryable = reason.is_retryable(), "cannot run the job; giving it back");
                        let call = market.releaseJob(done.id, record.job.clone());
                        if let Err(e) = client.send(&format!("releaseJob(job {})", done.id), call).await {
                            error!(job = %done.id, error = %e, "could not give the job back");
                        }
                        Ok(None)
                    }
                }
            });
        }
        let mut retry_later = None;
        for result in futures_util::future::join_all(sends).await {
            match result {
                Ok(Some(id)) => {
                    self.submitted.insert(id);
                }
                Ok(None) => {}
                Err(e) => {
                    retry_later.get_or_insert(e);
                }
            }
        }
        if let Some(e) = retry_later {
            return Err(e.into());
        }
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), ProviderError> {
        self.follower.catch_up().await?;
        self.start_new_jobs();
        self.follower.save(&NoState {})?;
        Ok(())
    }

    /// Settles, in one transaction, this provider's jobs whose challenge windows have passed.
    /// A batch the market refuses (another party settled one first, a `StaleJob`) is logged
    /// once with its reason and tried again only after a growing pause.
    async fn settle_due(&mut self) -> Result<(), ProviderError> {
        let book = self.follower.book();
        // jobs no longer live (settled, challenged away) need no more tries
        self.settle_refusals.retain(|id| book.get(*id).is_some());
        let due: Vec<JobRecord> = book
            .live()
            .filter(|r| r.state() == JobState::Submitted && r.job.provider == self.me && r.data_id.is_some())
            .filter(|r| self.settle_refusals.may_try(&r.id))
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let now = self.client.latest_timestamp().await?;
        let items: Vec<Settlement> = due
            .into_iter()
            .filter(|r| r.deadline().is_some_and(|d| now > d))
            .map(|r| Settlement {
                id: r.id,
                job: r.job.clone(),
                dataId: r.data_id.clone().unwrap_or_default(),
                resultHash: r.result_hash.unwrap_or_default(),
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<U256> = items.iter().map(|s| s.id).collect();
        let market = self.client.market();
        match self.client.send("settleMany", market.settleMany(items)).await {
            Ok(r) => {
                info!(jobs = ids.len(), gas = r.gas_used, "settled");
                for id in &ids {
                    self.settle_refusals.forget(id);
                }
            }
            Err(e) if e.is_retryable() => return Err(e.into()),
            // another party settled one of them first: the next events drop it from the list;
            // until then the batch waits out a growing pause instead of being sent every tick
            Err(e) => {
                for id in ids {
                    self.settle_refusals.refused(id, &e);
                }
            }
        }
        Ok(())
    }
}

/// A joined run as the main loop handles it: a run that panicked (or was cancelled) could not
/// run its job, which is given back.
fn finished((job, joined): (U256, Result<Finished, TaskFailure>)) -> Finished {
    joined.unwrap_or_else(|failure| {
        error!(job = %job, error = %failure, "a run ended without a result");
        Finished { id: job, result: Err(RunError::Panicked { job, task: "the run" }), ready: None }
    })
}
