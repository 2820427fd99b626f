//! The WebAssembly engine ([`lilypad_wasm::WasmEngine`]) behind the [`Engine`] seam, and
//! [`Engines`], which sends each module to the engine it declares (`"engine"` in its spec).

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use lilypad_chain::EngineSet;
use lilypad_module::{EngineKind, Module};
use lilypad_wasm::WasmError;

use crate::docker::DockerEngine;
use crate::engine::{BoxFuture, Engine, EngineOutcome, EngineRun};
use crate::error::{EngineError, RunError};
use crate::resolve::{Resolved, Sources};

/// Runs WebAssembly modules (`"engine": "wasm"`) with wasmtime; compiled modules are kept in a
/// cache folder by content hash.
#[derive(Clone)]
pub struct WasmEngine {
    engine: lilypad_wasm::WasmEngine,
}

fn engine_error(e: WasmError) -> EngineError {
    EngineError { engine: "WASM", retryable: e.is_retryable(), source: Box::new(e) }
}

impl WasmEngine {
    /// An engine keeping compiled modules under `cache_dir` (e.g. `<data-dir>/cache/wasm`).
    pub fn new(cache_dir: PathBuf) -> Result<Self, EngineError> {
        let engine = lilypad_wasm::WasmEngine::new(Some(cache_dir)).map_err(|e| EngineError {
            engine: "WASM",
            retryable: false,
            source: format!("starting wasmtime: {e:#}").into(),
        })?;
        Ok(Self { engine })
    }
}

fn not_wasm(module: &Module) -> EngineError {
    EngineError {
        engine: "WASM",
        retryable: false,
        source: format!("module {} runs on the {} engine, not on WebAssembly", module.reference(), module.engine()).into(),
    }
}

impl Engine for WasmEngine {
    fn name(&self) -> &'static str {
        "WASM"
    }

    /// A WebAssembly module is ready once its folder is here: the `.wasm` is in it.
    fn is_ready<'a>(&'a self, module: &'a Module) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move { Ok(module.wasm_file().is_some_and(|f| f.is_file())) })
    }

    /// Compiles the module into the cache (nothing of it runs): the first job starts at once.
    fn prepare<'a>(&'a self, resolved: &'a Resolved, _sources: &'a Sources) -> BoxFuture<'a, Result<bool, RunError>> {
        Box::pin(async move {
            let module = &resolved.module;
            let reference = module.reference().to_string();
            let Some(file) = module.wasm_file() else {
                return Err(RunError::ModuleEngine { module: reference, source: not_wasm(module) });
            };
            self.engine
                .prepare(&reference, &file)
                .await
                .map_err(|e| RunError::ModuleEngine { module: reference.clone(), source: engine_error(e) })
        })
    }

    fn run<'a>(&'a self, run: EngineRun<'a>) -> BoxFuture<'a, Result<EngineOutcome, EngineError>> {
        Box::pin(async move {
            let spec = run.module.wasm_spec(run.rendered, run.inputs_dir).ok_or_else(|| not_wasm(run.module))?;
            let job = format!("job-{}", run.job);
            let outcome = self.engine.run(&job, &spec, run.result_dir).await.map_err(engine_error)?;
            if let Some(failure) = outcome.failure() {
                tracing::info!(%failure, "the module's run did not succeed; its result is kept");
            }
            Ok(EngineOutcome {
                exit_code: outcome.exit_code,
                timed_out: matches!(outcome.ending, lilypad_wasm::Ending::TimedOut | lilypad_wasm::Ending::OutOfFuel),
                duration: outcome.duration,
            })
        })
    }

    /// A run leaves nothing outside its result folder (whose `.tmp` the runner removes).
    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, EngineError>> {
        Box::pin(async move { Ok(0) })
    }
}

/// The market's name ([`EngineSet`]) of a module's engine.
pub fn engine_set(kind: EngineKind) -> EngineSet {
    match kind {
        EngineKind::Docker => EngineSet::DOCKER,
        EngineKind::Wasm => EngineSet::WASM,
    }
}

/// A job whose module (as published: `flags`) needs an engine outside `have`: the error to give
/// it back with at once, before anything of the module is fetched (not retryable).
pub fn lacks_engine(job: alloy::primitives::U256, reference: &str, flags: u8, have: EngineSet) -> Option<RunError> {
    let needs = EngineSet::of_module(flags);
    if have.contains(needs) {
        return None;
    }
    Some(RunError::ModuleEngine {
        module: reference.to_string(),
        source: EngineError {
            engine: "none",
            retryable: false,
            source: format!("job {job}: the module runs on the {needs} engine, and this agent runs only {have}").into(),
        },
    })
}

/// The engines an agent has: each module goes to the one its spec names. A provider without a
/// Docker engine (`docker: None`) still serves WebAssembly modules, and the reverse.
pub struct Engines {
    pub docker: Option<Box<dyn Engine>>,
    pub wasm: Option<WasmEngine>,
}

impl Engines {
    /// The engines of agent `role` (`provider`, `mediator`) with address `me` and data folder
    /// `data_dir`: Docker when `docker` (connected and checked: an error if it cannot sandbox
    /// jobs), and WebAssembly always (compiled modules cached in `<data_dir>/cache/wasm`).
    pub async fn connect(role: &str, me: Address, data_dir: &Path, docker: bool) -> Result<Self, EngineError> {
        let docker: Option<Box<dyn Engine>> = match docker {
            true => Some(Box::new(DockerEngine::connect(crate::executor_config(role, me, data_dir)).await?)),
            false => None,
        };
        let wasm = WasmEngine::new(data_dir.join("cache").join("wasm"))?;
        Ok(Self { docker, wasm: Some(wasm) })
    }

