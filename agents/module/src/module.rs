//! [`Module`]: a loaded, checked module folder, and what it renders to ([`RenderedRun`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::B256;
use lilypad_bindings::{ModuleSpec, Resources};
use lilypad_executor::{GpuRequest, Limits, RunSpec};
use lilypad_store::Cid;

use crate::compare::Comparison;
use crate::error::{InputError, LoadError, SpecError};
use crate::inputs::{resolve, InputDecl, InputValue, Inputs};
use crate::names::{
    docker_repository, docker_tag, forbidden_env, is_valid_env_name, is_valid_name, is_valid_version,
    module_id, ModuleRef,
};
use crate::spec::{EngineKind, Spec, DEFAULT_OUTPUT_BYTES};
use crate::template::{Template, OPEN};
use crate::{spec_hash_of, DOCKERFILE, SPEC_FILE};

/// Most bytes of a spec file.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;
/// Most inputs a module may declare.
pub const MAX_INPUTS: usize = 64;
/// Longest run timeout: the module directory's `MAX_TIMEOUT` (30 days).
pub const MAX_TIMEOUT_SECONDS: u32 = 30 * 24 * 3600;
/// Longest build timeout (one day).
pub const MAX_BUILD_TIMEOUT_SECONDS: u32 = 24 * 3600;
/// Smallest `resources.ramMb` (the engine refuses limits under 6 MiB).
pub const MIN_RAM_MB: u32 = 8;
/// `MODULE_NONDETERMINISTIC` in `ModuleDirectory.sol`.
pub const MODULE_NONDETERMINISTIC: u8 = 1;
/// `MODULE_NETWORK` in `ModuleDirectory.sol`.
pub const MODULE_NETWORK: u8 = 2;

const MIB: u64 = 1 << 20;

/// A module folder, loaded and checked: its spec, its content hash, its compiled templates.
/// Immutable; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Module {
    dir: PathBuf,
    spec: Spec,
    cid: Cid,
    digest: B256,
    inputs: Vec<InputDecl>,
    args: Vec<Template>,
    env: Vec<(String, Template)>,
    default_payment: u128,
    outputs_bytes: u64,
    comparison: Comparison,
}

/// What a module runs for one job's inputs: every placeholder replaced, every limit set.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRun {
    /// The program and its fixed arguments (the spec's `entrypoint`).
    pub entrypoint: Vec<String>,
    /// The rendered `args`: one element per spec element, whatever the inputs hold.
    pub args: Vec<String>,
    /// The rendered `env`, in the spec's order.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// Sandbox limits from `resources`, `timeoutSeconds` and `outputs`.
    pub limits: Limits,
    /// The module asks for a network. Whether to grant it is the provider's decision.
    pub network: bool,
    /// GPUs, and memory per GPU in MiB.
    pub gpus: u8,
    pub vram_mb: u32,
    /// Every declared input's value as given (defaults included; a `cid` input's CID, while
    /// its placeholders render as its path, `/inputs/<Name>`).
    pub inputs: BTreeMap<String, String>,
    /// The `cid` inputs: what the runner fetches, verifies and mounts before the run.
    pub data_inputs: Vec<DataInput>,
}

/// A `cid` input of one job: the file or folder to fetch (within `max_bytes`) and mount
/// read-only at `/inputs/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInput {
    /// The input's name (and its name under `/inputs`).
    pub name: String,
    /// The content, by CID.
    pub cid: Cid,
    /// Most content bytes to fetch for it (`maxBytes` of its declaration).
    pub max_bytes: u64,
}

