//! Errors. Each says what was wrong and what to do about it.
//!
//! * [`LoadError`] (with [`SpecError`] for a spec that parses but breaks a rule): loading a
//!   module folder.
//! * [`InputError`] (with [`InputProblem`]): job inputs that do not fit the module. When the
//!   module is known, the message lists the inputs it accepts.
//! * [`ReferenceError`]: a `name:version` that is not one.
//! * [`BuildError`]: building a module's image.
//! * [`InitError`]: writing a new module skeleton.
//! * [`Error`]: any of these, for callers that do not care which.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::B256;
use lilypad_store::StoreError;

use crate::SPEC_FILE;

/// A rule of the spec format that `lilypad-module.json` breaks (see `docs/modules.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error(
        "module name {0:?} is invalid: use 1-128 characters of A-Z a-z 0-9 . _ / -, starting \
         with a letter or digit (e.g. \"lilysay\" or \"github.com/org/repo\")"
    )]
    InvalidName(String),

    #[error(
        "module version {0:?} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ + -, starting \
         with a letter or digit (e.g. \"0.1.0\")"
    )]
    InvalidVersion(String),

    #[error(
        "input name {0:?} is invalid: input names match [A-Za-z][A-Za-z0-9_]* and have at most \
         64 characters (e.g. \"Message\")"
    )]
    InvalidInputName(String),

    #[error("environment variable name {0:?} is invalid: names match [A-Za-z_][A-Za-z0-9_]*")]
    InvalidEnvName(String),

    /// A variable read by the loader or the container runtime (see [`crate::FORBIDDEN_ENV`]).
    #[error(
        "`env.{name}` may not be set by a module: {why}. Remove it (a library the program needs \
         belongs in the image's usual library folders; GPUs are assigned by the provider)"
    )]
    ForbiddenEnv { name: String, why: &'static str },

    /// A list or string that must have something in it.
    #[error("`{field}` must not be empty: {hint}")]
    Empty { field: String, hint: &'static str },

    #[error(
        "`{field}` contains a NUL byte, which no process argument or variable can hold: remove it"
    )]
    NulByte { field: String },

    /// `{{` outside `args` elements and `env` values.
    #[error(
        "`{field}` contains \"{{{{\": placeholders are allowed only in `args` elements and `env` \
         values"
    )]
    PlaceholderNotAllowed { field: String },

    /// A `{{` without a matching `}}`, or with something other than an input name inside.
    #[error(
        "`{field}` has a malformed placeholder in {text:?}: write {{{{Name}}}} with the name of a \
         declared input (\"{{{{\" cannot appear otherwise in args or env; pass such text through \
         an input)"
    )]
    MalformedPlaceholder { field: String, text: String },

    #[error(
        "`{field}` uses {{{{{name}}}}} but no input {name:?} is declared: declare it under \
         `inputs` (declared: {declared})"
    )]
    UndeclaredPlaceholder {
        field: String,
        name: String,
        declared: String,
    },

    #[error(
        "input {input:?} has both a \"default\" and \"required\": true: drop one (a required \
         input has no default)"
    )]
    DefaultAndRequired { input: String },

    #[error(
        "input {input:?} has neither a \"default\" nor \"required\": true: give it a default or \
         mark it required"
    )]
    NoDefault { input: String },

    /// An input declaration whose constraints or default do not fit its type.
    #[error("input {input:?}: {problem}")]
    BadInput { input: String, problem: String },

    /// A number outside what the format (or the contracts, or the sandbox) allows.
    #[error("`{field}` = {value} is out of range: {expected}")]
    OutOfRange {
        field: &'static str,
        value: String,
        expected: String,
    },

    #[error(
        "`defaultPayment` {0:?} is not a whole number of base units (wei) from 0 to 2^128-1: write \
         it as a decimal string, e.g. \"1050000000000000000\" for 1.05 tokens"
    )]
    InvalidPayment(String),

    #[error("`workdir` {0:?} must be an absolute path inside the image, e.g. \"/work\"")]
    InvalidWorkdir(String),

    #[error(
        "`compare` is only for modules with \"deterministic\": false (a deterministic module's \
         results are compared byte for byte): drop it, or set \"deterministic\": false"
    )]
    CompareOnDeterministic,

    #[error(transparent)]
    CompareRule(#[from] crate::compare::RuleError),

    /// `engine` "wasm" without a `wasm` section, or a `wasm` section on a Docker module.
    #[error("{0}")]
    WasmSection(&'static str),

    /// A WebAssembly module with a field only a Docker container has.
    #[error(
        "`{field}` is for Docker modules only, and this module runs on the WebAssembly engine \
         (\"engine\": \"wasm\"): {hint}"
    )]
    DockerOnlyField { field: &'static str, hint: &'static str },

    /// `wasm.file` is not a plain relative path inside the module folder.
    #[error(
        "`wasm.file` {0:?} must be a relative path inside the module folder, without `..`, \
         ending in .wasm (e.g. \"app.wasm\")"
    )]
    InvalidWasmFile(String),

    /// `wasm.clock` / `wasm.random` "host" on a module that says it is deterministic.
    #[error(
        "`{field}` is \"host\", so runs differ, but the module says \"deterministic\": true: \
         use \"{default}\" (the default), or set \"deterministic\": false"
    )]
    HostSourceOnDeterministic {
        field: &'static str,
        default: &'static str,
    },
}

