//! `lilypad module init <dir>`: a new module skeleton that builds and runs as it is.

use std::fs;
use std::path::Path;

use crate::error::{InitError, SpecError};
use crate::names::is_valid_name;
use crate::{Module, DOCKERFILE, SPEC_FILE};

/// The skeleton's program source.
pub const SKELETON_SOURCE: &str = "main.c";

const MAIN_C: &str = r#"/*
 * A Lilypad module: greets its input, on stdout and in /outputs/result.txt.
 *
 * Built on the provider's host by the spec's build.commands (cc -static), then copied into a
 * FROM scratch image. Whatever the program leaves in /outputs is the job's result.
 */
#include <stdio.h>

int main(int argc, char **argv) {
    const char *input = argc > 1 ? argv[1] : "world";

    printf("Hello, %s!\n", input);

    FILE *out = fopen("/outputs/result.txt", "w");
    if (out == NULL) {
        perror("/outputs/result.txt");
        return 1;
    }
    fprintf(out, "Hello, %s!\n", input);
    if (fclose(out) != 0) {
        perror("/outputs/result.txt");
        return 1;
    }
    return 0;
}
"#;

const DOCKERFILE_TEXT: &str = "FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n";

fn spec_text(name: &str) -> String {
    let name = serde_json::Value::from(name).to_string();
    format!(
        r#"{{
  "name": {name},
  "version": "0.1.0",
  "description": "A new Lilypad module: greets its input",
  "build": {{ "commands": [["cc", "-static", "-Os", "-o", "app", "main.c"]] }},
  "entrypoint": ["/app"],
  "args": ["{{{{Input}}}}"],
  "env": {{ "LANG": "C" }},
  "inputs": {{
    "Input": {{ "type": "string", "default": "world", "maxLength": 256, "description": "who to greet" }}
  }},
  "resources": {{ "cpuMilli": 500, "ramMb": 32, "diskMb": 1, "gpus": 0, "vramMb": 0 }},
  "timeoutSeconds": 60,
  "network": false,
  "deterministic": true,
  "outputs": {{ "maxBytes": 1048576, "maxFiles": 16 }},
  "defaultPayment": "2000000000000000000"
}}
"#
    )
}

/// Writes a module skeleton named `name` into `dir` (created if missing; it must be empty if it
/// exists): `lilypad-module.json`, a `Dockerfile` (`FROM scratch`) and `main.c`, a small C
/// program built statically by `build.commands` that prints a greeting for its `Input` and
/// writes it to `/outputs/result.txt`. Returns the loaded module.
pub fn init_module(dir: impl AsRef<Path>, name: &str) -> Result<Module, InitError> {
    let dir = dir.as_ref();
    prepare(dir, name)?;
    for (file, text) in [
        (SPEC_FILE, spec_text(name)),
        (DOCKERFILE, DOCKERFILE_TEXT.to_string()),
        (SKELETON_SOURCE, MAIN_C.to_string()),
    ] {
        write(&dir.join(file), text.as_bytes(), false)?;
    }
    Module::load(dir).map_err(InitError::Load)
}

/// The WebAssembly skeleton's files (`templates/wasm/`): the same greeting program, its build
/// script, and the `.wasm` that script builds from it (Debian clang 14 and wasi-libc; checked by
/// `build.sh --check` in tools/test), so the skeleton runs before anything is installed.
const WASM_MAIN_C: &str = include_str!("../templates/wasm/main.c");
const WASM_BUILD_SH: &str = include_str!("../templates/wasm/build.sh");
const WASM_APP: &[u8] = include_bytes!("../templates/wasm/app.wasm");
/// The WebAssembly skeleton's module file.
pub const SKELETON_WASM: &str = "app.wasm";
/// The WebAssembly skeleton's build script.
pub const SKELETON_BUILD_SCRIPT: &str = "build.sh";

