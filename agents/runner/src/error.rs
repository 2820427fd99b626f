//! What can go wrong getting a job's module ready, running it and publishing its result.

use std::path::PathBuf;

use alloy::primitives::{B256, U256};
use lilypad_store::Cid;

/// An engine's own failure (the Docker engine's, a WASM runtime's), with whether running the
/// same thing again later may succeed.
#[derive(Debug, thiserror::Error)]
#[error("{engine}: {source}")]
pub struct EngineError {
    /// The engine's name, e.g. `Docker`.
    pub engine: &'static str,
    /// Whether trying again later may succeed (the engine answered 500, a disk hiccup).
    pub retryable: bool,
    /// The engine's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Why a job's module could not be had, prepared or run, or its result not published. Each
/// variant names the job (by id) or the module (`name:version`) it is about;
/// [`RunError::is_retryable`] tells a passing failure (a gateway, the engine, the disk) from
/// one that will happen again (a broken module, bad inputs).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The module is neither a local one nor in the chain's module directory.
    #[error("module {module} is not in the directory")]
    NotInDirectory { module: B256 },
    /// The module is published, but this agent may not get it (no git, no fetching).
    #[error("this provider does not run {module}")]
    NotRunHere { module: String },
    /// Its git repository could not be had at the tag.
    #[error("fetching {module}: {source}")]
    Git { module: String, #[source] source: lilypad_module::GitError },
    /// The folder at the git tag is not the one the chain pins.
    #[error("{module} from git is not the module pinned on chain: {source}")]
    NotPinned { module: String, #[source] source: lilypad_module::LoadError },
    /// Fetching the folder (or the image archive) by its pinned CID failed.
    #[error("{module}: {source}")]
    Fetch { module: String, #[source] source: lilypad_module::FetchError },
    /// The folder pinned for one `name:version` holds another.
    #[error("the folder pinned for {module} holds {holds}")]
    WrongFolder { module: String, holds: String },
    /// A local folder is not the one the chain pins.
    #[error("module {module}: the local folder's hash {local} is not the one published on chain ({chain})")]
    HashMismatch { module: String, local: B256, chain: B256 },
    /// The pinned image archive was refused or could not be loaded.
    #[error("{module}: {source}")]
    Image { module: String, #[source] source: lilypad_module::ImageError },
    /// Building the image from the folder failed.
    #[error("{module}: building the image failed: {source}")]
    Build { module: String, #[source] source: lilypad_module::BuildError },
    /// No image here, none pinned, and this module may not be built here.
    #[error("{module} has no image archive pinned on chain and this provider builds only modules it has locally")]
    NoImage { module: String },
    /// The engine failed preparing or checking a module (not running a job).
    #[error("module {module}: {source}")]
    ModuleEngine { module: String, #[source] source: EngineError },
    /// The job's inputs do not fit its module.
    #[error("job {job}: its inputs are invalid: {source}")]
    Inputs { job: U256, #[source] source: lilypad_module::InputError },
    /// The module asks for a network and this agent does not allow one.
    #[error("job {job}: the module asks for a network and this provider does not allow it")]
    NetworkRefused { job: U256 },
    /// A `cid` input could not be had: no gateway served it in time, it is over the input's
    /// `maxBytes`, or a block did not verify. The job is given back before its run.
    #[error("job {job}: input {input} ({cid}) could not be had: {source}")]
    InputData { job: U256, input: String, cid: Cid, #[source] source: Box<lilypad_store::StoreError> },
    /// A `cid` input is larger than this agent's whole input cache may hold: refused before
    /// the run (another agent with a larger cache may take the job).
    #[error("job {job}: input {input} ({cid}) is larger than this agent's input cache holds ({cap} bytes; raise --input-cache-max / LILYPAD_INPUT_CACHE_MAX to run it): {source}")]
    InputOverCache { job: U256, input: String, cid: Cid, cap: u64, #[source] source: Box<lilypad_store::StoreError> },
    /// The job has a `cid` input and this agent has no IPFS gateway to fetch it from.
    #[error("job {job}: input {input} is {cid}, and this agent has no IPFS gateway to fetch it from (configure --ipfs-gateway)")]
    NoInputSource { job: U256, input: String, cid: Cid },
    /// The job's run deadline is (nearly) past.
    #[error("job {job}: too little time is left before the job's run deadline to run it")]
    NoTimeLeft { job: U256 },
    /// The engine failed running the job (not the job's own failure: that is an exit code).
    #[error("job {job}: the run failed: {source}")]
    Run { job: U256, #[source] source: EngineError },
    /// A local file operation failed.
    #[error("job {job}: {action} {}: {source}", path.display())]
    Io { job: U256, action: &'static str, path: PathBuf, #[source] source: std::io::Error },
    /// Adding the result folder to the content store failed.
    #[error("job {job}: publishing the result failed: {source}")]
    Publish { job: U256, #[source] source: lilypad_store::StoreError },
    /// The result's CID carries no sha2-256 digest (no result hash can be posted).
    #[error("job {job}: the result's CID {cid} is not sha2-256")]
    NotSha256 { job: U256, cid: Cid },
    /// An IPFS node computed another CID for the result folder than this agent did.
    #[error("job {job}: the IPFS node computed {pinned} for the outputs, not {cid}")]
    PinMismatch { job: U256, cid: Cid, pinned: Cid },
    /// A blocking task of the run panicked.
    #[error("job {job}: {task} panicked")]
    Panicked { job: U256, task: &'static str },
}

impl RunError {
    /// Whether trying again later may succeed: a gateway, the engine or the disk failed in
    /// passing. A broken or unpinned module, bad inputs or no time left are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Git { source, .. } => source.is_retryable(),
            RunError::Fetch { source, .. } => source.is_retryable(),
            RunError::Image { source, .. } => source.is_retryable(),
            RunError::Build { source, .. } => source.is_retryable(),
            RunError::ModuleEngine { source, .. } | RunError::Run { source, .. } => source.retryable,
            RunError::Publish { source, .. } => source.is_retryable(),
            RunError::InputData { source, .. } => source.is_retryable(),
            RunError::Io { .. } => true,
            RunError::NotInDirectory { .. }
            | RunError::NotRunHere { .. }
            | RunError::NotPinned { .. }
            | RunError::WrongFolder { .. }
            | RunError::HashMismatch { .. }
            | RunError::NoImage { .. }
            | RunError::Inputs { .. }
            | RunError::NetworkRefused { .. }
            | RunError::NoInputSource { .. }
            | RunError::InputOverCache { .. }
            | RunError::NoTimeLeft { .. }
            | RunError::NotSha256 { .. }
            | RunError::PinMismatch { .. }
            | RunError::Panicked { .. } => false,
        }
    }

    /// Whether the job itself cannot run, wherever it is run (its inputs do not fit its pinned
    /// module): its answer is a failure result ([`crate::outputs::publish_failure`]), the same
    /// for every provider and mediator.
    pub fn is_job_fault(&self) -> bool {
        matches!(self, RunError::Inputs { .. })
    }

    /// The job this error is about, where it is about one job.
    pub fn job(&self) -> Option<U256> {
        match self {
            RunError::Inputs { job, .. }
            | RunError::NetworkRefused { job }
            | RunError::InputData { job, .. }
            | RunError::NoInputSource { job, .. }
            | RunError::InputOverCache { job, .. }
            | RunError::NoTimeLeft { job }
            | RunError::Run { job, .. }
            | RunError::Io { job, .. }
            | RunError::Publish { job, .. }
            | RunError::NotSha256 { job, .. }
            | RunError::PinMismatch { job, .. }
            | RunError::Panicked { job, .. } => Some(*job),
            _ => None,
        }
    }

    /// The module (`name:version`) this error is about, where it is about one.
    pub fn module(&self) -> Option<&str> {
        match self {
            RunError::NotRunHere { module }
            | RunError::Git { module, .. }
            | RunError::NotPinned { module, .. }
            | RunError::Fetch { module, .. }
            | RunError::WrongFolder { module, .. }
            | RunError::HashMismatch { module, .. }
            | RunError::Image { module, .. }
            | RunError::Build { module, .. }
            | RunError::NoImage { module }
            | RunError::ModuleEngine { module, .. } => Some(module),
            _ => None,
        }
    }
}
