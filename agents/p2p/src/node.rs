//! The libp2p node: a swarm (TCP + noise + yamux; identify, ping, bitswap, connection limits)
//! driven by one task, and a handle to ask it things.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::core::multiaddr::Protocol;
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{connection_limits, identify, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm};
use lilypad_store::Cid;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::blocks::StoreBlocks;
use crate::error::P2pError;

/// The longest multihash bitswap handles here (sha2-256 needs 32 bytes; the store's CIDs hold
/// at most 64).
const MAX_MULTIHASH: usize = 64;

/// The protocol version identify reports (the IPFS one, which Helia and Kubo expect).
const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

/// How long [`Node::start`] waits for its listeners to report their addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// How the node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Where it listens (TCP multiaddrs, e.g. `/ip4/127.0.0.1/tcp/4001`; port 0 picks a free
    /// port). Empty: it listens nowhere and only dials.
    pub listen: Vec<Multiaddr>,
    /// A connection with no stream open for this long is closed.
    pub idle_timeout: Duration,
    /// Established connections at once (all peers together); more are refused.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
}

impl Default for NodeOptions {
    /// Listens nowhere; 60 s idle timeout; 256 connections, 4 per peer.
    fn default() -> Self {
        Self { listen: Vec::new(), idle_timeout: Duration::from_secs(60), max_connections: 256, max_connections_per_peer: 4 }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    bitswap: beetswap::Behaviour<MAX_MULTIHASH, StoreBlocks>,
}

enum Command {
    Dial { addr: Multiaddr, reply: Reply<PeerId> },
    Get { cid: Cid, reply: Reply<Vec<u8>> },
}

/// A handle on a running node: its identity and addresses, and requests to its task. Cheap to
/// clone; the node keeps running when every handle is dropped, until its task is stopped.
#[derive(Debug, Clone)]
pub struct Node {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Dial { addr, .. } => write!(f, "Dial({addr})"),
            Command::Get { cid, .. } => write!(f, "Get({cid})"),
        }
    }
}

/// The node's task: drives the swarm until [`NodeTask::run`]'s shutdown resolves.
pub struct NodeTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    dials: HashMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    gets: HashMap<beetswap::QueryId, (Cid, Reply<Vec<u8>>)>,
}

/// Where a request's answer goes.
type Reply<T> = oneshot::Sender<Result<T, P2pError>>;

impl std::fmt::Debug for NodeTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTask").field("peer", self.swarm.local_peer_id()).field("dials", &self.dials.len()).field("gets", &self.gets.len()).finish()
    }
}

impl Node {
    /// Builds the node with `identity` over `blocks`, listens where `options` says and waits
    /// until each listener has an address. Returns the handle and the task to run (spawn it
    /// under the agent's supervisor: the node does nothing until it runs).
    ///
    /// No discovery of any kind: no mDNS, DHT, relays, UPnP or address guessing; it talks to
    /// the peers that dial it and those it is told to dial.
    pub async fn start(identity: Keypair, blocks: StoreBlocks, options: &NodeOptions) -> Result<(Node, NodeTask), P2pError> {
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(options.max_connections))
            .with_max_established_per_peer(Some(options.max_connections_per_peer))
            .with_max_pending_incoming(Some(options.max_connections.div_ceil(4).max(1)));
        let idle = options.idle_timeout;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_behaviour(|key| Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                        .with_agent_version(format!("lilypad/{}", env!("CARGO_PKG_VERSION")))
                        // tell peers nothing but what was configured: no observed addresses
                        .with_push_listen_addr_updates(false),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                bitswap: beetswap::Behaviour::builder(std::sync::Arc::new(blocks)).register_multihasher(Sha256).build(),
            })
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        let peer_id = *swarm.local_peer_id();

        let mut waiting = HashMap::new();
        for addr in &options.listen {
            check_listen_addr(addr)?;
            let id = swarm.listen_on(addr.clone()).map_err(|e| P2pError::Listen { addr: addr.clone(), reason: e.to_string() })?;
            waiting.insert(id, addr.clone());
        }
        let mut listen_addrs = Vec::new();
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        while !waiting.is_empty() {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await.map_err(|_| {
                let addr = waiting.values().next().cloned().unwrap_or_else(Multiaddr::empty);
                P2pError::Listen { addr, reason: format!("no address reported within {LISTEN_WAIT:?}") }
            })?;
            match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    waiting.remove(&listener_id);
                    listen_addrs.push(address);
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    if let Some(addr) = waiting.remove(&listener_id) {
                        let reason = match reason {
                            Ok(()) => "the listener closed".to_string(),
                            Err(e) => e.to_string(),
                        };
                        return Err(P2pError::Listen { addr, reason });
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(addr) = waiting.remove(&listener_id) {
                        return Err(P2pError::Listen { addr, reason: error.to_string() });
                    }
                }
                _ => {}
            }
        }
        for addr in &listen_addrs {
            info!(%peer_id, address = %addr.clone().with(Protocol::P2p(peer_id)), "libp2p node listening (bitswap)");
        }
        let (tx, rx) = mpsc::channel(64);
        let node = Node { peer_id, listen_addrs, commands: tx };
        let task = NodeTask { swarm, commands: rx, dials: HashMap::new(), gets: HashMap::new() };
        Ok((node, task))
    }

    /// This node's peer id (from its identity key).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses it listens on (ports resolved; an unspecified address such as 0.0.0.0
    /// is reported once per interface), without the `/p2p/` part.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Dials `addr` (a TCP multiaddr, with or without `/p2p/<peer id>`) and waits until the
    /// connection is up; returns the peer's id.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, P2pError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Dial { addr, reply }).await.map_err(|_| P2pError::Stopped)?;
        answer.await.map_err(|_| P2pError::Stopped)?
    }

    /// Asks the connected peers for block `cid` by bitswap and returns its bytes, checked
    /// against the CID; [`P2pError::Timeout`] when none sent it within `timeout` (bitswap has
    /// no "nobody has it" answer: a peer without the block stays silent).
    pub async fn get(&self, cid: Cid, timeout: Duration) -> Result<Vec<u8>, P2pError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Get { cid, reply }).await.map_err(|_| P2pError::Stopped)?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(P2pError::Stopped),
            // the task cancels the query when it sees the dropped receiver
            Err(_) => Err(P2pError::Timeout { cid, waited: timeout }),
        }
    }
}

