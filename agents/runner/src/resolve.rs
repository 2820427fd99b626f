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
/// `<cache>/images` (image archives), `<cache>/inputs` (jobs' `cid` inputs, at most
/// `input_cache_max` bytes in all: [`crate::InputCache`]).
#[derive(Clone, Debug)]
pub struct Sources {
    /// IPFS gateways to fetch folders and artifacts from, in order.
    pub gateways: Vec<String>,
    /// The cache folder.
    pub cache: PathBuf,
    /// Take modules from git repositories.
    pub allow_git: bool,
    /// Which git modules (by repository prefix or publisher): `None` takes any (a job
    /// creator's own `lilypad run`, which builds nothing); a provider passes its
    /// `GitPolicy`, since their build commands run on its host.
    pub git_policy: Option<lilypad_module::GitPolicy>,
    /// Fetch published folders by CID.
    pub fetch: bool,
    /// The most bytes `<cache>/inputs` keeps ([`crate::DEFAULT_INPUT_CACHE_MAX`] by default).
    pub input_cache_max: u64,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            gateways: Vec::new(),
            cache: PathBuf::new(),
            allow_git: false,
            git_policy: None,
            fetch: false,
            input_cache_max: crate::DEFAULT_INPUT_CACHE_MAX,
        }
    }
}

impl Sources {
    /// Whether the published module `entry` can be had from these sources (without doing the
    /// work yet).
    pub fn can_get(&self, entry: &ModuleEntry) -> bool {
        (lilypad_module::is_git_name(&entry.name) && self.git_allows(entry).is_ok()) || (self.fetch && !self.gateways.is_empty())
    }

    /// Whether git module `entry` may be taken from git: git allowed and, with a policy, its
    /// repository or publisher allowed by it (the host rules apply either way).
    fn git_allows(&self, entry: &ModuleEntry) -> Result<(), lilypad_module::GitError> {
        if !self.allow_git {
            return Err(lilypad_module::GitError::NotAllowed {
                name: entry.name.clone(),
                publisher: entry.publisher.to_string(),
                allowed: "none (git modules are off)".into(),
            });
        }
        match &self.git_policy {
            Some(policy) => policy.check(&entry.name, entry.publisher),
            None => lilypad_module::check_host(&entry.name).map(|_| ()),
        }
    }

    /// The published module `entry`, from git or else fetched by CID (steps 2 and 3).
    pub async fn get(&self, entry: &ModuleEntry) -> Result<Resolved, RunError> {
        let (name, version, spec_hash) = (&entry.name, &entry.version, entry.spec.specHash);
        let image_hash = entry.spec.imageHash;
        if lilypad_module::is_git_name(name) && self.allow_git {
            // outside the policy: refused, not fetched by CID either (the provider chose whose
            // git modules it runs)
            self.git_allows(entry).map_err(|source| RunError::Git { module: entry.reference(), source })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;
    use lilypad_module::{GitError, GitPolicy};

    fn entry(name: &str, publisher: Address) -> ModuleEntry {
        ModuleEntry { name: name.into(), version: "v1".into(), publisher, spec: Default::default() }
    }

    #[test]
    fn git_modules_outside_the_providers_policy_are_not_taken() {
        let trusted = Address::repeat_byte(7);
        let sources = Sources {
            allow_git: true,
            git_policy: Some(GitPolicy { repos: vec!["example.com/org".into()], publishers: vec![trusted] }),
            ..Default::default()
        };
        assert!(sources.can_get(&entry("example.com/org/hello", Address::ZERO)));
        assert!(sources.can_get(&entry("gitlab.com/anyone/x", trusted)), "an allowed publisher's");
        assert!(!sources.can_get(&entry("example.com/other/x", Address::ZERO)));
        let err = sources.git_allows(&entry("example.com/other/x", Address::ZERO)).unwrap_err();
        assert!(matches!(err, GitError::NotAllowed { .. }), "{err}");
        // the host rules whatever the policy: no IP literal even from a trusted publisher
        assert!(!sources.can_get(&entry("127.0.0.1/o/r", trusted)));
        // no policy (a job creator's own run): any public host; git off: none
        let any = Sources { allow_git: true, ..Default::default() };
        assert!(any.can_get(&entry("example.com/other/x", Address::ZERO)));
        assert!(!any.can_get(&entry("10.0.0.1/o/r", Address::ZERO)));
        let off = Sources { git_policy: sources.git_policy.clone(), ..Default::default() };
        assert!(!off.can_get(&entry("example.com/org/hello", Address::ZERO)));
    }
}
