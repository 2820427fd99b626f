//! What needs no engine: the header check of a `.wasm` file, and its hash.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::WasmError;

/// Checked before compiling: what a file must start with to be a core WebAssembly module.
const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Refuses what is not a core WebAssembly module, saying what it is instead.
pub fn check_magic(job: &str, path: &Path, bytes: &[u8]) -> Result<(), WasmError> {
    let not = |reason: String| WasmError::NotWasm {
        job: job.into(),
        path: path.into(),
        reason,
    };
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| if b.is_ascii_graphic() { *b as char } else { '.' })
            .collect();
        return Err(not(format!(
            "it does not start with the WebAssembly magic bytes \\0asm (it starts with {head:?}, {} bytes in all); give the compiled .wasm file, e.g. from `clang --target=wasm32-wasi`",
            bytes.len()
        )));
    }
    if bytes[4..8] != CORE_VERSION {
        if bytes[6..8] == [1, 0] {
            return Err(not(
                "it is a WebAssembly component (WASI preview 2); only core modules using WASI preview 1 run here: build for wasm32-wasi / wasm32-wasip1".into(),
            ));
        }
        return Err(not(format!(
            "unknown WebAssembly version {:02x?} (only version 1 runs here)",
            &bytes[4..8]
        )));
    }
    Ok(())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
