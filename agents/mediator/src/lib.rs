//! The mediator: when a result it was chosen for is challenged, it re-runs the job from the
//! same pinned module and inputs, compares its result with the provider's, and rules on chain:
//! the challenge is upheld when they differ (the provider's collateral is slashed; the
//! mediator's own CID is posted as the correct result) and rejected when they match.
//!
//! The comparison is the module's: by default the whole result folder byte for byte (equal
//! CIDs). A non-deterministic module may declare `compare.ignore` rules (files, JSON members
//! that may differ); then, when the CIDs differ, the mediator fetches the provider's result
//! (verified block by block against its CID) and compares the two folders under those rules
//! ([`lilypad_module::compare_results`]).
//!
//! Rulings run concurrently (at most [`MAX_RULINGS`] at once, each in a supervised task), and
//! every fetch of a provider's result has a deadline ([`RESULT_FETCH_DEADLINE`]) and the
//! module's output caps: one provider whose outputs server stalls cannot silence the mediator
//! for the other challenges.
//!
//! Before upholding a challenge because its re-run differs, the mediator re-runs the job once
//! more: when its own two re-runs differ from each other, the module is not deterministic on
//! this hardware, and it rules so (`ruleNondeterministic`): the provider is not slashed, the
//! job settles as if unchallenged, the challenger pays the mediator's fee and gets its bond
//! back, and the module is recorded as ruled non-deterministic (its publisher gains nothing).
//!
//! A mediator it does not rule on in time (it cannot get the module, re-run the job or fetch
//! the provider's result) lets the result stand: anyone may then call `timeoutMediation`, the
//! provider is paid and the challenger gets its deposit back.
//!
//! Only an account the market's owner approved (`approveMediator`) can register as a mediator.
//!
//! [`auditor`]: an agent that challenges a random share of results.

#![forbid(unsafe_code)]

pub mod auditor;
mod compare;

pub use compare::ComparisonError;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{ChainClient, ChainError, Checkpoint, FailureLog, Follower, JobRecord, ModuleEntry, NoState, Retryable};
use lilypad_module::{Module, Verdict};
use lilypad_runner::{Engine, EngineError, Engines, JobTasks, ModuleResolver, RunError, Sources};
use lilypad_store::{Cid, DiskBlockstore};
use tracing::{error, info, warn};

/// Most challenges ruled at once (each may be re-running a job and fetching a result).
pub const MAX_RULINGS: usize = 8;