impl RenderedRun {
    /// The whole command line: entrypoint then args.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.args).cloned().collect()
    }

    /// The executor's run spec for `image` (which must be in the engine), with `inputs_dir`
    /// (if any) mounted read-only at `/inputs`. The job runs as the executor's default user.
    pub fn to_run_spec(&self, image: &str, inputs_dir: Option<&Path>) -> RunSpec {
        RunSpec {
            entrypoint: Some(self.entrypoint.clone()),
            cmd: self.args.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            inputs_dir: inputs_dir.map(Path::to_path_buf),
            limits: self.limits.clone(),
            network: self.network,
            gpus: (self.gpus > 0).then(|| GpuRequest {
                count: Some(u32::from(self.gpus)),
                device_ids: Vec::new(),
            }),
            user: None,
            ..RunSpec::new(image)
        }
    }
}

/// Fails on a symbolic link or a special file anywhere under `dir` (and on `dir` itself).
fn check_tree(dir: &Path) -> Result<(), LoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    let meta = fs::symlink_metadata(dir).map_err(io(dir))?;
    if meta.file_type().is_symlink() {
        return Err(LoadError::Symlink { path: dir.into() });
    }
    if !meta.is_dir() {
        return Err(LoadError::Io {
            path: dir.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        });
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io(&path))?;
            if ft.is_symlink() {
                return Err(LoadError::Symlink { path });
            } else if ft.is_dir() {
                stack.push(path);
            } else if !ft.is_file() {
                return Err(LoadError::SpecialFile { path });
            }
        }
    }
    Ok(())
}

fn no_nul(field: impl FnOnce() -> String, s: &str) -> Result<(), SpecError> {
    if s.contains('\0') {
        return Err(SpecError::NulByte { field: field() });
    }
    Ok(())
}

/// Text where placeholders are not allowed.
fn plain(field: impl Fn() -> String, s: &str) -> Result<(), SpecError> {
    no_nul(&field, s)?;
    if s.contains(OPEN) {
        return Err(SpecError::PlaceholderNotAllowed { field: field() });
    }
    Ok(())
}

