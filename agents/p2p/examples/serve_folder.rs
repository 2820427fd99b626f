//! Serves a folder over bitswap, for checking another IPFS implementation against this node by
//! hand: imports the folder into a temporary store (the same CIDs as `lilypad ipfs add`),
//! listens on the given loopback multiaddr, prints `<multiaddr>/p2p/<peer id> <root CID>` and
//! serves until Ctrl-C.
//!
//!     cargo run -p lilypad-p2p --example serve_folder -- <folder> [/ip4/127.0.0.1/tcp/0]

use lilypad_p2p::{with_peer_id, Keypair, Node, NodeOptions, StoreBlocks};
use lilypad_store::DiskBlockstore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = args.next().ok_or("usage: serve_folder <folder> [listen multiaddr]")?;
    let listen = args.next().unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into()).parse()?;
    let dir = tempfile::tempdir()?;
    let store = DiskBlockstore::open(dir.path())?;
    let root = lilypad_store::add_path(std::path::Path::new(&folder), &store)?;
    let options = NodeOptions { listen: vec![listen], ..Default::default() };
    let (node, task) = Node::start(Keypair::generate_ed25519(), StoreBlocks::read_only(store), &options).await?;
    println!("{} {root}", with_peer_id(&node.listen_addrs()[0], node.peer_id()));
    task.run(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