/// Loading a module folder failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error(
        "{}: not a module folder: it has no {SPEC_FILE} (create a module with `lilypad module \
         init <dir>`)", dir.display()
    )]
    NoSpec { dir: PathBuf },

    #[error(
        "{}: the module has no Dockerfile: every module needs one (e.g. `FROM scratch` and a \
         COPY of a static binary)", dir.display()
    )]
    NoDockerfile { dir: PathBuf },

    /// A WebAssembly module whose `wasm.file` is not in the folder.
    #[error(
        "{}: the module runs {file:?} (`wasm.file`) but there is no such file in the folder: \
         build it (e.g. with the module's build script) or fix the name", dir.display()
    )]
    NoWasmFile { dir: PathBuf, file: String },

    /// `wasm.file` is there but is not a WebAssembly module.
    #[error("{}: {reason}", path.display())]
    NotWasm { path: PathBuf, reason: String },

    /// A WebAssembly module folder holding a `Dockerfile`.
    #[error(
        "{}: the module runs on the WebAssembly engine (\"engine\": \"wasm\") but has a \
         Dockerfile, which would never be used: remove it, or drop \"engine\": \"wasm\"", dir.display()
    )]
    DockerfileInWasmModule { dir: PathBuf },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: the spec is {size} bytes; at most {max} are allowed (put data in other files)", path.display())]
    SpecTooLarge { path: PathBuf, size: u64, max: u64 },

    /// Not JSON, or not the spec's shape (unknown or missing field, wrong type, duplicate key).
    #[error("{}: {source} (the format is described in docs/modules.md)", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: {source}", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: SpecError,
    },

    #[error(
        "{}: is a symbolic link; a module may not contain links (they could point outside it): \
         put the file itself there", path.display()
    )]
    Symlink { path: PathBuf },

    #[error("{}: not a regular file or folder (socket, FIFO or device): remove it from the module", path.display())]
    SpecialFile { path: PathBuf },

    #[error("{}: computing the content hash: {source}", dir.display())]
    Hash {
        dir: PathBuf,
        #[source]
        source: Box<StoreError>,
    },

    /// [`crate::Module::load_pinned`]: the folder is not the module that was pinned.
    #[error(
        "{}: the folder's content hash is {found} but {expected} was pinned: these are not the \
         published bytes; fetch the module again by its CID ({})", dir.display(),
        crate::cid_from_spec_hash(*expected)
    )]
    HashMismatch {
        dir: PathBuf,
        expected: B256,
        found: B256,
    },
}

/// What is wrong with job inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputProblem {
    #[error("{item:?} is not Key=Value: give each input as Key=Value, e.g. {example}")]
    Malformed {
        item: String,
        /// An input of the module with a value of its type (`Key=value` when no module is known).
        example: String,
    },

    #[error("input name {key:?} is invalid: input names match [A-Za-z][A-Za-z0-9_]*")]
    InvalidKey { key: String },

    #[error("input {key:?} is given more than once: give each input once")]
    Duplicate { key: String },

    #[error("input {key:?} contains a NUL byte, which no process argument or variable can hold")]
    NulByte { key: String },

    #[error("input {key:?} is {bytes} bytes long; an input may have at most {max} bytes")]
    TooLarge {
        key: String,
        bytes: usize,
        max: usize,
    },

    #[error("unknown input {key:?}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    Unknown {
        key: String,
        suggestion: Option<String>,
    },

    #[error("missing required input {key:?}: give it as {key}=...")]
    Missing { key: String },

    #[error("input {key:?} must be {expected}, not {value:?}")]
    WrongType {
        key: String,
        value: String,
        expected: String,
    },

    #[error("input {key:?} must be one of {choices}, not {value:?}")]
    NotAChoice {
        key: String,
        value: String,
        choices: String,
    },

    #[error("input {key:?} is {len} characters long; at most {max} are allowed")]
    TooLong { key: String, len: usize, max: u32 },

    #[error("input {key:?} = {value} is out of range: it must be {range}")]
    OutOfRange {
        key: String,
        value: String,
        range: String,
    },
}

