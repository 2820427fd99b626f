//! Where a job's module comes from. One order, for every agent and for `lilypad run`:
//!
//! 1. **a local folder**: one the agent was started with (checked against the hash the chain
//!    pins at start-up), or the job creator's `--module-dir` / `modules/<name>`;
//! 2. **a git repository** (`github.com/org/repo:tag`), when allowed: fetched at the tag's
//!    commit and checked against the pinned hash (its build commands run on the host that
//!    builds it: allow only if you trust who can publish);
//! 3. **IPFS**: the folder fetched by the CID the chain pins (verified block by block), when
//!    fetching is on and there is a gateway.
//!
//! What the engine then needs (Docker: the image) is its own business: [`crate::Engine::prepare`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::B256;
use lilypad_chain::ModuleEntry;
use lilypad_module::Module;
use tokio::sync::Mutex;

use crate::engine::Engine;
use crate::error::RunError;

/// A job's module, ready to be prepared for an engine.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The module's folder, checked against its pinned hash.
    pub module: Arc<Module>,
    /// The image archive pinned on chain (zero: none).
    pub image_hash: B256,
    /// Whether the engine may build it here from the folder (local and git modules).
    pub may_build: bool,
}

/// Where modules that are not local come from (steps 2 and 3 of the order), and where what is
/// fetched is kept: `<cache>/repos` (git checkouts), `<cache>/modules` (folders by CID),
/// `<cache>/images` (image archives).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// IPFS gateways to fetch folders and artifacts from, in order.
    pub gateways: Vec<String>,
    /// The cache folder.
    pub cache: PathBuf,
    /// Take modules from git repositories.
    pub allow_git: bool,
    /// Fetch published folders by CID.
    pub fetch: bool,
}

impl Sources {
    /// Whether the published module `entry` can be had from these sources (without doing the
    /// work yet).
    pub fn can_get(&self, entry: &ModuleEntry) -> bool {
        (lilypad_module::is_git_name(&entry.name) && self.allow_git) || (self.fetch && !self.gateways.is_empty())
    }

    /// The published module `entry`, from git or else fetched by CID (steps 2 and 3).
    pub async fn get(&self, entry: &ModuleEntry) -> Result<Resolved, RunError> {
        let (name, version, spec_hash) = (&entry.name, &entry.version, entry.spec.specHash);
        let image_hash = entry.spec.imageHash;
        if lilypad_module::is_git_name(name) && self.allow_git {
            let folder = lilypad_module::fetch_git_module(name, version, &self.cache.join("repos"))
                .await
                .map_err(|source| RunError::Git { module: entry.reference(), source })?;
            let module = Module::load_pinned(&folder, spec_hash).map_err(|source| RunError::NotPinned { module: entry.reference(), source })?;
            return Ok(Resolved { module: Arc::new(module), image_hash, may_build: true });
        }
        if !self.can_get(entry) {
            return Err(RunError::NotRunHere { module: entry.reference() });
        }
        let module = lilypad_module::fetch_module(spec_hash, &self.gateways, &self.cache.join("modules"))
            .await
            .map_err(|source| RunError::Fetch { module: entry.reference(), source })?;
        if module.reference().to_string() != entry.reference() {
            return Err(RunError::WrongFolder { module: entry.reference(), holds: module.reference().to_string() });
        }
        Ok(Resolved { module: Arc::new(module), image_hash, may_build: false })
    }
}

/// An agent's module resolver: its local modules, then [`Sources`]; prepares modules for an
/// engine one at a time per module.
pub struct ModuleResolver {
    local: HashMap<B256, Arc<Module>>,
    sources: Sources,
    locks: std::sync::Mutex<HashMap<B256, Arc<Mutex<()>>>>,
}

impl ModuleResolver {
    /// `local`: the agent's own module folders by id, already checked against the chain.
    pub fn new(local: HashMap<B256, Arc<Module>>, sources: Sources) -> Self {
        Self { local, sources, locks: Default::default() }
    }

    /// Where modules, and jobs' file and folder inputs, are fetched from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The local modules, by id.
    pub fn local(&self) -> &HashMap<B256, Arc<Module>> {
        &self.local
    }

    /// Whether this resolver could run `module_id` without asking anyone (a local folder).
    pub fn has_local(&self, module_id: &B256) -> bool {
        self.local.contains_key(module_id)
    }

    /// Whether a job of this module can be taken on at all (without doing the work yet).
    pub fn can_resolve(&self, module_id: &B256, entry: Option<&ModuleEntry>) -> Result<(), RunError> {
        if self.local.contains_key(module_id) {
            return Ok(());
        }
        let Some(entry) = entry else {
            return Err(RunError::NotInDirectory { module: *module_id });
        };
        if self.sources.can_get(entry) {
            return Ok(());
        }
        Err(RunError::NotRunHere { module: entry.reference() })
    }

    /// The job's module, in the order of this module's doc.
    pub async fn resolve(&self, module_id: B256, entry: Option<&ModuleEntry>) -> Result<Resolved, RunError> {
        let image_hash = entry.map(|e| e.spec.imageHash).unwrap_or_default();
        if let Some(m) = self.local.get(&module_id) {
            return Ok(Resolved { module: m.clone(), image_hash, may_build: true });
        }
        self.can_resolve(&module_id, entry)?;
        let entry = entry.ok_or(RunError::NotInDirectory { module: module_id })?;
        let _guard = self.lock(module_id).await;
        self.sources.get(entry).await
    }

    /// Makes the module runnable on `engine` (see [`Engine::prepare`]); one preparation per
    /// module at a time. Returns whether anything was done.
    pub async fn prepare(&self, resolved: &Resolved, engine: &dyn Engine) -> Result<bool, RunError> {
        let _guard = self.lock(resolved.module.id()).await;
        engine.prepare(resolved, &self.sources).await
    }

    async fn lock(&self, id: B256) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(id).or_default().clone()
        };
        lock.lock_owned().await
    }
}