/// How long one fetch of a provider's result may take, from the first request to the last file
/// written; a stalled outputs server fails the comparison at this point (the mediation then
/// times out and the result stands) instead of holding the ruling.
pub const RESULT_FETCH_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct MediatorOptions {
    /// Module folders this mediator can re-run.
    pub modules: Vec<PathBuf>,
    /// Re-run published modules it has no folder for, fetched by CID (folder and image
    /// archive) from these IPFS gateways. Empty: local folders only.
    pub ipfs_gateways: Vec<String>,
    pub data_dir: PathBuf,
    pub poll: Duration,
    /// Where providers' results are fetched from first (an IPFS path gateway), before the
    /// endpoints each provider announced on chain; for modules whose comparison is not byte
    /// for byte.
    pub gateway: Option<String>,
    /// The most bytes the cache of jobs' `cid` inputs keeps (least recently used out first;
    /// an input larger than this is refused).
    pub input_cache_max: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MediatorError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("module {}: {source}", path.display())]
    Module { path: PathBuf, #[source] source: lilypad_module::LoadError },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("content store: {0}")]
    Store(#[from] lilypad_store::StoreError),
    /// The market's owner has not approved this account as a mediator.
    #[error("{account} is not approved as a mediator: the market's owner must call approveMediator({account}, true) first")]
    NotApproved {
        /// The mediator's account.
        account: alloy::primitives::Address,
    },
}

impl Retryable for MediatorError {
    fn is_retryable(&self) -> bool {
        matches!(self, MediatorError::Chain(e) if e.is_retryable())
    }
}

/// What a ruling's task came to.
#[derive(Debug)]
enum Ruled {
    /// Ruled on chain, or left to time out for good (nothing more to do for this job).
    Done,
    /// The chain could not be reached: try again later.
    Retry(ChainError),
}

/// What every ruling needs, shared by the ruling tasks.
struct Ruler {
    client: ChainClient,
    engine: Arc<dyn Engine>,
    store: DiskBlockstore,
    resolver: Arc<ModuleResolver>,
    options: MediatorOptions,
    fetch_deadline: Duration,
}

pub struct Mediator {
    index: u8,
    ruler: Arc<Ruler>,
    follower: Follower,
    /// Jobs ruled (or given up on) by this run.
    ruled: HashSet<U256>,
    /// Jobs being ruled now.
    ruling: HashSet<U256>,
    tasks: JobTasks<Ruled>,
    save_failures: FailureLog,
}

/// Why a challenged job could not be re-run here.
enum RerunFailure {
    /// Its module could not be had.
    Module(RunError),
    /// It could not be prepared or run.
    Run(RunError),
}

impl Mediator {
    /// Registers the signer as a mediator if needed and checks its engines (Docker and
    /// WebAssembly) and the modules.
    pub async fn start(client: ChainClient, options: MediatorOptions) -> Result<Self, MediatorError> {
        let me = client.address()?;
        let market = client.market();
        let account = client.read("reading the mediator's account", || async { market.accountOf(me).call().await }).await?;
        let index = if account.mediatorSlot == 0 || account.roles & 4 == 0 {
            if !account.mediatorApproved {
                return Err(MediatorError::NotApproved { account: me });
            }
            client.send("registerMediator", market.registerMediator()).await?;
            let account = client.read("reading the mediator's account", || async { market.accountOf(me).call().await }).await?;
            account.mediatorSlot.saturating_sub(1)
        } else {
            account.mediatorSlot - 1
        };
        // Docker and WebAssembly: it re-runs jobs of either engine
        let engine = Engines::connect("mediator", me, &options.data_dir, true).await?;
        // What a killed run of this mediator left: its containers and volumes (the outputs
        // holder would otherwise run forever) and unfinished re-run folders.
        let removed = engine.remove_leftovers().await?;
        if removed > 0 {
            info!(removed, "removed containers left by a previous run");
        }
        lilypad_runner::remove_unfinished_results(&options.data_dir.join("reruns"));
        let mut modules = HashMap::new();
        for dir in &options.modules {
            let m = Module::load(dir).map_err(|source| MediatorError::Module { path: dir.clone(), source })?;
            // It must re-run (and compare as) exactly the module pinned on chain, where it is
            // published.
            if let Some(spec) = lilypad_runner::published_module(&client, m.id()).await? {
                lilypad_runner::check_pinned(&m, &spec)?;
            }
            modules.insert(m.id(), Arc::new(m));
        }
        let store = DiskBlockstore::open(options.data_dir.join("blocks"))?;
        // a killed run of this agent may have left half-written blocks (never read, but kept)
        match store.remove_stray_temp_files() {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed temporary block files a killed run left"),
            Err(e) => tracing::warn!(error = %e, "cannot remove temporary block files a killed run left"),
        }
        // A ruling that did not land before a crash is made again after it: the job is still
        // Challenged in the saved book and on chain.
        let (follower, NoState {}) = Follower::resume(client.clone(), Checkpoint::new(options.data_dir.join("checkpoint.json")))?;
        let follower = follower.poll_interval(options.poll);
        info!(mediator = %me, index, from_block = follower.next_block(), "mediator ready");
        let sources = Sources {
            gateways: options.ipfs_gateways.clone(),
            cache: options.data_dir.join("cache"),
            allow_git: false,
            git_policy: None,
            fetch: !options.ipfs_gateways.is_empty(),
            input_cache_max: options.input_cache_max,
        };
        lilypad_runner::remove_fetch_leftovers(&sources);
        // results fetched from providers are written under `submitted/`
        let submitted = options.data_dir.join("submitted");
        match lilypad_store::remove_fetch_leftovers(&submitted) {
            Ok(0) => {}
            Ok(removed) => info!(dir = %submitted.display(), removed, "removed what fetches cut short left"),
            Err(e) => tracing::warn!(dir = %submitted.display(), error = %e, "cannot remove what fetches cut short left"),
        }
        let resolver = Arc::new(ModuleResolver::new(modules, sources));
        let ruler = Arc::new(Ruler { client, engine: Arc::new(engine), store, resolver, options, fetch_deadline: RESULT_FETCH_DEADLINE });
        Ok(Self { index, ruler, follower, ruled: HashSet::new(), ruling: HashSet::new(), tasks: JobTasks::new(), save_failures: FailureLog::new("saving the mediator's checkpoint") })
    }

    pub fn index(&self) -> u8 {
        self.index
    }

    /// Follows the market and rules until `shutdown`; rulings under way are then cancelled
    /// (their jobs are still Challenged on chain and ruled after a restart).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), MediatorError> {
        let result = lilypad_chain::run_until("mediating challenges", shutdown, &mut self, |m| Box::pin(m.step())).await;
        self.tasks.shutdown().await;
        // the outputs volumes prepared ahead, and the containers still being removed
        self.ruler.engine.release().await;
        result
    }

    /// Starts a ruling for every challenge this mediator has to decide (up to [`MAX_RULINGS`]
    /// at once), then waits for new events or a ruling to end, and saves the checkpoint.
    /// Cancel-safe at its await points.
    pub async fn step(&mut self) -> Result<(), MediatorError> {
        self.start_rulings();
        tokio::select! {
            applied = self.follower.next() => {
                applied?;
            }
            Some((job, ended)) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                self.ruling.remove(&job);
                match ended {
                    Ok(Ruled::Done) => {
                        self.ruled.insert(job);
                    }
                    // Not marked ruled: the next step starts it again (the job is still Challenged).
                    Ok(Ruled::Retry(e)) => warn!(job = %job, error = %e, "the chain was unavailable while ruling; will rule again"),
                    Err(failure) => {
                        error!(job = %job, error = %failure, "the ruling's task failed; leaving the job to time out (its result stands)");
                        self.ruled.insert(job);
                    }
                }
            }
        }
        self.start_rulings();
        // A checkpoint that cannot be written now (disk full, out of files) is written at the
        // next step; until then a restart re-reads a few more blocks. Never fatal.
        if let Err(e) = self.follower.save(&NoState {}) {
            self.save_failures.failed(&e);
        } else {
            self.save_failures.succeeded();
        }
        Ok(())
    }

    fn start_rulings(&mut self) {
        let mine: Vec<JobRecord> = self
            .follower
            .book()
            .live()
            .filter(|r| r.state() == JobState::Challenged && r.job.mediator == self.index && !self.ruled.contains(&r.id) && !self.ruling.contains(&r.id))
            .cloned()
            .collect();
        for record in mine {
            if self.tasks.len() >= MAX_RULINGS {
                break;
            }
            let entry = self.follower.book().module(&record.job.moduleId).cloned();
            let ruler = self.ruler.clone();
            self.ruling.insert(record.id);
            self.tasks.spawn(record.id, async move { ruler.rule(record, entry).await });
        }
    }
}

