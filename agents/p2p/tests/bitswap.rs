//! Two of our own nodes on loopback: one serves a store read-only, the other fetches every block
//! of a DAG from it by bitswap, each checked against its CID, and ends up with the same DAG. A
//! block nobody holds is a bounded wait, not a hang. Nothing leaves 127.0.0.1.

use std::time::{Duration, Instant};

use lilypad_p2p::{verify_block, with_peer_id, Node, NodeOptions, P2pError, StoreBlocks};
use lilypad_store::{Cid, DiskBlockstore};

/// Every CID a store holds, from its block files' names.
fn held(store: &DiskBlockstore) -> Vec<Cid> {
    let mut cids = Vec::new();
    for shard in std::fs::read_dir(store.root().join("blocks")).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                cids.push(lilypad_store::parse_cid(&name).unwrap());
            }
        }
    }
    cids.sort();
    cids
}

fn car(store: &DiskBlockstore, root: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    lilypad_store::export_car(store, root, &mut out).unwrap();
    out
}

fn loopback() -> NodeOptions {
    NodeOptions { listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_a_dag_from_another_by_bitswap_and_a_missing_block_times_out() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    // a folder with a small file and one of several chunks (raw leaves under a dag-pb node)
    let content = dir.path().join("outputs");
    std::fs::create_dir_all(content.join("sub")).unwrap();
    std::fs::write(content.join("stdout"), b"hello over bitswap\n").unwrap();
    let big: Vec<u8> = (0..700_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(content.join("sub").join("big.bin"), &big).unwrap();
    let serving = DiskBlockstore::open(dir.path().join("serving")).unwrap();
    let root = lilypad_store::add_path(&content, &serving).unwrap();
    let blocks = held(&serving);
    assert!(blocks.len() >= 6, "a DAG of several blocks: {blocks:?}");

    let server_key = lilypad_p2p::load_or_create_identity(&dir.path().join("server.key")).unwrap();
    let (server, server_task) = Node::start(server_key, StoreBlocks::read_only(serving.clone()), &loopback()).await.unwrap();
    let server_run = tokio::spawn(server_task.run(std::future::pending()));
    let addr = server.listen_addrs()[0].clone();
    assert!(addr.to_string().starts_with("/ip4/127.0.0.1/tcp/") && !addr.to_string().ends_with("/tcp/0"), "{addr}");

    let fetched = DiskBlockstore::open(dir.path().join("fetched")).unwrap();
    let client_key = lilypad_p2p::Keypair::generate_ed25519();
    let (client, client_task) = Node::start(client_key, StoreBlocks::writable(fetched.clone()), &NodeOptions::default()).await.unwrap();
    let (stop_client, stopped) = tokio::sync::oneshot::channel::<()>();
    let client_run = tokio::spawn(client_task.run(async move {
        let _ = stopped.await;
    }));
    assert!(client.listen_addrs().is_empty(), "a node told to listen nowhere listens nowhere");

    let peer = client.dial(with_peer_id(&addr, server.peer_id())).await.unwrap();
    assert_eq!(peer, server.peer_id());

    for cid in &blocks {
        let data = client.get(*cid, Duration::from_secs(20)).await.unwrap_or_else(|e| panic!("{cid}: {e}"));
        verify_block(cid, &data).unwrap();
        assert_eq!(data, serving.get(cid).unwrap(), "{cid}: the bytes the server holds");
    }
    // the fetched blocks are stored as they arrive (asynchronously): wait for the last
    let deadline = Instant::now() + Duration::from_secs(10);
    while held(&fetched).len() < blocks.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held(&fetched), blocks, "every block fetched was kept");
    assert_eq!(car(&fetched, &root), car(&serving, &root), "the whole DAG, the same as the server's");

    // a block nobody holds: nothing comes, and the wait ends at the timeout
    let missing = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(b"held by nobody\n");
        Cid::new_v1(lilypad_store::CODEC_RAW, cid::multihash::Multihash::wrap(0x12, &digest).unwrap())
    };
    let asked = Instant::now();
    let err = client.get(missing, Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, P2pError::Timeout { cid, .. } if cid == missing), "{err}");
    assert!(err.is_retryable());
    assert!(asked.elapsed() < Duration::from_secs(5), "bounded by the timeout: {:?}", asked.elapsed());
    assert_eq!(held(&serving), blocks, "the read-only server stored nothing");

    // both stop when told: the client by its shutdown future, the server by being aborted
    // (what a supervisor does past its grace)
    stop_client.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), client_run).await.expect("the client node stops").unwrap().unwrap();
    let err = client.get(missing, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, P2pError::Stopped), "{err}");
    server_run.abort();
}

#[tokio::test]
async fn listen_addresses_other_than_tcp_are_refused_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(dir.path()).unwrap();
    for bad in ["/ip4/127.0.0.1/udp/4001/quic-v1", "/dns4/example.com/tcp/4001"] {
        let options = NodeOptions { listen: vec![bad.parse().unwrap()], ..Default::default() };
        let err = Node::start(lilypad_p2p::Keypair::generate_ed25519(), StoreBlocks::read_only(store.clone()), &options).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(bad) && text.contains("/ip4/127.0.0.1/tcp/4001"), "{text}");
    }
}

#[tokio::test]
async fn a_port_already_taken_is_an_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(dir.path()).unwrap();
    let addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let options = NodeOptions { listen: vec![addr.parse().unwrap()], ..Default::default() };
    let err = Node::start(lilypad_p2p::Keypair::generate_ed25519(), StoreBlocks::read_only(store), &options).await.unwrap_err();
    assert!(err.to_string().contains(&addr), "{err}");
}
