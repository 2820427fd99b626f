//! "Is this module published, and is this folder the one pinned?": asked by the provider and
//! the mediator of their folders at start-up, and by `lilypad run` and the web2 gateway of the
//! module a job names, before anything is paid.

use alloy::primitives::B256;
use lilypad_bindings::ModuleSpec;
use lilypad_chain::{ChainClient, ChainError};
use lilypad_module::Module;

use crate::error::RunError;

/// The spec the chain's module directory pins for `module_id`, or `None` when no such
/// `name:version` is published.
pub async fn published_module(client: &ChainClient, module_id: B256) -> Result<Option<ModuleSpec>, ChainError> {
    let market = client.market();
    let (spec, published_at) = client
        .read("reading the module directory", || async { market.getModule(module_id).call().await.map(|r| (r.spec, r.publishedAt)) })
        .await?;
    Ok((published_at != alloy::primitives::aliases::U40::ZERO).then_some(spec))
}

/// Whether `module` (a local folder) is the one `spec` pins: [`RunError::HashMismatch`] if not.
pub fn check_pinned(module: &Module, spec: &ModuleSpec) -> Result<(), RunError> {
    if spec.specHash != module.spec_hash() {
        return Err(RunError::HashMismatch { module: module.reference().to_string(), local: module.spec_hash(), chain: spec.specHash });
    }
    Ok(())
}