impl Ruler {
    /// Re-runs the challenged job into `dir`, in a task of its own, joined: a re-run that
    /// panics is reported as one that could not be made (the mediation times out and the
    /// result stands).
    async fn rerun(&self, record: &JobRecord, entry: Option<&ModuleEntry>, dir: PathBuf) -> Result<(Arc<Module>, (Cid, B256)), RerunFailure> {
        let (resolver, engine, store, record, entry) = (self.resolver.clone(), self.engine.clone(), self.store.clone(), record.clone(), entry.cloned());
        let job = record.id;
        let task = tokio::spawn(async move {
            let resolved = resolver.resolve(record.job.moduleId, entry.as_ref()).await.map_err(RerunFailure::Module)?;
            let module = resolved.module.clone();
            resolver.prepare(&resolved, engine.as_ref()).await.map_err(RerunFailure::Run)?;
            let policy = lilypad_runner::RunPolicy { allow_network: false, deadline: None };
            let result = match lilypad_runner::run_job_fetching_inputs(engine.as_ref(), &store, resolver.sources(), &module, &record, &dir, policy).await {
                // the job cannot run anywhere: its answer is the failure result a provider posts
                Err(e) if e.is_job_fault() => lilypad_runner::outputs::publish_failure(job, &store, &dir, &e).await,
                other => other,
            }
            .map_err(RerunFailure::Run)?;
            Ok((module, result))
        });
        match task.await {
            Ok(result) => result,
            Err(e) => {
                error!(job = %job, error = %e, "the re-run's task failed");
                Err(RerunFailure::Run(RunError::Panicked { job, task: "the re-run" }))
            }
        }
    }

    /// Compares the re-run in `dir` (CID `mine`) with the provider's result `theirs`.
    async fn verdict(&self, id: U256, provider: Address, module: &Module, dir: &Path, mine: &Cid, theirs: &str) -> Result<Verdict, compare::ComparisonError> {
        if mine.to_string() == theirs {
            return Ok(Verdict::Same);
        }
        if module.comparison().is_exact() {
            return Ok(Verdict::Differs { path: ".".into(), reason: format!("the result CIDs differ ({theirs} submitted, {mine} expected)") });
        }
        let fetched = self.options.data_dir.join("submitted").join(id.to_string());
        let limits = lilypad_runner::result_fetch_limits(&module.limits(), self.fetch_deadline);
        // the configured gateway first, then where the provider announced it serves outputs
        let mut sources: Vec<String> = self.options.gateway.iter().cloned().collect();
        match self.client.announced_endpoints(provider).await {
            Ok(urls) => sources.extend(urls),
            Err(e) => warn!(job = %id, %provider, error = %e, "cannot read where the provider serves its outputs"),
        }
        compare::compare_declared(id, module, dir, theirs, &sources, &fetched, &limits).await
    }

