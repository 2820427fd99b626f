//! [`Executor`]: talks to the engine through bollard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ImportImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tracing::{debug, info, warn, Instrument};

use crate::error::{engine_error_is_transient, message_of, status_of, ExecError, Subject};
use crate::holder::{self, Arch};
use crate::outputs::{extract_outputs, ExtractLimits, PAGE};
use crate::sandbox::{self, LABEL_EXECUTOR};
use crate::spec::{EngineInfo, RunOutcome, RunSpec, OUTPUTS_PATH};

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
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            instance: "default".into(),
            log_grace: Duration::from_secs(10),
            kill_grace: Duration::from_secs(30),
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
        Executor {
            docker,
            endpoint: endpoint.into(),
            config,
            holder_image: tokio::sync::OnceCell::new(),
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
        move |source| {
            if is_unreachable(&source) {
                ExecError::EngineUnavailable {
                    endpoint: self.endpoint.clone(),
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
    }

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

    /// Whether the engine has `image` (a reference or id).
    pub async fn has_image(&self, image: &str) -> Result<bool, ExecError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self
                .engine_err(Subject::Image(image.into()), "inspecting the image")(
                e
            )),
        }
    }

    /// Loads images from a `docker save` archive (`docker load`) and returns the id of the first
    /// one. A malformed archive is [`ExecError::BadImage`].
    pub async fn load_image<R>(&self, tar: R) -> Result<String, ExecError>
    where
        R: AsyncRead + Send + 'static,
    {
        let subject = || Subject::Image("archive".into());
        let body = tokio_util::io::ReaderStream::new(tar);
        let opts = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut stream = self.docker.import_image_stream(opts, body, None);
        let mut loaded: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(msg) => {
                    if let Some(line) = msg.stream.as_deref() {
                        debug!(line = line.trim(), "docker load");
                        if let Some(id) = line.trim().strip_prefix("Loaded image ID: ") {
                            loaded.push(id.to_string());
                        } else if let Some(name) = line.trim().strip_prefix("Loaded image: ") {
                            loaded.push(name.to_string());
                        }
                    }
                }
                Err(e) if engine_error_is_transient(&e) && status_of(&e).is_none() => {
                    return Err(self.engine_err(subject(), "loading an image")(e));
                }
                Err(e) => {
                    return Err(ExecError::BadImage {
                        subject: subject(),
                        message: message_of(&e),
                    })
                }
            }
        }
        let Some(first) = loaded.first() else {
            return Err(ExecError::BadImage {
                subject: subject(),
                message: "the archive held no image".into(),
            });
        };
        let id = self.image_id(first).await?;
        info!(image = %id, names = ?loaded, "loaded image");
        Ok(id)
    }

    /// Writes `image` (a reference or id) as a `docker save` archive to `dest`, through a
    /// temporary file renamed into place (no half-written archive is left). Returns its size.
    pub async fn save_image(&self, image: &str, dest: &Path) -> Result<u64, ExecError> {
        let subject = || Subject::Image(image.to_string());
        if !self.has_image(image).await? {
            return Err(ExecError::BadImage {
                subject: subject(),
                message: "not present in the engine: build or load it first".into(),
            });
        }
        let tmp = dest.with_extension("partial");
        let io_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io { subject: subject(), what, path, source }
        };
        let mut file = tokio::fs::File::create(&tmp).await.map_err(io_err("creating", &tmp))?;
        let mut stream = self.docker.export_image(image);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    drop(file);
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(self.engine_err(subject(), "saving the image")(e));
                }
            };
            size += chunk.len() as u64;
            if let Err(e) = file.write_all(&chunk).await {
                drop(file);
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io_err("writing", &tmp)(e));
            }
        }
        file.sync_all().await.map_err(io_err("syncing", &tmp))?;
        drop(file);
        tokio::fs::rename(&tmp, dest).await.map_err(io_err("renaming into", dest))?;
        info!(%image, bytes = size, dest = %dest.display(), "saved image archive");
        Ok(size)
    }

    /// The engine's id of `image` (`sha256:...`).
    pub async fn image_id_of(&self, image: &str) -> Result<String, ExecError> {
        self.image_id(image).await
    }

    /// Tags `image` (a reference or id) as `repo:tag`.
    pub async fn tag_image(&self, image: &str, reference: &str) -> Result<(), ExecError> {
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        self.docker
            .tag_image(image, Some(opts))
            .await
            .map_err(self.engine_err(Subject::Image(image.to_string()), "tagging the image"))
    }

    async fn image_id(&self, reference: &str) -> Result<String, ExecError> {
        let img =
            self.docker.inspect_image(reference).await.map_err(
                self.engine_err(Subject::Image(reference.into()), "inspecting the image"),
            )?;
        Ok(img.id.unwrap_or_else(|| reference.to_string()))
    }

    /// Builds the `Dockerfile` in `context_dir` (with that folder as the build context) and
    /// tags the image `tag`; returns the image id. Nothing can be pulled: base images must be
    /// `scratch` or already present. A failing build is [`ExecError::BadImage`].
    pub async fn build_image(&self, context_dir: &Path, tag: &str) -> Result<String, ExecError> {
        let subject = || Subject::Image(tag.to_string());
        let dir = context_dir.to_path_buf();
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io {
                subject: Subject::Image(tag.to_string()),
                what,
                path,
                source,
            }
        };
        if !dir.join("Dockerfile").is_file() {
            return Err(ExecError::BadImage {
                subject: subject(),
                message: format!("no Dockerfile in {}", dir.display()),
            });
        }
        // Tar the context into a temporary file (contexts may hold large model files).
        let tar_file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut f = tempfile::tempfile()?;
            {
                let mut b = tar::Builder::new(&mut f);
                b.follow_symlinks(false);
                b.append_dir_all(".", &dir)?;
                b.finish()?;
            }
            std::io::Seek::rewind(&mut f)?;
            Ok(f)
        })
        .await
        .map_err(|e| io("taring the build context", context_dir)(std::io::Error::other(e)))?
        .map_err(io("taring the build context", context_dir))?;
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(tar_file));
        self.build_from(body, tag).await
    }

    async fn build_from<S>(&self, context_tar: S, tag: &str) -> Result<String, ExecError>
    where
        S: Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    {
        let subject = || Subject::Image(tag.to_string());
        let opts = BuildImageOptionsBuilder::default()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_try_stream(context_tar)));
        let mut id = None;
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(msg) => {
                    if let Some(line) = msg
                        .stream
                        .as_deref()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                    {
                        debug!(tag, line, "docker build");
                        last = line.to_string();
                    }
                    if let Some(aux) = msg.aux.and_then(|a| a.id) {
                        id = Some(aux);
                    }
                }
                Err(e) if engine_error_is_transient(&e) && status_of(&e).is_none() => {
                    return Err(self.engine_err(subject(), "building an image")(e));
                }
                Err(e) => {
                    return Err(ExecError::BadImage {
                        subject: subject(),
                        message: format!("build failed: {} (last step: {last})", message_of(&e)),
                    })
                }
            }
        }
        let id = match id {
            Some(id) => id,
            None => self.image_id(tag).await?,
        };
        info!(tag, image = %id, "built image");
        Ok(id)
    }

    /// The holder image's tag, built once per executor if the engine lacks it.
    async fn holder_image(&self) -> Result<String, ExecError> {
        self.holder_image
            .get_or_try_init(|| async {
                let info = self
                    .docker
                    .info()
                    .await
                    .map_err(self.engine_err(Subject::Engine, "reading engine info"))?;
                let engine_arch = info.architecture.unwrap_or_default();
                let arch = Arch::from_engine(&engine_arch).ok_or_else(|| ExecError::BadImage {
                    subject: Subject::Image("outputs holder".into()),
                    message: format!(
                        "no holder program for the engine's architecture {engine_arch:?}"
                    ),
                })?;
                let tag = holder::image_tag(arch);
                if !self.has_image(&tag).await? {
                    let ctx = holder::build_context(arch).map_err(|source| ExecError::Io {
                        subject: Subject::Image(tag.clone()),
                        what: "writing the holder build context",
                        path: PathBuf::from("(memory)"),
                        source,
                    })?;
                    let body =
                        futures_util::stream::once(async move { Ok(bytes::Bytes::from(ctx)) });
                    self.build_from(body, &tag).await?;
                }
                Ok(tag)
            })
            .await
            .cloned()
    }

    /// Runs job `job` as `spec` says, in the sandbox (see [`crate::sandbox`]), and writes its
    /// results to `result_dir` (which must not exist yet): `stdout`, `stderr`, `exitCode` and
    /// `outputs/`. They are written into `<result_dir>.tmp` first and renamed at the end, so a
    /// `result_dir` that exists is complete.
    ///
    /// A job that fails, times out, runs out of memory or fills its outputs is not an error:
    /// see [`RunOutcome`]. Errors are for what prevented running it or collecting its results.
    /// Whatever happens, the containers and the volume are removed (if this future is dropped
    /// or panics, removal is started in the background; [`Executor::cleanup_leftovers`]
    /// handles a crash).
    pub async fn run(
        &self,
        job: &str,
        spec: &RunSpec,
        result_dir: &Path,
    ) -> Result<RunOutcome, ExecError> {
        let span = tracing::info_span!("job", job);
        self.run_inner(job, spec, result_dir).instrument(span).await
    }

    async fn run_inner(
        &self,
        job: &str,
        spec: &RunSpec,
        result_dir: &Path,
    ) -> Result<RunOutcome, ExecError> {
        sandbox::validate(job, spec)?;
        let bad = |reason: String| ExecError::BadSpec {
            job: job.to_string(),
            reason,
        };
        if let Some(d) = &spec.inputs_dir {
            if !d.is_dir() {
                return Err(bad(format!(
                    "the inputs folder {} is not a folder",
                    d.display()
                )));
            }
        }
        let tmp = tmp_dir_for(result_dir)
            .ok_or_else(|| bad(format!("bad result folder {}", result_dir.display())))?;
        if tokio::fs::symlink_metadata(result_dir).await.is_ok() {
            return Err(bad(format!(
                "the result folder {} exists already",
                result_dir.display()
            )));
        }
        if !self.has_image(&spec.image).await? {
            return Err(ExecError::ImageNotFound {
                job: job.into(),
                image: spec.image.clone(),
            });
        }
        let holder_image = self.holder_image().await?;

        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io {
                subject: Subject::Job(job.to_string()),
                what,
                path,
                source,
            }
        };
        if tokio::fs::symlink_metadata(&tmp).await.is_ok() {
            tokio::fs::remove_dir_all(&tmp)
                .await
                .map_err(io("removing a stale", &tmp))?;
        }
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(io("creating", &tmp))?;

        let mut guard = Cleanup::new(self.docker.clone(), job, &tmp);
        let res = self
            .run_in(job, spec, &holder_image, &tmp, &mut guard)
            .await;
        guard.run().await;
        guard.tmp = None;
        let res = match res {
            Ok(outcome) => {
                // Publish: the folder appears complete or not at all.
                match tokio::fs::rename(&tmp, result_dir).await {
                    Ok(()) => Ok(RunOutcome {
                        result_dir: result_dir.to_path_buf(),
                        ..outcome
                    }),
                    Err(e) => Err(io("renaming the results to", result_dir)(e)),
                }
            }
            Err(e) => Err(e),
        };
        if res.is_err() {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
        }
        res
    }

    async fn run_in(
        &self,
        job: &str,
        spec: &RunSpec,
        holder_image: &str,
        tmp: &Path,
        guard: &mut Cleanup,
    ) -> Result<RunOutcome, ExecError> {
        let instance = &self.config.instance;
        let subject = || Subject::Job(job.to_string());
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io {
                subject: Subject::Job(job.to_string()),
                what,
                path,
                source,
            }
        };
        let uniq = unique();

        // 1. Outputs volume, kept mounted by the holder.
        let volume = sandbox::object_name("out", job, &uniq);
        self.docker
            .create_volume(sandbox::outputs_volume(job, instance, &volume, spec))
            .await
            .map_err(self.engine_err(subject(), "creating the outputs volume"))?;
        guard.volume = Some(volume.clone());
        let holder = sandbox::object_name("holder", job, &uniq);
        self.create(
            &holder,
            sandbox::holder_container(job, instance, holder_image, &volume),
            job,
            guard,
        )
        .await?;
        self.docker
            .start_container(&holder, None)
            .await
            .map_err(self.engine_err(subject(), "starting the outputs holder"))?;

        // 2. The job's container, attached before it starts so no output is missed.
        let name = sandbox::object_name("job", job, &uniq);
        match self
            .create(
                &name,
                sandbox::job_container(job, instance, spec, &volume),
                job,
                guard,
            )
            .await
        {
            Err(ExecError::Engine { source, .. }) if status_of(&source) == Some(404) => {
                return Err(ExecError::ImageNotFound {
                    job: job.into(),
                    image: spec.image.clone(),
                })
            }
            r => r?,
        }
        let attach = self
            .docker
            .attach_container(
                &name,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stream(true)
                        .stdout(true)
                        .stderr(true)
                        .logs(false)
                        .build(),
                ),
            )
            .await
            .map_err(self.engine_err(subject(), "attaching to the container"))?;
        let stdout_path = tmp.join("stdout");
        let stderr_path = tmp.join("stderr");
        let logs = LogFiles::create(&stdout_path, &stderr_path, spec.limits.log_bytes)
            .await
            .map_err(io("creating", &stdout_path))?;

        if let Err(e) = self.docker.start_container(&name, None).await {
            let msg = message_of(&e);
            // 4xx, the runtime refusing the process (no such entrypoint, wrong architecture,
            // unknown user), or no GPU driver: starting again here would fail the same way.
            let fatal =
                msg.contains("OCI runtime") || msg.contains("could not select device driver");
            return Err(match status_of(&e) {
                Some(s) if s < 500 || fatal => ExecError::StartFailed {
                    job: job.into(),
                    image: spec.image.clone(),
                    message: message_of(&e),
                },
                _ => self.engine_err(subject(), "starting the container")(e),
            });
        }
        let started = Instant::now();
        info!(container = %name, image = %spec.image, "job started");

        // 3. Wait for the exit (or kill at the wall time) while draining the logs.
        let mut drain = Box::pin(logs.drain(attach.output));
        let mut waiter = Box::pin(self.wait_or_kill(&name, spec.limits.wall_time, job));
        let mut drained = None;
        let waited = loop {
            tokio::select! {
                w = &mut waiter => break w,
                d = &mut drain, if drained.is_none() => drained = Some(d),
            }
        };
        let duration = started.elapsed();
        let drained = match drained {
            Some(d) => d,
            None => match tokio::time::timeout(self.config.log_grace, &mut drain).await {
                Ok(d) => d,
                Err(_) => {
                    warn!(
                        "the log stream did not end {:?} after the exit; cutting it",
                        self.config.log_grace
                    );
                    drop(drain);
                    Err(LogError::Timeout)
                }
            },
        };
        let timed_out = waited?;
        let logs = match drained {
            Ok(stats) => stats,
            Err(LogError::Io(e)) => return Err(io("writing the logs to", tmp)(e)),
            Err(LogError::Engine(e)) => {
                return Err(self.engine_err(subject(), "reading the logs")(e))
            }
            Err(LogError::Timeout) => LogStats {
                truncated: true,
                ..LogStats::default()
            },
        };

        let state = self
            .docker
            .inspect_container(&name, None)
            .await
            .map_err(self.engine_err(subject(), "inspecting the finished container"))?
            .state
            .unwrap_or_default();
        let exit_code = state.exit_code.unwrap_or(-1);
        let oom_killed = state.oom_killed.unwrap_or(false);

        // 4. Copy the outputs out of the holder (the volume is still mounted there).
        let l = &spec.limits;
        let limits = ExtractLimits {
            max_bytes: l.outputs_bytes,
            max_entries: u64::from(l.outputs_files) + 16,
            // Contents plus at most 4 header blocks per entry, plus the end blocks.
            max_archive_bytes: l.outputs_bytes
                + (u64::from(l.outputs_files) + 16) * 2048
                + 64 * 1024,
            strip_prefix: Some(OUTPUTS_PATH.trim_start_matches('/').to_string()),
        };
        let stream = self
            .docker
            .download_from_container(
                &holder,
                Some(
                    DownloadFromContainerOptionsBuilder::default()
                        .path(OUTPUTS_PATH)
                        .build(),
                ),
            )
            .map_err(|e| std::io::Error::other(e.to_string()));
        let reader =
            tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(stream)));
        let out_dir = tmp.join("outputs");
        let dest = out_dir.clone();
        let report = tokio::task::spawn_blocking(move || extract_outputs(reader, &dest, &limits))
            .await
            .map_err(|e| io("extracting outputs into", &out_dir)(std::io::Error::other(e)))?
            .map_err(|source| ExecError::Outputs {
                job: job.into(),
                source,
            })?;
        // The copy is the job's outputs only if the holder kept the tmpfs mounted all along:
        // had it stopped, the engine unmounts the volume (its files are gone) and a copy from
        // the stopped holder reads a fresh, empty one, without any error. Published as it is,
        // such a result is wrong for a job that wrote outputs (and a mediator would slash an
        // honest provider over it, issue 19). The holder started before the job and cannot
        // restart (no restart policy), so running now means running throughout.
        let held = self
            .docker
            .inspect_container(&holder, None)
            .await
            .map_err(self.engine_err(subject(), "inspecting the outputs holder"))?
            .state
            .unwrap_or_default();
        if held.running != Some(true) {
            let state = format!(
                "status {}, exit code {}{}",
                held.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                held.exit_code.unwrap_or(-1),
                if held.oom_killed == Some(true) { ", OOM-killed" } else { "" }
            );
            warn!(holder = %holder, %state, "the outputs holder stopped before the outputs were copied out");
            return Err(ExecError::OutputsLost { job: job.into(), holder: holder.clone(), state });
        }
        // The tmpfs was full when no page was left, or every allowed inode was used (the count
        // includes the top folder).
        let cap_pages = l.outputs_bytes.div_ceil(PAGE);
        let outputs_full = report.truncated
            || report.pages >= cap_pages
            || report.inodes > u64::from(l.outputs_files);

        // 5. exitCode, then sync the small files so the rename publishes complete ones.
        let code_path = tmp.join("exitCode");
        write_synced(&code_path, format!("{exit_code}\n").as_bytes())
            .await
            .map_err(io("writing", &code_path))?;

        let outcome = RunOutcome {
            exit_code,
            timed_out,
            oom_killed,
            outputs_too_large: outputs_full,
            log_truncated: logs.truncated,
            stdout_bytes: logs.stdout_bytes,
            stderr_bytes: logs.stderr_bytes,
            duration,
            output_bytes: report.bytes,
            output_files: report.files,
            skipped: report.skipped,
            skipped_count: report.skipped_count,
            result_dir: tmp.to_path_buf(),
        };
        info!(
            exit_code,
            timed_out,
            oom_killed,
            outputs_too_large = outputs_full,
            log_truncated = logs.truncated,
            output_bytes = report.bytes,
            skipped = report.skipped_count,
            ?duration,
            "job finished"
        );
        Ok(outcome)
    }

    async fn create(
        &self,
        name: &str,
        body: bollard::models::ContainerCreateBody,
        job: &str,
        guard: &mut Cleanup,
    ) -> Result<(), ExecError> {
        let res = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(self.engine_err(Subject::Job(job.into()), "creating a container"))?;
        for w in res.warnings {
            warn!(container = name, warning = %w, "engine warning");
        }
        guard.containers.push(name.to_string());
        Ok(())
    }

    /// Waits for the container to stop; kills it at `wall`. Returns whether it was killed.
    async fn wait_or_kill(&self, name: &str, wall: Duration, job: &str) -> Result<bool, ExecError> {
        let subject = || Subject::Job(job.to_string());
        match tokio::time::timeout(wall, wait_exit(&self.docker, name)).await {
            Ok(r) => r
                .map(|()| false)
                .map_err(self.engine_err(subject(), "waiting for the container")),
            Err(_) => {
                warn!(?wall, "wall-time limit reached: killing the container");
                let killed = match self
                    .docker
                    .kill_container(
                        name,
                        Some(
                            KillContainerOptionsBuilder::default()
                                .signal("KILL")
                                .build(),
                        ),
                    )
                    .await
                {
                    Ok(()) => true,
                    // 409: it had just exited by itself.
                    Err(e) if status_of(&e) == Some(409) => false,
                    Err(e) => return Err(self.engine_err(subject(), "killing the container")(e)),
                };
                match tokio::time::timeout(self.config.kill_grace, wait_exit(&self.docker, name))
                    .await
                {
                    Ok(r) => {
                        r.map_err(self.engine_err(subject(), "waiting for the killed container"))?
                    }
                    Err(_) => warn!(
                        "the container did not stop {:?} after SIGKILL",
                        self.config.kill_grace
                    ),
                }
                Ok(killed)
            }
        }
    }

    /// Removes every container and volume labelled with this executor's instance: what a
    /// crashed run left behind. Call it at start-up, before running jobs (it would also remove
    /// running jobs of this instance). Returns how many containers and volumes were removed.
    pub async fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
        let filter = HashMap::from([(
            "label",
            vec![format!("{LABEL_EXECUTOR}={}", self.config.instance)],
        )]);
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(self.engine_err(Subject::Engine, "listing leftover containers"))?;
        let mut removed = 0;
        for c in containers {
            let Some(id) = c.id else { continue };
            match self
                .docker
                .remove_container(
                    &id,
                    Some(
                        RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build(),
                    ),
                )
                .await
            {
                Ok(()) => removed += 1,
                Err(e) if status_of(&e) == Some(404) => {}
                // "removal already in progress": the engine is removing it already.
                Err(e) if status_of(&e) == Some(409) => removed += 1,
                Err(e) => {
                    return Err(self
                        .engine_err(Subject::Engine, "removing a leftover container")(
                        e
                    ))
                }
            }
        }
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(self.engine_err(Subject::Engine, "listing leftover volumes"))?;
        for v in volumes.volumes.unwrap_or_default() {
            let mut tries = 0;
            let result = loop {
                let r = self
                    .docker
                    .remove_volume(
                        &v.name,
                        Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                    )
                    .await;
                // 409: still in use by a container being removed; give it a moment.
                match r {
                    Err(e) if status_of(&e) == Some(409) && tries < 25 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) if status_of(&e) == Some(409) => {
                    warn!(volume = %v.name, error = %e, "a leftover volume is still in use; it is removed on a later start");
                }
                Err(e) => {
                    return Err(self
                        .engine_err(Subject::Engine, "removing a leftover volume")(
                        e
                    ))
                }
            }
        }
        if removed > 0 {
            info!(removed, instance = %self.config.instance, "removed leftovers of earlier runs");
        }
        Ok(removed)
    }

    /// Containers (any state) labelled with this executor's instance.
    pub async fn list_own_containers(&self) -> Result<Vec<String>, ExecError> {
        let filter = HashMap::from([(
            "label",
            vec![format!("{LABEL_EXECUTOR}={}", self.config.instance)],
        )]);
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(self.engine_err(Subject::Engine, "listing containers"))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
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

/// `<result_dir>.tmp`, next to it.
fn tmp_dir_for(result_dir: &Path) -> Option<PathBuf> {
    let name = result_dir.file_name()?;
    let mut tmp = name.to_os_string();
    tmp.push(".tmp");
    Some(result_dir.with_file_name(tmp))
}

async fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = tokio::fs::File::create(path).await?;
    f.write_all(data).await?;
    f.sync_all().await
}

