//! Where a provider (or a mediator) gets a matched job's module and its image.
//!
//! Modules, in order: a local folder it was started with; a git repository (`github.com/org/
//! repo:tag`, only when allowed: its build commands run on this host); the module folder
//! fetched from IPFS by the CID the chain pins (when fetching is on).
//!
//! Images, in order: the engine has the module's tag already; the image archive the chain
//! pins (`imageHash`), fetched by CID and loaded (nothing of the module runs outside the
//! sandbox); a build from the folder, only for local and git modules (a build runs the
//! module's build commands on this host).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::B256;
use lilypad_chain::ModuleEntry;
use lilypad_executor::Executor;
use lilypad_module::Module;
use tokio::sync::Mutex;

/// A job's module, ready to have its image prepared.
#[derive(Clone)]
pub struct Resolved {
    pub module: Arc<Module>,
    /// The image archive pinned on chain (zero: none).
    pub image_hash: B256,
    /// Whether the image may be built here from the folder (local and git modules).
    pub may_build: bool,
}

/// Resolves modules and prepares their images, one preparation per module at a time.
pub struct ModuleResolver {
    local: HashMap<B256, Arc<Module>>,
    gateways: Vec<String>,
    cache: PathBuf,
    allow_git: bool,
    fetch: bool,
    locks: std::sync::Mutex<HashMap<B256, Arc<Mutex<()>>>>,
}

impl ModuleResolver {
    /// `cache` holds fetched folders, git checkouts (`<cache>/repos`) and image archives.
    pub fn new(local: HashMap<B256, Arc<Module>>, gateways: Vec<String>, cache: PathBuf, allow_git: bool, fetch: bool) -> Self {
        Self { local, gateways, cache, allow_git, fetch, locks: Default::default() }
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
    pub fn can_resolve(&self, module_id: &B256, entry: Option<&ModuleEntry>) -> Result<(), String> {
        if self.local.contains_key(module_id) {
            return Ok(());
        }
        let Some(entry) = entry else {
            return Err(format!("module {module_id} is not in the directory"));
        };
        if lilypad_module::is_git_name(&entry.name) && self.allow_git {
            return Ok(());
        }
        if self.fetch && !self.gateways.is_empty() {
            return Ok(());
        }
        Err(format!("this provider does not run {}", entry.reference()))
    }

    /// The job's module: local, from git, or fetched by CID.
    pub async fn resolve(&self, module_id: B256, entry: Option<&ModuleEntry>) -> Result<Resolved, String> {
        let image_hash = entry.map(|e| e.spec.imageHash).unwrap_or_default();
        if let Some(m) = self.local.get(&module_id) {
            return Ok(Resolved { module: m.clone(), image_hash, may_build: true });
        }
        self.can_resolve(&module_id, entry)?;
        let entry = entry.ok_or_else(|| format!("module {module_id} is not in the directory"))?;
        let (name, version, spec_hash) = (&entry.name, &entry.version, entry.spec.specHash);
        let _guard = self.lock(module_id).await;
        if lilypad_module::is_git_name(name) && self.allow_git {
            let folder = lilypad_module::fetch_git_module(name, version, &self.cache.join("repos"))
                .await
                .map_err(|e| format!("fetching {name}:{version}: {e}"))?;
            let module = Module::load_pinned(&folder, spec_hash)
                .map_err(|e| format!("{name}:{version} from git is not the module pinned on chain: {e}"))?;
            return Ok(Resolved { module: Arc::new(module), image_hash, may_build: true });
        }
        let module = lilypad_module::fetch_module(spec_hash, &self.gateways, &self.cache.join("modules"))
            .await
            .map_err(|e| format!("{name}:{version}: {e}"))?;
        if module.reference().to_string() != entry.reference() {
            return Err(format!("the folder pinned for {} holds {}", entry.reference(), module.reference()));
        }
        Ok(Resolved { module: Arc::new(module), image_hash, may_build: false })
    }

    /// The image to run the module with: present already, loaded from its pinned archive, or
    /// built (local and git modules only). Returns the tag and whether anything was done.
    pub async fn image(&self, resolved: &Resolved, executor: &Executor) -> Result<(String, bool), String> {
        let module = &resolved.module;
        let _guard = self.lock(module.id()).await;
        let tag = module.image_tag();
        if executor.has_image(&tag).await.map_err(|e| format!("Docker: {e}"))? {
            return Ok((tag, false));
        }
        if resolved.image_hash != B256::ZERO && !self.gateways.is_empty() {
            let archive = lilypad_module::fetch_image_archive(resolved.image_hash, &self.gateways, &self.cache)
                .await
                .map_err(|e| format!("{}: {e}", module.reference()))?;
            let loaded = lilypad_module::load_image_archive(module, executor, &archive).await;
            if let Err(e) = &loaded {
                if !e.is_retryable() {
                    // A refused archive is refused for good: do not keep it around.
                    let _ = std::fs::remove_file(&archive);
                }
            }
            return loaded.map(|image| (image.tag, true)).map_err(|e| e.to_string());
        }
        if resolved.may_build {
            let tag = lilypad_module::build_image(module, executor).await.map_err(|e| format!("building the image failed: {e}"))?;
            return Ok((tag, true));
        }
        Err(format!(
            "{} has no image archive pinned on chain and this provider builds only modules it has locally",
            module.reference()
        ))
    }

    async fn lock(&self, id: B256) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(id).or_default().clone()
        };
        lock.lock_owned().await
    }
}
