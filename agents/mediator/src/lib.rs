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
//! [`auditor`]: an agent that challenges a random share of results.

#![forbid(unsafe_code)]

pub mod auditor;
mod compare;

pub use compare::ComparisonError;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{BookSnapshot, ChainClient, ChainError, Checkpoint, EventStream, JobBook, JobRecord, ModuleEntry};
use lilypad_module::{Module, Verdict};
use lilypad_runner::{DockerEngine, Engine, EngineError, ModuleResolver, RunError, Sources};
use lilypad_store::{Cid, DiskBlockstore};
use tracing::{error, info, warn};

#[derive(Clone, Debug)]
pub struct MediatorOptions {
    /// Module folders this mediator can re-run.
    pub modules: Vec<PathBuf>,
    /// Re-run published modules it has no folder for, fetched by CID (folder and image
    /// archive) from these IPFS gateways. Empty: local folders only.
    pub ipfs_gateways: Vec<String>,
    pub data_dir: PathBuf,
    pub poll: Duration,
    /// Where providers' results are fetched from (an IPFS path gateway, e.g. the provider's
    /// `http://host:8090`), for modules whose comparison is not byte for byte.
    pub gateway: Option<String>,
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
}

pub struct Mediator {
    client: ChainClient,
    index: u8,
    engine: Arc<dyn Engine>,
    store: DiskBlockstore,
    resolver: Arc<ModuleResolver>,
    book: JobBook,
    stream: EventStream,
    ruled: HashSet<U256>,
    options: MediatorOptions,
    checkpoint: Checkpoint,
}

/// Why a challenged job could not be re-run here.
enum RerunFailure {
    /// Its module could not be had.
    Module(RunError),
    /// It could not be prepared or run.
    Run(RunError),
}

impl Mediator {
    /// Registers the signer as a mediator if needed and checks Docker and the modules.
    pub async fn start(client: ChainClient, options: MediatorOptions) -> Result<Self, MediatorError> {
        let me = client.address()?;
        let market = client.market();
        let account = client.read("reading the mediator's account", || async { market.accountOf(me).call().await }).await?;
        let index = if account.mediatorSlot == 0 || account.roles & 4 == 0 {
            client.send("registerMediator", market.registerMediator()).await?;
            let account = client.read("reading the mediator's account", || async { market.accountOf(me).call().await }).await?;
            account.mediatorSlot.saturating_sub(1)
        } else {
            account.mediatorSlot - 1
        };
        let engine = DockerEngine::connect(lilypad_runner::executor_config("mediator", me, &options.data_dir)).await?;
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
        let checkpoint = Checkpoint::new(options.data_dir.join("checkpoint.json"));
        let saved: Option<(u64, BookSnapshot)> = checkpoint.load()?;
        let (from_block, book) = saved
            .and_then(|(b, s)| JobBook::from_snapshot(&s).map(|book| (b, book)))
            .unwrap_or((client.deployment().start_block, JobBook::new()));
        let stream = EventStream::new(client.clone(), from_block).poll_interval(options.poll);
        info!(mediator = %me, index, from_block, "mediator ready");
        let sources = Sources {
            gateways: options.ipfs_gateways.clone(),
            cache: options.data_dir.join("cache"),
            allow_git: false,
            fetch: !options.ipfs_gateways.is_empty(),
        };
        let resolver = Arc::new(ModuleResolver::new(modules, sources));
        Ok(Self { client, index, engine: Arc::new(engine), store, resolver, book, stream, ruled: HashSet::new(), options, checkpoint })
    }

