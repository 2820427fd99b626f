//! Modules that run on the WebAssembly engine (`"engine": "wasm"`): the spec rules that apply
//! to them, the checks of their folder, and their run spec for [`lilypad_wasm`].

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use lilypad_wasm::{Determinism, WasmLimits, WasmSpec};

use crate::error::{LoadError, SpecError};
use crate::module::{Module, RenderedRun};
use crate::spec::{EngineKind, Spec, WasmClock, WasmRandom};
use crate::DOCKERFILE;

/// The `ModuleSpec.flags` bit of a module that runs on the WebAssembly engine (next to
/// `MODULE_NONDETERMINISTIC` and `MODULE_NETWORK`; `ModuleDirectory.sol` stores the flags as
/// given and names only those two).
pub const MODULE_WASM: u8 = 4;

/// Most entries a WebAssembly module's tables may hold.
pub const WASM_TABLE_ELEMENTS: u64 = 1 << 20;

/// The rules across fields for the engine: a `wasm` section exactly when `engine` is "wasm",
/// and no field that only a container has.
pub(crate) fn check_spec(spec: &Spec) -> Result<(), SpecError> {
    let w = match (spec.engine, &spec.wasm) {
        (EngineKind::Docker, None) => return Ok(()),
        (EngineKind::Docker, Some(_)) => {
            return Err(SpecError::WasmSection(
                "the spec has a `wasm` section but no \"engine\": \"wasm\": add \"engine\": \"wasm\" \
                 to run the WebAssembly module, or remove the section",
            ))
        }
        (EngineKind::Wasm, None) => {
            return Err(SpecError::WasmSection(
                "\"engine\": \"wasm\" needs a `wasm` section naming the module file, e.g. \
                 \"wasm\": { \"file\": \"app.wasm\" }",
            ))
        }
        (EngineKind::Wasm, Some(w)) => w,
    };
    let docker_only = |field, hint| Err(SpecError::DockerOnlyField { field, hint });
    if !spec.build.commands.is_empty() {
        return docker_only(
            "build.commands",
            "a WebAssembly module ships its .wasm in the folder (pinned by the content hash); \
             build it before publishing and remove `build`",
        );
    }
    if spec.workdir.is_some() {
        return docker_only("workdir", "a WebAssembly module sees only /outputs and /inputs; remove `workdir`");
    }
    if spec.network {
        return docker_only("network", "WebAssembly modules have no network; remove it or set it false");
    }
    if spec.resources.gpus > 0 || spec.resources.vram_mb > 0 {
        return docker_only(
            "resources.gpus",
            "WebAssembly modules run on the CPU; set gpus and vramMb to 0",
        );
    }
    if !is_plain_wasm_path(&w.file) {
        return Err(SpecError::InvalidWasmFile(w.file.clone()));
    }
    if spec.deterministic {
        if w.clock == WasmClock::Host {
            return Err(SpecError::HostSourceOnDeterministic {
                field: "wasm.clock",
                default: "fixed",
            });
        }
        if w.random == WasmRandom::Host {
            return Err(SpecError::HostSourceOnDeterministic {
                field: "wasm.random",
                default: "seeded",
            });
        }
    }
    Ok(())
}

/// A relative path of normal components, ending in `.wasm`.
fn is_plain_wasm_path(file: &str) -> bool {
    let p = Path::new(file);
    !file.is_empty()
        && !file.contains('\0')
        && file.ends_with(".wasm")
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The folder checks of a WebAssembly module: its `.wasm` file is there and is WebAssembly,
/// and there is no Dockerfile.
pub(crate) fn check_folder(dir: &Path, spec: &Spec) -> Result<(), LoadError> {
    let Some(w) = &spec.wasm else { return Ok(()) };
    if fs::symlink_metadata(dir.join(DOCKERFILE)).is_ok() {
        return Err(LoadError::DockerfileInWasmModule { dir: dir.into() });
    }
    let path = dir.join(&w.file);
    let mut head = Vec::with_capacity(8);
    match fs::File::open(&path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => {
            f.take(8).read_to_end(&mut head).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(_) => return Err(LoadError::NoWasmFile { dir: dir.into(), file: w.file.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::NoWasmFile { dir: dir.into(), file: w.file.clone() })
        }
        Err(source) => return Err(LoadError::Io { path, source }),
    }
    // Only the header is looked at here; the engine validates the rest when it compiles.
    lilypad_wasm::check_magic("-", &path, &head).map_err(|e| LoadError::NotWasm {
        path: path.clone(),
        reason: match e {
            lilypad_wasm::WasmError::NotWasm { reason, .. } => format!("`wasm.file` is not a WebAssembly module: {reason}"),
            other => other.to_string(),
        },
    })
}

impl Module {
    /// What runs this module.
    pub fn engine(&self) -> EngineKind {
        self.spec().engine
    }

    /// A WebAssembly module's `.wasm` file in its folder; `None` for a Docker module.
    pub fn wasm_file(&self) -> Option<PathBuf> {
        self.spec().wasm.as_ref().map(|w| self.dir().join(&w.file))
    }

    /// A WebAssembly module's limits: linear memory `ramMb`, fuel and wall time from
    /// `timeoutSeconds`, the outputs and log caps of a Docker run of it.
    pub fn wasm_limits(&self) -> WasmLimits {
        let l = self.limits();
        WasmLimits {
            memory_bytes: l.memory_bytes,
            table_elements: WASM_TABLE_ELEMENTS,
            fuel: WasmLimits::fuel_for(l.wall_time),
            wall_time: l.wall_time,
            outputs_bytes: l.outputs_bytes,
            outputs_files: l.outputs_files,
            log_bytes: l.log_bytes,
        }
    }

    /// The WebAssembly engine's run spec for a rendered run of this module (the same argv and
    /// environment as a container would get), with `inputs_dir` given read-only at `/inputs`;
    /// `None` for a Docker module. The random seed is derived from the module's content hash,
    /// the argv, the environment and the CIDs of its file and folder inputs (whose placeholders
    /// render as paths), so every host running the job uses the same one.
    pub fn wasm_spec(&self, run: &RenderedRun, inputs_dir: Option<&Path>) -> Option<WasmSpec> {
        let w = self.spec().wasm.as_ref()?;
        let argv = run.argv();
        let mut seeded = run.env.clone();
        seeded.extend(run.data_inputs.iter().map(|d| (crate::input_path(&d.name), d.cid.to_string())));
        let seed = lilypad_wasm::job_seed(&self.spec_hash().0, &argv, &seeded);
        Some(WasmSpec {
            wasm: self.dir().join(&w.file),
            argv,
            env: run.env.clone(),
            inputs_dir: inputs_dir.map(Path::to_path_buf),
            limits: WasmLimits {
                // The run's wall time (a provider may cut it to end before the job's deadline);
                // the fuel stays the module's, the same on every host.
                wall_time: run.limits.wall_time,
                ..self.wasm_limits()
            },
            determinism: Determinism {
                fixed_clock: w.clock == WasmClock::Fixed,
                random_seed: (w.random == WasmRandom::Seeded).then_some(seed),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_paths_are_plain_and_relative() {
        for ok in ["a.wasm", "build/app.wasm"] {
            assert!(is_plain_wasm_path(ok), "{ok}");
        }
        for bad in ["", "/abs.wasm", "../up.wasm", "a/../b.wasm", "./a.wasm", "app", "a.wasm\0"] {
            assert!(!is_plain_wasm_path(bad), "{bad:?}");
        }
    }
}
