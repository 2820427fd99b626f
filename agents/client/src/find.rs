//! The module a job names, found and checked before anything is paid.

use std::path::PathBuf;

use alloy::primitives::Address;
use lilypad_bindings::ModuleSpec;
use lilypad_chain::{ChainClient, ModuleEntry};
use lilypad_module::{Module, ModuleRef};
use lilypad_runner::Sources;

use crate::ClientError;

/// A published module, and its folder where one could be had.
pub struct Found {
    /// What the chain pins for it.
    pub spec: ModuleSpec,
    /// Its folder (checked against the pinned hash); `None` when there is no local folder and
    /// `sources` could not fetch one: its inputs are then checked only by the provider.
    pub module: Option<Module>,
}

/// The module's local folder, if there is one: `explicit` (`--module-dir`) as given, else the
/// first of `modules/<name>` here and the devnet's folder of that name that holds a spec file.
/// Call it before connecting to the chain: a broken folder is the user's to fix.
pub fn local_folder(explicit: Option<PathBuf>, name: &str, devnet_modules: &[PathBuf]) -> Result<Option<Module>, ClientError> {
    let found = explicit.or_else(|| {
        let mut candidates = vec![PathBuf::from("modules").join(name)];
        candidates.extend(devnet_modules.iter().filter(|m| m.file_name().and_then(|n| n.to_str()) == Some(name)).cloned());
        candidates.into_iter().find(|p| p.join(lilypad_module::SPEC_FILE).exists())
    });
    match found {
        Some(path) => Module::load(&path).map(Some).map_err(|source| ClientError::Load { path, source }),
        None => Ok(None),
    }
}

/// The published module `reference`, its folder being `local` (see [`local_folder`]) or else
/// one from `sources` (git, then IPFS by the pinned CID), checked against the pinned hash.
pub async fn find_module(client: &ChainClient, reference: &ModuleRef, local: Option<Module>, sources: &Sources) -> Result<Found, ClientError> {
    let Some(spec) = lilypad_runner::published_module(client, reference.id()).await? else {
        return Err(ClientError::NotPublished { module: reference.to_string() });
    };
    let module = match local {
        Some(m) => Some(m),
        None => {
            let entry = ModuleEntry { name: reference.name.clone(), version: reference.version.clone(), publisher: Address::ZERO, spec: spec.clone() };
            if sources.can_get(&entry) {
                let resolved = sources.get(&entry).await?;
                Some(std::sync::Arc::unwrap_or_clone(resolved.module))
            } else {
                None
            }
        }
    };
    if let Some(m) = &module {
        lilypad_runner::check_pinned(m, &spec)?;
    }
    Ok(Found { spec, module })
}
