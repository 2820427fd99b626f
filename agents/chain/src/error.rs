//! What can go wrong talking to the chain, split into what is worth retrying and what is not.

use std::path::PathBuf;

use alloy::primitives::Address;

/// An error of the chain client. [`ChainError::is_retryable`] tells transient failures (the
/// RPC is unreachable or overloaded) from final ones (a revert, a bad key, a wrong chain).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The deployment file does not read.
    #[error("deployment file {path}: {reason}")]
    Deployment {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The RPC could not be reached (retryable).
    #[error("the RPC at {url} failed while {action}: {reason} (is the node running and reachable?)")]
    Unreachable {
        /// The RPC URL.
        url: String,
        /// What was being done.
        action: String,
        /// The transport error.
        reason: String,
    },

    /// The market refused a transaction or call (a revert).
    #[error("{action} was rejected: {reason}")]
    Reverted {
        /// What was being done.
        action: String,
        /// The market's custom error, decoded, when the revert carried one.
        reason: String,
        /// The market's custom error name (e.g. `PriceAboveCap`), when known.
        error_name: Option<String>,
    },

    /// The node answered with an error.
    #[error("{action} failed at the node: {reason}")]
    Node {
        /// What was being done.
        action: String,
        /// The node's error.
        reason: String,
        /// Whether trying again may succeed (an overloaded node, a nonce race).
        retryable: bool,
    },

    /// The RPC serves another chain than the deployment's.
    #[error("the RPC serves chain {actual}, but the deployment is for chain {expected}: check --rpc-url / --network")]
    WrongChain {
        /// The deployment's chain id.
        expected: u64,
        /// The RPC's chain id.
        actual: u64,
    },

    /// The deployment names an address without code on this chain.
    #[error("no contract at {address} on this chain: is the deployment file for this node (a devnet restarted since)?")]
    NoContract {
        /// The address without code.
        address: Address,
    },

    /// The private key does not parse.
    #[error("invalid private key: {0} (expect 64 hex digits, with or without 0x)")]
    InvalidKey(String),

    /// The RPC URL does not parse.
    #[error("invalid RPC URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },

    /// A transaction was asked of a client without a key.
    #[error("a transaction needs a private key: set WEB3_PRIVATE_KEY or --private-key")]
    NoSigner,

    /// The deployment file's start block is not on the chain the RPC URL serves.
    #[error("the deployment block {block} is not on this chain: is the deployment file for this node (a devnet restarted since)?")]
    NoDeploymentBlock {
        /// The block the deployment file names.
        block: u64,
    },

    /// The chain's state folder could not be opened, checked or set aside.
    #[error("state folder {path}: {reason}")]
    State {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A checkpoint could not be read or written.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A market log does not decode (bindings out of step with the contract?).
    #[error("log {tx}:{index} of the market could not be decoded: {reason}")]
    Decode {
        /// Its transaction.
        tx: String,
        /// Its index in the block.
        index: u64,
        /// Why it does not decode.
        reason: String,
    },
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
