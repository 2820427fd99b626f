//! The resource provider: registers its engines and offers, runs the jobs matched to it in a
//! Docker sandbox or, for WebAssembly modules, in wasmtime (a provider may run WebAssembly only,
//! without Docker), publishes each job's result folder by CID (`stdout`, `stderr`, `exitCode`,
//! `outputs/`), serves it over HTTP (`/ipfs/<cid>`) and, when asked to, by bitswap over libp2p
//! ([`lilypad_p2p`]), posts the CID on chain and settles its jobs once their challenge windows
//! have passed.
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
use lilypad_chain::{run_until, ChainClient, ChainError, EngineSet, Follower, JobRecord, NoState, Refusals, Retryable, Supervisor};
use lilypad_runner::{Engine, EngineError, JobTasks, ModuleResolver, RunError, TaskFailure};
use lilypad_store::{Cid, DiskBlockstore};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

pub use lilypad_p2p::Multiaddr;

/// How long the provider's own tasks (outputs server, libp2p node) get to stop.
const TASK_STOP: Duration = Duration::from_secs(5);

/// How the provider runs.
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    /// Module folders this provider runs, each offered at `price`.
    pub modules: Vec<PathBuf>,
    /// Price asked per job (token units), for every module.
    pub price: u128,
    /// Free balance to keep deposited in the market as collateral.
    pub collateral: u128,
    /// Mediators accepted (bit i = mediator i), kept by the market to the slots taken when it
    /// registers; 0 = the market's default set (what the CLI and the devnet use).
    pub mediators: u64,
    /// The terms its offers state: the market matches a job to it, and locks its collateral,
    /// only within them.
    pub terms: OfferTerms,
    /// Results, blocks and the like.
    pub data_dir: PathBuf,
    /// Where the outputs server listens: it serves this provider's results (`/ipfs/<cid>`).
    pub outputs_listen: SocketAddr,
    /// Where others fetch its outputs, announced on chain (`announceEndpoints`) so creators,
    /// mediators and gateways find them from the chain alone. Empty: `http://<outputs server
    /// address>` when it listens on a specific address; nothing (with a warning) when it
    /// listens on all interfaces (0.0.0.0 or ::), which says nothing about how it is reached.
    pub public_urls: Vec<String>,
    /// Where its libp2p node listens (TCP multiaddrs such as `/ip4/0.0.0.0/tcp/4001`): it
    /// answers bitswap requests for the blocks this provider stores, so any IPFS
    /// implementation can fetch its outputs by CID. Empty: no libp2p node. Its identity key is
    /// `<data_dir>/p2p-identity.key` (mode 0600), so its peer id survives restarts.
    pub p2p_listen: Vec<Multiaddr>,
    /// How others dial its libp2p node (`/dns4/provider.example/tcp/4001`), announced on chain
    /// with `/p2p/<peer id>` added. Empty: the listen addresses, except unspecified ones
    /// (0.0.0.0 or ::, which say nothing about how it is reached).
    pub public_p2p: Vec<Multiaddr>,
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
    /// Run Docker modules (the default). Off: WebAssembly modules only, and no Docker engine
    /// is needed (none is connected to).
    pub docker: bool,
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
    /// The most bytes the cache of jobs' `cid` inputs keeps (least recently used out first;
    /// an input larger than this is refused).
    pub input_cache_max: u64,
    /// TEST ONLY misbehaviour; empty (the default) in production, and in release builds.
    pub testing: TestHooks,
}

/// The terms under which a provider puts up collateral, stated in each of its offers: a job is
/// matched to it only when the job's run window is within `[min_run_timeout,
/// max_run_timeout]` and its callback gas at most `max_callback_gas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferTerms {
    /// The shortest run window (seconds from the match) it accepts: time to fetch, run and post.
    pub min_run_timeout: u32,
    /// The longest run window it locks collateral for.
    pub max_run_timeout: u32,
    /// The most gas it forwards to a client's `submitResults` when it settles.
    pub max_callback_gas: u32,
}

impl OfferTerms {
    /// The shortest run window by default: room to fetch, run and post a small module.
    pub const DEFAULT_MIN_RUN_TIMEOUT: u32 = 10;
    /// The longest run window by default: the market's most (30 days).
    pub const DEFAULT_MAX_RUN_TIMEOUT: u32 = 30 * 24 * 3600;
    /// The most callback gas by default (a settlement of its jobs stays cheap).
    pub const DEFAULT_MAX_CALLBACK_GAS: u32 = 500_000;

