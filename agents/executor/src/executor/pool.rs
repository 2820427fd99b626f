//! Outputs volumes prepared ahead of the jobs, so that a job's run starts with its outputs
//! volume already created and held mounted, and no holder container is started or removed on
//! its critical path.
//!
//! A *batch* is [`ExecutorConfig::outputs_batch`](super::ExecutorConfig) fresh tmpfs volumes
//! of one size (a job's `outputs_bytes` and `outputs_files`) and one holder container that
//! mounts them all (the `i`-th at `/o<i>`), started once. Each volume is handed to exactly one
//! job ([`OutputsLease`]) and never again: a job sees an empty volume nobody else used, and
//! its container mounts that volume alone. The holder keeps every volume of its batch mounted
//! until the batch is spent (every volume handed out, or it holds
//! [`HELD_BYTES`] of copied-out outputs, or its holder stopped) and the last job holding one
//! of them is done; then the holder and the volumes are removed in the background. The next
//! batch is prepared in the background once fewer than half a batch of volumes are left.
//!
//! Where this host sees the volumes' mount points (the engine on this host, in its mount
//! namespace: checked once per executor by writing a probe file through the engine into a
//! volume that is then never handed out, and reading it at the mount point), a job's outputs
//! are copied straight from its volume's mount point ([`OutputsLease::host_path`]) instead of
//! through an archive the engine packs.
//!
//! Everything is labelled with the executor's instance (`lilypad.job=pool`), so a crash
//! leaves nothing that [`Executor::cleanup_leftovers`](super::Executor::cleanup_leftovers)
//! does not remove.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder};
use bollard::Docker;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::unique;
use crate::error::{status_of, ExecError, Subject};
use crate::sandbox;

/// Copied-out outputs a batch may keep in memory (its volumes stay mounted until the batch is
/// removed) before it hands out no more volumes.
pub(super) const HELD_BYTES: u64 = 64 << 20;

/// The label value (`lilypad.job`) of a batch's holder and volumes.
const POOL_JOB: &str = "pool";

/// The size of a job's outputs volume: what a pooled volume must match.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) struct VolumeKey {
    pub bytes: u64,
    pub files: u32,
}

/// Background removals (and preparations) in progress, so that they can be waited for.
#[derive(Clone, Default)]
pub(super) struct Background(Arc<AtomicUsize>);

