//! Runs one Lilypad job's container in a Docker sandbox and collects its results.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lilypad_executor::ExecError> {
//! use lilypad_executor::{Executor, RunSpec};
//! let exec = Executor::connect().await?;        // DOCKER_HOST or /var/run/docker.sock
//! exec.preflight().await?;                       // says how to start an engine if none answers
//! exec.cleanup_leftovers().await?;               // containers of a crashed earlier run
//! let mut spec = RunSpec::new("lilypad/cowsay:1");
//! spec.cmd = vec!["moo".into()];
//! let outcome = exec.run("job-42", &spec, "/var/lib/lilypad/results/job-42".as_ref()).await?;
//! println!("exit {} ({} output bytes)", outcome.exit_code, outcome.output_bytes);
//! # Ok(()) }
//! ```
//!
//! The sandbox (see [`sandbox`]): no network unless [`RunSpec::network`] (then a bridge of the
//! executor's own, firewalled off the host and private ranges: [`job_network_name`]), a non-root user,
//! read-only root filesystem, no capabilities, `no-new-privileges`, memory (no swap), CPU,
//! pids and open-file limits, a wall-time limit, outputs on a size-capped tmpfs at
//! `/outputs`, inputs read-only at `/inputs` and nothing else of the host, stdout/stderr
//! capped. Results are laid out like the Lilypad reference: `stdout`, `stderr`, `exitCode`,
//! `outputs/`.
//!
//! No image is ever pulled: images are built ([`Executor::build_image`]) or loaded
//! ([`Executor::load_image`]) locally.

mod error;
mod executor;
pub mod gpus;
mod holder;
pub mod outputs;
pub mod sandbox;
mod spec;

pub use error::{ExecError, Subject};
pub use executor::network::{bridge_interface, firewall_chains, job_network_name, BLOCKED_RANGES};
pub use executor::{Executor, ExecutorConfig};
pub use gpus::{GpuAllocator, GpuError, GpuLease};
pub use spec::{
    EngineInfo, GpuRequest, Limits, RunOutcome, RunSpec, DEFAULT_USER, INPUTS_PATH, OUTPUTS_PATH,
};
