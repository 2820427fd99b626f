//! HAMT-sharded folders end to end: imported into a store, served by the gateway, fetched back
//! verified (as one CAR, and block by block), looked up by path and listed.

use std::fs;
use std::path::Path;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use lilypad_store::{add_path, cid_of_path, fetch, gateway, DiskBlockstore};

/// 3,000 files with 60-byte names (3000 * 96 = 288,000 bytes of links: sharded) and a
/// sub-folder, with content that differs per file.
fn make_sharded(top: &Path) {
    for i in 0..3000 {
        let name = format!("{i:05}-an-output-file-whose-name-is-exactly-sixty-bytes-long-");
        assert_eq!(name.len(), 60);
        let path = top.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("output {i}\n")).unwrap();
    }
    fs::create_dir_all(top.join("sub")).unwrap();
    fs::write(top.join("sub/inner.txt"), b"inner\n").unwrap();
}

fn is_hamt_root(store: &DiskBlockstore, cid: &lilypad_store::Cid) -> bool {
    // UnixFS Data{Type=5 (HAMTShard)} ends the dag-pb node: ... 0a <len> 08 05 ...
    let block = store.get(cid).unwrap();
    block.windows(2).any(|w| w == [0x08, 0x05])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_folder_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("outputs");
    make_sharded(&src);
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let root = add_path(&src, &store).unwrap();
    assert!(is_hamt_root(&store, &root));
    let (addr, _task) = gateway::serve(store.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{addr}");

    // Fetched as a CAR: every file back, and the tree hashes to the same CID.
    let dest = tmp.path().join("back");
    let files = fetch(&url, &root, &dest).await.unwrap();
    assert_eq!(files.len(), 3001);
    assert_eq!(cid_of_path(&dest).unwrap(), root);
    assert_eq!(
        fs::read_to_string(
            dest.join("01234-an-output-file-whose-name-is-exactly-sixty-bytes-long-")
        )
        .unwrap(),
        "output 1234\n"
    );

    // A path through the HAMT (looked up by hash) and a name that is not there.
    let http = reqwest::Client::new();
    let r = http
        .get(format!(
            "{url}/ipfs/{root}/02999-an-output-file-whose-name-is-exactly-sixty-bytes-long-"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "output 2999\n");
    let r = http
        .get(format!("{url}/ipfs/{root}/sub/inner.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "inner\n");
    let r = http
        .get(format!("{url}/ipfs/{root}/no-such-name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The listing walks every shard.
    let r = http
        .get(format!("{url}/ipfs/{root}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3001);
    assert!(entries
        .iter()
        .any(|e| e["name"] == "sub" && e["type"] == "directory"));
}

/// Without CARs the fetcher walks the shards block by block (`?format=raw`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_folder_fetched_block_by_block() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("outputs");
    make_sharded(&src);
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let root = add_path(&src, &store).unwrap();
    async fn no_car(req: Request, next: Next) -> Response {
        if req.uri().query().is_some_and(|q| q.contains("format=car")) {
            return (axum::http::StatusCode::NOT_ACCEPTABLE, "no CARs here").into_response();
        }
        next.run(req).await
    }
    let app = gateway::router(store).layer(middleware::from_fn(no_car));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dest = tmp.path().join("back");
    let files = fetch(&format!("http://{addr}"), &root, &dest)
        .await
        .unwrap();
    assert_eq!(files.len(), 3001);
    assert_eq!(cid_of_path(&dest).unwrap(), root);
}
