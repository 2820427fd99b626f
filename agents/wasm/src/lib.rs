//! Runs one Lilypad job's WebAssembly module (a WASI preview 1 command) with wasmtime, and
//! collects its results laid out as a Docker run's: `stdout`, `stderr`, `exitCode`, `outputs/`.
//!
//! ```no_run
//! # #[cfg(feature = "runtime")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lilypad_wasm::{job_seed, WasmEngine, WasmSpec};
//! let engine = WasmEngine::new(Some("/var/lib/lilypad/wasm-cache".into()))?;
//! let mut spec = WasmSpec::new("modules/lilysay-wasm/lilysay.wasm", vec!["lilysay".into(), "hi".into()]);
//! spec.determinism.random_seed = Some(job_seed(&[0; 32], &spec.argv, &spec.env));
//! let outcome = engine.run("job-42", &spec, "/tmp/job-42".as_ref()).await?;
//! if let Some(failure) = outcome.failure() {
//!     eprintln!("{failure}");
//! }
//! # Ok(()) }
//! ```
//!
//! The sandbox: the module sees `/outputs` (read-write) and, when given, `/inputs`
//! (read-only), nothing else of the host's files; no network, no host environment, stdin
//! closed. Limits: linear memory and tables ([`WasmLimits::memory_bytes`],
//! [`WasmLimits::table_elements`]), fuel (an instruction budget, the same on every host) and a
//! wall-time backstop, outputs bytes and entries (writes past them fail with `ENOSPC`), stdout
//! and stderr caps. Deterministic by construction: no threads or shared memory, NaNs
//! canonicalised, relaxed SIMD deterministic, fixed clocks and a seeded random source unless
//! [`Determinism`] says otherwise. Compiled modules are cached by content hash, in memory and
//! on disk.
//!
//! Without the default feature `runtime`, only the types that describe a run ([`WasmSpec`],
//! [`WasmOutcome`], the errors), [`check_magic`] and [`job_seed`] are built: no wasmtime.

#[cfg(feature = "runtime")]
mod cache;
mod check;
#[cfg(feature = "runtime")]
mod collect;
mod determinism;
#[cfg(feature = "runtime")]
mod engine;
mod error;
#[cfg(feature = "runtime")]
mod host;
#[cfg(feature = "runtime")]
mod logs;
#[cfg(feature = "runtime")]
mod quota;
mod spec;

#[cfg(feature = "runtime")]
pub use cache::engine_fingerprint;
pub use check::{check_magic, sha256};
pub use determinism::{job_seed, SeededRandom, TICK};
#[cfg(feature = "runtime")]
pub use engine::{engine_config, WasmEngine, EPOCH_TICK};
pub use error::{JobFailure, WasmError};
pub use spec::{
    Determinism, Ending, WasmLimits, WasmOutcome, WasmSpec, FUEL_PER_SECOND, INPUTS_PATH,
    KILLED_EXIT_CODE, OUTPUTS_PATH, TRAP_EXIT_CODE,
};
