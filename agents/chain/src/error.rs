//! What can go wrong talking to the chain, split into what is worth retrying and what is not.

use std::path::PathBuf;

use alloy::primitives::Address;

/// An error of the chain client. [`ChainError::is_retryable`] tells transient failures (the
/// RPC is unreachable or overloaded) from final ones (a revert, a bad key, a wrong chain).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("deployment file {path}: {reason}")]
    Deployment { path: PathBuf, reason: String },

    #[error("the RPC at {url} failed while {action}: {reason} (is the node running and reachable?)")]
    Unreachable { url: String, action: String, reason: String },

    #[error("{action} was rejected: {reason}")]
    Reverted {
        action: String,
        /// The market's custom error, decoded, when the revert carried one.
        reason: String,
        /// The market's custom error name (e.g. `PriceAboveCap`), when known.
        error_name: Option<String>,
    },

    #[error("{action} failed at the node: {reason}")]
    Node { action: String, reason: String, retryable: bool },

    #[error("the RPC serves chain {actual}, but the deployment is for chain {expected}: check --rpc-url / --network")]
    WrongChain { expected: u64, actual: u64 },

    #[error("no contract at {address} on this chain: is the deployment file for this node (a devnet restarted since)?")]
    NoContract { address: Address },

    #[error("invalid private key: {0} (expect 64 hex digits, with or without 0x)")]
    InvalidKey(String),

    #[error("invalid RPC URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("a transaction needs a private key: set WEB3_PRIVATE_KEY or --private-key")]
    NoSigner,

    #[error("the deployment block {block} is not on this chain: is the deployment file for this node (a devnet restarted since)?")]
    NoDeploymentBlock { block: u64 },

    #[error("state folder {path}: {reason}")]
    State { path: PathBuf, reason: String },

    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    #[error("log {tx}:{index} of the market could not be decoded: {reason}")]
    Decode { tx: String, index: u64, reason: String },
}

impl ChainError {
    /// True for failures that may go away by themselves (network, node overload, nonce races).
    pub fn is_retryable(&self) -> bool {
        match self {
            ChainError::Unreachable { .. } => true,
            ChainError::Node { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The market's custom error name, if this is a revert that carried one.
    pub fn market_error(&self) -> Option<&str> {
        match self {
            ChainError::Reverted { error_name, .. } => error_name.as_deref(),
            _ => None,
        }
    }
}
