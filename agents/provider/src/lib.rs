//! The resource provider: registers its offers, runs the jobs matched to it in a Docker
//! sandbox, publishes each job's result folder by CID (`stdout`, `stderr`, `exitCode`,
//! `outputs/`), serves it over HTTP (`/ipfs/<cid>`), posts the CID on chain and settles its
//! jobs once their challenge windows have passed.
//!
//! Its state comes from the chain: after a crash it finds its matched jobs in the market's
//! events again, reuses a result it already made (the result folder is kept by job id), and
//! the market refuses anything done twice.

#![forbid(unsafe_code)]

pub mod cheat;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use lilypad_bindings::{JobState, Settlement};
use lilypad_chain::{BookSnapshot, ChainClient, ChainError, Checkpoint, EventStream, JobBook, JobRecord};
use lilypad_executor::Executor;
use lilypad_module::Module;
use lilypad_store::{Cid, DiskBlockstore};

mod modules;
pub use modules::{ModuleResolver, Resolved};
use tokio::sync::{mpsc, Semaphore};
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
    /// Where to serve outputs (`/ipfs/<cid>`).
    pub gateway: SocketAddr,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Let modules that ask for a network have one.
    pub allow_network: bool,
    pub poll: Duration,
    /// A Kubo RPC API (e.g. http://127.0.0.1:5001): outputs are also added and pinned there.
    pub ipfs_api: Option<String>,
    /// Also offer any published module that fits these resources (an offer for module id 0).
    pub offer_any: Option<lilypad_bindings::Resources>,
    /// Run modules published from git repositories (github.com/org/repo:tag): fetched at the
    /// tag's commit and checked against the hash pinned on chain. Their build commands run on
    /// this host: allow only if you trust who can publish.
    pub allow_git_modules: bool,
    /// Run published modules it has no folder for: the folder is fetched from IPFS by the CID
    /// the chain pins, and the image from the image archive pinned with it (never built here).
    pub fetch_modules: bool,
    /// IPFS gateways to fetch modules and image archives from (e.g. http://127.0.0.1:8080).
    pub ipfs_gateways: Vec<String>,
    /// TEST ONLY: post wrong results for some jobs (see [`cheat`]). `None` in production.
    pub cheat: Option<cheat::Cheat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("module {path}: {reason}")]
    Module { path: PathBuf, reason: String },
    #[error("module {reference} is not published on chain: publish it first (lilypad module publish)")]
    NotPublished { reference: String },
    #[error("module {reference}: the local folder's hash {local} is not the one published on chain ({chain})")]
    HashMismatch { reference: String, local: B256, chain: B256 },
    #[error("Docker: {0}")]
    Executor(#[from] lilypad_executor::ExecError),
    #[error("content store: {0}")]
    Store(#[from] lilypad_store::StoreError),
    #[error("not enough tokens for collateral: balance {balance}, need {needed} more (fund this account)")]
    NoFunds { balance: u128, needed: u128 },
}

/// The executor's instance label: one per agent identity and data folder, stable across
/// restarts (so a restarted agent removes the containers its crashed self left) and distinct
/// between agents sharing one Docker engine (so none removes another's running jobs).
pub fn executor_config(role: &str, me: Address, data_dir: &Path) -> lilypad_executor::ExecutorConfig {
    let folder = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let tag = alloy::primitives::keccak256(folder.to_string_lossy().as_bytes());
    lilypad_executor::ExecutorConfig {
        instance: format!("{role}-{}-{}", &me.to_string()[2..10].to_lowercase(), &hex_prefix(tag.as_slice())),
        ..Default::default()
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Removes the unfinished result folders (`<id>.tmp`) a killed run left in `results`: a job
/// that is still live is run again from scratch, and one that ended meanwhile never would be.
/// Call it at start-up, before any run.
pub fn remove_unfinished_results(results: &Path) {
    let Ok(entries) = std::fs::read_dir(results) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => info!(path = %path.display(), "removed an unfinished result folder"),
                Err(e) => warn!(path = %path.display(), error = %e, "cannot remove an unfinished result folder"),
            }
        }
    }
}

/// What a finished run reports back to the main loop.
struct Finished {
    id: U256,
    result: Result<(Cid, B256), String>,
    /// The module whose image this run found or made ready.
    ready: Option<B256>,
}