impl Background {
    /// Runs `work` in the background (on the current runtime; without one it is not run, and
    /// the start-up sweep removes what it would have).
    pub(super) fn spawn(&self, what: &'static str, work: impl std::future::Future<Output = ()> + Send + 'static) {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let count = self.0.clone();
                count.fetch_add(1, Ordering::SeqCst);
                h.spawn(async move {
                    work.await;
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(_) => warn!(what, "no runtime to finish this in the background: cleanup_leftovers will"),
        }
    }

    /// Returns once no background work is in progress.
    pub(super) async fn idle(&self) {
        while self.0.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One holder and the volumes it keeps mounted. Dropped (no job and no pool holds it any
/// more): removed in the background.
pub(super) struct Batch {
    holder: String,
    volumes: Vec<String>,
    /// Each volume's mount point on this host, when the outputs are copied from there.
    host_paths: Option<Vec<PathBuf>>,
    next: AtomicUsize,
    retired: AtomicBool,
    held: AtomicU64,
    docker: Docker,
    background: Background,
}

impl Batch {
    fn take(&self) -> Option<usize> {
        if self.retired.load(Ordering::SeqCst) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        (i < self.volumes.len()).then_some(i)
    }

    fn left(&self) -> usize {
        if self.retired.load(Ordering::SeqCst) {
            return 0;
        }
        self.volumes.len().saturating_sub(self.next.load(Ordering::SeqCst))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let (docker, holder, volumes) = (self.docker.clone(), std::mem::take(&mut self.holder), std::mem::take(&mut self.volumes));
        self.background.spawn("removing a spent outputs batch", async move { remove_batch(&docker, &holder, volumes).await });
    }
}

/// One job's outputs volume, fresh and its own, held mounted by a running holder.
pub(super) struct OutputsLease {
    batch: Arc<Batch>,
    index: usize,
}

impl OutputsLease {
    /// The volume, to mount at `/outputs` in the job's container.
    pub(super) fn volume(&self) -> &str {
        &self.batch.volumes[self.index]
    }

    /// The holder keeping it mounted.
    pub(super) fn holder(&self) -> &str {
        &self.batch.holder
    }

    /// Where the holder has it mounted (the path to copy the outputs from).
    pub(super) fn path(&self) -> String {
        sandbox::holder_path(self.index)
    }

    /// Its mount point as this host sees it, when the outputs can be copied from there.
    pub(super) fn host_path(&self) -> Option<&std::path::Path> {
        self.batch.host_paths.as_ref().map(|p| p[self.index].as_path())
    }

    /// The outputs were copied out: `bytes` of them stay in memory until the batch goes.
    pub(super) fn copied(&self, bytes: u64) {
        let held = self.batch.held.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if held >= HELD_BYTES {
            self.retire();
        }
    }

    /// No more jobs get a volume of this batch (its holder stopped, or it holds enough).
    pub(super) fn retire(&self) {
        self.batch.retired.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct KeyState {
    batches: VecDeque<Arc<Batch>>,
    preparing: bool,
}

/// The batches of one executor, per volume size.
pub(super) struct OutputsPool {
    docker: Docker,
    endpoint: String,
    instance: String,
    batch: usize,
    state: Mutex<HashMap<VolumeKey, KeyState>>,
    ready: Notify,
    pub(super) background: Background,
    /// Whether this host sees the volumes' mount points (probed with the first batch).
    host_visible: tokio::sync::OnceCell<bool>,
}

impl OutputsPool {
    pub(super) fn new(docker: Docker, endpoint: String, instance: String, batch: usize, from_host: bool) -> Self {
        let host_visible = match from_host {
            true => tokio::sync::OnceCell::new(),
            false => tokio::sync::OnceCell::new_with(Some(false)),
        };
        OutputsPool {
            docker,
            endpoint,
            instance,
            batch: batch.max(1),
            state: Mutex::new(HashMap::new()),
            ready: Notify::new(),
            background: Background::default(),
            host_visible,
        }
    }

    /// A fresh volume of size `key` for one job, held mounted; a batch is prepared first when
    /// none is ready, and the next one in the background when this one runs low.
    pub(super) async fn acquire(self: &Arc<Self>, key: VolumeKey, holder_image: &str) -> Result<OutputsLease, ExecError> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            let prepare_here = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let ks = state.entry(key).or_default();
                ks.batches.retain(|b| b.left() > 0);
                let taken = ks.batches.iter().find_map(|b| b.take().map(|i| (b.clone(), i)));
                if let Some((batch, index)) = taken {
                    let left: usize = ks.batches.iter().map(|b| b.left()).sum();
                    if left < self.batch.div_ceil(2) && !ks.preparing {
                        ks.preparing = true;
                        let (pool, image) = (self.clone(), holder_image.to_string());
                        self.background.spawn("preparing outputs volumes", async move {
                            let made = pool.prepare(key, &image).await;
                            if let Err(e) = &made {
                                warn!(error = %e, "preparing outputs volumes ahead failed; the next job prepares them");
                            }
                            pool.put(key, made.ok());
                        });
                    }
                    return Ok(OutputsLease { batch, index });
                }
                if ks.preparing {
                    notified.as_mut().enable();
                    false
                } else {
                    ks.preparing = true;
                    true
                }
            };
            if prepare_here {
                let made = self.prepare(key, holder_image).await;
                let failed = made.as_ref().err().map(|e| e.to_string());
                match made {
                    Ok(b) => self.put(key, Some(b)),
                    Err(e) => {
                        self.put(key, None);
                        debug!(error = ?failed, "preparing outputs volumes failed");
                        return Err(e);
                    }
                }
            } else {
                notified.await;
            }
        }
    }

    fn put(&self, key: VolumeKey, batch: Option<Arc<Batch>>) {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let ks = state.entry(key).or_default();
            ks.preparing = false;
            ks.batches.extend(batch);
        }
        self.ready.notify_waiters();
    }

    /// Creates a batch: its volumes, then its holder, started (so every volume is mounted
    /// before any job uses one). What was made before a failure is removed.
    async fn prepare(&self, key: VolumeKey, holder_image: &str) -> Result<Arc<Batch>, ExecError> {
        let started = std::time::Instant::now();
        let uniq = unique();
        // the first batch has one volume more: the probe of the mount points (never handed out)
        let probing = !self.host_visible.initialized();
        let count = self.batch + usize::from(probing);
        let mut mountpoints = Vec::with_capacity(count);
        let mut batch = Batch {
            holder: String::new(),
            volumes: Vec::with_capacity(count),
            host_paths: None,
            next: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            held: AtomicU64::new(0),
            docker: self.docker.clone(),
            background: self.background.clone(),
        };
        let creates = (0..count).map(|i| {
            let name = sandbox::object_name("out", POOL_JOB, &format!("{uniq}-{i}"));
            let body = sandbox::outputs_volume_sized(POOL_JOB, &self.instance, &name, key.bytes, key.files);
            async move { self.docker.create_volume(body).await.map(|v| (name, v.mountpoint)) }
        });
        for made in futures_util::future::join_all(creates).await {
            match made {
                Ok((name, mountpoint)) => {
                    batch.volumes.push(name);
                    mountpoints.push(PathBuf::from(mountpoint));
                }
                // the batch (dropped on return) removes the volumes made already
                Err(e) => return Err(self.engine_err("creating a pooled outputs volume")(e)),
            }
        }
        let holder = sandbox::object_name("holder", POOL_JOB, &uniq);
        let body = sandbox::holder_of(POOL_JOB, &self.instance, holder_image, &batch.volumes);
        let options = CreateContainerOptionsBuilder::default().name(&holder).build();
        let created = self.docker.create_container(Some(options), body).await;
        let created = created.map_err(self.engine_err("creating an outputs holder"))?;
        batch.holder = holder.clone();
        for w in created.warnings {
            warn!(container = %holder, warning = %w, "engine warning");
        }
        self.docker.start_container(&holder, None).await.map_err(self.engine_err("starting an outputs holder"))?;
        if probing {
            batch.next.store(1, Ordering::SeqCst);
            let visible = *self.host_visible.get_or_init(|| self.probe(&holder, &mountpoints[0])).await;
            if visible {
                info!("outputs are copied straight from their volumes' mount points (the engine runs on this host)");
            } else {
                info!("outputs are copied through the engine (its volumes' mount points are not visible here)");
            }
        }
        if self.host_visible.get() == Some(&true) {
            batch.host_paths = Some(mountpoints);
        }
        info!(holder = %holder, volumes = batch.volumes.len(), bytes = key.bytes, files = key.files, ms = started.elapsed().as_millis() as u64, "outputs volumes prepared");
        Ok(Arc::new(batch))
    }

    /// Hands out no more of the batches made so far (they are removed once the jobs holding
    /// their volumes are done), and waits until every removal in the background is over.
    pub(super) async fn release(&self) {
        let taken: Vec<Arc<Batch>> = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.values_mut().flat_map(|ks| ks.batches.drain(..)).collect()
        };
        for b in &taken {
            b.retired.store(true, Ordering::SeqCst);
        }
        drop(taken);
        self.background.idle().await;
        // a preparation that was under way may have put a batch back
        let more: Vec<Arc<Batch>> = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.values_mut().flat_map(|ks| ks.batches.drain(..)).collect()
        };
        if !more.is_empty() {
            drop(more);
            self.background.idle().await;
        }
    }

