//! The gateway's side of the chain: it submits `runJob` from its own funded key, watches the
//! market's events (an [`EventStream`] with a cursor saved in the database), moves its jobs
//! through their states, refunds credit for jobs refunded on chain, reconciles jobs a crash
//! left half-submitted, fetches results, and keeps the public market view the dashboard shows.
//!
//! Crash safety of a submission: the job row (with its charge) is written first; then, under
//! one lock, the transaction nonce the `runJob` will use is recorded, then the transaction is
//! sent. After a crash, a `submitting` row is resolved from the chain alone:
//! - a `JobCreated` whose client is the gateway and whose transaction has the row's nonce links
//!   the row to its on-chain job (the watcher does this for every such event);
//! - a nonce the chain never saw (no row nonce, or the account's pending nonce is not past it)
//!   means nothing was sent: the job fails and its charge is refunded;
//! - a nonce used by a mined transaction that created no job (the watcher has read past that
//!   block and linked nothing) means the transaction reverted: likewise failed and refunded.

use std::collections::{HashSet, VecDeque};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use lilypad_chain::{CancellationToken, ChainClient, ChainError, Challenge, FailureLog, Follower, JobBook, JobChange, MarketEvent, MarketLog, Outcome};
use serde_json::{json, Value};
use tokio::sync::{broadcast, Mutex};
use tracing::{info, warn};

use crate::db::{now_ms, Db, DbError, JobRow};
pub use crate::outputs::OutputSources;

const CURSOR: &str = "market";
/// Market events kept for dashboards that connect later.
const BACKLOG: usize = 2_000;

/// Why the chain side failed a request or a step.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// Reading the chain or sending a transaction failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// One job could not be moved on.
    #[error("job {job}: {reason}")]
    Job {
        /// The gateway's job id.
        job: String,
        /// Why.
        reason: String,
    },
}

/// The public market, as the dashboard and `/modules` see it.
#[derive(Default)]
pub struct MarketView {
    /// Live jobs and published modules.
    pub book: JobBook,
    /// Providers, their offers and resources, mediators: the same view the solver matches
    /// against (`lilypad_chain::MarketView`).
    pub market: lilypad_chain::MarketView,
    /// The latest market events as JSON, for dashboards that connect later.
    pub recent: VecDeque<Arc<str>>,
    /// Last block read.
    pub block: u64,
}

/// Shared state of the chain side.
pub struct Market {
    /// The chain connection, signing with the gateway's key.
    pub client: ChainClient,
    /// The gateway's address (the client of the jobs it submits).
    pub me: Address,
    /// The market deployment served (`ChainKey::folder_name`): the key of its jobs.
    pub deployment: String,
    pub(crate) db: Arc<Db>,
    submit_lock: Mutex<()>,
    in_flight: StdMutex<HashSet<String>>,
    pub(crate) fetching: StdMutex<HashSet<String>>,
    /// The public market, as of the last batch read.
    pub view: RwLock<MarketView>,
    /// Market events as JSON, live.
    pub events: broadcast::Sender<Arc<str>>,
    /// Ids of gateway jobs that changed.
    pub job_updates: broadcast::Sender<String>,
    /// Last block whose events are applied to the database.
    watcher_block: AtomicU64,
    outputs_dir: PathBuf,
    pub(crate) outputs: OutputSources,
    /// The HTTP client for announced endpoints ([`crate::endpoints::client`]); `None` if it
    /// could not be built (then only the configured gateway is used).
    pub(crate) endpoint_client: Option<reqwest::Client>,
}