    /// An active offer at `price` with these terms, as `setOffer` takes it.
    pub fn offer(&self, price: u128) -> lilypad_bindings::Offer {
        lilypad_bindings::Offer {
            price,
            active: true,
            minRunTimeout: self.min_run_timeout,
            maxRunTimeout: self.max_run_timeout,
            maxCallbackGas: self.max_callback_gas,
        }
    }

    /// Whether `offer`, as the market holds it, is an active offer at `price` with these terms.
    pub fn stated_by(&self, offer: &lilypad_chain::Offer, price: u128) -> bool {
        offer.active
            && offer.price == price
            && offer.min_run_timeout == self.min_run_timeout
            && offer.max_run_timeout == self.max_run_timeout
            && offer.max_callback_gas == self.max_callback_gas
    }

    /// Checks the terms as the market would (`InvalidOffer`), saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_run_timeout == 0 || self.max_run_timeout > Self::DEFAULT_MAX_RUN_TIMEOUT {
            return Err(format!("the longest run window must be from 1 s to 30 days (2592000 s), not {} s", self.max_run_timeout));
        }
        if self.min_run_timeout > self.max_run_timeout {
            return Err(format!("the shortest run window ({} s) is above the longest ({} s)", self.min_run_timeout, self.max_run_timeout));
        }
        if self.max_callback_gas > 2_000_000 {
            return Err(format!("the most callback gas is 2,000,000 (the market's limit), not {}", self.max_callback_gas));
        }
        Ok(())
    }
}