/// Hashes received blocks for bitswap's own check of their CIDs (beetswap's standard hasher
/// needs hash features of `multihash-codetable` this build does not turn on).
struct Sha256;

impl beetswap::multihasher::Multihasher<MAX_MULTIHASH> for Sha256 {
    async fn hash(&self, code: u64, input: &[u8]) -> Result<cid::multihash::Multihash<MAX_MULTIHASH>, beetswap::multihasher::MultihasherError> {
        use sha2::Digest;
        if code != SHA2_256 {
            return Err(beetswap::multihasher::MultihasherError::UnknownMultihashCode);
        }
        cid::multihash::Multihash::wrap(SHA2_256, &sha2::Sha256::digest(input)).map_err(beetswap::multihasher::MultihasherError::custom)
    }
}

/// The multihash code of sha2-256.
const SHA2_256: u64 = 0x12;

/// Only TCP over IPv4 or IPv6 (what the transport speaks): anything else is refused with the
/// address, before libp2p gives a vaguer error.
fn check_listen_addr(addr: &Multiaddr) -> Result<(), P2pError> {
    let mut parts = addr.iter();
    let ok = matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_))) && matches!(parts.next(), Some(Protocol::Tcp(_))) && parts.next().is_none();
    if ok {
        Ok(())
    } else {
        Err(P2pError::Listen { addr: addr.clone(), reason: "only /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port> is listened on".into() })
    }
}

/// Checks that `data` hashes to `cid` (sha2-256, the hash every CID of this project uses).
pub fn verify_block(cid: &Cid, data: &[u8]) -> Result<(), P2pError> {
    use sha2::Digest;
    let hash = cid.hash();
    if hash.code() != SHA2_256 {
        return Err(P2pError::Verification { cid: *cid, reason: format!("hash function {:#x} is not checked here (sha2-256 only)", hash.code()) });
    }
    if sha2::Sha256::digest(data)[..] != *hash.digest() {
        return Err(P2pError::Verification { cid: *cid, reason: format!("the {} bytes received do not hash to it", data.len()) });
    }
    Ok(())
}

impl NodeTask {
    /// Runs the node until `shutdown` resolves, then closes its listeners and connections.
    /// Requests still waiting are answered [`P2pError::Stopped`].
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), P2pError> {
        tokio::pin!(shutdown);
        // queries whose caller gave up are cancelled on this tick
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(command) = self.commands.recv() => self.command(command),
                event = self.swarm.select_next_some() => self.event(event),
                _ = sweep.tick() => self.cancel_abandoned(),
            }
        }
        let listeners: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        info!(peer = %self.swarm.local_peer_id(), ?listeners, "libp2p node stopped");
        Ok(())
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(P2pError::Dial { addr, reason: e.to_string() }));
                    }
                }
            }
            Command::Get { cid, reply } => {
                let query = self.swarm.behaviour_mut().bitswap.get(&cid);
                self.gets.insert(query, (cid, reply));
            }
        }
    }

    fn cancel_abandoned(&mut self) {
        let abandoned: Vec<beetswap::QueryId> = self.gets.iter().filter(|(_, (_, reply))| reply.is_closed()).map(|(q, _)| *q).collect();
        for query in abandoned {
            if let Some((cid, _)) = self.gets.remove(&query) {
                debug!(%cid, "bitswap request given up by its caller; cancelled");
            }
            self.swarm.behaviour_mut().bitswap.cancel(query);
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some((addr, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(P2pError::Dial { addr, reason: error.to_string() }));
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                debug!(from = %send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
            }
            SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                warn!(?addresses, ?reason, "a libp2p listener closed");
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "a libp2p listener failed"),
            SwarmEvent::NewListenAddr { address, .. } => debug!(%address, "listening"),
            SwarmEvent::Behaviour(BehaviourEvent::Bitswap(event)) => self.bitswap(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                debug!(peer = %peer_id, agent = %info.agent_version, "identified");
            }
            _ => {}
        }
    }

    fn bitswap(&mut self, event: beetswap::Event) {
        match event {
            beetswap::Event::GetQueryResponse { query_id, data } => {
                if let Some((cid, reply)) = self.gets.remove(&query_id) {
                    let _ = reply.send(verify_block(&cid, &data).map(|()| data));
                }
            }
            beetswap::Event::GetQueryError { query_id, error } => {
                if let Some((cid, reply)) = self.gets.remove(&query_id) {
                    let _ = reply.send(Err(P2pError::Bitswap { cid, reason: error.to_string() }));
                }
            }
        }
    }
}