    pub fn index(&self) -> u8 {
        self.index
    }

    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), MediatorError> {
        tokio::pin!(shutdown);
        loop {
            let step = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.step() => r,
            };
            match step {
                Ok(()) => {}
                Err(MediatorError::Chain(e)) if e.is_retryable() => {
                    warn!(error = %e, "chain unavailable; will retry");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads new events and rules on every challenge this mediator has to decide.
    pub async fn step(&mut self) -> Result<(), MediatorError> {
        let batch = self.stream.next_batch().await?;
        for log in &batch.logs {
            self.book.apply(log);
        }
        let mine: Vec<JobRecord> = self
            .book
            .live()
            .filter(|r| r.state() == JobState::Challenged && r.job.mediator == self.index && !self.ruled.contains(&r.id))
            .cloned()
            .collect();
        for record in mine {
            self.rule(record).await?;
        }
        // A ruling that did not land before a crash is made again after it: the job is still
        // Challenged in the saved book and on chain.
        self.checkpoint.save(&(self.stream.next_block(), self.book.snapshot()))?;
        Ok(())
    }

    /// Re-runs the challenged job in a task of its own, joined: a re-run that panics is
    /// reported as one that could not be made (the job times out and everyone is refunded).
    async fn rerun(&self, record: &JobRecord, entry: Option<ModuleEntry>, dir: PathBuf) -> Result<(Arc<Module>, (Cid, B256)), RerunFailure> {
        let (resolver, engine, store, record) = (self.resolver.clone(), self.engine.clone(), self.store.clone(), record.clone());
        let job = record.id;
        let task = tokio::spawn(async move {
            let resolved = resolver.resolve(record.job.moduleId, entry.as_ref()).await.map_err(RerunFailure::Module)?;
            let module = resolved.module.clone();
            resolver.prepare(&resolved, engine.as_ref()).await.map_err(RerunFailure::Run)?;
            let result = lilypad_runner::run_job(engine.as_ref(), &store, &module, &record, &dir, false).await.map_err(RerunFailure::Run)?;
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

    async fn rule(&mut self, record: JobRecord) -> Result<(), MediatorError> {
        let id = record.id;
        let entry = self.book.module(&record.job.moduleId).cloned();
        let dir = self.options.data_dir.join("reruns").join(id.to_string());
        let (module, mine) = match self.rerun(&record, entry, dir.clone()).await {
            Ok((module, (cid, _))) => (module, cid),
            Err(RerunFailure::Module(reason)) => {
                warn!(job = %id, %reason, "challenged job of a module this mediator cannot get; it will time out and refund everyone");
                self.ruled.insert(id);
                return Ok(());
            }
            Err(RerunFailure::Run(reason)) => {
                // A job that cannot run here at all (bad inputs) is the provider's fault only if it
                // claimed a result for it; the mediator's own failure must not slash anyone.
                error!(job = %id, %reason, retryable = reason.is_retryable(), "cannot re-run the job; leaving it to time out (everyone refunded)");
                self.ruled.insert(id);
                return Ok(());
            }
        };
        let theirs = record.data_id.clone().unwrap_or_default();
        let cid = mine;
        let verdict = if cid.to_string() == theirs {
            Verdict::Same
        } else if module.comparison().is_exact() {
            Verdict::Differs { path: ".".into(), reason: format!("the result CIDs differ ({theirs} submitted, {cid} expected)") }
        } else {
            let fetched = self.options.data_dir.join("submitted").join(id.to_string());
            match compare::compare_declared(id, &module, &dir, &theirs, self.options.gateway.as_deref(), &fetched).await {
                Ok(v) => v,
                Err(reason) => {
                    error!(job = %id, %reason, "cannot compare with the provider's result; leaving it to time out (everyone refunded)");
                    self.ruled.insert(id);
                    return Ok(());
                }
            }
        };
        let market = self.client.market();
        let sent = match verdict {
            Verdict::Same => {
                info!(job = %id, provider = %theirs, mediator = %cid, module = %module.reference(), "the provider's result is right: rejecting the challenge");
                let call = market.rejectChallenge(id, record.job.clone(), theirs.clone(), record.result_hash.unwrap_or_default());
                self.client.send(&format!("rejectChallenge(job {id})"), call).await
            }
            Verdict::Differs { path, reason } => {
                info!(job = %id, provider = %theirs, mediator = %cid, %path, %reason, "the provider's result is wrong: upholding the challenge");
                let call = market.upholdChallenge(id, record.job.clone(), cid.to_string());
                self.client.send(&format!("upholdChallenge(job {id})"), call).await
            }
        };
        match sent {
            Ok(_) => {
                self.ruled.insert(id);
            }
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => {
                error!(job = %id, error = %e, "the market refused the ruling");
                self.ruled.insert(id);
            }
        }
        Ok(())
    }
}
