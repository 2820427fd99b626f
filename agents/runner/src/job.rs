//! Running one job: its inputs rendered into the module's run, the engine run (a passing engine
//! failure tried again), the result folder published by CID.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use lilypad_chain::JobRecord;
use lilypad_module::Module;
use lilypad_store::{Cid, DiskBlockstore};
use tracing::{info, warn};

use crate::engine::{Engine, EngineRun};
use crate::error::RunError;
use crate::resolve::Sources;

/// Time kept, before a job's run deadline, to hash the outputs and post the result.
pub const SUBMIT_MARGIN: Duration = Duration::from_secs(3);

/// Runs the engine takes for one job when it fails in passing (e.g. Docker answering 500
/// while a container starts); a failure of the job itself is not tried again.
const ENGINE_TRIES: u64 = 3;

/// When a run of `record` must be over (local clock), given the chain's time `chain_now`: its
/// run deadline (`matchedAt + runTimeout`) less [`SUBMIT_MARGIN`] or a tenth of the run
/// timeout, whichever is more.
pub fn run_deadline(record: &JobRecord, chain_now: u64) -> Instant {
    let job = &record.job;
    let deadline = job.matchedAt.to::<u64>() + u64::from(job.runTimeout);
    let margin = SUBMIT_MARGIN.max(Duration::from_secs(u64::from(job.runTimeout) / 10));
    let left = Duration::from_secs(deadline.saturating_sub(chain_now)).saturating_sub(margin);
    Instant::now() + left
}

/// Runs one job (or reuses the result of an earlier run of it, kept in `dir`) and returns its
/// CID and the result hash (the CID's sha2-256 digest). The provider runs matched jobs with
/// it; the mediator re-runs challenged ones exactly the same way.
pub async fn run_job(
    engine: &dyn Engine,
    store: &DiskBlockstore,
    module: &Module,
    record: &JobRecord,
    dir: &Path,
    allow_network: bool,
) -> Result<(Cid, B256), RunError> {
    run_job_within(engine, store, module, record, dir, allow_network, None).await
}

/// [`run_job`], with the run's wall time cut so that it ends by `deadline` (the module's own
/// time limit still applies when it is shorter). With no time left the job is not run. A job
/// with file or folder inputs (`cid`) is refused here ([`RunError::NoInputSource`]): agents
/// run jobs with [`run_job_fetching_inputs`].
pub async fn run_job_within(
    engine: &dyn Engine,
    store: &DiskBlockstore,
    module: &Module,
    record: &JobRecord,
    dir: &Path,
    allow_network: bool,
    deadline: Option<Instant>,
) -> Result<(Cid, B256), RunError> {
    let policy = RunPolicy { allow_network, deadline };
    run_job_fetching_inputs(engine, store, &Sources::default(), module, record, dir, policy).await
}

/// How one run may go: whether the module may have a network, and when it must be over.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunPolicy {
    /// Let a module that asks for a network have one.
    pub allow_network: bool,
    /// When the run must be over (the job's run deadline on chain, less the time to submit).
    pub deadline: Option<Instant>,
}

/// Runs one job as [`run_job_within`] does, its file and folder inputs (`cid`) first fetched
/// from `sources`' gateways (cached under `<cache>/inputs`), verified within each input's
/// `maxBytes`, and mounted read-only at `/inputs/<Name>` ([`crate::prepare_inputs`]). The
/// fetch may take half the time left before the deadline (the module's time limit without
/// one); what it cannot have by then refuses the job ([`RunError::InputData`]) with the other
/// half still left to give it back.
pub async fn run_job_fetching_inputs(
    engine: &dyn Engine,
    store: &DiskBlockstore,
    sources: &Sources,
    module: &Module,
    record: &JobRecord,
    dir: &Path,
    policy: RunPolicy,
) -> Result<(Cid, B256), RunError> {
    let job = record.id;
    if !dir.exists() {
        let inputs = module.parse_inputs(&record.inputs).map_err(|source| RunError::Inputs { job, source })?;
        let mut rendered = module.render(&inputs).map_err(|source| RunError::Inputs { job, source })?;
        if rendered.network && !policy.allow_network {
            return Err(RunError::NetworkRefused { job });
        }
        let fetch_time = match policy.deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()) / 2,
            None => rendered.limits.wall_time,
        };
        let inputs_dir = crate::inputs::inputs_dir_for(dir);
        // held (and the folder kept) until the run is over; removed on every path out
        let laid = crate::inputs::prepare_inputs(job, &rendered.data_inputs, sources, &inputs_dir, fetch_time).await?;
        if let Some(deadline) = policy.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_secs(1) {
                return Err(RunError::NoTimeLeft { job });
            }
            if left < rendered.limits.wall_time {
                info!(job = %job, secs = left.as_secs(), "wall time cut to end before the run deadline");
                rendered.limits.wall_time = left;
            }
        }
        let ran = run_engine(engine, module, &rendered, dir, laid.as_ref().map(|l| l.path()), job).await;
        drop(laid);
        ran?;
    }
    let started = Instant::now();
    let published = crate::outputs::publish(job, store, dir).await;
    tracing::debug!(job = %job, ms = started.elapsed().as_secs_f64() * 1000.0, "result folder published (hashed into the store)");
    published
}

/// The engine's run into `dir` (a passing engine failure tried again).
async fn run_engine(engine: &dyn Engine, module: &Module, rendered: &lilypad_module::RenderedRun, dir: &Path, inputs_dir: Option<&Path>, job: alloy::primitives::U256) -> Result<(), RunError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| RunError::Io { job, action: "creating", path: parent.to_path_buf(), source })?;
    }
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let run = EngineRun { job, module, rendered, result_dir: dir, inputs_dir };
    let mut tries = 0;
    let outcome = loop {
        tries += 1;
        match engine.run(run).await {
            Ok(outcome) => break outcome,
            Err(e) if e.retryable && tries < ENGINE_TRIES => {
                warn!(job = %job, error = %e, try_ = tries, "the run failed on the engine's side; trying again");
                let _ = std::fs::remove_dir_all(&tmp);
                tokio::time::sleep(Duration::from_millis(500 * tries)).await;
            }
            Err(source) => return Err(RunError::Run { job, source }),
        }
    };
    info!(job = %job, exit = outcome.exit_code, timed_out = outcome.timed_out, secs = outcome.duration.as_secs_f64(), "job ran");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;

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
        let left = run_deadline(&matched(1000, 60), 1010).saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(44) && left > Duration::from_secs(42), "{left:?}");
        // short timeouts keep SUBMIT_MARGIN
        let left = run_deadline(&matched(1000, 12), 1000).saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(9) && left > Duration::from_secs(7), "{left:?}");
        // past the deadline: no time at all
        let left = run_deadline(&matched(1000, 12), 2000).saturating_duration_since(Instant::now());
        assert_eq!(left, Duration::ZERO);
    }
}
