//! What to run ([`WasmSpec`], [`WasmLimits`], [`Determinism`]) and what came of it
//! ([`WasmOutcome`], [`Ending`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::JobFailure;

/// Where the job's inputs appear (read-only) when [`WasmSpec::inputs_dir`] is set.
pub const INPUTS_PATH: &str = "/inputs";
/// Where the job writes its outputs.
pub const OUTPUTS_PATH: &str = "/outputs";
/// Fuel given per second of [`WasmLimits::wall_time`] by [`WasmLimits::fuel_for`]: about one
/// WebAssembly instruction each (a core of this generation runs one to three billion a
/// second, so the fuel usually runs out near the time limit, never far after it).
pub const FUEL_PER_SECOND: u64 = 1_000_000_000;
/// Exit code recorded when the module trapped (as a C program's `abort()`).
pub const TRAP_EXIT_CODE: i64 = 134;
/// Exit code recorded when the run was stopped (out of fuel, wall time, memory limit), as for
/// a container killed with SIGKILL.
pub const KILLED_EXIT_CODE: i64 = 137;

/// One job's WebAssembly run: the module file, its command line and environment, its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct WasmSpec {
    /// The `.wasm` file (a WASI preview 1 command: it exports `_start`).
    pub wasm: PathBuf,
    /// The whole command line, `argv[0]` first (WASI gives it to the module as is).
    pub argv: Vec<String>,
    /// The environment: nothing of the host's is passed.
    pub env: Vec<(String, String)>,
    /// Host folder given read-only at [`INPUTS_PATH`]: with `/outputs`, the only host files the
    /// module sees.
    pub inputs_dir: Option<PathBuf>,
    /// Resource limits.
    pub limits: WasmLimits,
    /// Clock and random source.
    pub determinism: Determinism,
}

impl WasmSpec {
    /// A spec running `wasm` with `argv`, the default limits and the deterministic clock and
    /// random source (seeded from the command line and environment).
    pub fn new(wasm: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        WasmSpec {
            wasm: wasm.into(),
            argv,
            env: Vec::new(),
            inputs_dir: None,
            limits: WasmLimits::default(),
            determinism: Determinism::default(),
        }
    }
}

/// Limits. Each is enforced by the engine: a run cannot go past one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmLimits {
    /// Most bytes of each linear memory; growing past it stops the run ([`Ending::MemoryLimit`]).
    pub memory_bytes: u64,
    /// Most elements of each table; growing past it stops the run ([`Ending::MemoryLimit`]).
    pub table_elements: u64,
    /// Instructions the run may execute (about one unit of fuel each); when they are spent the
    /// run stops ([`Ending::OutOfFuel`]). The same on every machine: a run that ends this way
    /// ends at the same instruction everywhere, with the same outputs.
    pub fuel: u64,
    /// Wall-clock limit from start ([`Ending::TimedOut`]): a backstop for a slow host, and the
    /// bound on time spent in host calls.
    pub wall_time: Duration,
    /// Most bytes the run may write under `/outputs` (every write counts, rewrites too, until
    /// the folder is measured again when the count reaches the cap); a write past it fails
    /// with `ENOSPC`, as on the Docker engine's size-capped tmpfs.
    pub outputs_bytes: u64,
    /// Most files, folders and links under `/outputs`; creating one more fails with `ENOSPC`.
    pub outputs_files: u32,
    /// Most bytes kept of stdout, and of stderr (each); the rest is counted and dropped.
    pub log_bytes: u64,
}

impl WasmLimits {
    /// The fuel for a run of `wall_time`: [`FUEL_PER_SECOND`] a second.
    pub fn fuel_for(wall_time: Duration) -> u64 {
        let ms = u64::try_from(wall_time.as_millis()).unwrap_or(u64::MAX);
        ms.saturating_mul(FUEL_PER_SECOND / 1000)
    }
}

impl Default for WasmLimits {
    /// The Docker executor's defaults where they mean the same (outputs, logs, wall time);
    /// 2 GiB of linear memory; fuel for the wall time.
    fn default() -> Self {
        let wall_time = Duration::from_secs(600);
        WasmLimits {
            memory_bytes: 2 << 30,
            table_elements: 1 << 20,
            fuel: WasmLimits::fuel_for(wall_time),
            wall_time,
            outputs_bytes: 256 << 20,
            outputs_files: 10_000,
            log_bytes: 8 << 20,
        }
    }
}

/// What the module reads as the time and as randomness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Determinism {
    /// `true`: the wall clock starts at the Unix epoch and the monotonic clock at zero, and each
    /// reading advances them by one millisecond, whatever the real time. `false`: the host's
    /// clocks.
    pub fixed_clock: bool,
    /// `Some(seed)`: every random source is a stream derived from the seed (SHA-256 in counter
    /// mode). `None`: a per-run seed from the host's random source.
    pub random_seed: Option<[u8; 32]>,
}

