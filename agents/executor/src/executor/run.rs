//! A job's run: an outputs volume of its own (prepared ahead, held mounted: `pool.rs`), the
//! job's container attached and started, the wait (killed at the wall time) while its logs
//! drain, the outputs copied out, the result folder published whole; the container is removed
//! in the background, after the result is out.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn, Instrument};

use super::cleanup::Cleanup;
use super::logs::{LogError, LogFiles, LogStats};
use super::pool::{OutputsLease, VolumeKey};
use super::{io_error, unique, Executor};
use crate::error::{message_of, status_of, ExecError, Subject};
use crate::outputs::{copy_outputs_dir, extract_outputs, ExtractLimits, ExtractReport, PAGE};
use crate::sandbox;
use crate::spec::{GpuRequest, RunOutcome, RunSpec, OUTPUTS_PATH};

impl Executor {
    /// Runs job `job` as `spec` says, in the sandbox (see [`crate::sandbox`]), and writes its
    /// results to `result_dir` (which must not exist yet): `stdout`, `stderr`, `exitCode` and
    /// `outputs/`. They are written into `<result_dir>.tmp` first and renamed at the end, so a
    /// `result_dir` that exists is complete.
    ///
    /// A job that fails, times out, runs out of memory or fills its outputs is not an error:
    /// see [`RunOutcome`]. Errors are for what prevented running it or collecting its results.
    /// Whatever happens, the job's container and its outputs volume are removed: in the
    /// background once the result is out (also if this future is dropped or panics;
    /// [`Executor::release`] waits for them), and by [`Executor::cleanup_leftovers`] after a
    /// crash.
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
        let tmp = self.check_run(job, spec, result_dir).await?;
        // GPUs of its own, held until the run ends (the lease is dropped on every path).
        let (_gpus, placed);
        let spec = match &spec.gpus {
            Some(g) => {
                let lease = self
                    .config
                    .gpus
                    .acquire(g.count, &g.device_ids)
                    .map_err(|source| ExecError::Gpus { job: job.to_string(), source })?;
                tracing::info!(devices = ?lease.devices(), "GPUs assigned");
                let mut s = spec.clone();
                s.gpus = Some(GpuRequest { count: None, device_ids: lease.devices().to_vec() });
                _gpus = Some(lease);
                placed = s;
                &placed
            }
            None => spec,
        };
        let holder_image = self.holder_image().await?;
        fresh_dir(job, &tmp).await?;

