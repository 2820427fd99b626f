//! One supervised task per matched job: its module resolved and prepared, the job run before
//! its deadline on chain, the result published (and pinned to IPFS where configured).

use std::path::PathBuf;
use std::sync::Arc;

use lilypad_chain::{ChainClient, JobRecord, ModuleEntry};
use lilypad_runner::{Engine, ModuleResolver};
use lilypad_store::DiskBlockstore;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::{Finished, Provider, TestHooks};

/// What one run needs, cloned out of the provider.
struct RunContext {
    client: ChainClient,
    engine: Arc<dyn Engine>,
    engines: lilypad_chain::EngineSet,
    store: DiskBlockstore,
    resolver: Arc<ModuleResolver>,
    slots: Arc<Semaphore>,
    kubo: Option<Arc<lilypad_store::KuboClient>>,
    allow_network: bool,
    dir: PathBuf,
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    testing: TestHooks,
}

impl Provider {
    /// Starts a run for every job matched to this provider that is not running or done.
    pub(crate) fn start_new_jobs(&mut self) {
        let book = self.follower.book();
        let mine: Vec<JobRecord> = book
            .live()
            .filter(|r| r.state() == lilypad_bindings::JobState::Matched && r.job.provider == self.me)
            .filter(|r| !self.running.contains(&r.id) && !self.submitted.contains(&r.id))
            .cloned()
            .collect();
        for record in mine {
            let entry = self.follower.book().module(&record.job.moduleId).cloned();
            self.running.insert(record.id);
            let context = RunContext {
                client: self.client.clone(),
                engine: self.engine.clone(),
                engines: self.engines,
                store: self.store.clone(),
                resolver: self.resolver.clone(),
                slots: self.slots.clone(),
                kubo: self.kubo.clone(),
                allow_network: self.options.allow_network,
                dir: self.options.data_dir.join("results").join(record.id.to_string()),
                testing: self.options.testing,
            };
            self.runs.spawn(record.id, context.run(record, entry));
        }
    }
}

impl RunContext {
    async fn run(self, record: JobRecord, entry: Option<ModuleEntry>) -> Finished {
        let id = record.id;
        // a job of an engine this provider lacks is given back at once: no slot taken, nothing
        // fetched, its collateral unlocked by releaseJob
        if let Some(e) = entry.as_ref().and_then(|m| lilypad_runner::lacks_engine(id, &m.reference(), m.spec.flags, self.engines)) {
            return Finished { id, result: Err(e), ready: None };
        }
        let _slot = self.slots.clone().acquire_owned().await;
        #[cfg(feature = "testing")]
        if self.testing.panic_runs {
            panic!("TEST-ONLY PROVIDER: the run of job {id} panics");
        }
        // The run must end, and its result land, before the job's run deadline on chain:
        // after it the market refuses the result and the provider is slashed.
        let deadline = match self.client.latest_timestamp().await {
            Ok(now) => Some(lilypad_runner::run_deadline(&record, now)),
            Err(e) => {
                warn!(job = %id, error = %e, "cannot read the chain's clock; running with the module's own time limit");
                None
            }
        };
        let mut ready = None;
        let mut result = async {
            let resolved = self.resolver.resolve(record.job.moduleId, entry.as_ref()).await?;
            if !self.dir.exists() {
                self.resolver.prepare(&resolved, self.engine.as_ref()).await?;
            }
            ready = Some(resolved.module.id());
            let policy = lilypad_runner::RunPolicy { allow_network: self.allow_network, deadline };
            lilypad_runner::run_job_fetching_inputs(self.engine.as_ref(), &self.store, self.resolver.sources(), &resolved.module, &record, &self.dir, policy).await
        }
        .await;
        // A job that cannot run anywhere (its inputs do not fit its module) is answered with a
        // failure result, which a mediator's re-run reproduces, instead of being given back.
        if let Err(e) = &result {
            if e.is_job_fault() {
                warn!(job = %id, reason = %e, "the job cannot run; posting a failure result");
                result = lilypad_runner::outputs::publish_failure(id, &self.store, &self.dir, e).await;
            }
        }
        #[cfg(feature = "testing")]
        if let (Ok((honest, _)), Some(cheat)) = (&result, self.testing.cheat) {
            if cheat.applies(id) {
                warn!(job = %id, %honest, "TEST-ONLY CHEATING PROVIDER: posting a wrong result instead");
                result = crate::cheat::tamper(id, &self.store, &self.dir).await;
            }
        }
        if let (Ok((cid, _)), Some(kubo)) = (&result, &self.kubo) {
            if let Err(e) = lilypad_runner::outputs::pin(id, kubo, &self.dir, cid).await {
                result = Err(e);
            }
        }
        Finished { id, result, ready }
    }
}
