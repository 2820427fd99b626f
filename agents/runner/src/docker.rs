//! The Docker engine: [`lilypad_executor::Executor`] behind the [`Engine`] seam.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use alloy::primitives::{Address, B256};
use lilypad_executor::{ExecError, Executor, ExecutorConfig};
use lilypad_module::{ImageError, Module, ModuleImage};

use crate::engine::{BoxFuture, Engine, EngineOutcome, EngineRun};
use crate::error::{EngineError, RunError};
use crate::resolve::{Resolved, Sources};

/// Runs jobs as Docker containers in the executor's sandbox, each started by the image id
/// recorded when its module's image was prepared (never by a tag something else could move).
#[derive(Debug)]
pub struct DockerEngine {
    executor: Executor,
    /// The image prepared per module tag: its id, checked before each run.
    images: Mutex<HashMap<String, ModuleImage>>,
}

fn engine_error(e: ExecError) -> EngineError {
    EngineError { engine: "Docker", retryable: e.is_retryable(), source: Box::new(e) }
}

impl DockerEngine {
    /// Connects to the engine with `config` (see [`executor_config`]) and checks it can
    /// sandbox jobs ([`Executor::preflight`]).
    pub async fn connect(config: ExecutorConfig) -> Result<Self, EngineError> {
        let executor = Executor::connect_with(config).await.map_err(engine_error)?;
        executor.preflight().await.map_err(engine_error)?;
        Ok(Self { executor, images: Mutex::new(HashMap::new()) })
    }

    fn recorded(&self, tag: &str) -> Option<ModuleImage> {
        self.images.lock().unwrap_or_else(PoisonError::into_inner).get(tag).cloned()
    }

    fn record(&self, image: ModuleImage) {
        self.images.lock().unwrap_or_else(PoisonError::into_inner).insert(image.tag.clone(), image);
    }

    fn forget(&self, tag: &str) {
        self.images.lock().unwrap_or_else(PoisonError::into_inner).remove(tag);
    }

    /// The image to start `module`'s containers from: the one recorded when it was prepared
    /// (or, for an image prepared by an earlier run of this agent, the one its tag names now),
    /// checked against the engine first. A tag moved to another image is refused
    /// ([`ImageError::Changed`]) and forgotten, so that the next prepare loads or builds the
    /// image again.
    async fn image_for(&self, module: &Module) -> Result<ModuleImage, EngineError> {
        let tag = module.image_tag();
        let image = match self.recorded(&tag) {
            Some(image) => image,
            None => {
                let found = lilypad_module::module_image(module, &self.executor).await.map_err(image_error)?;
                let image = found.ok_or_else(|| image_error(ImageError::Changed { module: module.reference().to_string(), tag: tag.clone(), expected: "an image".into(), found: "missing".into() }))?;
                self.record(image.clone());
                image
            }
        };
        if let Err(e) = image.verify(module, &self.executor).await {
            if matches!(e, ImageError::Changed { .. }) {
                self.forget(&tag);
                tracing::error!(module = %module.reference(), %tag, expected = %image.id, error = %e, "the module's image changed since it was prepared; refusing to run it (it is prepared again before the next run)");
            }
            return Err(image_error(e));
        }
        Ok(image)
    }

    /// The executor underneath (building and saving images for publishing).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }
}

/// The executor's instance label for an agent: one per agent identity and data folder, stable
/// across restarts (so a restarted agent removes the containers its crashed self left) and
/// distinct between agents sharing one Docker engine (so none removes another's running jobs).
pub fn executor_config(role: &str, me: Address, data_dir: &Path) -> ExecutorConfig {
    let folder = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let tag = alloy::primitives::keccak256(folder.to_string_lossy().as_bytes());
    ExecutorConfig {
        instance: format!("{role}-{}-{}", &me.to_string()[2..10].to_lowercase(), &hex_prefix(tag.as_slice())),
        ..Default::default()
    }
}

fn image_error(e: ImageError) -> EngineError {
    EngineError { engine: "Docker", retryable: e.is_retryable(), source: Box::new(e) }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

impl Engine for DockerEngine {
    fn name(&self) -> &'static str {
        "Docker"
    }

    fn is_ready<'a>(&'a self, module: &'a Module) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move { self.executor.has_image(&module.image_tag()).await.map_err(engine_error) })
    }

    /// The image: present already, loaded from the archive the chain pins (nothing of the
    /// module runs outside the sandbox), or built from the folder (local and git modules only:
    /// a build runs the module's build commands on this host).
    fn prepare<'a>(&'a self, resolved: &'a Resolved, sources: &'a Sources) -> BoxFuture<'a, Result<bool, RunError>> {
        Box::pin(async move {
            let module = &resolved.module;
            let reference = || module.reference().to_string();
            let tag = module.image_tag();
            let present = self.executor.has_image(&tag).await;
            if present.map_err(|e| RunError::ModuleEngine { module: reference(), source: engine_error(e) })? {
                // Present: ready, unless the tag moved since this agent prepared it (then it
                // is loaded or built again below, which puts the tag back).
                match self.image_for(module).await {
                    Ok(_) => return Ok(false),
                    Err(e) if self.recorded(&tag).is_none() && !e.retryable => {
                        tracing::warn!(module = %reference(), error = %e, "preparing the module's image again");
                    }
                    Err(e) => return Err(RunError::ModuleEngine { module: reference(), source: e }),
                }
            }
            if resolved.image_hash != B256::ZERO && !sources.gateways.is_empty() {
                let archive = lilypad_module::fetch_image_archive(resolved.image_hash, &sources.gateways, &sources.cache)
                    .await
                    .map_err(|source| RunError::Fetch { module: reference(), source })?;
                return match lilypad_module::load_image_archive(module, &self.executor, &archive).await {
                    Ok(image) => {
                        self.record(image);
                        Ok(true)
                    }
                    Err(source) => {
                        if !source.is_retryable() {
                            // A refused archive is refused for good: do not keep it around.
                            let _ = std::fs::remove_file(&archive);
                        }
                        Err(RunError::Image { module: reference(), source })
                    }
                };
            }
            if resolved.may_build {
                let built = lilypad_module::build_image_with(module, &self.executor, &lilypad_module::BuildOptions::default())
                    .await
                    .map_err(|source| RunError::Build { module: reference(), source })?;
                self.record(built.image());
                return Ok(true);
            }
            Err(RunError::NoImage { module: reference() })
        })
    }

    fn run<'a>(&'a self, run: EngineRun<'a>) -> BoxFuture<'a, Result<EngineOutcome, EngineError>> {
        Box::pin(async move {
            // By id, checked just now: a tag re-pointed since the image was prepared (by a
            // crafted archive, another module, a local user) never runs.
            let image = self.image_for(run.module).await?;
            let spec = run.rendered.to_run_spec(&image.id, run.inputs_dir);
            let outcome = self.executor.run(&format!("job-{}", run.job), &spec, run.result_dir).await.map_err(engine_error)?;
            Ok(EngineOutcome { exit_code: outcome.exit_code, timed_out: outcome.timed_out, duration: outcome.duration })
        })
    }

    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, EngineError>> {
        Box::pin(async move { self.executor.cleanup_leftovers().await.map_err(engine_error) })
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.executor.release())
    }
}
