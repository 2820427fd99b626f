//! Removing what runs leave: a job's containers and volume when its run ends (or is dropped),
//! and everything of this executor's instance that a crashed earlier run left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use bollard::Docker;
use tracing::{debug, info, warn};

use super::Executor;
use crate::error::{status_of, ExecError, Subject};
use crate::sandbox::LABEL_EXECUTOR;

impl Executor {
    /// Removes every container and volume labelled with this executor's instance: what a
    /// crashed run left behind. Call it at start-up, before running jobs (it would also remove
    /// running jobs of this instance). Returns how many containers and volumes were removed.
    pub async fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
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

/// Removes a job's containers and volume; on drop (panic, cancelled future) in the background.
pub(super) struct Cleanup {
    docker: Docker,
    job: String,
    pub(super) containers: Vec<String>,
    pub(super) volume: Option<String>,
    /// The unfinished result folder, removed only on drop (a normal return handles it).
    pub(super) tmp: Option<PathBuf>,
}

impl Cleanup {
    pub(super) fn new(docker: Docker, job: &str, tmp: &Path) -> Self {
        Cleanup {
            docker,
            job: job.to_string(),
            containers: Vec::new(),
            volume: None,
            tmp: Some(tmp.to_path_buf()),
        }
    }

    pub(super) async fn run(&mut self) {
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