    /// The engines this agent runs, as the market states them ([`EngineSet`]).
    pub fn set(&self) -> EngineSet {
        self.kinds().into_iter().fold(EngineSet::NONE, |set, k| set.union(engine_set(k)))
    }

    fn for_module(&self, module: &Module) -> Result<&dyn Engine, EngineError> {
        let found: Option<&dyn Engine> = match module.engine() {
            EngineKind::Docker => self.docker.as_deref(),
            EngineKind::Wasm => self.wasm.as_ref().map(|w| w as &dyn Engine),
        };
        found.ok_or_else(|| EngineError {
            engine: "none",
            retryable: false,
            source: format!(
                "module {} runs on the {} engine, which this agent does not have",
                module.reference(),
                module.engine()
            )
            .into(),
        })
    }

    /// The engines this agent runs, e.g. `["docker", "wasm"]` (what its offer can say).
    pub fn kinds(&self) -> Vec<EngineKind> {
        let mut k = Vec::new();
        if self.docker.is_some() {
            k.push(EngineKind::Docker);
        }
        if self.wasm.is_some() {
            k.push(EngineKind::Wasm);
        }
        k
    }
}

impl Engine for Engines {
    fn name(&self) -> &'static str {
        "engines"
    }

    fn is_ready<'a>(&'a self, module: &'a Module) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move {
            match self.for_module(module) {
                Ok(e) => e.is_ready(module).await,
                Err(_) => Ok(false),
            }
        })
    }

    fn prepare<'a>(&'a self, resolved: &'a Resolved, sources: &'a Sources) -> BoxFuture<'a, Result<bool, RunError>> {
        Box::pin(async move {
            let e = self.for_module(&resolved.module).map_err(|source| RunError::ModuleEngine {
                module: resolved.module.reference().to_string(),
                source,
            })?;
            e.prepare(resolved, sources).await
        })
    }

    fn run<'a>(&'a self, run: EngineRun<'a>) -> BoxFuture<'a, Result<EngineOutcome, EngineError>> {
        Box::pin(async move { self.for_module(run.module)?.run(run).await })
    }

    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, EngineError>> {
        Box::pin(async move {
            let mut n = 0;
            if let Some(d) = &self.docker {
                n += d.remove_leftovers().await?;
            }
            if let Some(w) = &self.wasm {
                n += w.remove_leftovers().await?;
            }
            Ok(n)
        })
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(d) = &self.docker {
                d.release().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wasm_module_runs_behind_the_seam_and_a_docker_one_is_refused_without_docker() {
        let tmp = tempfile::tempdir().unwrap();
        let engines = Engines { docker: None, wasm: Some(WasmEngine::new(tmp.path().join("cache")).unwrap()) };
        assert_eq!(engines.kinds(), [EngineKind::Wasm]);
        assert_eq!(engines.set(), EngineSet::WASM);
        let m = Module::load(modules().join("lilysay-wasm")).unwrap();
        let rendered = m.render(&m.parse_inputs(&["Message=hi"]).unwrap()).unwrap();
        assert!(engines.is_ready(&m).await.unwrap());
        let dir = tmp.path().join("result");
        let run = EngineRun { job: alloy::primitives::U256::from(7), module: &m, rendered: &rendered, result_dir: &dir, inputs_dir: None };
        let out = engines.run(run).await.unwrap();
        assert_eq!(out.exit_code, 0);
        assert!(std::fs::read_to_string(dir.join("stdout")).unwrap().starts_with(" ____\n< hi >\n"));
        // lilysay (Docker) on an agent without Docker: refused, not retried
        let docker = Module::load(modules().join("lilysay")).unwrap();
        assert!(!engines.is_ready(&docker).await.unwrap());
        let rendered = docker.render(&Default::default()).unwrap();
        let dir = tmp.path().join("r2");
        let run = EngineRun { job: alloy::primitives::U256::from(8), module: &docker, rendered: &rendered, result_dir: &dir, inputs_dir: None };
        let e = engines.run(run).await.unwrap_err();
        assert!(!e.retryable && e.to_string().contains("docker engine, which this agent does not have"), "{e}");
    }
}

#[cfg(test)]
mod flags {
    use super::*;

    #[test]
    fn the_module_and_the_market_agree_on_the_wasm_flag() {
        assert_eq!(lilypad_module::MODULE_WASM, lilypad_chain::engines::MODULE_WASM);
        let m = Module::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules/lilysay-wasm")).unwrap();
        assert_eq!(EngineSet::of_module(m.flags()), engine_set(m.engine()));
    }

    #[test]
    fn a_job_for_an_engine_the_agent_lacks_is_refused_up_front() {
        let job = alloy::primitives::U256::from(3);
        assert!(lacks_engine(job, "x:1", lilypad_module::MODULE_WASM, EngineSet::WASM).is_none());
        assert!(lacks_engine(job, "x:1", 0, EngineSet::DOCKER.union(EngineSet::WASM)).is_none());
        let e = lacks_engine(job, "lilysay:0.1.0", 0, EngineSet::WASM).unwrap();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("module lilysay:0.1.0") && format!("{:#}", eyre_like(&e)).contains("runs on the docker engine, and this agent runs only wasm"), "{e}");
    }

    fn eyre_like(e: &RunError) -> String {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(x) = src {
            s.push_str(&format!(": {x}"));
            src = x.source();
        }
        s
    }
}
