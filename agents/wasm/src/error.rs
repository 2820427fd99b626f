//! Errors: [`WasmError`] for what prevented a run (each names the job and says whether trying
//! again can help), [`JobFailure`] for a run that went wrong in the module itself.

use std::path::PathBuf;

/// What prevented running a job's module or keeping its results.
///
/// Retryable ([`WasmError::is_retryable`]): the host could not read or write files. Fatal: the
/// module or the spec is bad, and running it again would fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The file is not a WebAssembly module at all.
    #[error("job {job}: {} is not a WebAssembly module: {reason}", path.display())]
    NotWasm {
        /// The job being run.
        job: String,
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// It is WebAssembly but cannot be compiled (malformed, or uses a feature this engine keeps
    /// off for determinism: threads, shared memory, relaxed SIMD...).
    #[error("job {job}: {} does not compile: {reason}", path.display())]
    Invalid {
        /// The job being run.
        job: String,
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// The module imports something the host does not give: only WASI preview 1
    /// (`wasi_snapshot_preview1`) functions are provided.
    #[error(
        "job {job}: the module imports `{module}::{name}`, which this host does not provide \
         (only WASI preview 1 functions, `wasi_snapshot_preview1::*`, are given; build for \
         wasm32-wasi / wasm32-wasip1 and link no other host functions)"
    )]
    MissingImport {
        /// The job being run.
        job: String,
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },

    /// The module is not a WASI command: it exports no `_start` function.
    #[error("job {job}: the module exports no `_start` function: build it as a WASI command (a program with main), not a library")]
    NoStart {
        /// The job being run.
        job: String,
    },

    /// The spec (or result folder) is invalid.
    #[error("job {job}: bad run spec: {reason}")]
    BadSpec {
        /// The job being run.
        job: String,
        /// What was wrong.
        reason: String,
    },

    /// The engine failed in a way that is not the module's doing (instantiation resources,
    /// a host error while the module ran).
    #[error("job {job}: the WebAssembly engine failed: {message}")]
    Engine {
        /// The job being run.
        job: String,
        /// What the engine said.
        message: String,
    },

    /// Reading or writing files on this host failed. Retryable.
    #[error("job {job}: {what} {}: {source}", path.display())]
    Io {
        /// The job being run.
        job: String,
        /// What was being done (`reading`, `writing`...).
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The host's error.
        #[source]
        source: std::io::Error,
    },
}

impl WasmError {
    /// Whether running the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, WasmError::Io { .. } | WasmError::Engine { .. })
    }

    /// The job this error is about.
    pub fn job(&self) -> &str {
        match self {
            WasmError::NotWasm { job, .. }
            | WasmError::Invalid { job, .. }
            | WasmError::MissingImport { job, .. }
            | WasmError::NoStart { job }
            | WasmError::BadSpec { job, .. }
            | WasmError::Engine { job, .. }
            | WasmError::Io { job, .. } => job,
        }
    }
}

/// Why a run that took place did not succeed ([`crate::WasmOutcome::failure`]). The result is
/// still complete and the same on every host: a job that fails this way settles with it.
/// Every variant names the job (`job`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // the fields: `job` is the job, the rest is the message the variant prints
pub enum JobFailure {
    /// The module trapped (an `unreachable`, an out-of-bounds access...).
    #[error("job {job}: the WebAssembly module trapped: {message}")]
    Trapped { job: String, message: String },
    /// It used up its instruction budget.
    #[error("job {job}: the WebAssembly module used up its fuel (instruction budget, from the module's timeoutSeconds) and was stopped")]
    OutOfFuel { job: String },
    /// It ran past its wall-time limit.
    #[error("job {job}: the WebAssembly module ran past its wall-time limit and was stopped")]
    TimedOut { job: String },
    /// It grew its memory past the module's `ramMb`.
    #[error("job {job}: the WebAssembly module grew its memory past the limit (the module's resources.ramMb) and was stopped")]
    MemoryLimit { job: String },
    /// It wrote past its outputs caps.
    #[error("job {job}: the WebAssembly module wrote past its outputs caps (outputs.maxBytes / outputs.maxFiles); what it wrote before is kept")]
    OutputsTooLarge { job: String },
    /// It exited with a non-zero code.
    #[error("job {job}: the WebAssembly module exited with code {code}")]
    Exited { job: String, code: i32 },
}
