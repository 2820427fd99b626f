//! [`WasmEngine`]: compiles (with the cache) and runs one job's module.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, Instrument};
use wasmtime::{Config, Engine, Linker, Module, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::ModuleCache;
use crate::check::sha256;
use crate::collect::collect;
use crate::determinism::{FixedMonotonicClock, FixedWallClock, SeededRandom};
use crate::error::WasmError;
use crate::host::{Host, LimitHit, Limiter};
use crate::logs::CappedLog;
use crate::quota::{self, Quota};
use crate::spec::{Ending, WasmOutcome, WasmSpec, INPUTS_PATH, OUTPUTS_PATH};

/// How often the wall-time clock of running modules advances.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Runs WASI preview 1 modules. Cheap to clone; clones share the compiled-module cache.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<Host>,
    cache: ModuleCache,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine settings: fuel and epochs on, and everything that could make two hosts differ
/// off: NaNs canonicalised, relaxed SIMD off (and deterministic), one memory of 32-bit
/// addresses. Threads and shared memory are not even built in (wasmtime's `threads` feature is
/// off), so a module using them fails to compile.
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .relaxed_simd_deterministic(true)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_component_model(false)
        .wasm_backtrace_max_frames(None);
    c
}

impl WasmEngine {
    /// An engine keeping compiled modules in `cache_dir` (and in memory); `None`: in memory
    /// only.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, wasmtime::Error> {
        let engine = Engine::new(&engine_config())?;
        let mut linker: Linker<Host> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)?;
        quota::add_to_linker(&mut linker)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(wasmtime::Error::new)?;
        let cache = ModuleCache::new(&engine, cache_dir);
        Ok(WasmEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                stop,
            }),
        })
    }

    /// Compiles `wasm` into the cache (if it is not there yet), so that a later run starts at
    /// once. Returns whether it compiled.
    pub async fn prepare(&self, job: &str, wasm: &Path) -> Result<bool, WasmError> {
        let (bytes, sha) = read_wasm(job, wasm).await?;
        let me = self.clone();
        let (job_, path) = (job.to_string(), wasm.to_path_buf());
        let (_, compiled) = tokio::task::spawn_blocking(move || {
            me.inner.cache.get(&me.inner.engine, &job_, &path, &bytes, &sha)
        })
        .await
        .map_err(|e| engine_err(job, e))??;
        Ok(compiled)
    }

    /// Runs job `job` as `spec` says and writes its results to `result_dir` (which must not
    /// exist yet): `stdout`, `stderr`, `exitCode` and `outputs/`, written in
    /// `<result_dir>.tmp` and renamed at the end, as the Docker executor does.
    ///
    /// A module that traps, runs out of fuel or time, grows its memory too far or fills its
    /// outputs is not an error: see [`WasmOutcome::ending`] and [`WasmOutcome::failure`].
    /// Errors are for what prevented running it (not WebAssembly, a missing import, no
    /// `_start`, a bad spec) or keeping its results.
    pub async fn run(
        &self,
        job: &str,
        spec: &WasmSpec,
        result_dir: &Path,
    ) -> Result<WasmOutcome, WasmError> {
        let span = tracing::info_span!("wasm_job", job);
        self.run_inner(job, spec, result_dir).instrument(span).await
    }

    async fn run_inner(
        &self,
        job: &str,
        spec: &WasmSpec,
        result_dir: &Path,
    ) -> Result<WasmOutcome, WasmError> {
        validate(job, spec)?;
        let bad = |reason: String| WasmError::BadSpec {
            job: job.into(),
            reason,
        };
        let name = result_dir
            .file_name()
            .ok_or_else(|| bad(format!("bad result folder {}", result_dir.display())))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(".tmp");
        let tmp = result_dir.with_file_name(tmp_name);
        if tokio::fs::symlink_metadata(result_dir).await.is_ok() {
            return Err(bad(format!(
                "the result folder {} exists already",
                result_dir.display()
            )));
        }
        let (bytes, sha) = read_wasm(job, &spec.wasm).await?;
        if tokio::fs::symlink_metadata(&tmp).await.is_ok() {
            tokio::fs::remove_dir_all(&tmp)
                .await
                .map_err(io(job, "removing a stale", &tmp))?;
        }
        tokio::fs::create_dir_all(tmp.join("outputs"))
            .await
            .map_err(io(job, "creating", &tmp))?;
        let me = self.clone();
        let (job_, spec_, tmp_) = (job.to_string(), spec.clone(), tmp.clone());
        let res = tokio::task::spawn_blocking(move || {
            let (module, compiled) =
                me.inner
                    .cache
                    .get(&me.inner.engine, &job_, &spec_.wasm, &bytes, &sha)?;
            me.run_blocking(&job_, &spec_, &module, compiled, &tmp_)
        })
        .await
        .map_err(|e| engine_err(job, e))
        .and_then(|r| r);
        let res = match res {
            Ok(outcome) => match tokio::fs::rename(&tmp, result_dir).await {
                Ok(()) => Ok(WasmOutcome {
                    result_dir: result_dir.to_path_buf(),
                    ..outcome
                }),
                Err(e) => Err(io(job, "renaming the results to", result_dir)(e)),
            },
            Err(e) => Err(e),
        };
        if res.is_err() {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
        }
        res
    }

    fn run_blocking(
        &self,
        job: &str,
        spec: &WasmSpec,
        module: &Module,
        compiled: bool,
        tmp: &Path,
    ) -> Result<WasmOutcome, WasmError> {
        let l = &spec.limits;
        let outputs = tmp.join("outputs");
        let log = |name: &str| -> Result<CappedLog, WasmError> {
            let p = tmp.join(name);
            let f = std::fs::File::create(&p).map_err(io(job, "creating", &p))?;
            Ok(CappedLog::new(f, l.log_bytes))
        };
        let (stdout, stderr) = (log("stdout")?, log("stderr")?);

        let wasi = self.wasi_ctx(job, spec, &outputs, &stdout, &stderr)?;
        let mut store = Store::new(
            &self.inner.engine,
            Host {
                wasi,
                limiter: Limiter {
                    memory_bytes: l.memory_bytes,
                    table_elements: l.table_elements,
                    hit: false,
                },
                quota: Quota::new(outputs.clone(), l.outputs_bytes, u64::from(l.outputs_files)),
            },
        );
        store.limiter(|h| &mut h.limiter);
        store.set_fuel(l.fuel).map_err(|e| engine_err(job, e))?;
        let ticks = l.wall_time.as_millis() / EPOCH_TICK.as_millis() + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        for import in module.imports() {
            if self
                .inner
                .linker
                .get_by_import(&mut store, &import)
                .is_none()
            {
                return Err(WasmError::MissingImport {
                    job: job.into(),
                    module: import.module().into(),
                    name: import.name().into(),
                });
            }
        }

        let started = Instant::now();
        let ending = match self.inner.linker.instantiate(&mut store, module) {
            Ok(instance) => {
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|_| WasmError::NoStart { job: job.into() })?;
                info!(compiled, "module started");
                match start.call(&mut store, ()) {
                    Ok(()) => Ending::Exited(0),
                    Err(e) => ending_of(&e, store.data().limiter.hit),
                }
            }
            Err(e) => match instantiation_ending(&e, store.data().limiter.hit) {
                Some(ending) => ending,
                None => {
                    return Err(WasmError::Invalid {
                        job: job.into(),
                        path: spec.wasm.clone(),
                        reason: format!("it cannot be instantiated: {e:#}"),
                    })
                }
            },
        };
        let duration = started.elapsed();
        let fuel_used = l.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let quota_hit = store.data().quota.hit;
        drop(store);

        if let Some(note) = ending.stderr_note() {
            stderr
                .note(&note)
                .map_err(io(job, "writing the stderr of", tmp))?;
        }
        let out = stdout.finish().map_err(io(job, "writing the stdout of", tmp))?;
        let err = stderr.finish().map_err(io(job, "writing the stderr of", tmp))?;
        let collected = collect(&outputs, l.outputs_bytes, u64::from(l.outputs_files))
            .map_err(io(job, "collecting the outputs in", &outputs))?;
        let exit_code = ending.exit_code();
        let code_path = tmp.join("exitCode");
        write_synced(&code_path, format!("{exit_code}\n").as_bytes())
            .map_err(io(job, "writing", &code_path))?;
        let outcome = WasmOutcome {
            job: job.into(),
            exit_code,
            ending,
            outputs_too_large: quota_hit || collected.truncated,
            log_truncated: out.truncated() || err.truncated(),
            stdout_bytes: out.total,
            stderr_bytes: err.total,
            fuel_used,
            duration,
            compiled,
            output_bytes: collected.bytes,
            output_files: collected.files,
            skipped: collected.skipped,
            skipped_count: collected.skipped_count,
            result_dir: tmp.to_path_buf(),
        };
        info!(
            exit_code,
            ending = ?outcome.ending,
            outputs_too_large = outcome.outputs_too_large,
            log_truncated = outcome.log_truncated,
            output_bytes = outcome.output_bytes,
            fuel_used,
            ?duration,
            "module finished"
        );
        Ok(outcome)
    }

    fn wasi_ctx(
        &self,
        job: &str,
        spec: &WasmSpec,
        outputs: &Path,
        stdout: &CappedLog,
        stderr: &CappedLog,
    ) -> Result<WasiP1Ctx, WasmError> {
        let mut b = WasiCtxBuilder::new();
        // stdin stays closed (the builder's default); no host environment, no network.
        b.args(&spec.argv)
            .envs(&spec.env)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.preopened_dir(outputs, OUTPUTS_PATH, FsPerms::ReadWrite)
            .map_err(|e| WasmError::Io {
                job: job.into(),
                what: "opening the outputs folder",
                path: outputs.into(),
                source: std::io::Error::other(format!("{e:#}")),
            })?;
        if let Some(inputs) = &spec.inputs_dir {
            b.preopened_dir(inputs, INPUTS_PATH, FsPerms::ReadOnly)
                .map_err(|e| WasmError::Io {
                    job: job.into(),
                    what: "opening the inputs folder",
                    path: inputs.clone(),
                    source: std::io::Error::other(format!("{e:#}")),
                })?;
        }
        let d = &spec.determinism;
        if d.fixed_clock {
            b.wall_clock(FixedWallClock::default())
                .monotonic_clock(FixedMonotonicClock::default());
        }
        if let Some(seed) = d.random_seed {
            b.secure_random(SeededRandom::new(seed, 0))
                .insecure_random(SeededRandom::new(seed, 1))
                .insecure_random_seed(u128::from_le_bytes(
                    seed[..16].try_into().expect("16 of 32 bytes"),
                ));
        }
        Ok(b.build_p1())
    }
}

