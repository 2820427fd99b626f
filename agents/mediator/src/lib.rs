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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_bindings::JobState;
use lilypad_chain::{BookSnapshot, ChainClient, ChainError, Checkpoint, EventStream, JobBook, JobRecord};
use lilypad_executor::Executor;
use lilypad_module::{Module, Verdict};
use lilypad_store::DiskBlockstore;
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
    #[error("module {path}: {reason}")]
    Module { path: PathBuf, reason: String },
    #[error("Docker: {0}")]
    Executor(#[from] lilypad_executor::ExecError),
    #[error("content store: {0}")]
    Store(#[from] lilypad_store::StoreError),
}

pub struct Mediator {
    client: ChainClient,
    index: u8,
    executor: Executor,
    store: DiskBlockstore,
    resolver: lilypad_provider::ModuleResolver,
    book: JobBook,
    stream: EventStream,
    ruled: HashSet<U256>,
    options: MediatorOptions,
    checkpoint: Checkpoint,
}

impl Mediator {
    /// Registers the signer as a mediator if needed and checks Docker and the modules.
    pub async fn start(client: ChainClient, options: MediatorOptions) -> Result<Self, MediatorError> {
        let me = client.address()?;
        let market = client.market();
        let account = client.read("reading the mediator's account", || async { market.accountOf(me).call().await }).await?;
        let index = if account.mediatorSlot == 0 || account.roles & 4 == 0 {
            let receipt = client.send("registerMediator", market.registerMediator()).await?;
            let _ = receipt;
            let account = client.read("reading the mediator's account", || async { market.accountOf(me).call().await }).await?;
            account.mediatorSlot.saturating_sub(1)
        } else {
            account.mediatorSlot - 1
        };
        let executor = Executor::connect_with(lilypad_provider::executor_config("mediator", me, &options.data_dir)).await?;
        executor.preflight().await?;
        // What a killed run of this mediator left: its containers and volumes (the outputs
        // holder would otherwise run forever) and unfinished re-run folders.
        let removed = executor.cleanup_leftovers().await?;
        if removed > 0 {
            info!(removed, "removed containers left by a previous run");
        }
        lilypad_provider::remove_unfinished_results(&options.data_dir.join("reruns"));
        let mut modules = HashMap::new();
        for dir in &options.modules {
            let m = Module::load(dir).map_err(|e| MediatorError::Module { path: dir.clone(), reason: e.to_string() })?;
            // It must re-run (and compare as) exactly the module pinned on chain.
            let pinned = client.read("reading the module directory", || async { market.getModule(m.id()).call().await.map(|r| r.spec.specHash) }).await?;
            if !pinned.is_zero() && pinned != m.spec_hash() {
                return Err(MediatorError::Module {
                    path: dir.clone(),
                    reason: format!("{} is pinned on chain to {pinned}, this folder is {}", m.reference(), m.spec_hash()),
                });
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
        let resolver = lilypad_provider::ModuleResolver::new(
            modules,
            options.ipfs_gateways.clone(),
            options.data_dir.join("cache"),
            false,
            !options.ipfs_gateways.is_empty(),
        );
        Ok(Self { client, index, executor, store, resolver, book, stream, ruled: HashSet::new(), options, checkpoint })
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

    async fn rule(&mut self, record: JobRecord) -> Result<(), MediatorError> {
        let id = record.id;
        let entry = self.book.module(&record.job.moduleId).cloned();
        let resolved = match self.resolver.resolve(record.job.moduleId, entry.as_ref()).await {
            Ok(r) => r,
            Err(reason) => {
                warn!(job = %id, %reason, "challenged job of a module this mediator cannot get; it will time out and refund everyone");
                self.ruled.insert(id);
                return Ok(());
            }
        };
        let module = resolved.module.clone();
        let dir = self.options.data_dir.join("reruns").join(id.to_string());
        let mine = match self.resolver.image(&resolved, &self.executor).await {
            Ok(_) => lilypad_provider::run_job(&self.executor, &self.store, &module, &record, &dir, false).await,
            Err(reason) => Err(reason),
        };
        let theirs = record.data_id.clone().unwrap_or_default();
        let (cid, verdict) = match mine {
            Ok((cid, _)) if cid.to_string() == theirs => (cid, Verdict::Same),
            Ok((cid, _)) if module.comparison().is_exact() => {
                (cid, Verdict::Differs { path: ".".into(), reason: format!("the result CIDs differ ({theirs} submitted, {cid} expected)") })
            }
            Ok((cid, _)) => match self.compare_declared(id, &module, &dir, &theirs).await {
                Ok(v) => (cid, v),
                Err(reason) => {
                    error!(job = %id, %reason, "cannot compare with the provider's result; leaving it to time out (everyone refunded)");
                    self.ruled.insert(id);
                    return Ok(());
                }
            },
            Err(reason) => {
                // A job that cannot run here at all (bad inputs) is the provider's fault only if it
                // claimed a result for it; the mediator's own failure must not slash anyone.
                error!(job = %id, %reason, "cannot re-run the job; leaving it to time out (everyone refunded)");
                self.ruled.insert(id);
                return Ok(());
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

    /// Fetches the provider's result `theirs` (verified against its CID) and compares it with
    /// the re-run in `mine` under the module's declared comparison. An error means no ruling
    /// can be made (the result could not be had, or the comparison could not be made).
    async fn compare_declared(&self, id: U256, module: &Module, mine: &std::path::Path, theirs: &str) -> Result<Verdict, String> {
        let gateway = self.options.gateway.as_deref().ok_or("no gateway to fetch the provider's result from (--gateway)")?;
        let cid = lilypad_store::parse_cid(theirs).map_err(|e| format!("the submitted data id {theirs:?} is not a CID: {e}"))?;
        let fetched = self.options.data_dir.join("submitted").join(id.to_string());
        if fetched.exists() {
            std::fs::remove_dir_all(&fetched).map_err(|e| format!("clearing {}: {e}", fetched.display()))?;
        }
        if let Some(parent) = fetched.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let mut attempt = 0;
        loop {
            match lilypad_store::fetch(gateway, &cid, &fetched).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && attempt < 5 => {
                    attempt += 1;
                    warn!(job = %id, %cid, error = %e, attempt, "fetching the provider's result failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
                Err(e) => return Err(format!("fetching the provider's result {cid} from {gateway}: {e}")),
            }
        }
        let (mine, theirs_dir, cmp) = (mine.to_path_buf(), fetched.clone(), module.comparison().clone());
        let verdict = tokio::task::spawn_blocking(move || lilypad_module::compare_results(&mine, &theirs_dir, &cmp))
            .await
            .map_err(|e| format!("the comparison panicked: {e}"))?
            .map_err(|e| format!("comparing with the provider's result: {e}"))?;
        info!(job = %id, module = %module.reference(), %verdict, "compared under the module's declared comparison");
        Ok(verdict)
    }
}