/// Job inputs that do not fit: the [`InputProblem`], and, when the module is known, the
/// inputs it accepts (one per line, with types, defaults and limits), appended to the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}{}", accepted.as_ref().map(|a| format!("\n{a}")).unwrap_or_default())]
pub struct InputError {
    pub problem: InputProblem,
    /// The module's input list ([`crate::Module::usage`]); `None` when no module was known.
    pub accepted: Option<String>,
}

impl From<InputProblem> for InputError {
    fn from(problem: InputProblem) -> Self {
        InputError {
            problem,
            accepted: None,
        }
    }
}

/// A module reference that is not `name:version`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("{0:?} is not a module reference: write name:version, e.g. lilysay:0.1.0")]
    Malformed(String),
    #[error(
        "module name {0:?} is invalid: use 1-128 characters of A-Z a-z 0-9 . _ / -, starting \
         with a letter or digit"
    )]
    InvalidName(String),
    #[error(
        "module version {0:?} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ + -, starting \
         with a letter or digit"
    )]
    InvalidVersion(String),
}

/// Building a module's image failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("copying the module to the build folder {}: {source}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("hashing the build copy of {}: {source}", dir.display())]
    Hash {
        dir: PathBuf,
        #[source]
        source: Box<StoreError>,
    },

    /// The folder's bytes are not those [`crate::Module::load`] hashed.
    #[error(
        "{}: the module folder changed since it was loaded (its CID was {expected}, the copy to \
         build is {found}): load it again, or restore the pinned files", dir.display()
    )]
    ModuleChanged {
        dir: PathBuf,
        /// CIDs, as text.
        expected: String,
        found: String,
    },

    #[error(
        "build command {command} could not be started: {source} (is the tool installed on this \
         host and on PATH?)"
    )]
    CommandSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("build command {command} failed ({status}); its output ended with:\n{output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },

    #[error(
        "the build commands ran over `build.timeoutSeconds` ({timeout:?}) in {command} and were \
         killed; its output ended with:\n{output}"
    )]
    CommandTimedOut {
        command: String,
        timeout: Duration,
        output: String,
    },

    /// A WebAssembly module has no image: its `.wasm` file runs as it is.
    #[error(
        "module {module} runs on the WebAssembly engine: it has no image to build (its .wasm \
         file runs as it is)"
    )]
    NotDocker { module: String },

    #[error("docker build of {tag}: {source}")]
    Docker {
        tag: String,
        #[source]
        source: Box<lilypad_executor::ExecError>,
    },

    /// The build failed and its Dockerfile starts from a base the engine does not have: there
    /// is no registry to pull it from (providers and the build alike work offline).
    #[error(
        "docker build of {tag}: the Dockerfile starts FROM {}, which this Docker engine does not \
         have, and module images are built without a registry: build `FROM scratch` (a static \
         program, as `lilypad module init` makes), or `docker load` the base image first \
         (the engine said: {source})", bases.join(", ")
    )]
    BaseNotLocal {
        tag: String,
        /// The `FROM` images the engine lacks.
        bases: Vec<String>,
        #[source]
        source: Box<lilypad_executor::ExecError>,
    },
}

impl BuildError {
    /// Whether trying again later may succeed (the engine was unreachable, a disk was full).
    pub fn is_retryable(&self) -> bool {
        match self {
            BuildError::Copy { .. } => true,
            BuildError::Docker { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// Writing a new module skeleton failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("{}: exists and is not an empty folder: choose a new folder for the module", dir.display())]
    NotEmpty { dir: PathBuf },

    #[error(transparent)]
    InvalidName(SpecError),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The skeleton written does not load (a bug in this crate).
    #[error("the new module does not load: {0}")]
    Load(#[source] LoadError),
}

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Init(#[from] InitError),
}
