//! Compiled modules, cached by content hash: in memory for this process, and on disk (as
//! wasmtime's serialized machine code) across restarts. The key is the `.wasm` file's SHA-256
//! and a fingerprint of the engine's settings, so a module compiled under other settings or
//! another wasmtime version is never picked up.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::check::check_magic;
use crate::error::WasmError;

pub struct ModuleCache {
    dir: Option<PathBuf>,
    fingerprint: String,
    memory: Mutex<HashMap<[u8; 32], Module>>,
}

/// A `Hasher` writing into SHA-256, to turn the engine's compatibility hash into a stable name.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// The engine's settings as a short hex string.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    format!("{:016x}", h.finish())
}

impl ModuleCache {
    /// A cache for `engine`, keeping compiled modules in `dir` too when given (created if
    /// missing).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        ModuleCache {
            dir,
            fingerprint: engine_fingerprint(engine),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The file a module of this hash is kept in.
    pub fn file_for(&self, sha: &[u8; 32]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", hex::encode(sha), self.fingerprint)))
    }

    /// The compiled module for `bytes` (whose SHA-256 is `sha`), and whether it had to be
    /// compiled now. Blocking: compiling takes from milliseconds to seconds.
    pub fn get(
        &self,
        engine: &Engine,
        job: &str,
        path: &Path,
        bytes: &[u8],
        sha: &[u8; 32],
    ) -> Result<(Module, bool), WasmError> {
        if let Some(m) = self.lock().get(sha) {
            return Ok((m.clone(), false));
        }
        let file = self.file_for(sha);
        if let Some(f) = file.as_deref().filter(|f| f.is_file()) {
            // Read into memory rather than mapped (`deserialize_file`): a mapped file that
            // someone truncates in place would bring the process down with SIGBUS.
            let loaded = std::fs::read(f).map_err(wasmtime::Error::new).and_then(|bytes| {
                // SAFETY: the file was written by `store` below, from `Module::serialize` of an
                // engine with the same settings (the name holds their fingerprint), into this
                // host's own cache folder; wasmtime checks its header, version and settings
                // again.
                unsafe { Module::deserialize(engine, bytes) }
            });
            match loaded {
                Ok(m) => {
                    self.lock().insert(*sha, m.clone());
                    return Ok((m, false));
                }
                Err(e) => tracing::warn!(file = %f.display(), error = %e, "cached module unusable; compiling again"),
            }
        }
        check_magic(job, path, bytes)?;
        let m = Module::new(engine, bytes).map_err(|e| WasmError::Invalid {
            job: job.into(),
            path: path.into(),
            reason: format!("{e:#}"),
        })?;
        if let Some(f) = &file {
            if let Err(e) = store(&m, f) {
                tracing::warn!(file = %f.display(), error = %e, "could not keep the compiled module");
            }
        }
        self.lock().insert(*sha, m.clone());
        Ok((m, true))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Module>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `m` serialized to `file` through a temporary file, so a reader sees it whole or not.
fn store(m: &Module, file: &Path) -> std::io::Result<()> {
    let bytes = m.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}
