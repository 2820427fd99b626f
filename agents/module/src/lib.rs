//! Lilypad modules.
//!
//! A module is a folder holding a spec file, [`SPEC_FILE`] (`lilypad-module.json`), a
//! `Dockerfile` and whatever else it needs (sources, models); or, for the WebAssembly engine
//! (`"engine": "wasm"`), a `.wasm` file (WASI preview 1) instead of the Dockerfile. It is named `name:version` on
//! chain and pinned there by its content hash: the sha2-256 digest inside the folder's UnixFS
//! CID ([`lilypad_store::cid_of_path`], the CID `ipfs add -r --cid-version=1` prints), so job
//! creator, provider and mediator can check they hold the same bytes and anyone can fetch
//! them from IPFS ([`cid_from_spec_hash`]). The format is described in `docs/modules.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lilypad_module::{build_image, Module};
//! let module = Module::load("modules/lilysay")?;             // checks the spec, hashes the folder
//! let inputs = module.parse_inputs(&["Message=hello"])?;     // typed, checked; errors list the inputs
//! let exec = lilypad_executor::Executor::connect().await?;
//! let image = build_image(&module, &exec).await?;            // skipped when the tag exists
//! let spec = module.to_run_spec(&inputs, &image, None)?;     // one argv element per `args` element
//! let outcome = exec.run("job-1", &spec, "/tmp/job-1".as_ref()).await?;
//! println!("{} exited {}", module.reference(), outcome.exit_code);
//! # Ok(()) }
//! ```
//!
//! * [`Module::load`] / [`Module::load_pinned`]: checks the spec and the folder (no links),
//!   computes [`Module::cid`] and [`Module::spec_hash`].
//! * [`parse_inputs`] / [`Module::parse_inputs`] / [`Module::render`]: `Key=Value` inputs,
//!   typed and checked, substituted into `args` elements and `env` values without any shell.
//! * [`Module::to_run_spec`]: the executor's [`lilypad_executor::RunSpec`], limits included.
//! * [`Module::wasm_spec`]: a WebAssembly module's [`lilypad_wasm::WasmSpec`] (same argv and
//!   environment as a container's, limits from the same fields, a per-job random seed).
//! * [`Module::chain_spec`]: the `ModuleSpec` to publish.
//! * [`build_image`]: `build.commands` (on the host: trusted modules only) and `docker build`
//!   in a temporary copy, tagged [`Module::image_tag`].
//! * [`save_image_archive`] / [`load_image_archive`]: the image as a `docker save` archive
//!   pinned by CID (`ModuleSpec.imageHash`), read strictly and its layers walked within
//!   [`ArchiveLimits`] before loading; the engine gets only its config and layers, never its
//!   names. The [`ModuleImage`] (tag and id) is recorded; runs start by id after
//!   [`ModuleImage::verify`].
//! * [`init_module`] / [`init_wasm_module`]: a skeleton that builds and runs as it is.
//! * [`parse_reference`]: parses `name:version`.
//! * [`compare_results`]: two results of a job compared as the module declares (`compare`).

mod archive;
mod build;
pub mod compare;
mod error;
mod fetch;
mod git;
mod image;
mod init;
mod inputs;
mod module;
mod names;
pub mod spec;
mod template;
mod wasm;

use alloy::primitives::B256;
use cid::multihash::Multihash;
use lilypad_store::{Cid, CODEC_DAG_PB};

pub use build::{build_image, build_image_with, BuildOptions, BuiltImage};
pub use compare::{compare_results, CompareError, Comparison, Verdict};
pub use error::{
    BuildError, Error, InitError, InputError, InputProblem, LoadError, ReferenceError, SpecError,
};
pub use image::{
    inspect_archive, inspect_archive_with, load_image_archive, load_image_archive_with, module_image,
    save_image_archive, ArchiveInfo, ArchiveLimits, ImageArchive, ImageError, ModuleImage,
};
pub use fetch::{
    fetch_image_archive, fetch_image_archive_with, fetch_module, fetch_module_with, image_fetch_limits, module_fetch_limits,
    FetchError, IMAGE_ARCHIVE_DEADLINE, MODULE_FOLDER_DEADLINE, MODULE_FOLDER_MAX_BYTES, MODULE_FOLDER_MAX_DEPTH,
    MODULE_FOLDER_MAX_FILES,
};
pub use git::{
    check_host, fetch_git_module, is_git_name, is_public_ip, repo_url, resolve_commit, GitError, GitPolicy,
};
pub use init::{init_module, init_wasm_module, SKELETON_BUILD_SCRIPT, SKELETON_SOURCE, SKELETON_WASM};
pub use inputs::{parse_inputs, InputDecl, InputValue, Inputs, MAX_INPUT_BYTES};
pub use module::{
    Module, RenderedRun, MAX_BUILD_TIMEOUT_SECONDS, MAX_INPUTS, MAX_SPEC_BYTES,
    MAX_TIMEOUT_SECONDS, MIN_RAM_MB, MODULE_NETWORK, MODULE_NONDETERMINISTIC,
};
pub use names::{
    forbidden_env, FORBIDDEN_ENV, is_valid_env_name, is_valid_input_name, is_valid_name, is_valid_version, module_id,
    parse_reference, ModuleRef, MAX_INPUT_NAME_LENGTH, MAX_NAME_LENGTH, MAX_VERSION_LENGTH,
};
pub use spec::{CompareSpec, EngineKind, InputSpec, InputType, Spec, WasmClock, WasmModuleSpec, WasmRandom};
pub use wasm::{MODULE_WASM, WASM_TABLE_ELEMENTS};

/// The spec file in a module folder.
pub const SPEC_FILE: &str = "lilypad-module.json";
/// The Dockerfile in a module folder.
pub const DOCKERFILE: &str = "Dockerfile";

/// Multihash code of sha2-256.
const SHA2_256: u64 = 0x12;

/// The spec hash in a CID: its digest when it is a sha2-256 one (the importer's), else `None`.
pub fn spec_hash_of(cid: &Cid) -> Option<B256> {
    let mh = cid.hash();
    (mh.code() == SHA2_256 && mh.digest().len() == 32).then(|| B256::from_slice(mh.digest()))
}

/// The CID of a module folder from the spec hash the chain pins: CIDv1, dag-pb (a folder),
/// sha2-256. Fetch the module from IPFS by it.
pub fn cid_from_spec_hash(spec_hash: B256) -> Cid {
    let mh = Multihash::<64>::wrap(SHA2_256, spec_hash.as_slice()).expect("32 bytes fit in 64");
    Cid::new_v1(CODEC_DAG_PB, mh)
}
