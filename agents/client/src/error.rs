//! What can go wrong for a job creator.

use alloy::primitives::U256;
use lilypad_chain::{ChainError, Outcome};

/// Why a job could not be checked, paid, followed or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The chain failed (or refused a transaction).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// No such `name:version` is published on this network.
    #[error("{module} is not published in the module directory of this network")]
    NotPublished { module: String },
    /// The module's folder could not be had or is not the pinned one.
    #[error(transparent)]
    Module(#[from] lilypad_runner::RunError),
    /// A local module folder is not a module.
    #[error("module folder {}: {source}", path.display())]
    Load { path: std::path::PathBuf, #[source] source: lilypad_module::LoadError },
    /// The payer cannot pay.
    #[error("{payer} holds {held} LP units and has {free} in its market balance, but the job needs {payment}: fund the account, or `lilypad deposit` into its market balance")]
    NoFunds { payer: alloy::primitives::Address, held: U256, free: U256, payment: u128 },
    /// The job was created but its receipt has no `JobCreated`.
    #[error("the job was created but its JobCreated event is missing from the receipt")]
    NoJobCreated,
    /// No result before the client gave up.
    #[error("job {job}: no result after {secs} s (its payment can be reclaimed once its deadline passes)")]
    NoResult { job: U256, secs: u64 },
    /// The job ended without a result standing: timed out (refunded) or otherwise.
    #[error("job {job} ended: {outcome:?}")]
    Ended { job: U256, outcome: Outcome },
    /// The posted data id is not a CID.
    #[error("the provider posted a malformed CID: {source}")]
    BadDataId { #[source] source: lilypad_store::StoreError },
    /// Fetching the result failed.
    #[error(transparent)]
    Fetch(#[from] lilypad_runner::FetchFreshError),
}

impl ClientError {
    /// Whether the user must fix something (the module, its inputs, the funds): nothing was
    /// paid. Otherwise something failed on the way (the chain, a gateway) or the job did.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ClientError::NotPublished { .. } | ClientError::Load { .. } | ClientError::NoFunds { .. } => true,
            ClientError::Module(e) => !e.is_retryable(),
            ClientError::Chain(e) => e.market_error().is_some(),
            _ => false,
        }
    }

    /// Whether the job timed out (no match or no result in time): its payment is refundable. (A
    /// mediation that timed out is not one: the result stands and the job settles.)
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::NoResult { .. }
                | ClientError::Ended { outcome: Outcome::Expired | Outcome::ResultTimedOut, .. }
        )
    }
}
