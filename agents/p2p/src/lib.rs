//! Lilypad's libp2p node: bitswap over TCP + noise + yamux, so that any IPFS implementation
//! (Helia, Kubo, another Lilypad node) can fetch what a content store holds by CID.
//!
//! * [`Node::start`] builds and listens, [`NodeTask::run`] drives it (spawn it under the
//!   agent's supervisor) until told to stop; [`Node`] asks it to [`dial`](Node::dial) a peer and
//!   [`get`](Node::get) a block, verified against its CID.
//! * [`StoreBlocks`] is a [`lilypad_store::DiskBlockstore`] as bitswap sees it:
//!   [`read_only`](StoreBlocks::read_only) for a provider (it answers for what it stores and
//!   writes nothing), [`writable`](StoreBlocks::writable) for a node that fetches.
//! * [`load_or_create_identity`] keeps the node's key in a 0600 file, so its peer id (the
//!   `/p2p/<id>` part of the multiaddr announced on chain) survives restarts.
//!
//! Protocols: `/ipfs/bitswap/1.2.0` (and 1.1.0, 1.0.0) from the `beetswap` crate, identify
//! (`/ipfs/id/1.0.0`), ping, over TCP with noise and yamux (what Helia's `@libp2p/tcp`,
//! `@libp2p/noise` and `@libp2p/yamux` speak). Deliberately absent: mDNS, the Kademlia DHT,
//! relays, hole punching, UPnP/NAT mapping, AutoNAT, bootstrap peers. The node listens only
//! where it is told and dials only what it is told: it sends nothing anywhere else.
//!
//! Bitswap's server answers a want with the block when the store holds it and stays silent
//! otherwise (beetswap sends no DONT_HAVE); a fetch is bounded by the caller's timeout.

mod blocks;
mod error;
mod identity;
mod node;

pub use blocks::StoreBlocks;
pub use error::P2pError;
pub use identity::load_or_create_identity;
pub use libp2p::identity::Keypair;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
pub use node::{verify_block, Node, NodeOptions, NodeTask};

/// `addr` with `/p2p/<peer>` at its end (kept as is when it already names that peer).
pub fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) if p == peer => addr.clone(),
        _ => addr.clone().with(Protocol::P2p(peer)),
    }
}
