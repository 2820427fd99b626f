//! The engine seam: what runs a job's program, given its module and rendered run. Docker is
//! the one engine today ([`crate::DockerEngine`]); a WASM runtime is the next.
//!
//! The contract every engine keeps, whatever it runs:
//! - [`Engine::prepare`] makes a resolved module runnable here (Docker: its image present,
//!   loaded from the archive the chain pins, or built where that is allowed) and
//!   [`Engine::is_ready`] says whether it is without doing anything;
//! - [`Engine::run`] runs the module's program with the rendered arguments, environment and
//!   limits ([`lilypad_module::RenderedRun`], the wall time possibly cut to end before the
//!   job's deadline) and writes its result folder: `stdout`, `stderr`, `exitCode` and
//!   `outputs/`, first into `<result_dir>.tmp` and renamed at the end, so that a `result_dir`
//!   that exists is complete. A program that fails or hits a limit is an outcome, not an error;
//!   errors are for what kept the engine from running it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_module::{Module, RenderedRun};

use crate::error::{EngineError, RunError};
use crate::resolve::{Resolved, Sources};

/// A boxed, sendable future: what the engine's methods return (so that engines can be held
/// as `Arc<dyn Engine>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One job to run, as the engine gets it.
#[derive(Clone, Copy, Debug)]
pub struct EngineRun<'a> {
    /// The job's id (names its sandbox objects and its logs).
    pub job: U256,
    /// Its module, prepared by [`Engine::prepare`].
    pub module: &'a Module,
    /// Its program's arguments, environment, limits and network, inputs substituted.
    pub rendered: &'a RenderedRun,
    /// Where the result folder goes (`stdout`, `stderr`, `exitCode`, `outputs/`); must not
    /// exist yet.
    pub result_dir: &'a Path,
    /// The job's `cid` inputs laid out as `<Name>` entries (see [`crate::prepare_inputs`]),
    /// to be seen read-only at `/inputs`; `None` when it has none.
    pub inputs_dir: Option<&'a Path>,
}

/// What came of a run the engine carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOutcome {
    /// The program's exit code (137 when killed: timeout or out of memory).
    pub exit_code: i64,
    /// Killed at its wall time.
    pub timed_out: bool,
    /// From start to exit (or kill).
    pub duration: Duration,
}

/// Runs jobs' programs in a sandbox. Implementations: [`crate::DockerEngine`].
pub trait Engine: Send + Sync {
    /// The engine's name, for logs and errors (`Docker`).
    fn name(&self) -> &'static str;

    /// Whether `module` can run here now, without preparing anything.
    fn is_ready<'a>(&'a self, module: &'a Module) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// Makes `resolved` runnable here, getting what it needs from `sources` (pinned artifacts
    /// by CID from its gateways, into its cache). Returns whether anything was done.
    fn prepare<'a>(&'a self, resolved: &'a Resolved, sources: &'a Sources) -> BoxFuture<'a, Result<bool, RunError>>;

    /// Runs one job (see the module's doc for the result folder it writes).
    fn run<'a>(&'a self, run: EngineRun<'a>) -> BoxFuture<'a, Result<EngineOutcome, EngineError>>;

    /// Removes what a killed run of this agent left in the engine (containers, volumes);
    /// returns how many objects. Call it at start-up, before any run.
    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, EngineError>>;

    /// Removes what this engine keeps between runs (Docker: outputs volumes prepared ahead)
    /// and waits for the removals it does in the background. Call it when the agent stops,
    /// after its runs ended.
    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