/// A running resource provider.
pub struct Provider {
    client: ChainClient,
    options: ProviderOptions,
    me: Address,
    executor: Arc<Executor>,
    store: DiskBlockstore,
    resolver: Arc<ModuleResolver>,
    /// Modules announced on chain as ready here (`announceModules`).
    announced: HashSet<B256>,
    book: JobBook,
    stream: EventStream,
    running: HashSet<U256>,
    submitted: HashSet<U256>,
    gateway: SocketAddr,
    done_tx: mpsc::Sender<Finished>,
    done_rx: mpsc::Receiver<Finished>,
    slots: Arc<Semaphore>,
    kubo: Option<Arc<lilypad_store::KuboClient>>,
    checkpoint: Checkpoint,
}

impl Provider {
    /// Checks Docker and the modules, registers (provider role, offers, collateral) as needed
    /// and starts the output gateway.
    pub async fn start(client: ChainClient, options: ProviderOptions) -> Result<Self, ProviderError> {
        let me = client.address()?;
        let executor = Executor::connect_with(executor_config("provider", me, &options.data_dir)).await?;
        executor.preflight().await?;
        let removed = executor.cleanup_leftovers().await?;
        if removed > 0 {
            info!(removed, "removed containers left by a previous run");
        }
        remove_unfinished_results(&options.data_dir.join("results"));
        let market = client.market();

        let mut modules = HashMap::new();
        for dir in &options.modules {
            let module = Module::load(dir).map_err(|e| ProviderError::Module { path: dir.clone(), reason: e.to_string() })?;
            let reference = module.reference().to_string();
            let (spec, published_at) = client
                .read("reading the module directory", || async { market.getModule(module.id()).call().await.map(|r| (r.spec, r.publishedAt)) })
                .await?;
            if published_at == alloy::primitives::aliases::U40::ZERO {
                return Err(ProviderError::NotPublished { reference });
            }
            if spec.specHash != module.spec_hash() {
                return Err(ProviderError::HashMismatch { reference, local: module.spec_hash(), chain: spec.specHash });
            }
            modules.insert(module.id(), Arc::new(module));
        }

        let account = client.read("reading the provider's account", || async { market.accountOf(me).call().await }).await?;
        if account.roles & 2 == 0 || account.mediators != options.mediators {
            client.send("registerProvider", market.registerProvider(options.mediators)).await?;
            info!(provider = %me, "registered as a resource provider");
        }
        for (id, module) in &modules {
            let offer = client.read("reading an offer", || async { market.offerOf(me, *id).call().await }).await?;
            if !offer.active || offer.price != options.price {
                client.send("setOffer", market.setOffer(*id, options.price, true)).await?;
                info!(module = %module.reference(), price = options.price, "offered");
            }
        }
        if let Some(resources) = &options.offer_any {
            client.send("setResources", market.setResources(resources.clone())).await?;
            let any = client.read("reading an offer", || async { market.offerOf(me, B256::ZERO).call().await }).await?;
            if !any.active || any.price != options.price {
                client.send("setOffer(any module that fits)", market.setOffer(B256::ZERO, options.price, true)).await?;
            }
            info!(price = options.price, git = options.allow_git_modules, "offered any module that fits its resources");
        }
        let free = u128::try_from(client.read("reading the balance", || async { market.balanceOf(me).call().await }).await?).unwrap_or(u128::MAX);
        if free < options.collateral {
            let needed = options.collateral - free;
            let token = client.token();
            let held = client.read("reading token balance", || async { token.balanceOf(me).call().await }).await?;
            let held = u128::try_from(held).unwrap_or(u128::MAX);
            if held < needed {
                return Err(ProviderError::NoFunds { balance: held, needed });
            }
            client.send("approve", token.approve(client.deployment().market, U256::from(needed))).await?;
            client.send("deposit", market.deposit(me, U256::from(needed))).await?;
            info!(deposited = needed, "collateral deposited");
        }

        let store = DiskBlockstore::open(options.data_dir.join("blocks"))?;
        let (gateway, _server) = lilypad_store::gateway::serve(store.clone(), options.gateway).await?;
        info!(%gateway, "serving outputs at http://{gateway}/ipfs/<cid>");

        let kubo = match &options.ipfs_api {
            Some(url) => {
                let kubo = lilypad_store::KuboClient::new(url)?;
                let version = kubo.version().await?;
                info!(%url, %version, "outputs are also pinned to this IPFS node");
                Some(Arc::new(kubo))
            }
            None => None,
        };
        // Resume from the checkpoint: the last handled block and the live jobs then.
        let checkpoint = Checkpoint::new(options.data_dir.join("checkpoint.json"));
        let saved: Option<(u64, BookSnapshot)> = checkpoint.load()?;
        let (from_block, book) = match saved.and_then(|(b, s)| JobBook::from_snapshot(&s).map(|book| (b, book))) {
            Some((b, book)) => {
                info!(from_block = b, live_jobs = book.len(), "resuming from the checkpoint");
                (b, book)
            }
            None => (client.deployment().start_block, JobBook::new()),
        };
        let stream = EventStream::new(client.clone(), from_block).poll_interval(options.poll);
        let (done_tx, done_rx) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Ok(Self {
            client,
            me,
            executor: Arc::new(executor),
            store,
            resolver: Arc::new(ModuleResolver::new(
                modules,
                options.ipfs_gateways.clone(),
                options.data_dir.join("cache"),
                options.allow_git_modules,
                options.fetch_modules,
            )),
            announced: HashSet::new(),
            book,
            stream,
            checkpoint,
            running: HashSet::new(),
            submitted: HashSet::new(),
            gateway,
            done_tx,
            done_rx,
            slots,
            kubo,
            options,
        })
    }