fn wasm_spec_text(name: &str) -> String {
    let name = serde_json::Value::from(name).to_string();
    format!(
        r#"{{
  "name": {name},
  "version": "0.1.0",
  "description": "A new Lilypad WebAssembly module: greets its input",
  "engine": "wasm",
  "wasm": {{ "file": "{SKELETON_WASM}" }},
  "entrypoint": ["app"],
  "args": ["{{{{Input}}}}"],
  "env": {{ "LANG": "C" }},
  "inputs": {{
    "Input": {{ "type": "string", "default": "world", "maxLength": 256, "description": "who to greet" }}
  }},
  "resources": {{ "cpuMilli": 500, "ramMb": 32, "diskMb": 0, "gpus": 0, "vramMb": 0 }},
  "timeoutSeconds": 60,
  "network": false,
  "deterministic": true,
  "outputs": {{ "maxBytes": 1048576, "maxFiles": 16 }},
  "defaultPayment": "2000000000000000000"
}}
"#
    )
}

/// Writes a WebAssembly module skeleton named `name` into `dir` (created if missing; it must
/// be empty if it exists): `lilypad-module.json` with `"engine": "wasm"`, `main.c` (the same
/// greeting program as [`init_module`]'s), `build.sh` (clang to WASI preview 1, or
/// `build.sh --check` to prove the `.wasm` is the source's) and `app.wasm`, already built.
/// Returns the loaded module. (`lilypad module init --wasm` calls it.)
pub fn init_wasm_module(dir: impl AsRef<Path>, name: &str) -> Result<Module, InitError> {
    let dir = dir.as_ref();
    prepare(dir, name)?;
    write(&dir.join(SPEC_FILE), wasm_spec_text(name).as_bytes(), false)?;
    write(&dir.join(SKELETON_SOURCE), WASM_MAIN_C.as_bytes(), false)?;
    write(&dir.join(SKELETON_BUILD_SCRIPT), WASM_BUILD_SH.as_bytes(), true)?;
    write(&dir.join(SKELETON_WASM), WASM_APP, false)?;
    Module::load(dir).map_err(InitError::Load)
}

fn write(path: &Path, bytes: &[u8], executable: bool) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::write(path, bytes).map_err(io)?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(())
}

/// Checks the name and makes `dir` an empty folder.
fn prepare(dir: &Path, name: &str) -> Result<(), InitError> {
    if !is_valid_name(name) {
        return Err(InitError::InvalidName(SpecError::InvalidName(name.into())));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(InitError::NotEmpty { dir: dir.into() });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io(dir))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(InitError::NotEmpty { dir: dir.into() })
        }
        Err(e) => return Err(io(dir)(e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_module_that_loads() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("new/mod");
        let m = init_module(&dir, "github.com/me/hello").unwrap();
        assert_eq!(m.name(), "github.com/me/hello");
        assert_eq!(m.version(), "0.1.0");
        assert_eq!(m.inputs().len(), 1);
        let run = m.render(&crate::Inputs::new()).unwrap();
        assert_eq!(run.argv(), ["/app", "world"]);
        // Same name, same files: same hash.
        let again = init_module(d.path().join("other"), "github.com/me/hello").unwrap();
        assert_eq!(again.cid(), m.cid());
    }

    #[test]
    fn writes_a_wasm_module_that_loads() {
        let d = tempfile::tempdir().unwrap();
        let m = init_wasm_module(d.path().join("w"), "hello-wasm").unwrap();
        assert_eq!(m.engine(), crate::EngineKind::Wasm);
        assert_eq!(m.wasm_file().unwrap(), d.path().join("w/app.wasm"));
        assert!(!d.path().join("w/Dockerfile").exists());
        let run = m.render(&crate::Inputs::new()).unwrap();
        assert_eq!(run.argv(), ["app", "world"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.path().join("w/build.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
        assert!(matches!(
            init_wasm_module(d.path().join("w"), "x"),
            Err(InitError::NotEmpty { .. })
        ));
    }

    #[test]
    fn refuses_bad_names_and_non_empty_folders() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            init_module(d.path().join("x"), "-bad"),
            Err(InitError::InvalidName(_))
        ));
        fs::write(d.path().join("file"), "x").unwrap();
        let e = init_module(d.path(), "ok").unwrap_err();
        assert!(matches!(e, InitError::NotEmpty { .. }), "{e:?}");
        assert!(matches!(
            init_module(d.path().join("file"), "ok"),
            Err(InitError::NotEmpty { .. })
        ));
    }
}