    /// Whether a second re-run agrees with the first (`first`, CID `cid`): `Ok(None)` when it
    /// does, `Ok(Some(reason))` when the module is not deterministic here.
    async fn rerun_again(&self, record: &JobRecord, entry: Option<&ModuleEntry>, module: &Module, first: &Path, cid: &Cid) -> Result<Option<String>, String> {
        let id = record.id;
        let dir = self.options.data_dir.join("reruns").join(format!("{id}-again"));
        let again = match self.rerun(record, entry, dir.clone()).await {
            Ok((_, (again, _))) => again,
            Err(RerunFailure::Module(e) | RerunFailure::Run(e)) => return Err(e.to_string()),
        };
        if &again == cid {
            return Ok(None);
        }
        if module.comparison().is_exact() {
            return Ok(Some(format!("two re-runs here gave {cid} and {again}")));
        }
        match compare::compare_reruns(id, module, first, &dir).await {
            Ok(Verdict::Same) => Ok(None),
            Ok(Verdict::Differs { path, reason }) => Ok(Some(format!("two re-runs here differ at {path}: {reason}"))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Rules on one challenged job. Never returns a chain error that ends the mediator: one
    /// the chain may recover from is [`Ruled::Retry`], anything else is logged and the job
    /// left to time out (its result stands; the challenger gets its deposit back).
    async fn rule(&self, record: JobRecord, entry: Option<ModuleEntry>) -> Ruled {
        let id = record.id;
        let dir = self.options.data_dir.join("reruns").join(id.to_string());
        let (module, mine) = match self.rerun(&record, entry.as_ref(), dir.clone()).await {
            Ok((module, (cid, _))) => (module, cid),
            Err(RerunFailure::Module(reason)) => {
                warn!(job = %id, %reason, "challenged job of a module this mediator cannot get; it will time out and its result stand");
                return Ruled::Done;
            }
            Err(RerunFailure::Run(reason)) => {
                // The mediator's own failure must not slash anyone: without a ruling the result stands.
                error!(job = %id, %reason, retryable = reason.is_retryable(), "cannot re-run the job; leaving it to time out (its result stands)");
                return Ruled::Done;
            }
        };
        let theirs = record.data_id.clone().unwrap_or_default();
        let cid = mine;
        let verdict = match self.verdict(id, record.job.provider, &module, &dir, &cid, &theirs).await {
            Ok(v) => v,
            Err(reason) => {
                error!(job = %id, %reason, "cannot compare with the provider's result; leaving it to time out (its result stands)");
                return Ruled::Done;
            }
        };
        if let Verdict::Differs { path, reason } = &verdict {
            // Before slashing: is the module deterministic here at all?
            match self.rerun_again(&record, entry.as_ref(), &module, &dir, &cid).await {
                Ok(None) => {}
                Ok(Some(why)) => {
                    error!(
                        job = %id, module = %module.reference(), provider = %theirs, %path, %reason, nondeterminism = %why,
                        "NON-DETERMINISTIC MODULE: this mediator's own two re-runs differ, so the provider's differing result proves nothing; ruling the module non-deterministic (the provider is not slashed, the challenger pays the fee). Fix the module or declare its comparison."
                    );
                    let market = self.client.market();
                    let call = market.ruleNondeterministic(id, record.job.clone(), theirs.clone(), record.result_hash.unwrap_or_default());
                    return sent(id, self.client.send(&format!("ruleNondeterministic(job {id})"), call).await);
                }
                Err(reason) => {
                    error!(job = %id, %reason, "cannot re-run the job a second time to confirm the difference; leaving it to time out (its result stands)");
                    return Ruled::Done;
                }
            }
        }
        let market = self.client.market();
        let sent_ruling = match verdict {
            Verdict::Same => {
                info!(job = %id, provider = %theirs, mediator = %cid, module = %module.reference(), "the provider's result stands: rejecting the challenge");
                let call = market.rejectChallenge(id, record.job.clone(), theirs.clone(), record.result_hash.unwrap_or_default());
                self.client.send(&format!("rejectChallenge(job {id})"), call).await
            }
            Verdict::Differs { path, reason } => {
                info!(job = %id, provider = %theirs, mediator = %cid, %path, %reason, "the provider's result is wrong (two re-runs here agree): upholding the challenge");
                let call = market.upholdChallenge(id, record.job.clone(), cid.to_string());
                self.client.send(&format!("upholdChallenge(job {id})"), call).await
            }
        };
        sent(id, sent_ruling)
    }
}

/// What sending a ruling came to: done, or to be tried again when the chain was unreachable.
fn sent(id: U256, result: Result<alloy::rpc::types::TransactionReceipt, ChainError>) -> Ruled {
    match result {
        Ok(_) => Ruled::Done,
        Err(e) if e.is_retryable() => Ruled::Retry(e),
        Err(e) => {
            error!(job = %id, error = %e, "the market refused the ruling");
            Ruled::Done
        }
    }
}
