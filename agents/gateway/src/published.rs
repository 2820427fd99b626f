//! Folders of modules published on chain that the gateway was not given with `--module`,
//! fetched by their pinned CID (as `lilypad run` does) so that a job's inputs are checked
//! before its account is charged, whenever the module was published.

use std::collections::HashMap;

use lilypad_bindings::ModuleSpec;
use lilypad_chain::ChainClient;
use lilypad_client::{find_module, ClientError};
use lilypad_module::{Module, ModuleRef};
use lilypad_runner::Sources;
use tokio::sync::Mutex;

/// Published module folders by `name:version`, fetched once each.
pub struct PublishedModules {
    sources: Sources,
    fetched: Mutex<HashMap<String, Module>>,
}

impl PublishedModules {
    /// Fetches from `sources` (folders by CID from its IPFS gateways, never git).
    pub fn new(sources: Sources) -> Self {
        Self { sources: Sources { allow_git: false, ..sources }, fetched: Mutex::new(HashMap::new()) }
    }

    /// The folder of `reference`, pinned by `spec`: from the cache, else fetched and checked
    /// against the pinned hash. `None` when this gateway has no IPFS gateway to fetch from.
    pub async fn get(&self, client: &ChainClient, reference: &ModuleRef, spec: &ModuleSpec) -> Result<Option<Module>, ClientError> {
        let key = reference.to_string();
        let mut fetched = self.fetched.lock().await;
        if let Some(m) = fetched.get(&key).filter(|m| lilypad_client::check_pinned(m, spec).is_ok()) {
            return Ok(Some(m.clone()));
        }
        let found = find_module(client, reference, None, &self.sources).await?;
        if let Some(m) = &found.module {
            fetched.insert(key, m.clone());
        }
        Ok(found.module)
    }
}