impl Market {
    /// The chain side of a gateway signing with `client`'s key; fetched outputs go to
    /// `outputs_dir/<job>`, fetched from `outputs` (the provider's announced endpoints, then
    /// the configured gateway).
    pub fn new(client: ChainClient, db: Arc<Db>, outputs_dir: PathBuf, outputs: OutputSources) -> Result<Arc<Market>, MarketError> {
        let me = client.address()?;
        let endpoint_client = match crate::endpoints::client(outputs.policy) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "cannot build the HTTP client for providers' announced endpoints; outputs come from the configured gateway only");
                None
            }
        };
        let deployment = client.chain_key().folder_name();
        Ok(Arc::new(Market {
            client,
            me,
            deployment,
            db,
            submit_lock: Mutex::new(()),
            in_flight: StdMutex::new(HashSet::new()),
            fetching: StdMutex::new(HashSet::new()),
            view: RwLock::new(MarketView::default()),
            events: broadcast::channel(1024).0,
            job_updates: broadcast::channel(1024).0,
            watcher_block: AtomicU64::new(0),
            outputs_dir,
            outputs,
            endpoint_client,
        }))
    }

    /// The last block whose events are applied to the database.
    pub fn watcher_block(&self) -> u64 {
        self.watcher_block.load(Ordering::SeqCst)
    }

    /// Where job `job_id`'s outputs are (or will be) fetched to.
    pub fn outputs_dir(&self, job_id: &str) -> PathBuf {
        self.outputs_dir.join(job_id)
    }

    pub(crate) fn notify(&self, job_id: &str) {
        let _ = self.job_updates.send(job_id.to_string());
    }

    /// Lets the market pull job payments from the gateway's token balance (once, unlimited).
    pub async fn ensure_allowance(&self) -> Result<(), MarketError> {
        let token = self.client.token();
        let market = self.client.deployment().market;
        let allowance = self.client.market_allowance(self.me).await?;
        if allowance < U256::MAX >> 1 {
            let _g = self.submit_lock.lock().await;
            self.client.send("approve", token.approve(market, U256::MAX)).await?;
            info!(gateway = %self.me, "approved the market to take job payments");
        }
        Ok(())
    }

    /// The gateway's token balance.
    pub async fn token_balance(&self) -> Result<U256, MarketError> {
        Ok(self.client.token_balance(self.me).await?)
    }

    /// Sends `runJob` for a job recorded in state `submitting`. Returns the job as it is after.
    /// A transport failure leaves the job `submitting`: the reconciler settles it from the chain.
    pub async fn submit(&self, job: &JobRow) -> Result<JobRow, MarketError> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(job.id.clone());
        let result = self.submit_inner(job).await;
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
        result?;
        self.notify(&job.id);
        self.db.job(&job.id).await?.ok_or_else(|| MarketError::Job { job: job.id.clone(), reason: "vanished from the database".into() })
    }

    async fn submit_inner(&self, job: &JobRow) -> Result<(), MarketError> {
        let _g = self.submit_lock.lock().await;
        let nonce = self
            .client
            .retrying("reading the gateway's nonce", || self.client.provider().get_transaction_count(self.me).pending().into_future())
            .await?;
        self.db.set_tx_nonce(&job.id, Some(nonce)).await?;
        let market = self.client.market();
        let call = market.runJob(job.module.clone(), job.inputs.clone(), self.me).nonce(nonce);
        match self.client.send(&format!("runJob({}) for {}", job.module, job.id), call).await {
            Ok(receipt) => {
                let id = lilypad_client::created_job_id(&receipt)
                    .ok_or_else(|| MarketError::Job { job: job.id.clone(), reason: "runJob's receipt has no JobCreated".into() })?;
                let block = receipt.block_number;
                self.record_created(job, id, block, None).await?;
                Ok(())
            }
            Err(e @ ChainError::Reverted { .. }) => {
                self.fail_and_refund(job, &format!("the market refused the job: {e}")).await?;
                Ok(())
            }
            Err(e) => {
                warn!(job = %job.id, error = %e, "runJob failed; the job stays submitting until the chain tells");
                self.db.add_job_event(&format!("{}:send-error:{}", job.id, now_ms()), &job.id, "submitting", &format!("sending runJob failed: {e}; waiting for the chain"), None).await?;
                Err(e.into())
            }
        }
    }

    async fn record_created(&self, job: &JobRow, chain_id: U256, block: Option<u64>, log_index: Option<u64>) -> Result<(), MarketError> {
        let linked = self.db.link_chain_id(&job.id, &chain_id.to_string()).await?;
        let key = match (block, log_index) {
            (Some(b), Some(i)) => format!("{}:{b}:{i}", job.id),
            _ => format!("{}:created", job.id),
        };
        if linked {
            self.db
                .add_job_event(&key, &job.id, "open", &format!("created on chain as job {chain_id}; waiting for a match"), block)
                .await?;
            info!(job = %job.id, chain_id = %chain_id, "job created on chain");
        }
        self.notify(&job.id);
        Ok(())
    }

    async fn fail_and_refund(&self, job: &JobRow, reason: &str) -> Result<(), MarketError> {
        if self.db.set_state(&job.id, "failed", None, Some(reason)).await? {
            self.db.add_job_event(&format!("{}:failed", job.id), &job.id, "failed", reason, None).await?;
        }
        let current = self.db.job(&job.id).await?;
        if current.as_ref().map(|j| j.state.as_str()) == Some("failed") {
            self.db.refund_job(job, &format!("job:{}:refund", job.id), job.payment, &format!("refund: {reason}")).await?;
        }
        warn!(job = %job.id, reason, "job failed; refunded");
        self.notify(&job.id);
        Ok(())
    }

    /// Gives jobs recorded before jobs were keyed by deployment to this one when this database
    /// has followed no other ([`Db::adopt_unkeyed_jobs`]); logs those left without one. Call
    /// before the watcher starts (it saves this deployment's cursor).
    pub async fn adopt_unkeyed_jobs(&self) -> Result<(), MarketError> {
        let cursor = self.client.chain_key().scoped(CURSOR);
        let adopted = self.db.adopt_unkeyed_jobs(&self.deployment, CURSOR, &cursor).await?;
        if adopted > 0 {
            info!(adopted, deployment = %self.deployment, "jobs recorded before deployments were kept belong to this one (the only deployment this database followed)");
        }
        let left = self.db.unkeyed_jobs().await?;
        if left > 0 {
            warn!(jobs = left, deployment = %self.deployment, "jobs recorded before deployments were kept, while this database followed other deployments too: they are shown by id but neither listed, followed nor settled");
        }
        Ok(())
    }

    // ------------------------------------------------------------------ the watcher

    /// Reads the market's events from the deployment's first block (the view needs them all)
    /// and applies those past the saved cursor to the database. Runs until `stop` is
    /// cancelled, between batches (a batch is applied whole).
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let start = self.client.deployment().start_block;
        // keyed by chain: another deployment's cursor (a devnet restarted) is not resumed
        let cursor = self.client.chain_key().scoped(CURSOR);
        let applied_to = match self.db.cursor(&cursor).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read the chain cursor; replaying every event (effects are idempotent)");
                None
            }
        };
        let mut follower = Follower::new(self.client.clone(), start).poll_interval(Duration::from_millis(200));
        let mut reading = FailureLog::new("reading the market's events");
        let mut applying = FailureLog::new("applying a market event to the database");
        let mut saving = FailureLog::new("saving the chain cursor (effects are idempotent; going on)");
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = follower.next() => next,
            };
            let applied = match next {
                Ok(a) => {
                    reading.succeeded();
                    a
                }
                Err(e) => {
                    reading.failed(&e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for (log, change) in &applied.entries {
                let event = Arc::<str>::from(event_json(log).to_string());
                self.show(log, event.clone());
                let _ = self.events.send(event);
                if applied_to.is_some_and(|c| log.block <= c) {
                    continue;
                }
                let mut delay = Duration::from_millis(200);
                while let Err(e) = self.apply(log, change.as_ref()).await {
                    applying.failed(&format_args!("block {}: {e}", log.block));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                applying.succeeded();
            }
            {
                let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
                view.book = follower.book().clone();
                view.block = applied.to;
            }
            if applied_to.is_none_or(|c| applied.to > c) {
                match self.db.set_cursor(&cursor, applied.to).await {
                    Ok(()) => saving.succeeded(),
                    Err(e) => {
                        saving.failed(&e);
                    }
                }
            }
            self.watcher_block.store(applied.to, Ordering::SeqCst);
            if applied.logs().any(|l| matches!(l.event, MarketEvent::ResultSubmitted(_))) {
                match self.db.jobs_missing_outputs(&self.deployment).await {
                    Ok(jobs) => jobs.into_iter().for_each(|j| self.spawn_fetch(j)),
                    Err(e) => warn!(error = %e, "listing results to fetch failed; the reconciler retries"),
                }
            }
        }
    }

    /// Adds a market event to the public view and the recent events.
    fn show(&self, log: &MarketLog, event: Arc<str>) {
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        view.market.apply(log);
        view.recent.push_back(event);
        if view.recent.len() > BACKLOG {
            view.recent.pop_front();
        }
    }

    async fn apply(&self, log: &MarketLog, change: Option<&JobChange>) -> Result<(), MarketError> {
        let key = |job: &JobRow| format!("{}:{}:{}", job.id, log.block, log.log_index);
        if let MarketEvent::JobCreated(e) = &log.event {
            if e.client != self.me {
                return Ok(());
            }
            if self.db.job_by_chain_id(&self.deployment, &e.id.to_string()).await?.is_some() {
                return Ok(());
            }
            let tx = self
                .client
                .retrying("reading a transaction", || self.client.provider().get_transaction_by_hash(log.tx).into_future())
                .await?;
            let Some(tx) = tx else { return Ok(()) };
            use alloy::consensus::Transaction as _;
            let nonce = tx.inner.nonce();
            if let Some(job) = self.db.submitting_job_with_nonce(&self.deployment, nonce).await? {
                info!(job = %job.id, chain_id = %e.id, nonce, "reconciled a submitted job from its JobCreated");
                self.record_created(&job, e.id, Some(log.block), Some(log.log_index)).await?;
            }
            return Ok(());
        }
        let Some(change) = change else { return Ok(()) };
        let chain_id = match change {
            JobChange::Matched(id) | JobChange::Released(id) | JobChange::Submitted(id) | JobChange::Challenged(id) => *id,
            JobChange::Finished { id, .. } => *id,
            _ => return Ok(()),
        };
        let Some(job) = self.db.job_by_chain_id(&self.deployment, &chain_id.to_string()).await? else { return Ok(()) };
        match change {
            JobChange::Matched(_) => {
                let detail = match &log.event {
                    MarketEvent::JobMatched(m) => format!("matched with provider {} at {} (solver fee {})", m.provider, m.price, m.solverFee),
                    _ => "matched".into(),
                };
                if let MarketEvent::JobMatched(m) = &log.event {
                    self.db.set_provider(&job.id, Some(&m.provider.to_string())).await?;
                }
                self.db.set_state(&job.id, "matched", None, None).await?;
                self.db.add_job_event(&key(&job), &job.id, "matched", &detail, Some(log.block)).await?;
            }
            JobChange::Released(_) => {
                self.db.set_provider(&job.id, None).await?;
                self.db.set_state(&job.id, "open", None, None).await?;
                self.db.add_job_event(&key(&job), &job.id, "open", "given back by its provider; waiting for another match", Some(log.block)).await?;
            }
            JobChange::Submitted(_) => {
                let data_id = match &log.event {
                    MarketEvent::ResultSubmitted(r) => {
                        // the provider that posted the result serves its outputs
                        self.db.set_provider(&job.id, Some(&r.provider.to_string())).await?;
                        r.dataId.clone()
                    }
                    _ => String::new(),
                };
                self.db.set_state(&job.id, "submitted", Some(&data_id), None).await?;
                self.db
                    .add_job_event(&key(&job), &job.id, "submitted", &format!("result submitted: {data_id}"), Some(log.block))
                    .await?;
            }
            JobChange::Challenged(_) => {
                self.db.set_state(&job.id, "challenged", None, None).await?;
                self.db.add_job_event(&key(&job), &job.id, "challenged", "the result is challenged; a mediator re-runs it", Some(log.block)).await?;
            }
            JobChange::Finished { outcome, record, .. } => {
                let (state, detail, refund) = match outcome {
                    Outcome::Settled { refund, challenge } => (
                        "settled",
                        format!(
                            "settled{}{}",
                            match challenge {
                                Challenge::Unchallenged => "",
                                Challenge::Rejected => " after a rejected challenge",
                                Challenge::Nondeterministic => " after a challenge the mediator could not judge (the module was ruled non-deterministic)",
                                Challenge::MediationTimedOut => " after a challenge the mediator did not rule on in time (the result stands)",
                            },
                            if *refund > 0 { format!("; unused payment {refund} credited back") } else { String::new() }
                        ),
                        *refund,
                    ),
                    Outcome::Cancelled => ("cancelled", "cancelled; payment refunded".to_string(), record.job.payment),
                    Outcome::Expired => ("expired", "no provider matched it in time; payment refunded".to_string(), record.job.payment),
                    Outcome::ResultTimedOut => ("timed_out", "the provider posted no result in time; payment refunded".to_string(), record.job.payment),
                    Outcome::Upheld { correct_data_id } => {
                        ("upheld", format!("the mediator found the result wrong (correct: {correct_data_id}); payment refunded"), record.job.payment)
                    }
                };
                self.db.set_state(&job.id, state, None, None).await?;
                self.db.add_job_event(&key(&job), &job.id, state, &detail, Some(log.block)).await?;
                if refund > 0 {
                    let entry = if state == "settled" { format!("job:{}:unused", job.id) } else { format!("job:{}:refund", job.id) };
                    self.db.refund_job(&job, &entry, refund, &format!("job {chain_id} {state}")).await?;
                }
            }
            _ => {}
        }
        self.notify(&job.id);
        Ok(())
    }

    // ------------------------------------------------------------------ reconciliation

    /// Runs [`Market::reconcile_once`] every `every`, until the task is stopped. A failure
    /// that repeats is logged once, then with backoff.
    pub async fn reconcile(self: Arc<Self>, every: Duration) -> Result<(), MarketError> {
        let mut failures = FailureLog::new("reconciling jobs");
        loop {
            match self.reconcile_once().await {
                Ok(()) => failures.succeeded(),
                Err(e) => {
                    failures.failed(&e);
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Settles `submitting` jobs no request is sending (see the module's doc) and fetches
    /// results not fetched yet.
    pub async fn reconcile_once(self: &Arc<Self>) -> Result<(), MarketError> {
        let submitting = self.db.jobs_in_state(&self.deployment, "submitting").await?;
        for job in submitting {
            if self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains(&job.id) {
                continue;
            }
            let Some(nonce) = job.tx_nonce.map(|n| n as u64) else {
                // recorded, never sent (a crash before the nonce was taken)
                self.fail_and_refund(&job, "the gateway stopped before sending the job; nothing was paid on chain").await?;
                continue;
            };
            let head = self.client.retrying("reading the block number", || self.client.provider().get_block_number()).await?;
            let mined = self
                .client
                .retrying("reading the gateway's nonce", || self.client.provider().get_transaction_count(self.me).into_future())
                .await?;
            if mined <= nonce {
                let pending = self
                    .client
                    .retrying("reading the gateway's nonce", || self.client.provider().get_transaction_count(self.me).pending().into_future())
                    .await?;
                if pending <= nonce {
                    self.fail_and_refund(&job, "its transaction never reached the chain; nothing was paid on chain").await?;
                }
                continue; // else: in the mempool, wait
            }
            // the nonce is used in a block <= head: once the watcher has read that far, a
            // JobCreated would have linked the job
            if self.watcher_block.load(Ordering::SeqCst) >= head {
                let now = self.db.job(&job.id).await?;
                if now.as_ref().is_some_and(|j| j.state == "submitting" && j.chain_id.is_none()) {
                    self.fail_and_refund(&job, "its transaction was mined but created no job").await?;
                }
            }
        }
        for job in self.db.jobs_missing_outputs(&self.deployment).await? {
            self.spawn_fetch(job);
        }
        Ok(())
    }

}

fn resources_json(r: &lilypad_bindings::Resources) -> Value {
    json!({"cpuMilli": r.cpuMilli, "ramMb": r.ramMb, "diskMb": r.diskMb, "vramMb": r.vramMb, "gpus": r.gpus})
}

/// A market event as JSON for the dashboard and `/api/v1/events`: `type`, its fields (amounts,
/// job ids and bitmasks as decimal strings) and where it was logged. Each event's shape is the
/// `MarketEvent` schema of the OpenAPI document ([`crate::openapi`]): change both together.
pub fn event_json(log: &MarketLog) -> Value {
    use MarketEvent as E;
    let mut v = match &log.event {
        E::JobCreated(e) => json!({"type": "JobCreated", "id": e.id.to_string(), "client": e.client, "payee": e.payee,
            "moduleId": e.moduleId, "inputs": e.inputs, "payment": e.payment.to_string()}),
        E::JobMatched(e) => json!({"type": "JobMatched", "id": e.id.to_string(), "provider": e.provider, "solver": e.solver,
            "mediator": e.mediator, "price": e.price.to_string(), "solverFee": e.solverFee.to_string(), "collateral": e.collateral.to_string()}),
        E::JobReleased(e) => json!({"type": "JobReleased", "id": e.id.to_string(), "provider": e.provider, "penalty": e.penalty.to_string()}),
        E::ResultSubmitted(e) => json!({"type": "ResultSubmitted", "id": e.id.to_string(), "provider": e.provider, "dataId": e.dataId}),
        E::ResultChallenged(e) => json!({"type": "ResultChallenged", "id": e.id.to_string(), "challenger": e.challenger, "mediator": e.mediator}),
        E::JobSettled(e) => json!({"type": "JobSettled", "id": e.id.to_string(), "provider": e.provider, "price": e.price.to_string(),
            "solverFee": e.solverFee.to_string(), "refund": e.refund.to_string()}),
        E::ChallengeRuled(e) => json!({"type": "ChallengeRuled", "id": e.id.to_string(), "mediator": e.mediator, "upheld": e.upheld,
            "correctDataId": e.correctDataId}),
        E::JobCancelled(e) => json!({"type": "JobCancelled", "id": e.id.to_string(), "by": e.by}),
        E::JobExpired(e) => json!({"type": "JobExpired", "id": e.id.to_string()}),
        E::ResultTimedOut(e) => json!({"type": "ResultTimedOut", "id": e.id.to_string(), "provider": e.provider, "slashed": e.slashed.to_string()}),
        E::MediationTimedOut(e) => json!({"type": "MediationTimedOut", "id": e.id.to_string(), "mediator": e.mediator}),
        E::ModuleRuledNondeterministic(e) => {
            json!({"type": "ModuleRuledNondeterministic", "id": e.id.to_string(), "moduleId": e.moduleId, "mediator": e.mediator})
        }
        E::CallbackFailed(e) => json!({"type": "CallbackFailed", "id": e.id.to_string(), "client": e.client}),
        E::Deposited(e) => json!({"type": "Deposited", "account": e.account, "from": e.from, "amount": e.amount.to_string()}),
        E::Withdrew(e) => json!({"type": "Withdrew", "account": e.account, "to": e.to, "amount": e.amount.to_string()}),
        E::ClientAuthorized(e) => json!({"type": "ClientAuthorized", "payee": e.payee, "client": e.client,
            "allowance": {"remaining": e.allowance.remaining.to_string(), "maxPayment": e.allowance.maxPayment.to_string(), "minChallengeWindow": e.allowance.minChallengeWindow}}),
        E::RolesChanged(e) => json!({"type": "RolesChanged", "account": e.account, "roles": e.roles}),
        E::ProviderMediatorsSet(e) => json!({"type": "ProviderMediatorsSet", "provider": e.provider, "mediators": e.mediators.to_string()}),
        E::ResourcesSet(e) => json!({"type": "ResourcesSet", "provider": e.provider, "resources": resources_json(&e.resources)}),
        E::OfferSet(e) => json!({"type": "OfferSet", "provider": e.provider, "moduleId": e.moduleId, "price": e.price.to_string(), "active": e.active,
            "minRunTimeout": e.minRunTimeout, "maxRunTimeout": e.maxRunTimeout, "maxCallbackGas": e.maxCallbackGas}),
        E::ModulesAnnounced(e) => json!({"type": "ModulesAnnounced", "provider": e.provider, "moduleIds": e.moduleIds, "ready": e.ready}),
        E::EndpointsAnnounced(e) => json!({"type": "EndpointsAnnounced", "provider": e.provider, "endpoints": e.endpoints}),
        E::MediatorRegistered(e) => json!({"type": "MediatorRegistered", "mediator": e.mediator, "index": e.index}),
        E::MediatorApproved(e) => json!({"type": "MediatorApproved", "account": e.account, "approved": e.approved}),
        E::MediatorActiveSet(e) => json!({"type": "MediatorActiveSet", "index": e.index, "active": e.active}),
        E::MediatorSuspended(e) => json!({"type": "MediatorSuspended", "index": e.index, "suspended": e.suspended}),
        E::DefaultMediatorsSet(e) => json!({"type": "DefaultMediatorsSet", "mediators": e.mediators.to_string()}),
        E::ModulePublished(e) => json!({"type": "ModulePublished", "moduleId": e.moduleId, "name": e.name, "version": e.version,
            "publisher": e.publisher, "defaultPayment": e.spec.defaultPayment.to_string(), "runTimeout": e.spec.runTimeout}),
        E::ModuleNameTransferred(e) => json!({"type": "ModuleNameTransferred", "nameHash": e.nameHash, "name": e.name, "from": e.from, "to": e.to}),
        E::OwnershipTransferred(e) => json!({"type": "OwnershipTransferred", "oldOwner": e.oldOwner, "newOwner": e.newOwner}),
        E::OwnershipHandoverRequested(e) => json!({"type": "OwnershipHandoverRequested", "pendingOwner": e.pendingOwner}),
        E::OwnershipHandoverCanceled(e) => json!({"type": "OwnershipHandoverCanceled", "pendingOwner": e.pendingOwner}),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("block".into(), json!(log.block));
        o.insert("logIndex".into(), json!(log.log_index));
        o.insert("tx".into(), json!(log.tx));
    }
    v
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, U256};
    use lilypad_bindings::LilypadMarket as M;
    use lilypad_chain::{MarketEvent, MarketLog};

    /// Events a devnet rarely logs (the devnet test checks the others against the schemas):
    /// their JSON has exactly the fields the OpenAPI document names, with uints past 2^53 as
    /// decimal strings.
    #[test]
    fn market_events_have_the_documented_fields() {
        let a = Address::repeat_byte(0x11);
        let events = vec![
            MarketEvent::OwnershipTransferred(M::OwnershipTransferred { oldOwner: a, newOwner: a }),
            MarketEvent::OwnershipHandoverRequested(M::OwnershipHandoverRequested { pendingOwner: a }),
            MarketEvent::ModulesAnnounced(M::ModulesAnnounced { provider: a, moduleIds: vec![B256::repeat_byte(2)], ready: true }),
            MarketEvent::DefaultMediatorsSet(M::DefaultMediatorsSet { mediators: u64::MAX }),
            MarketEvent::ProviderMediatorsSet(M::ProviderMediatorsSet { provider: a, mediators: 3 }),
            MarketEvent::Withdrew(M::Withdrew { account: a, to: a, amount: U256::MAX }),
            MarketEvent::MediatorRegistered(M::MediatorRegistered { mediator: a, index: 2 }),
            MarketEvent::JobCancelled(M::JobCancelled { id: U256::from(7), by: a }),
        ];
        for event in events {
            let log = MarketLog { block: 9, tx: B256::repeat_byte(0xab), log_index: 1, event };
            let v = super::event_json(&log);
            let name = v["type"].as_str().unwrap().to_string();
            let mut want = crate::openapi::streams::market_event_fields(&name).unwrap_or_else(|| panic!("{name} is not documented"));
            want.extend(["type", "block", "logIndex", "tx"]);
            let mut have: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            want.sort();
            have.sort();
            assert_eq!(have, want, "{v}");
            assert_eq!((v["block"].as_u64(), v["logIndex"].as_u64()), (Some(9), Some(1)));
            assert_eq!(v["tx"], format!("0x{}", "ab".repeat(32)));
        }
        let big = super::event_json(&MarketLog { block: 1, tx: B256::ZERO, log_index: 0, event: MarketEvent::DefaultMediatorsSet(M::DefaultMediatorsSet { mediators: u64::MAX }) });
        assert_eq!(big["mediators"], u64::MAX.to_string());
    }
}