fn out_of_range(
    field: &'static str,
    value: impl ToString,
    expected: impl Into<String>,
) -> SpecError {
    SpecError::OutOfRange {
        field,
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// Everything [`Module`] keeps besides the folder and its hash.
struct Compiled {
    inputs: Vec<InputDecl>,
    args: Vec<Template>,
    env: Vec<(String, Template)>,
    default_payment: u128,
    outputs_bytes: u64,
    comparison: Comparison,
}

/// Checks the rules across fields and compiles the templates.
fn compile(spec: &Spec) -> Result<Compiled, SpecError> {
    if !is_valid_name(&spec.name) {
        return Err(SpecError::InvalidName(spec.name.clone()));
    }
    if !is_valid_version(&spec.version) {
        return Err(SpecError::InvalidVersion(spec.version.clone()));
    }
    // build
    let b = &spec.build;
    if b.timeout_seconds == 0 || b.timeout_seconds > MAX_BUILD_TIMEOUT_SECONDS {
        return Err(out_of_range(
            "build.timeoutSeconds",
            b.timeout_seconds,
            format!("from 1 to {MAX_BUILD_TIMEOUT_SECONDS} seconds"),
        ));
    }
    for (i, cmd) in b.commands.iter().enumerate() {
        if cmd.first().is_none_or(|p| p.is_empty()) {
            return Err(SpecError::Empty {
                field: format!("build.commands[{i}]"),
                hint: "give the program and its arguments, e.g. [\"cc\", \"-static\", \"-o\", \"app\", \"main.c\"]",
            });
        }
        for (j, a) in cmd.iter().enumerate() {
            plain(|| format!("build.commands[{i}][{j}]"), a)?;
        }
    }
    // entrypoint
    if spec.entrypoint.first().is_none_or(|p| p.is_empty()) {
        return Err(SpecError::Empty {
            field: "entrypoint".into(),
            hint: "give the program to run in the image and its fixed arguments, e.g. [\"/app\"]",
        });
    }
    for (i, e) in spec.entrypoint.iter().enumerate() {
        plain(|| format!("entrypoint[{i}]"), e)?;
    }
    if let Some(w) = &spec.workdir {
        plain(|| "workdir".into(), w)?;
        if !w.starts_with('/') {
            return Err(SpecError::InvalidWorkdir(w.clone()));
        }
    }
    // inputs
    if spec.inputs.len() > MAX_INPUTS {
        return Err(out_of_range(
            "inputs",
            format!("{} inputs", spec.inputs.len()),
            format!("at most {MAX_INPUTS} inputs"),
        ));
    }
    let inputs = spec
        .inputs
        .iter()
        .map(|(name, s)| InputDecl::compile(name, s))
        .collect::<Result<Vec<_>, _>>()?;
    let declared = || {
        if inputs.is_empty() {
            "none".to_string()
        } else {
            inputs
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let check_uses = |field: &str, t: &Template| -> Result<(), SpecError> {
        for name in t.inputs() {
            if !inputs.iter().any(|d| d.name == name) {
                return Err(SpecError::UndeclaredPlaceholder {
                    field: field.into(),
                    name: name.into(),
                    declared: declared(),
                });
            }
        }
        Ok(())
    };
    // args and env
    let mut args = Vec::with_capacity(spec.args.len());
    for (i, a) in spec.args.iter().enumerate() {
        let field = format!("args[{i}]");
        no_nul(|| field.clone(), a)?;
        let t = Template::parse(&field, a)?;
        check_uses(&field, &t)?;
        args.push(t);
    }
    let mut env = Vec::with_capacity(spec.env.len());
    for (k, v) in spec.env.iter() {
        if !is_valid_env_name(k) {
            return Err(SpecError::InvalidEnvName(k.into()));
        }
        if let Some(why) = forbidden_env(k) {
            return Err(SpecError::ForbiddenEnv { name: k.into(), why });
        }
        let field = format!("env.{k}");
        no_nul(|| field.clone(), v)?;
        let t = Template::parse(&field, v)?;
        check_uses(&field, &t)?;
        env.push((k.to_string(), t));
    }
    // resources, limits
    let r = &spec.resources;
    if r.cpu_milli == 0 {
        return Err(out_of_range(
            "resources.cpuMilli",
            0,
            "at least 1 (1000 = one CPU)",
        ));
    }
    if r.ram_mb < MIN_RAM_MB {
        return Err(out_of_range(
            "resources.ramMb",
            r.ram_mb,
            format!("at least {MIN_RAM_MB} MiB"),
        ));
    }
    if r.vram_mb > 0 && r.gpus == 0 {
        return Err(out_of_range(
            "resources.vramMb",
            r.vram_mb,
            "0 when resources.gpus is 0: ask for GPUs, or drop vramMb",
        ));
    }
    if spec.timeout_seconds == 0 || spec.timeout_seconds > MAX_TIMEOUT_SECONDS {
        return Err(out_of_range(
            "timeoutSeconds",
            spec.timeout_seconds,
            format!("from 1 to {MAX_TIMEOUT_SECONDS} seconds (30 days)"),
        ));
    }
    let o = &spec.outputs;
    let ram_bytes = u64::from(r.ram_mb) * MIB;
    let outputs_bytes = o
        .max_bytes
        .unwrap_or(DEFAULT_OUTPUT_BYTES.min(ram_bytes / 2));
    if outputs_bytes < 4096 || outputs_bytes > i64::MAX as u64 {
        return Err(out_of_range(
            "outputs.maxBytes",
            outputs_bytes,
            "at least 4096 bytes",
        ));
    }
    if outputs_bytes >= ram_bytes {
        return Err(out_of_range(
            "outputs.maxBytes",
            outputs_bytes,
            format!(
                "below resources.ramMb ({} MiB = {ram_bytes} bytes): files in /outputs are held \
                 in memory and count against it; raise ramMb or lower maxBytes",
                r.ram_mb
            ),
        ));
    }
    if o.max_files == 0 {
        return Err(out_of_range("outputs.maxFiles", 0, "at least 1"));
    }
    // payment
    let p = &spec.default_payment.0;
    let default_payment = if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) {
        p.parse::<u128>()
            .map_err(|_| SpecError::InvalidPayment(p.clone()))?
    } else {
        return Err(SpecError::InvalidPayment(p.clone()));
    };
    // comparison
    let comparison = match &spec.compare {
        None => Comparison::exact(),
        Some(_) if spec.deterministic => return Err(SpecError::CompareOnDeterministic),
        Some(c) => Comparison::parse(&c.ignore)?,
    };
    crate::wasm::check_spec(spec)?;
    Ok(Compiled {
        inputs,
        args,
        env,
        default_payment,
        outputs_bytes,
        comparison,
    })
}

impl Module {
    /// Loads the module in `dir`: refuses symbolic links and special files anywhere in it,
    /// parses and checks `lilypad-module.json` (see `docs/modules.md`), requires a
    /// `Dockerfile` (a WebAssembly module: its `.wasm` file, and no Dockerfile), and computes
    /// the folder's content hash (its UnixFS CID).
    ///
    /// Blocking (it reads every file): call it in `spawn_blocking` from async code.
    pub fn load(dir: impl AsRef<Path>) -> Result<Module, LoadError> {
        let dir = dir.as_ref();
        check_tree(dir)?;
        let path = dir.join(SPEC_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LoadError::Io { path, source }
        };
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::NoSpec { dir: dir.into() })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let size = file.metadata().map_err(io(&path))?.len();
        if size > MAX_SPEC_BYTES {
            return Err(LoadError::SpecTooLarge {
                path,
                size,
                max: MAX_SPEC_BYTES,
            });
        }
        let mut text = Vec::with_capacity(size as usize);
        file.take(MAX_SPEC_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(io(&path))?;
        let spec: Spec = serde_json::from_slice(&text).map_err(|source| LoadError::Json {
            path: path.clone(),
            source,
        })?;
        let c = compile(&spec).map_err(|source| LoadError::Spec {
            path: path.clone(),
            source,
        })?;
        if spec.engine == EngineKind::Wasm {
            crate::wasm::check_folder(dir, &spec)?;
        } else {
            let dockerfile = dir.join(DOCKERFILE);
            if !fs::symlink_metadata(&dockerfile).is_ok_and(|m| m.is_file()) {
                return Err(LoadError::NoDockerfile { dir: dir.into() });
            }
        }
        let cid = lilypad_store::cid_of_path(dir).map_err(|source| LoadError::Hash {
            dir: dir.into(),
            source: Box::new(source),
        })?;
        let digest = spec_hash_of(&cid).expect("the importer hashes with sha2-256");
        tracing::debug!(dir = %dir.display(), module = %format!("{}:{}", spec.name, spec.version), %cid, "loaded module");
        Ok(Module {
            dir: dir.to_path_buf(),
            spec,
            cid,
            digest,
            inputs: c.inputs,
            args: c.args,
            env: c.env,
            default_payment: c.default_payment,
            outputs_bytes: c.outputs_bytes,
            comparison: c.comparison,
        })
    }

    /// [`Module::load`], then checks that the folder is the module pinned as `spec_hash` (what
    /// the chain's `ModuleSpec.specHash` holds): a provider or mediator must run exactly the
    /// published bytes.
    pub fn load_pinned(dir: impl AsRef<Path>, spec_hash: B256) -> Result<Module, LoadError> {
        let m = Module::load(dir)?;
        if m.digest != spec_hash {
            return Err(LoadError::HashMismatch {
                dir: m.dir,
                expected: spec_hash,
                found: m.digest,
            });
        }
        Ok(m)
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spec as written.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// How mediators compare two results of this module: byte for byte unless a
    /// non-deterministic module declares `compare.ignore` rules.
    pub fn comparison(&self) -> &Comparison {
        &self.comparison
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn version(&self) -> &str {
        &self.spec.version
    }

    /// `name:version`.
    pub fn reference(&self) -> ModuleRef {
        ModuleRef {
            name: self.spec.name.clone(),
            version: self.spec.version.clone(),
        }
    }

    /// The on-chain module id, `keccak256("name:version")`.
    pub fn id(&self) -> B256 {
        module_id(&self.spec.name, &self.spec.version)
    }

    /// The folder's CID, as `ipfs add -r --cid-version=1` gives it: fetch the module by it.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The sha2-256 digest inside [`Module::cid`]: the `specHash` the chain pins.
    pub fn spec_hash(&self) -> B256 {
        self.digest
    }

    /// The checked input declarations, in the spec's order.
    pub fn inputs(&self) -> &[InputDecl] {
        &self.inputs
    }

    /// `defaultPayment` in base units.
    pub fn default_payment(&self) -> u128 {
        self.default_payment
    }

    /// The inputs it accepts, one per line, e.g.
    /// `lilysay:0.1.0 accepts:\n  Message (string, default "Hello, Lilypad!", ...): ...`.
    pub fn usage(&self) -> String {
        if self.inputs.is_empty() {
            return format!("{} takes no inputs", self.reference());
        }
        let mut s = format!("{} accepts:", self.reference());
        for d in &self.inputs {
            s.push_str("\n  ");
            s.push_str(&d.usage_line());
        }
        s
    }

    fn input_error(&self, e: impl Into<InputError>) -> InputError {
        let mut e = e.into();
        // "Top" without "=": suggest Top=<a value of its own>; else the module's first input
        if let crate::InputProblem::Malformed { item, example } = &mut e.problem {
            let named = self.inputs.iter().find(|d| d.name == *item).or(self.inputs.first());
            if let Some(d) = named {
                *example = format!("{}={}", d.name, d.sample());
            }
        }
        InputError {
            accepted: Some(self.usage()),
            ..e
        }
    }

    /// Parses `Key=Value` strings ([`crate::parse_inputs`]) and checks them against this
    /// module; errors list the inputs it accepts.
    pub fn parse_inputs<S: AsRef<str>>(&self, items: &[S]) -> Result<Inputs, InputError> {
        let inputs = crate::inputs::parse_inputs(items).map_err(|e| self.input_error(e))?;
        self.resolve(&inputs)?;
        Ok(inputs)
    }

    /// Every declared input's typed value for `inputs` (defaults filled in). Refuses unknown
    /// and missing inputs, values of the wrong type, outside `enum`, over `maxLength`, out of
    /// `min`/`max`; errors list the inputs it accepts.
    pub fn resolve(&self, inputs: &Inputs) -> Result<BTreeMap<String, InputValue>, InputError> {
        resolve(&self.inputs, inputs).map_err(|e| self.input_error(e))
    }

    /// Renders the run for `inputs`: each `args` element and `env` value with its
    /// placeholders replaced by the inputs' values, each staying one argument or variable.
    pub fn render(&self, inputs: &Inputs) -> Result<RenderedRun, InputError> {
        let resolved = self.resolve(inputs)?;
        let mut data_inputs = Vec::new();
        // What placeholders become: a `cid` input's path in the sandbox, any other its value.
        let mut placeholders = BTreeMap::new();
        for (name, value) in &resolved {
            if let InputValue::Cid(cid) = value {
                let max_bytes = self
                    .inputs
                    .iter()
                    .find(|d| &d.name == name)
                    .and_then(|d| d.max_bytes)
                    .unwrap_or(crate::inputs::DEFAULT_INPUT_DATA_BYTES);
                data_inputs.push(DataInput { name: name.clone(), cid: *cid, max_bytes });
                placeholders.insert(name.clone(), crate::inputs::input_path(name));
            } else {
                placeholders.insert(name.clone(), value.to_string());
            }
        }
        let values: BTreeMap<String, String> = resolved
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let r = &self.spec.resources;
        Ok(RenderedRun {
            entrypoint: self.spec.entrypoint.clone(),
            args: self.args.iter().map(|t| t.render(&placeholders)).collect(),
            env: self
                .env
                .iter()
                .map(|(k, t)| (k.clone(), t.render(&placeholders)))
                .collect(),
            workdir: self.spec.workdir.clone(),
            limits: self.limits(),
            network: self.spec.network,
            gpus: r.gpus,
            vram_mb: r.vram_mb,
            inputs: values,
            data_inputs,
        })
    }

    /// [`Module::render`] then [`RenderedRun::to_run_spec`].
    pub fn to_run_spec(
        &self,
        inputs: &Inputs,
        image: &str,
        inputs_dir: Option<&Path>,
    ) -> Result<RunSpec, InputError> {
        Ok(self.render(inputs)?.to_run_spec(image, inputs_dir))
    }

    /// Sandbox limits: memory `ramMb` (no swap), CPU `cpuMilli`, wall time `timeoutSeconds`,
    /// `/outputs` of `outputs.maxBytes` (default: 16 MiB or half of `ramMb`) / `maxFiles`, `/tmp` of `diskMb` (at least 1 MiB);
    /// pids, open files and log sizes are the executor's defaults.
    pub fn limits(&self) -> Limits {
        let r = &self.spec.resources;
        Limits {
            memory_bytes: u64::from(r.ram_mb) * MIB,
            nano_cpus: u64::from(r.cpu_milli) * 1_000_000,
            wall_time: Duration::from_secs(u64::from(self.spec.timeout_seconds)),
            outputs_bytes: self.outputs_bytes,
            outputs_files: self.spec.outputs.max_files,
            tmp_bytes: u64::from(r.disk_mb.max(1)) * MIB,
            ..Limits::default()
        }
    }

    /// The `MODULE_*` flags: [`MODULE_NONDETERMINISTIC`] unless `deterministic`,
    /// [`MODULE_NETWORK`] if `network`, [`crate::MODULE_WASM`] if `"engine": "wasm"`.
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if !self.spec.deterministic {
            f |= MODULE_NONDETERMINISTIC;
        }
        if self.spec.network {
            f |= MODULE_NETWORK;
        }
        if self.spec.engine == EngineKind::Wasm {
            f |= crate::wasm::MODULE_WASM;
        }
        f
    }

    /// What `publishModule(name, version, spec)` takes.
    pub fn chain_spec(&self) -> ModuleSpec {
        self.chain_spec_with_image(B256::ZERO)
    }

    /// [`Self::chain_spec`] pinning an image archive too (`imageHash`: the sha2-256 digest of
    /// the archive's CID, see [`crate::save_image_archive`]).
    pub fn chain_spec_with_image(&self, image_hash: B256) -> ModuleSpec {
        let r = &self.spec.resources;
        ModuleSpec {
            specHash: self.digest,
            imageHash: image_hash,
            defaultPayment: self.default_payment,
            runTimeout: self.spec.timeout_seconds,
            flags: self.flags(),
            requirements: Resources {
                cpuMilli: r.cpu_milli,
                ramMb: r.ram_mb,
                diskMb: r.disk_mb,
                vramMb: r.vram_mb,
                gpus: r.gpus,
            },
        }
    }

    /// The local image tag: `lilypad/<name>:<version>-<the spec hash, all 64 hex digits>` (the
    /// name lower-cased and fitted to Docker's rules, `+` in the version as `_`, the version
    /// shortened if the tag would pass Docker's 128 characters). Names differing only by case
    /// share a repository; the full hash keeps their tags apart.
    pub fn image_tag(&self) -> String {
        format!(
            "{}:{}",
            docker_repository(&self.spec.name),
            docker_tag(&self.spec.version, &self.digest)
        )
    }
}