    /// Whether a file written through the engine into the volume at `/o0` of `holder` shows at
    /// `mountpoint` on this host, with the same bytes.
    async fn probe(&self, holder: &str, mountpoint: &std::path::Path) -> bool {
        let name = format!("lilypad-probe-{}", unique());
        let content = format!("{name} {}\n", self.instance);
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        if tar.append_data(&mut h, &name, content.as_bytes()).is_err() {
            return false;
        }
        let Ok(body) = tar.into_inner() else { return false };
        let options = UploadToContainerOptionsBuilder::default().path(&sandbox::holder_path(0)).build();
        if let Err(e) = self.docker.upload_to_container(holder, Some(options), bollard::body_full(body.into())).await {
            debug!(error = %e, "the mount point probe could not be written");
            return false;
        }
        match tokio::fs::read(mountpoint.join(&name)).await {
            Ok(read) => read == content.as_bytes(),
            Err(e) => {
                debug!(path = %mountpoint.display(), error = %e, "the outputs volumes' mount points are not visible here");
                false
            }
        }
    }

    fn engine_err(&self, action: &'static str) -> impl FnOnce(BollardError) -> ExecError + '_ {
        move |source| super::engine_error(&self.endpoint, Subject::Engine, action, source)
    }
}

/// Removes a batch's holder, then its volumes (a volume still used by a job's container being
/// removed is tried again for a few seconds).
async fn remove_batch(docker: &Docker, holder: &str, volumes: Vec<String>) {
    if !holder.is_empty() {
        let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match docker.remove_container(holder, Some(opts)).await {
            Ok(()) => debug!(container = %holder, "removed outputs holder"),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => warn!(container = %holder, error = %e, "could not remove an outputs holder (cleanup_leftovers will)"),
        }
    }
    for v in volumes {
        let mut tries = 0;
        loop {
            let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
            match docker.remove_volume(&v, Some(opts)).await {
                Ok(()) => break,
                Err(e) if status_of(&e) == Some(404) => break,
                Err(e) if status_of(&e) == Some(409) && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    warn!(volume = %v, error = %e, "could not remove an outputs volume (cleanup_leftovers will)");
                    break;
                }
            }
        }
    }
}