async fn wait_exit(docker: &Docker, name: &str) -> Result<(), BollardError> {
    let opts = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut s = docker.wait_container(name, Some(opts));
    match s.next().await {
        // A non-zero exit comes as this error; the code is read by inspecting the container.
        Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) | None => Ok(()),
        Some(Err(e)) => Err(e),
    }
}

/// Removes a job's containers and volume; on drop (panic, cancelled future) in the background.
struct Cleanup {
    docker: Docker,
    job: String,
    containers: Vec<String>,
    volume: Option<String>,
    /// The unfinished result folder, removed only on drop (a normal return handles it).
    tmp: Option<PathBuf>,
}

impl Cleanup {
    fn new(docker: Docker, job: &str, tmp: &Path) -> Self {
        Cleanup {
            docker,
            job: job.to_string(),
            containers: Vec::new(),
            volume: None,
            tmp: Some(tmp.to_path_buf()),
        }
    }

    async fn run(&mut self) {
        remove_all(
            &self.docker,
            &self.job,
            std::mem::take(&mut self.containers),
            self.volume.take(),
        )
        .await;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_dir_all(tmp);
        }
        if self.containers.is_empty() && self.volume.is_none() {
            return;
        }
        let (docker, job) = (self.docker.clone(), self.job.clone());
        let (containers, volume) = (std::mem::take(&mut self.containers), self.volume.take());
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                warn!(
                    job,
                    "run interrupted: removing its containers in the background"
                );
                h.spawn(async move { remove_all(&docker, &job, containers, volume).await });
            }
            Err(_) => warn!(
                job,
                ?containers,
                "no runtime to remove the job's containers: cleanup_leftovers will"
            ),
        }
    }
}

