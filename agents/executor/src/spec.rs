//! What to run ([`RunSpec`], [`Limits`], [`GpuRequest`]) and what came of it ([`RunOutcome`]).

use std::path::PathBuf;
use std::time::Duration;

/// User the job runs as when the spec names none: `nobody:nogroup`.
pub const DEFAULT_USER: &str = "65534:65534";
/// Where the job's inputs appear (read-only) when [`RunSpec::inputs_dir`] is set.
pub const INPUTS_PATH: &str = "/inputs";
/// Where the job writes its outputs (a tmpfs of [`Limits::outputs_bytes`]).
pub const OUTPUTS_PATH: &str = "/outputs";

/// One job's container: image, command, environment, sandbox limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Image reference or id; it must already be in the engine (nothing is pulled).
    pub image: String,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments (the image's `CMD` when empty).
    pub cmd: Vec<String>,
    /// Environment variables, added to the image's.
    pub env: Vec<(String, String)>,
    /// Working directory (absolute), the image's when `None`.
    pub workdir: Option<String>,
    /// Host folder mounted read-only at [`INPUTS_PATH`]: the only host path the job sees.
    pub inputs_dir: Option<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// Give the job a network: the executor's own bridge ([`crate::job_network_name`]), with
    /// firewall rules that drop traffic to the host and private ranges. `false`: `network_mode = "none"`.
    /// Whether a job may have one is the resource provider's policy, decided by the caller.
    pub network: bool,
    /// GPUs, through the NVIDIA container toolkit (Docker device requests).
    pub gpus: Option<GpuRequest>,
    /// `user[:group]` to run as; [`DEFAULT_USER`] when `None`.
    pub user: Option<String>,
}

impl RunSpec {
    /// A spec with the default limits, no network, no GPU, no inputs.
    pub fn new(image: impl Into<String>) -> Self {
        RunSpec {
            image: image.into(),
            entrypoint: None,
            cmd: Vec::new(),
            env: Vec::new(),
            workdir: None,
            inputs_dir: None,
            limits: Limits::default(),
            network: false,
            gpus: None,
            user: None,
        }
    }
}

/// Sandbox limits. Every one is enforced: by the kernel (memory, CPU, pids, open files, tmpfs
/// sizes) or by the executor (wall time, log sizes, outputs copied out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit; swap is disabled (memory+swap = memory). Files the job writes to
    /// `/outputs` and `/tmp` are counted in it too (tmpfs pages), so keep it above
    /// `outputs_bytes`.
    pub memory_bytes: u64,
    /// CPU quota in billionths of a CPU (1_000_000_000 = one CPU).
    pub nano_cpus: u64,
    /// Most processes/threads at once (stops fork bombs).
    pub pids: u32,
    /// Most open files per process (`ulimit -n`).
    pub nofile: u32,
    /// Wall-clock limit from start; the container is killed after it (`timed_out`).
    pub wall_time: Duration,
    /// Size of the `/outputs` tmpfs: the job cannot write more.
    pub outputs_bytes: u64,
    /// Most files, folders and links in `/outputs` (tmpfs inodes; a hardlink counts as one).
    pub outputs_files: u32,
    /// Size of the `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// Most bytes kept of stdout, and of stderr (each); the rest is read and dropped.
    pub log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 2 << 30,
            nano_cpus: 1_000_000_000,
            pids: 512,
            nofile: 1024,
            wall_time: Duration::from_secs(600),
            outputs_bytes: 256 << 20,
            outputs_files: 10_000,
            tmp_bytes: 64 << 20,
            log_bytes: 8 << 20,
        }
    }
}

/// GPUs for a job: `count` of them (all when `None`), or the listed `device_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuRequest {
    /// How many GPUs; `None` means all of them. Must be `None` when `device_ids` is set.
    pub count: Option<u32>,
    /// Specific GPUs by index or UUID (as `nvidia-smi -L` shows them).
    pub device_ids: Vec<String>,
}

/// What came of running a job. Whatever the job did, the result folder holds `stdout`,
/// `stderr`, `exitCode` and `outputs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The process's exit code (137 when killed: timeout or out of memory).
    pub exit_code: i64,
    /// Killed after [`Limits::wall_time`].
    pub timed_out: bool,
    /// Killed by the kernel for going over [`Limits::memory_bytes`].
    pub oom_killed: bool,
    /// The outputs filled their tmpfs (the job hit [`Limits::outputs_bytes`] or
    /// [`Limits::outputs_files`]; what was written before is kept), or the copy was cut at
    /// the cap.
    pub outputs_too_large: bool,
    /// stdout or stderr was longer than [`Limits::log_bytes`] and was cut.
    pub log_truncated: bool,
    /// Bytes the job wrote to stdout / stderr (all of them, kept or not).
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// From start to exit (or kill).
    pub duration: Duration,
    /// Bytes and regular files copied to `result_dir/outputs`.
    pub output_bytes: u64,
    pub output_files: u64,
    /// Entries of the outputs not copied: links, devices, fifos, unsafe or duplicate paths
    /// (at most 100 listed; `skipped_count` has them all).
    pub skipped: Vec<String>,
    pub skipped_count: u64,
    /// The result folder.
    pub result_dir: PathBuf,
}

impl RunOutcome {
    /// Exit code 0 and no limit hit.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 && !self.timed_out && !self.oom_killed && !self.outputs_too_large
    }
}

/// What [`crate::Executor::preflight`] found out about the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub server_version: String,
    pub api_version: String,
    pub os: String,
    pub architecture: String,
    pub kernel_version: String,
    pub cgroup_version: String,
    pub storage_driver: String,
    pub ncpu: i64,
    pub mem_total: i64,
    /// The engine can limit memory, swap and pids (false: a limit would be silently ignored).
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub pids_limit: bool,
    /// An `nvidia` runtime is registered (NVIDIA container toolkit), needed for GPU jobs.
    pub nvidia_runtime: bool,
}
