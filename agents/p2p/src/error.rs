//! The node's errors.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use lilypad_store::Cid;

/// What went wrong starting or using the node.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The identity key file cannot be read, written or used.
    #[error("libp2p identity {}: {reason}", path.display())]
    Identity {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A listen address is not one this node can listen on (not TCP over IPv4/IPv6, a port
    /// taken).
    #[error("cannot listen on {addr}: {reason} (give a TCP multiaddr such as /ip4/127.0.0.1/tcp/4001)")]
    Listen {
        /// The address asked for.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The node could not be built (transport, noise keys).
    #[error("building the libp2p node: {0}")]
    Build(String),
    /// A peer could not be dialled.
    #[error("dialling {addr}: {reason}")]
    Dial {
        /// The address dialled.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// No connected peer sent the block in time (none holds it, or none answered).
    #[error("no peer sent block {cid} within {waited:?}")]
    Timeout {
        /// The block asked for.
        cid: Cid,
        /// How long it waited.
        waited: Duration,
    },
    /// A peer sent bytes that do not hash to the CID asked for.
    #[error("block {cid}: {reason}")]
    Verification {
        /// The block asked for.
        cid: Cid,
        /// Why it does not verify.
        reason: String,
    },
    /// Bitswap failed the request (the local blockstore, a CID it cannot handle).
    #[error("bitswap request for {cid}: {reason}")]
    Bitswap {
        /// The block asked for.
        cid: Cid,
        /// Why.
        reason: String,
    },
    /// The node's task has stopped: nothing more can be asked of it.
    #[error("the libp2p node has stopped")]
    Stopped,
}

impl P2pError {
    /// Whether trying again (later, or with other peers) can help: a dial, a block nobody sent
    /// in time. A bad address, key or block is not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, P2pError::Dial { .. } | P2pError::Timeout { .. })
    }
}
