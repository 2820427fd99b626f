//! The mediator: when a result it was chosen for is challenged, it re-runs the job from the
//! same pinned module and inputs, compares its result with the provider's (the whole result
//! folder's CID: stdout, stderr, exit code and outputs), and rules on chain: the challenge is
//! upheld when they differ (the provider's collateral is slashed) and rejected when they match.
//!
//! Modules that declare themselves non-deterministic need the comparison their spec declares;
//! until that lands the mediator compares bytes and says so in its log.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use lilypad_bindings::JobState;
use lilypad_chain::{BookSnapshot, ChainClient, ChainError, Checkpoint, EventStream, JobBook, JobRecord};
use lilypad_executor::Executor;
use lilypad_module::Module;
use lilypad_store::DiskBlockstore;
use tracing::{error, info, warn};

#[derive(Clone, Debug)]
pub struct MediatorOptions {
    /// Module folders this mediator can re-run.
    pub modules: Vec<PathBuf>,
    pub data_dir: PathBuf,
    pub poll: Duration,
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
    modules: HashMap<B256, Arc<Module>>,
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
        Ok(Self { client, index, executor, store, modules, book, stream, ruled: HashSet::new(), options, checkpoint })
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
        let Some(module) = self.modules.get(&record.job.moduleId).cloned() else {
            warn!(job = %id, "challenged job of a module this mediator does not have; it will time out and refund everyone");
            self.ruled.insert(id);
            return Ok(());
        };
        if !module.spec().deterministic {
            warn!(job = %id, module = %module.reference(), "non-deterministic module: comparing bytes until declared comparisons land");
        }
        let dir = self.options.data_dir.join("reruns").join(id.to_string());
        let mine = lilypad_provider::run_job(&self.executor, &self.store, &module, &record, &dir, false).await;
        let market = self.client.market();
        let theirs = record.data_id.clone().unwrap_or_default();
        let sent = match mine {
            Ok((cid, _)) if cid.to_string() == theirs => {
                info!(job = %id, %cid, "the provider's result is right: rejecting the challenge");
                let call = market.rejectChallenge(id, record.job.clone(), theirs.clone(), record.result_hash.unwrap_or_default());
                self.client.send(&format!("rejectChallenge(job {id})"), call).await
            }
            Ok((cid, _)) => {
                info!(job = %id, provider = %theirs, mediator = %cid, "the provider's result differs: upholding the challenge");
                let call = market.upholdChallenge(id, record.job.clone(), cid.to_string());
                self.client.send(&format!("upholdChallenge(job {id})"), call).await
            }
            Err(reason) => {
                // A job that cannot run here at all (bad inputs) is the provider's fault only if it
                // claimed a result for it; the mediator's own failure must not slash anyone.
                error!(job = %id, %reason, "cannot re-run the job; leaving it to time out (everyone refunded)");
                self.ruled.insert(id);
                return Ok(());
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