    /// The address the outputs gateway listens on.
    pub fn gateway(&self) -> SocketAddr {
        self.gateway
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ProviderError> {
        tokio::pin!(shutdown);
        info!(provider = %self.me, modules = self.resolver.local().len(), "resource provider running");
        self.announce_present().await?;
        if let Some(c) = self.options.cheat {
            warn!(rate = c.rate, seed = c.seed, "TEST-ONLY CHEATING PROVIDER: wrong results will be posted for this share of jobs; its collateral will be slashed when challenged");
        }
        let mut settle_tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let step: Result<(), ProviderError> = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                batch = self.stream.next_batch() => match batch {
                    Ok(batch) => {
                        for log in &batch.logs {
                            self.book.apply(log);
                        }
                        self.start_new_jobs();
                        // Saved after the runs are started: a crash before this re-reads the
                        // batch and finds the same jobs (a result already made is reused).
                        self.checkpoint.save(&(self.stream.next_block(), self.book.snapshot())).map_err(ProviderError::from)
                    }
                    Err(e) => Err(e.into()),
                },
                Some(done) = self.done_rx.recv() => {
                    // post every run that has finished by now together: they share blocks
                    let mut batch = vec![done];
                    while let Ok(more) = self.done_rx.try_recv() {
                        batch.push(more);
                    }
                    self.finish(batch).await
                }
                _ = settle_tick.tick() => self.settle_due().await,
            };
            match step {
                Ok(()) => {}
                Err(ProviderError::Chain(e)) if e.is_retryable() => {
                    warn!(error = %e, "chain unavailable; will retry");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a run for every job matched to this provider that is not running or done.
    fn start_new_jobs(&mut self) {
        let mine: Vec<JobRecord> = self
            .book
            .live()
            .filter(|r| r.state() == JobState::Matched && r.job.provider == self.me)
            .filter(|r| !self.running.contains(&r.id) && !self.submitted.contains(&r.id))
            .cloned()
            .collect();
        for record in mine {
            let entry = self.book.module(&record.job.moduleId).cloned();
            self.running.insert(record.id);
            let executor = self.executor.clone();
            let store = self.store.clone();
            let tx = self.done_tx.clone();
            let slots = self.slots.clone();
            let dir = self.result_dir(record.id);
            let allow_network = self.options.allow_network;
            let kubo = self.kubo.clone();
            let resolver = self.resolver.clone();
            let cheat = self.options.cheat.filter(|c| c.applies(record.id));
            let client = self.client.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                let id = record.id;
                // The run must end, and its result land, before the job's run deadline on chain:
                // after it the market refuses the result and the provider is slashed.
                let deadline = match client.latest_timestamp().await {
                    Ok(now) => Some(run_deadline(&record, now)),
                    Err(e) => {
                        warn!(job = %id, error = %e, "cannot read the chain's clock; running with the module's own time limit");
                        None
                    }
                };
                let mut ready = None;
                let mut result = match resolver.resolve(record.job.moduleId, entry.as_ref()).await {
                    Ok(resolved) => {
                        let image = if dir.exists() { Ok(()) } else { resolver.image(&resolved, &executor).await.map(|_| ()) };
                        match image {
                            Ok(()) => {
                                ready = Some(resolved.module.id());
                                run_job_within(&executor, &store, &resolved.module, &record, &dir, allow_network, deadline).await
                            }
                            Err(reason) => Err(reason),
                        }
                    }
                    Err(reason) => Err(reason),
                };
                if let (Ok((honest, _)), Some(_)) = (&result, cheat) {
                    warn!(job = %id, %honest, "TEST-ONLY CHEATING PROVIDER: posting a wrong result instead");
                    result = cheat::tamper(&store, &dir).await;
                }
                if let (Ok((cid, _)), Some(kubo)) = (&result, kubo) {
                    // The IPFS node must agree on the CID: same importer settings.
                    match kubo.add_path(&dir).await {
                        Ok(pinned) if &pinned == cid => info!(job = %id, %cid, "pinned to IPFS"),
                        Ok(pinned) => {
                            result = Err(format!("the IPFS node computed {pinned} for the outputs, not {cid}"));
                        }
                        Err(e) => warn!(job = %id, error = %e, "pinning to IPFS failed; outputs are still served here"),
                    }
                }
                let _ = tx.send(Finished { id, result, ready }).await;
            });
        }
    }

    /// Announces on chain the local modules whose images the engine has already.
    async fn announce_present(&mut self) -> Result<(), ProviderError> {
        let mut present = Vec::new();
        for (id, module) in self.resolver.local() {
            if self.executor.has_image(&module.image_tag()).await? {
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

    fn result_dir(&self, id: U256) -> PathBuf {
        self.options.data_dir.join("results").join(id.to_string())
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
            let Some(record) = self.book.get(done.id).cloned() else { continue };
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
                        warn!(job = %done.id, %reason, "cannot run the job; giving it back");
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
        while let Some(batch) = self.stream.poll_once().await? {
            for log in &batch.logs {
                self.book.apply(log);
            }
        }
        self.start_new_jobs();
        self.checkpoint.save(&(self.stream.next_block(), self.book.snapshot()))?;
        Ok(())
    }

    /// Settles, in one transaction, this provider's jobs whose challenge windows have passed.
    async fn settle_due(&mut self) -> Result<(), ProviderError> {
        let due: Vec<JobRecord> = self
            .book
            .live()
            .filter(|r| r.state() == JobState::Submitted && r.job.provider == self.me && r.data_id.is_some())
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
        let n = items.len();
        let market = self.client.market();
        match self.client.send("settleMany", market.settleMany(items)).await {
            Ok(r) => info!(jobs = n, gas = r.gas_used, "settled"),
            Err(e) if e.is_retryable() => return Err(e.into()),
            // another party settled one of them first: the next events drop it from the list
            Err(e) => warn!(error = %e, "settlement refused; will retry with fresh state"),
        }
        Ok(())
    }
}

/// Runs one job (or reuses the result of an earlier run of it, kept in `dir`) and returns its
/// CID and the result hash (the CID's sha2-256 digest). Shared with the mediator, which
/// re-runs a challenged job exactly as a provider does.
pub async fn run_job(
    executor: &Executor,
    store: &DiskBlockstore,
    module: &Module,
    record: &JobRecord,
    dir: &Path,
    allow_network: bool,
) -> Result<(Cid, B256), String> {
    run_job_within(executor, store, module, record, dir, allow_network, None).await
}

/// Time kept, before a job's run deadline, to hash the outputs and post the result.
pub const SUBMIT_MARGIN: Duration = Duration::from_secs(3);

/// When a run of `record` must be over (local clock), given the chain's time `chain_now`: its
/// run deadline (`matchedAt + runTimeout`) less [`SUBMIT_MARGIN`] or a tenth of the run
/// timeout, whichever is more.
pub fn run_deadline(record: &JobRecord, chain_now: u64) -> std::time::Instant {
    let job = &record.job;
    let deadline = job.matchedAt.to::<u64>() + u64::from(job.runTimeout);
    let margin = SUBMIT_MARGIN.max(Duration::from_secs(u64::from(job.runTimeout) / 10));
    let left = Duration::from_secs(deadline.saturating_sub(chain_now)).saturating_sub(margin);
    std::time::Instant::now() + left
}

/// [`run_job`], with the container's wall time cut so that the run ends by `deadline`
/// (the module's own time limit still applies when it is shorter). With no time left the job
/// is not run (an error: the provider gives it back).
pub async fn run_job_within(
    executor: &Executor,
    store: &DiskBlockstore,
    module: &Module,
    record: &JobRecord,
    dir: &Path,
    allow_network: bool,
    deadline: Option<std::time::Instant>,
) -> Result<(Cid, B256), String> {
    if !dir.exists() {
        let inputs = module.parse_inputs(&record.inputs).map_err(|e| format!("its inputs are invalid: {e}"))?;
        let rendered = module.render(&inputs).map_err(|e| format!("its inputs are invalid: {e}"))?;
        if rendered.network && !allow_network {
            return Err("the module asks for a network and this provider does not allow it".into());
        }
        // The image is prepared by the caller (ModuleResolver::image): present, loaded from
        // its pinned archive, or built.
        let image = module.image_tag();
        let mut spec = rendered.to_run_spec(&image, None);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left < Duration::from_secs(1) {
                return Err("too little time is left before the job's run deadline to run it".into());
            }
            if left < spec.limits.wall_time {
                info!(job = %record.id, secs = left.as_secs(), "wall time cut to end before the run deadline");
                spec.limits.wall_time = left;
            }
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        // A passing engine failure (e.g. Docker answering 500 while a container starts) gets
        // one more try before the job is given back; a failure of the job itself does not.
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            match executor.run(&format!("job-{}", record.id), &spec, dir).await {
                Ok(outcome) => break outcome,
                Err(e) if e.is_retryable() && tries < 3 => {
                    warn!(job = %record.id, error = %e, try_ = tries, "the run failed on the engine's side; trying again");
                    let _ = std::fs::remove_dir_all(&tmp);
                    tokio::time::sleep(Duration::from_millis(500 * tries)).await;
                }
                Err(e) => return Err(format!("the run failed: {e}")),
            }
        };
        info!(job = %record.id, exit = outcome.exit_code, timed_out = outcome.timed_out, secs = outcome.duration.as_secs_f64(), "job ran");
    }
    let store = store.clone();
    let dir = dir.to_path_buf();
    let cid = tokio::task::spawn_blocking(move || lilypad_store::add_path(&dir, &store))
        .await
        .map_err(|e| format!("publishing the result panicked: {e}"))?
        .map_err(|e| format!("publishing the result failed: {e}"))?;
    let hash = lilypad_module::spec_hash_of(&cid).ok_or("the result's CID is not sha2-256")?;
    Ok((cid, hash))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_result_folders_are_removed_and_finished_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        std::fs::create_dir_all(results.join("7.tmp/outputs")).unwrap();
        std::fs::write(results.join("7.tmp/stdout"), "half").unwrap();
        std::fs::create_dir_all(results.join("8/outputs")).unwrap();
        remove_unfinished_results(&results);
        assert!(!results.join("7.tmp").exists(), "a killed run's folder is removed");
        assert!(results.join("8/outputs").is_dir(), "a finished result is kept");
        remove_unfinished_results(&dir.path().join("missing")); // no folder: nothing to do
    }

    fn matched(matched_at: u64, run_timeout: u32) -> JobRecord {
        let snapshot_job = lilypad_bindings::Job {
            matchedAt: alloy::primitives::aliases::U40::from(matched_at),
            runTimeout: run_timeout,
            ..Default::default()
        };
        JobRecord { id: U256::from(1), job: snapshot_job, inputs: vec![], data_id: None, result_hash: None, updated_block: 0 }
    }

    #[test]
    fn a_run_ends_before_the_chain_deadline_with_room_to_submit() {
        // 60 s run timeout, matched at 1000, now 1010: 50 s left, 6 s (a tenth) kept to submit
        let left = run_deadline(&matched(1000, 60), 1010).saturating_duration_since(std::time::Instant::now());
        assert!(left <= Duration::from_secs(44) && left > Duration::from_secs(42), "{left:?}");
        // short timeouts keep SUBMIT_MARGIN
        let left = run_deadline(&matched(1000, 12), 1000).saturating_duration_since(std::time::Instant::now());
        assert!(left <= Duration::from_secs(9) && left > Duration::from_secs(7), "{left:?}");
        // past the deadline: no time at all
        let left = run_deadline(&matched(1000, 12), 2000).saturating_duration_since(std::time::Instant::now());
        assert_eq!(left, Duration::ZERO);
    }
}