impl Default for Determinism {
    /// A fixed clock and the all-zero seed; [`crate::job_seed`] gives a seed per job.
    fn default() -> Self {
        Determinism {
            fixed_clock: true,
            random_seed: Some([0; 32]),
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `_start` returned (code 0) or the module called `proc_exit(code)`.
    Exited(i32),
    /// The module trapped (unreachable, out-of-bounds access, stack exhausted, division by
    /// zero...); the message is the trap's, without the backtrace.
    Trapped(String),
    /// The fuel ([`WasmLimits::fuel`]) ran out.
    OutOfFuel,
    /// The wall time ([`WasmLimits::wall_time`]) ran out.
    TimedOut,
    /// A memory or table grew past its limit.
    MemoryLimit,
}

impl Ending {
    /// The exit code recorded in the result's `exitCode`: the module's own, or
    /// [`TRAP_EXIT_CODE`] / [`KILLED_EXIT_CODE`].
    pub fn exit_code(&self) -> i64 {
        match self {
            Ending::Exited(c) => i64::from(*c),
            Ending::Trapped(_) => TRAP_EXIT_CODE,
            Ending::OutOfFuel | Ending::TimedOut | Ending::MemoryLimit => KILLED_EXIT_CODE,
        }
    }

    /// The line appended to the result's `stderr` for an ending the module did not choose,
    /// the same on every host.
    pub fn stderr_note(&self) -> Option<String> {
        let what = match self {
            Ending::Exited(_) => return None,
            Ending::Trapped(m) => format!("trapped: {m}"),
            Ending::OutOfFuel => "stopped: its fuel (instruction budget) ran out".into(),
            Ending::TimedOut => "stopped: its wall time ran out".into(),
            Ending::MemoryLimit => "stopped: a memory or table grew past its limit".into(),
        };
        Some(format!("\n[lilypad-wasm] {what}\n"))
    }
}

/// What came of a run. Whatever the module did, the result folder holds `stdout`, `stderr`,
/// `exitCode` and `outputs/`, as for a Docker run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmOutcome {
    /// The job, as given to [`crate::WasmEngine::run`].
    pub job: String,
    /// How the run ended.
    pub ending: Ending,
    /// [`Ending::exit_code`].
    pub exit_code: i64,
    /// The module tried to write more than [`WasmLimits::outputs_bytes`] or create more than
    /// [`WasmLimits::outputs_files`] entries (the write failed with `ENOSPC`; what was written
    /// before is kept), or the outputs were cut when collected.
    pub outputs_too_large: bool,
    /// stdout or stderr was longer than [`WasmLimits::log_bytes`] and was cut.
    pub log_truncated: bool,
    /// Bytes the module wrote to stdout (all of them, kept or not).
    pub stdout_bytes: u64,
    /// Bytes the module wrote to stderr (all of them, kept or not).
    pub stderr_bytes: u64,
    /// Fuel spent.
    pub fuel_used: u64,
    /// From instantiation to the end (compiling is not counted).
    pub duration: Duration,
    /// The module was compiled for this run (not found in the cache).
    pub compiled: bool,
    /// Bytes in `result_dir/outputs`.
    pub output_bytes: u64,
    /// Regular files in `result_dir/outputs`.
    pub output_files: u64,
    /// Entries of the outputs removed: links and special files (at most 100 listed;
    /// `skipped_count` has them all).
    pub skipped: Vec<String>,
    /// How many entries were removed.
    pub skipped_count: u64,
    /// The result folder.
    pub result_dir: PathBuf,
}

impl WasmOutcome {
    /// Exit code 0 and no limit hit.
    pub fn succeeded(&self) -> bool {
        self.ending == Ending::Exited(0) && !self.outputs_too_large
    }

    /// Why the run did not succeed, as an error naming the job; `None` when it did. A log cut
    /// at its cap is not a failure (as for Docker runs).
    pub fn failure(&self) -> Option<JobFailure> {
        let job = self.job.clone();
        Some(match &self.ending {
            Ending::Trapped(message) => JobFailure::Trapped {
                job,
                message: message.clone(),
            },
            Ending::OutOfFuel => JobFailure::OutOfFuel { job },
            Ending::TimedOut => JobFailure::TimedOut { job },
            Ending::MemoryLimit => JobFailure::MemoryLimit { job },
            Ending::Exited(_) if self.outputs_too_large => JobFailure::OutputsTooLarge { job },
            Ending::Exited(0) => return None,
            Ending::Exited(code) => JobFailure::Exited { job, code: *code },
        })
    }
}
