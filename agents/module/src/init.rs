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
    for (file, text) in [
        (SPEC_FILE, spec_text(name)),
        (DOCKERFILE, DOCKERFILE_TEXT.to_string()),
        (SKELETON_SOURCE, MAIN_C.to_string()),
    ] {
        let path = dir.join(file);
        fs::write(&path, text).map_err(io(&path))?;
    }
    Module::load(dir).map_err(InitError::Load)
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
