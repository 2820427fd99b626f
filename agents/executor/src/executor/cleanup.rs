//! Removing what runs leave: a job's container when its run ends (or is dropped), in the
//! background, and everything of this executor's instance that a crashed earlier run left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use bollard::Docker;
use tracing::{debug, info, warn};

use super::pool::Background;
use super::Executor;
use crate::error::{status_of, ExecError, Subject};
use crate::sandbox::LABEL_EXECUTOR;

impl Executor {
    /// Removes every container and volume labelled with this executor's instance: what a
    /// crashed run left behind (and the outputs volumes this executor prepared ahead). Call it at start-up, before running jobs (it would also remove
    /// running jobs of this instance). Returns how many containers and volumes were removed.
    pub async fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
        // this executor's own prepared volumes go too: the sweep removes their holders
        self.pool.release().await;
        let containers = self.own_containers("listing leftover containers").await?;
        let mut removed = 0;
        for id in containers {
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
                    .filters(&self.own_label())
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
        self.own_containers("listing containers").await
    }

    /// The ids of the containers (any state) labelled with this executor's instance.
    async fn own_containers(&self, action: &'static str) -> Result<Vec<String>, ExecError> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&self.own_label())
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(self.engine_err(Subject::Engine, action))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    /// The engine filter for objects labelled with this executor's instance.
    fn own_label(&self) -> HashMap<&'static str, Vec<String>> {
        HashMap::from([(
            "label",
            vec![format!("{LABEL_EXECUTOR}={}", self.config.instance)],
        )])
    }
}

/// Removes a job's containers in the background: when its run ends, or on drop (panic,
/// cancelled future). Its outputs volume goes with its batch (`pool.rs`).
pub(super) struct Cleanup {
    docker: Docker,
    background: Background,
    job: String,
    pub(super) containers: Vec<String>,
    /// The unfinished result folder, removed only on drop (a normal return handles it).
    pub(super) tmp: Option<PathBuf>,
}

impl Cleanup {
    pub(super) fn new(docker: Docker, background: Background, job: &str, tmp: &Path) -> Self {
        Cleanup {
            docker,
            background,
            job: job.to_string(),
            containers: Vec::new(),
            tmp: Some(tmp.to_path_buf()),
        }
    }

    /// Starts removing the containers in the background ([`Executor::release`] waits for it).
    pub(super) fn spawn_removal(&mut self) {
        let containers = std::mem::take(&mut self.containers);
        if containers.is_empty() {
            return;
        }
        let (docker, job) = (self.docker.clone(), self.job.clone());
        self.background.spawn("removing a job's containers", async move { remove_all(&docker, &job, containers).await });
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_dir_all(tmp);
        }
        if self.containers.is_empty() {
            return;
        }
        warn!(job = %self.job, "run interrupted: removing its containers in the background");
        self.spawn_removal();
    }
}

async fn remove_all(docker: &Docker, job: &str, containers: Vec<String>) {
    let started = std::time::Instant::now();
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
    debug!(job, ms = started.elapsed().as_millis() as u64, "containers removed (in the background)");
}
