//! Running Lilypad jobs: the layer between modules and the agents that run jobs (provider,
//! mediator).
//!
//! A job goes through four steps, each here once:
//! 1. **resolve** its module ([`ModuleResolver`], [`Sources`]): a local folder, a git
//!    repository, or the folder fetched from IPFS by the CID the chain pins, in that order;
//! 2. **prepare** it for an [`Engine`] (Docker: its image present, loaded from the pinned
//!    archive, or built);
//! 3. **run** it ([`run_job`], [`run_job_within`], [`run_job_fetching_inputs`]): inputs
//!    rendered into the module's run, file and folder inputs (`cid`) fetched by CID, verified
//!    and mounted read-only ([`prepare_inputs`]), the engine's sandbox, a passing engine
//!    failure tried again;
//! 4. **publish** its result folder by CID ([`outputs::publish`], [`outputs::pin`]).
//!
//! Failures are [`RunError`]s, which name the job or module and say whether they may pass
//! ([`RunError::is_retryable`]). Also here: whether a module is published and pinned
//! ([`published_module`], [`check_pinned`]), supervised per-job tasks ([`JobTasks`]), and the
//! seeded pick of jobs auditors use ([`sample::pick`]).
//!
//! The engine seam ([`Engine`]) takes a resolved module, its rendered arguments, environment
//! and limits and a result folder, and gives back the exit code (stdout, stderr and outputs
//! are files in the folder). [`DockerEngine`] runs containers, [`WasmEngine`] WebAssembly modules;
//! [`Engines`] sends each module to the engine its spec names.

#![forbid(unsafe_code)]

mod docker;
mod engine;
mod error;
mod input_cache;
mod inputs;
mod job;
pub mod outputs;
mod published;
mod resolve;
pub mod sample;
mod tasks;
mod wasm;

pub use docker::{executor_config, DockerEngine};
pub use engine::{BoxFuture, Engine, EngineOutcome, EngineRun};
pub use error::{EngineError, RunError};
pub use input_cache::{Evicted, InputCache, Pin, DEFAULT_INPUT_CACHE_MAX};
pub use inputs::{input_cache, input_fetch_limits, inputs_dir_for, prepare_inputs, remove_fetch_leftovers, LaidOut, MAX_INPUT_DEPTH, MAX_INPUT_FILES};
pub use job::{run_deadline, run_job, run_job_fetching_inputs, run_job_within, RunPolicy, SUBMIT_MARGIN};
pub use outputs::{fetch_fresh, fetch_fresh_from_any, fetch_fresh_with, remove_unfinished_results, result_fetch_limits, FetchFreshError};
pub use published::{check_pinned, published_module};
pub use resolve::{ModuleResolver, Resolved, Sources};
pub use tasks::{JobTasks, TaskFailure};
pub use wasm::{engine_set, lacks_engine, Engines, WasmEngine};