        let mut guard = Cleanup::new(self.docker.clone(), self.pool.background.clone(), job, &tmp);
        let res = self
            .run_in(job, spec, &holder_image, &tmp, &mut guard)
            .await;
        // Off the result's path: the container is removed in the background.
        guard.spawn_removal();
        guard.tmp = None;
        // Publish: the folder appears complete or not at all.
        let res = match res {
            Ok(outcome) => match tokio::fs::rename(&tmp, result_dir).await {
                Ok(()) => Ok(RunOutcome {
                    result_dir: result_dir.to_path_buf(),
                    ..outcome
                }),
                Err(e) => Err(io_error(job, "renaming the results to", result_dir)(e)),
            },
            Err(e) => Err(e),
        };
        if res.is_err() {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
        }
        res
    }

    /// Checks what a run needs before anything is created: a valid spec, an inputs folder that
    /// is one, a result folder not there yet, the image at hand. Returns the temporary folder
    /// the results are written to.
    async fn check_run(
        &self,
        job: &str,
        spec: &RunSpec,
        result_dir: &Path,
    ) -> Result<PathBuf, ExecError> {
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
        Ok(tmp)
    }

    async fn run_in(
        &self,
        job: &str,
        spec: &RunSpec,
        holder_image: &str,
        tmp: &Path,
        guard: &mut Cleanup,
    ) -> Result<RunOutcome, ExecError> {
        let uniq = unique();
        let t0 = Instant::now();
        // 1. An outputs volume of its own, held mounted (prepared ahead); 2. the job's
        // container, attached before it starts so no output is missed.
        let key = VolumeKey { bytes: spec.limits.outputs_bytes, files: spec.limits.outputs_files };
        let lease = self.pool.acquire(key, holder_image).await?;
        let t_volume = t0.elapsed();
        let name = self.create_job(job, spec, lease.volume(), &uniq, guard).await?;
        let attach = self.attach(job, &name).await?;
        let stdout_path = tmp.join("stdout");
        let logs = LogFiles::create(&stdout_path, &tmp.join("stderr"), spec.limits.log_bytes)
            .await
            .map_err(io_error(job, "creating", &stdout_path))?;
        let t_created = t0.elapsed();
        self.start_job(job, spec, &name).await?;
        let started = Instant::now();
        let t_started = t0.elapsed();
        info!(container = %name, image = %spec.image, "job started");

        // 3. Wait for the exit (or kill at the wall time) while draining the logs.
        let (timed_out, logs) = self
            .wait_draining(job, spec, &name, logs, attach, tmp)
            .await?;
        let duration = started.elapsed();
        let t_exited = t0.elapsed();
        let (exit_code, oom_killed) = self.exit_state(job, &name).await?;
        let t_ran = t0.elapsed();

        // 4. Copy the outputs out of the holder (the volume is still mounted there).
        let (report, outputs_full) = match self.copy_outputs(job, spec, &lease, tmp).await {
            Ok(r) => r,
            Err(e) => {
                // a holder that stopped lost every volume of its batch: no job gets one more
                lease.retire();
                return Err(e);
            }
        };
        lease.copied(report.bytes);
        let t_copied = t0.elapsed();

        // 5. exitCode, then sync the small files so the rename publishes complete ones.
        let code_path = tmp.join("exitCode");
        write_synced(&code_path, format!("{exit_code}\n").as_bytes())
            .await
            .map_err(io_error(job, "writing", &code_path))?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        debug!(
            volume_ms = ms(t_volume),
            create_ms = ms(t_created - t_volume),
            start_ms = ms(t_started - t_created),
            run_ms = ms(t_exited - t_started),
            inspect_ms = ms(t_ran - t_exited),
            copy_ms = ms(t_copied - t_ran),
            exit_code_ms = ms(t0.elapsed() - t_copied),
            "sandbox phases"
        );

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

    /// Creates the job's container (not started); returns its name.
    async fn create_job(
        &self,
        job: &str,
        spec: &RunSpec,
        volume: &str,
        uniq: &str,
        guard: &mut Cleanup,
    ) -> Result<String, ExecError> {
        if spec.network {
            self.ensure_job_network(job).await?;
        }
        let name = sandbox::object_name("job", job, uniq);
        let body = sandbox::job_container(job, &self.config.instance, spec, volume);
        match self.create(&name, body, job, guard).await {
            Err(ExecError::Engine { source, .. }) if status_of(&source) == Some(404) => {
                Err(ExecError::ImageNotFound {
                    job: job.into(),
                    image: spec.image.clone(),
                })
            }
            r => r.map(|()| name),
        }
    }

    /// Attaches to the container's stdout and stderr.
    async fn attach(
        &self,
        job: &str,
        name: &str,
    ) -> Result<bollard::container::AttachContainerResults, ExecError> {
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .logs(false)
            .build();
        self.docker
            .attach_container(name, Some(options))
            .await
            .map_err(self.engine_err(Subject::Job(job.into()), "attaching to the container"))
    }

    /// Starts the job's container. A refusal that starting again would meet the same way (4xx,
    /// the runtime refusing the process: no such entrypoint, wrong architecture, unknown user;
    /// no GPU driver) is [`ExecError::StartFailed`].
    async fn start_job(&self, job: &str, spec: &RunSpec, name: &str) -> Result<(), ExecError> {
        let Err(e) = self.docker.start_container(name, None).await else {
            return Ok(());
        };
        let msg = message_of(&e);
        let fatal = msg.contains("OCI runtime") || msg.contains("could not select device driver");
        Err(match status_of(&e) {
            Some(s) if s < 500 || fatal => ExecError::StartFailed {
                job: job.into(),
                image: spec.image.clone(),
                message: msg,
            },
            _ => self.engine_err(Subject::Job(job.into()), "starting the container")(e),
        })
    }

    /// Waits for the container's exit (killing it at the wall time) while its logs drain, and
    /// gives the log stream `log_grace` to end after the exit. Returns whether it was killed,
    /// and the log statistics.
    async fn wait_draining(
        &self,
        job: &str,
        spec: &RunSpec,
        name: &str,
        logs: LogFiles,
        attach: bollard::container::AttachContainerResults,
        tmp: &Path,
    ) -> Result<(bool, LogStats), ExecError> {
        let mut drain = Box::pin(logs.drain(attach.output));
        let mut waiter = Box::pin(self.wait_or_kill(name, spec.limits.wall_time, job));
        let mut drained = None;
        let waited = loop {
            tokio::select! {
                w = &mut waiter => break w,
                d = &mut drain, if drained.is_none() => drained = Some(d),
            }
        };
        let drained = match drained {
            Some(d) => d,
            None => match tokio::time::timeout(self.config.log_grace, &mut drain).await {
                Ok(d) => d,
                Err(_) => {
                    warn!(
                        "the log stream did not end {:?} after the exit; cutting it",
                        self.config.log_grace
                    );
                    Err(LogError::Timeout)
                }
            },
        };
        let timed_out = waited?;
        let stats = match drained {
            Ok(stats) => stats,
            Err(LogError::Io(e)) => return Err(io_error(job, "writing the logs to", tmp)(e)),
            Err(LogError::Engine(e)) => {
                return Err(self
                    .engine_err(Subject::Job(job.into()), "reading the logs")(
                    e
                ))
            }
            Err(LogError::Timeout) => LogStats {
                truncated: true,
                ..LogStats::default()
            },
        };
        Ok((timed_out, stats))
    }

    /// The finished container's exit code (-1 if unknown) and whether it ran out of memory.
    async fn exit_state(&self, job: &str, name: &str) -> Result<(i64, bool), ExecError> {
        let state = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(self.engine_err(
                Subject::Job(job.into()),
                "inspecting the finished container",
            ))?
            .state
            .unwrap_or_default();
        Ok((
            state.exit_code.unwrap_or(-1),
            state.oom_killed.unwrap_or(false),
        ))
    }

    /// Copies the job's outputs volume out of its holder into `<tmp>/outputs`, within the
    /// spec's limits. Returns the extraction's report and whether the outputs filled their
    /// tmpfs.
    async fn copy_outputs(
        &self,
        job: &str,
        spec: &RunSpec,
        lease: &OutputsLease,
        tmp: &Path,
    ) -> Result<(ExtractReport, bool), ExecError> {
        let (holder, path) = (lease.holder(), lease.path());
        let host_path = lease.host_path().map(Path::to_path_buf);
        let l = &spec.limits;
        let limits = ExtractLimits {
            max_bytes: l.outputs_bytes,
            max_entries: u64::from(l.outputs_files) + 16,
            // Contents plus at most 4 header blocks per entry, plus the end blocks.
            max_archive_bytes: l.outputs_bytes
                + (u64::from(l.outputs_files) + 16) * 2048
                + 64 * 1024,
            strip_prefix: Some(path.trim_start_matches('/').to_string()),
        };
        let out_dir = tmp.join("outputs");
        let dest = out_dir.clone();
        let copy = match host_path {
            // straight from the volume's mount point (the engine runs on this host)
            Some(src) => tokio::task::spawn_blocking(move || {
                copy_outputs_dir(&src, &dest, &limits, OUTPUTS_PATH.trim_start_matches('/'))
            }),
            None => {
                let options = DownloadFromContainerOptionsBuilder::default()
                    .path(path.as_str())
                    .build();
                let stream = self
                    .docker
                    .download_from_container(holder, Some(options))
                    .map_err(|e| std::io::Error::other(e.to_string()));
                let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
                    Box::pin(stream),
                ));
                tokio::task::spawn_blocking(move || extract_outputs(reader, &dest, &limits))
            }
        };
        let mut report = copy
            .await
            .map_err(|e| {
                io_error(job, "extracting outputs into", &out_dir)(std::io::Error::other(e))
            })?
            .map_err(|source| ExecError::Outputs {
                job: job.into(),
                source,
            })?;
        self.check_holder_held(job, holder).await?;
        // Reported as the job saw them: under `outputs/`, not the holder's mount point.
        let held_at = format!("{}/", path.trim_start_matches('/'));
        for s in &mut report.skipped {
            if let Some(rest) = s.strip_prefix(&held_at) {
                *s = format!("{}/{rest}", OUTPUTS_PATH.trim_start_matches('/'));
            }
        }
        // The tmpfs was full when no page was left, or every allowed inode was used (the count
        // includes the top folder).
        let cap_pages = l.outputs_bytes.div_ceil(PAGE);
        let full = report.truncated
            || report.pages >= cap_pages
            || report.inodes > u64::from(l.outputs_files);
        Ok((report, full))
    }

    /// The copy is the job's outputs only if the holder kept the tmpfs mounted all along:
    /// had it stopped, the engine unmounts the volume (its files are gone) and a copy from the
    /// stopped holder reads a fresh, empty one, without any error. Published as it is, such a
    /// result is wrong for a job that wrote outputs (and a mediator would slash an honest
    /// provider over it, issue 19). The holder started before the job and cannot restart (no
    /// restart policy), so running now means running throughout.
    async fn check_holder_held(&self, job: &str, holder: &str) -> Result<(), ExecError> {
        let held = self
            .docker
            .inspect_container(holder, None)
            .await
            .map_err(self.engine_err(Subject::Job(job.into()), "inspecting the outputs holder"))?
            .state
            .unwrap_or_default();
        if held.running == Some(true) {
            return Ok(());
        }
        let state = format!(
            "status {}, exit code {}{}",
            held.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
            held.exit_code.unwrap_or(-1),
            if held.oom_killed == Some(true) { ", OOM-killed" } else { "" }
        );
        warn!(holder = %holder, %state, "the outputs holder stopped before the outputs were copied out");
        Err(ExecError::OutputsLost { job: job.into(), holder: holder.to_string(), state })
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
}

/// Makes `dir` an empty folder (removing a stale one a crash left).
async fn fresh_dir(job: &str, dir: &Path) -> Result<(), ExecError> {
    if tokio::fs::symlink_metadata(dir).await.is_ok() {
        tokio::fs::remove_dir_all(dir)
            .await
            .map_err(io_error(job, "removing a stale", dir))?;
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error(job, "creating", dir))
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
}