async fn remove_all(docker: &Docker, job: &str, containers: Vec<String>, volume: Option<String>) {
    // The job's container first, the holder last (it is created first).
    for c in containers.iter().rev() {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(c, Some(opts)).await {
            Ok(()) => debug!(job, container = %c, "removed container"),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => {
                warn!(job, container = %c, error = %e, "could not remove container (cleanup_leftovers will)")
            }
        }
    }
    if let Some(v) = volume {
        match docker
            .remove_volume(
                &v,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => debug!(job, volume = %v, "removed volume"),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => {
                warn!(job, volume = %v, error = %e, "could not remove volume (cleanup_leftovers will)")
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct LogStats {
    stdout_bytes: u64,
    stderr_bytes: u64,
    truncated: bool,
}

enum LogError {
    Io(std::io::Error),
    Engine(BollardError),
    Timeout,
}

/// stdout and stderr files, each keeping at most `cap` bytes.
struct LogFiles {
    stdout: tokio::io::BufWriter<tokio::fs::File>,
    stderr: tokio::io::BufWriter<tokio::fs::File>,
    cap: u64,
}

impl LogFiles {
    async fn create(stdout: &Path, stderr: &Path, cap: u64) -> std::io::Result<Self> {
        Ok(LogFiles {
            stdout: tokio::io::BufWriter::new(tokio::fs::File::create(stdout).await?),
            stderr: tokio::io::BufWriter::new(tokio::fs::File::create(stderr).await?),
            cap,
        })
    }

    /// Reads the stream to its end, keeping the first `cap` bytes of each of stdout and
    /// stderr and counting the rest (reading on so the container never blocks on a full pipe).
    async fn drain<S>(mut self, mut output: S) -> Result<LogStats, LogError>
    where
        S: Stream<Item = Result<LogOutput, BollardError>> + Unpin,
    {
        let mut stats = LogStats::default();
        while let Some(item) = output.next().await {
            let (file, seen, message) = match item.map_err(LogError::Engine)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (&mut self.stdout, &mut stats.stdout_bytes, message)
                }
                LogOutput::StdErr { message } => {
                    (&mut self.stderr, &mut stats.stderr_bytes, message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            let room = self.cap.saturating_sub(*seen);
            let keep = (message.len() as u64).min(room) as usize;
            if keep > 0 {
                file.write_all(&message[..keep])
                    .await
                    .map_err(LogError::Io)?;
            }
            if keep < message.len() {
                stats.truncated = true;
            }
            *seen += message.len() as u64;
        }
        for f in [&mut self.stdout, &mut self.stderr] {
            f.flush().await.map_err(LogError::Io)?;
            f.get_mut().sync_all().await.map_err(LogError::Io)?;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_dir_is_a_sibling() {
        assert_eq!(
            tmp_dir_for(Path::new("/r/job-1")),
            Some(PathBuf::from("/r/job-1.tmp"))
        );
        assert_eq!(
            tmp_dir_for(Path::new("/r/job-1/")),
            Some(PathBuf::from("/r/job-1.tmp"))
        );
        assert_eq!(tmp_dir_for(Path::new("/")), None);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique(), unique());
    }

    #[tokio::test]
    async fn logs_are_capped_per_stream() {
        let d = tempfile::tempdir().unwrap();
        let (o, e) = (d.path().join("stdout"), d.path().join("stderr"));
        let logs = LogFiles::create(&o, &e, 10).await.unwrap();
        let items = vec![
            Ok(LogOutput::StdOut {
                message: "12345".into(),
            }),
            Ok(LogOutput::StdErr {
                message: "abc".into(),
            }),
            Ok(LogOutput::StdOut {
                message: "6789012345".into(),
            }),
            Ok(LogOutput::StdOut {
                message: "more".into(),
            }),
        ];
        let stats = match logs.drain(futures_util::stream::iter(items)).await {
            Ok(s) => s,
            Err(_) => panic!("drain failed"),
        };
        assert_eq!(std::fs::read(&o).unwrap(), b"1234567890");
        assert_eq!(std::fs::read(&e).unwrap(), b"abc");
        assert_eq!(
            (stats.stdout_bytes, stats.stderr_bytes, stats.truncated),
            (19, 3, true)
        );
    }
}