impl Default for OfferTerms {
    fn default() -> Self {
        Self {
            min_run_timeout: Self::DEFAULT_MIN_RUN_TIMEOUT,
            max_run_timeout: Self::DEFAULT_MAX_RUN_TIMEOUT,
            max_callback_gas: Self::DEFAULT_MAX_CALLBACK_GAS,
        }
    }
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
    /// An engine is unavailable or refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Docker is unavailable or cannot sandbox jobs.
    #[error("{source} (to serve WebAssembly modules only, without Docker, start the provider with --no-docker)")]
    NoDocker {
        /// Why Docker cannot be used.
        #[source]
        source: EngineError,
    },
    /// A module folder of the options runs on an engine this provider does not have.
    #[error("module {reference} runs on the {engine} engine and this provider runs only {have}: remove --module for it, or run the provider with that engine (without --no-docker)")]
    EngineMissing {
        /// The module's `name:version`.
        reference: String,
        /// The engine it needs.
        engine: EngineSet,
        /// The engines this provider runs.
        have: EngineSet,
    },
    /// The content store (results, outputs server) failed.
    #[error("content store: {0}")]
    Store(#[from] lilypad_store::StoreError),
    /// The offer terms of the options are not ones the market accepts.
    #[error("offer terms: {0}")]
    Terms(String),
    /// The public URLs or multiaddrs of the options are not ones the market takes
    /// (`--public-url`, `--public-p2p`).
    #[error("announced endpoints (--public-url, --public-p2p): {0}")]
    Endpoints(String),
    /// The libp2p node could not start (its key, a listen address).
    #[error("libp2p node (--p2p-listen): {0}")]
    P2p(#[from] lilypad_p2p::P2pError),
    /// One of the provider's own tasks (outputs server, libp2p node) ended by itself.
    #[error("{0}")]
    TaskEnded(String),
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
    /// The engines `engine` runs (jobs of another engine are given back at once).
    engines: EngineSet,
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
    /// The libp2p node's handle, when it runs.
    p2p: Option<lilypad_p2p::Node>,
    /// Its own long-running tasks: the outputs server and the libp2p node.
    tasks: Supervisor,
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

    /// The libp2p node's addresses, each with `/p2p/<peer id>` (what a peer dials to fetch its
    /// outputs by bitswap); empty when it runs none.
    pub fn p2p_addrs(&self) -> Vec<Multiaddr> {
        match &self.p2p {
            Some(node) => node.listen_addrs().iter().map(|a| lilypad_p2p::with_peer_id(a, node.peer_id())).collect(),
            None => Vec::new(),
        }
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
        // the outputs volumes prepared ahead, and the containers still being removed
        self.engine.release().await;
        // the outputs server and the libp2p node last: a run being cancelled still publishes
        std::mem::take(&mut self.tasks).stop(TASK_STOP).await;
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
            // the outputs server or the libp2p node ended by itself: the provider stops (its
            // service manager restarts it) rather than run without serving its outputs
            Some(exit) = self.tasks.next_exit() => Err(ProviderError::TaskEnded(exit.to_string())),
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
        let posted = self.submit_together(&batch).await?;
        let market = self.client.market();
        let client = &self.client;
        let mut sends = Vec::new();
        for done in batch {
            if posted.contains(&done.id) {
                continue;
            }
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
                        let penalty = match client.latest_timestamp().await {
                            Ok(now) => release_penalty(&record.job, now),
                            Err(_) => 0,
                        };
                        if penalty == 0 {
                            warn!(job = %done.id, %reason, retryable = reason.is_retryable(), "cannot run the job; giving it back");
                        } else {
                            warn!(job = %done.id, %reason, retryable = reason.is_retryable(), penalty, "cannot run the job; giving it back late: about this much of its collateral goes to the payee");
                        }
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

    /// Posts the batch's results in one submitMany when there are several (one transaction's
    /// intrinsic gas shared) and returns the jobs it handled; none when there is at most one or
    /// the market refused the batch (one of its jobs moved on), so each is posted on its own.
    async fn submit_together(&mut self, batch: &[Finished]) -> Result<HashSet<U256>, ProviderError> {
        let book = self.follower.book();
        let items: Vec<lilypad_bindings::Submission> = batch
            .iter()
            .filter_map(|done| {
                let (cid, result_hash) = done.result.as_ref().ok()?;
                let record = book.get(done.id)?;
                (record.state() == JobState::Matched && record.job.provider == self.me).then(|| lilypad_bindings::Submission {
                    id: done.id,
                    job: record.job.clone(),
                    dataId: cid.to_string(),
                    resultHash: *result_hash,
                })
            })
            .collect();
        if items.len() < 2 {
            return Ok(HashSet::new());
        }
        let ids: HashSet<U256> = items.iter().map(|i| i.id).collect();
        let n = items.len();
        match self.client.send(&format!("submitMany({n} jobs)"), self.client.market().submitMany(items)).await {
            Ok(r) => {
                use alloy::sol_types::SolEvent;
                for l in r.inner.logs() {
                    if let Ok(e) = lilypad_bindings::LilypadMarket::ResultSubmitted::decode_log(&l.inner) {
                        info!(job = %e.data.id, cid = %e.data.dataId, batch = n, gas = r.gas_used, "result submitted (submitMany)");
                        self.submitted.insert(e.data.id);
                    }
                }
                // a job that ended meanwhile was skipped by the market: nothing more to post
                Ok(ids)
            }
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => {
                warn!(jobs = n, error = %e, "submitMany refused; posting each result on its own");
                Ok(HashSet::new())
            }
        }
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

/// What `releaseJob` of `job` costs at chain time `now` (the market's `JobLib.releasePenalty`):
/// nothing in the first half of its run window, then a share of its collateral growing to all
/// of it at the run deadline.
pub fn release_penalty(job: &lilypad_bindings::Job, now: u64) -> u128 {
    let window = u64::from(job.runTimeout).max(1);
    let grace = window / 2;
    let matched_at = u64::try_from(job.matchedAt).unwrap_or(u64::MAX);
    let elapsed = now.saturating_sub(matched_at).min(window);
    if elapsed <= grace {
        return 0;
    }
    let share = u128::from(elapsed - grace);
    job.collateral.saturating_mul(share) / u128::from(window - grace)
}

/// A joined run as the main loop handles it: a run that panicked (or was cancelled) could not
/// run its job, which is given back.
fn finished((job, joined): (U256, Result<Finished, TaskFailure>)) -> Finished {
    joined.unwrap_or_else(|failure| {
        error!(job = %job, error = %failure, "a run ended without a result");
        Finished { id: job, result: Err(RunError::Panicked { job, task: "the run" }), ready: None }
    })
}

#[cfg(test)]
mod tests {
    use super::release_penalty;
    use alloy::primitives::aliases::U40;

    #[test]
    fn a_release_is_free_in_the_first_half_of_the_run_window_then_costs_a_growing_share() {
        let job = lilypad_bindings::Job { matchedAt: U40::from(1000u64), runTimeout: 100, collateral: 1000, ..Default::default() };
        assert_eq!(release_penalty(&job, 1000), 0);
        assert_eq!(release_penalty(&job, 1050), 0, "the first half is free");
        assert_eq!(release_penalty(&job, 1075), 500, "half way through the second half: half");
        assert_eq!(release_penalty(&job, 1100), 1000, "at the deadline: all of it");
    }
}
