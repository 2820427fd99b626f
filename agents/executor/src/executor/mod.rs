//! [`Executor`]: talks to the engine through bollard. One file per concern: the connection
//! and preflight here, images (build, load, save, tag), a job's run, the cleanup of
//! what runs leave, and the draining of a job's logs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as BollardError;
use bollard::Docker;
use tracing::{debug, info, warn};

use std::sync::Arc;

use crate::error::{ExecError, Subject};
use crate::gpus::GpuAllocator;
use crate::spec::EngineInfo;

mod cleanup;
mod images;
mod logs;
pub(crate) mod network;
mod pool;
mod run;

/// Settings of an [`Executor`].
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Value of the `lilypad.executor` label on every container and volume this executor
    /// creates; [`Executor::cleanup_leftovers`] removes only objects with this value, so two
    /// executors on one engine must use different instances.
    pub instance: String,
    /// How long to keep reading a job's logs after its container exited.
    pub log_grace: Duration,
    /// How long to wait for the container to go away after a kill.
    pub kill_grace: Duration,
    /// The GPUs jobs are given from: [`GpuAllocator::host`] (this host's, shared by every
    /// executor of the process) unless set.
    pub gpus: Arc<GpuAllocator>,
    /// Outputs volumes per holder container, prepared ahead of the jobs (see
    /// [`Executor::release`]); each volume still serves one job only. 1: a holder per job.
    pub outputs_batch: usize,
    /// Copy a job's outputs straight from its volume's mount point when this host sees it (an
    /// engine on this host, checked once); off: always through the engine's archive of it.
    pub outputs_from_host: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            instance: "default".into(),
            log_grace: Duration::from_secs(10),
            kill_grace: Duration::from_secs(30),
            gpus: GpuAllocator::host(),
            outputs_batch: 8,
            outputs_from_host: true,
        }
    }
}

/// Runs jobs in sandboxed containers on one Docker engine. Cheap to share (`&self`
/// everywhere); several jobs may run at once.
pub struct Executor {
    docker: Docker,
    endpoint: String,
    config: ExecutorConfig,
    holder_image: tokio::sync::OnceCell<String>,
    /// One job-network setup at a time (see `network.rs`).
    network_lock: tokio::sync::Mutex<()>,
    /// Outputs volumes and their holders, prepared ahead; removals in the background.
    pool: Arc<pool::OutputsPool>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish()
    }
}

fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A short string unique to this process and moment, for object names.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}{:04x}{:x}",
        (nanos as u64) & 0xffff_ffff,
        std::process::id() & 0xffff,
        n
    )
}

impl Executor {
    /// Connects to the engine named by `DOCKER_HOST` (or `/var/run/docker.sock`) with the
    /// default [`ExecutorConfig`], and agrees on an API version with it.
    pub async fn connect() -> Result<Self, ExecError> {
        Self::connect_with(ExecutorConfig::default()).await
    }

    /// [`Executor::connect`] with a configuration.
    pub async fn connect_with(config: ExecutorConfig) -> Result<Self, ExecError> {
        let endpoint = endpoint();
        let unavailable = |source| ExecError::EngineUnavailable {
            endpoint: endpoint.clone(),
            source,
        };
        let docker = Docker::connect_with_defaults().map_err(unavailable)?;
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        debug!(endpoint, api = %docker.client_version(), "connected to the docker engine");
        Ok(Self::with_docker(docker, endpoint, config))
    }

    /// Uses an existing bollard client (already version-negotiated).
    pub fn with_docker(
        docker: Docker,
        endpoint: impl Into<String>,
        config: ExecutorConfig,
    ) -> Self {
        let endpoint = endpoint.into();
        let pool = pool::OutputsPool::new(docker.clone(), endpoint.clone(), config.instance.clone(), config.outputs_batch, config.outputs_from_host);
        Executor {
            pool: Arc::new(pool),
            docker,
            endpoint,
            config,
            holder_image: tokio::sync::OnceCell::new(),
            network_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The bollard client, for anything this API does not cover.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The configuration.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    fn engine_err(
        &self,
        subject: Subject,
        action: &'static str,
    ) -> impl FnOnce(BollardError) -> ExecError + '_ {
        move |source| engine_error(&self.endpoint, subject, action, source)
    }

    /// Waits for the removals running in the background (what finished runs left: their
    /// containers, spent outputs batches) and removes the outputs volumes and holders prepared
    /// ahead that no run holds. Runs may go on afterwards (volumes are prepared again); call it
    /// before an agent stops, or to see the engine hold nothing of this executor but its runs.
    pub async fn release(&self) {
        self.pool.release().await;
    }
}

/// The error of the engine at `endpoint` refusing `action` on `subject`.
fn engine_error(endpoint: &str, subject: Subject, action: &'static str, source: BollardError) -> ExecError {
    if is_unreachable(&source) {
        ExecError::EngineUnavailable {
            endpoint: endpoint.to_string(),
            source,
        }
    } else {
        ExecError::Engine {
            subject,
            action,
            source,
        }
    }
}

impl Executor {
    /// Checks that the engine answers and can enforce the sandbox, and prepares the outputs
    /// holder image. Fails with [`ExecError::EngineUnavailable`] (saying how to start one) when
    /// no engine answers.
    pub async fn preflight(&self) -> Result<EngineInfo, ExecError> {
        let unavailable = |source| ExecError::EngineUnavailable {
            endpoint: self.endpoint.clone(),
            source,
        };
        let info = self.docker.info().await.map_err(unavailable)?;
        let version = self.docker.version().await.map_err(unavailable)?;
        let s = |o: Option<String>| o.unwrap_or_default();
        let info = EngineInfo {
            server_version: s(version.version),
            api_version: s(version.api_version),
            os: s(info.operating_system),
            architecture: s(info.architecture),
            kernel_version: s(info.kernel_version),
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            storage_driver: s(info.driver),
            ncpu: info.ncpu.unwrap_or(0),
            mem_total: info.mem_total.unwrap_or(0),
            memory_limit: info.memory_limit.unwrap_or(false),
            swap_limit: info.swap_limit.unwrap_or(false),
            pids_limit: info.pids_limit.unwrap_or(false),
            nvidia_runtime: info
                .runtimes
                .as_ref()
                .is_some_and(|r| r.contains_key("nvidia")),
        };
        for (ok, what) in [
            (info.memory_limit, "memory"),
            (info.swap_limit, "swap"),
            (info.pids_limit, "pids"),
        ] {
            if !ok {
                warn!("the docker engine cannot enforce {what} limits on this kernel: jobs are less contained");
            }
        }
        self.holder_image().await?;
        info!(server = %info.server_version, api = %info.api_version, arch = %info.architecture, "docker engine ready");
        Ok(info)
    }
}

/// An I/O error of job `job` while `what` at `path`.
fn io_error(
    job: &str,
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ExecError {
    let (job, path) = (job.to_string(), path.to_path_buf());
    move |source| ExecError::Io {
        subject: Subject::Job(job),
        what,
        path,
        source,
    }
}

fn is_unreachable(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::SocketNotFoundError(_)
            | BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique(), unique());
    }
}