/// How a failed `_start` call ended.
fn ending_of(e: &wasmtime::Error, limit_hit: bool) -> Ending {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Ending::Exited(exit.0);
    }
    if limit_hit || e.downcast_ref::<LimitHit>().is_some() {
        return Ending::MemoryLimit;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Ending::OutOfFuel,
        Some(Trap::Interrupt) => Ending::TimedOut,
        Some(t) => Ending::Trapped(t.to_string().trim_start_matches("wasm trap: ").to_string()),
        None => Ending::Trapped(format!("{e}")),
    }
}

/// A failed instantiation that is the run's ending (a memory too large from the start, a trap
/// in the start function), or `None` when the module itself is unusable.
fn instantiation_ending(e: &wasmtime::Error, limit_hit: bool) -> Option<Ending> {
    if limit_hit || e.downcast_ref::<LimitHit>().is_some() {
        return Some(Ending::MemoryLimit);
    }
    e.downcast_ref::<Trap>().map(|_| ending_of(e, false))
}

fn validate(job: &str, spec: &WasmSpec) -> Result<(), WasmError> {
    let bad = |reason: &str| {
        Err(WasmError::BadSpec {
            job: job.into(),
            reason: reason.into(),
        })
    };
    if spec.argv.is_empty() {
        return bad("argv is empty: give at least the program name (argv[0])");
    }
    if spec.argv.iter().any(|a| a.contains('\0'))
        || spec
            .env
            .iter()
            .any(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
    {
        return bad("an argument or environment variable holds a NUL byte, or a variable name is empty or holds '='");
    }
    let l = &spec.limits;
    if l.memory_bytes == 0 || l.fuel == 0 || l.wall_time.is_zero() || l.outputs_files == 0 {
        return bad("memory_bytes, fuel, wall_time and outputs_files must not be zero");
    }
    if let Some(d) = &spec.inputs_dir {
        if !d.is_dir() {
            return Err(WasmError::BadSpec {
                job: job.into(),
                reason: format!("the inputs folder {} is not a folder", d.display()),
            });
        }
    }
    Ok(())
}

async fn read_wasm(job: &str, path: &Path) -> Result<(Vec<u8>, [u8; 32]), WasmError> {
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WasmError::BadSpec {
                job: job.into(),
                reason: format!("the module file {} does not exist", path.display()),
            }
        } else {
            io(job, "reading", path)(e)
        }
    })?;
    let sha = sha256(&bytes);
    Ok((bytes, sha))
}

fn io<'a>(
    job: &'a str,
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> WasmError + 'a {
    move |source| WasmError::Io {
        job: job.into(),
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn engine_err(job: &str, e: impl std::fmt::Display) -> WasmError {
    WasmError::Engine {
        job: job.into(),
        message: e.to_string(),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
