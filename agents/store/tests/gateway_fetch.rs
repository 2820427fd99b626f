//! Gateway and fetch: import into a DiskBlockstore, serve it over HTTP on 127.0.0.1:0, fetch it
//! back with verification, and check the failure modes (corrupt blocks, traversal, missing
//! content, unreachable gateway, gateways without CAR support).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use lilypad_store::gateway;
use lilypad_store::{
    add_path, cid_of_path, fetch, import_car, Cid, DiskBlockstore, StoreError, CHUNK_SIZE,
};
use sha2::{Digest, Sha256};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + i / 977) as u8).wrapping_add(seed))
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// A folder exercising nesting, unicode, empty files and folders, multi-chunk files.
fn make_tree(top: &Path) {
    write(&top.join("result.json"), br#"{"ok":true}"#);
    write(&top.join("empty"), b"");
    write(&top.join(".hidden"), b"h");
    write(&top.join("logs/stdout"), b"hello\n");
    write(&top.join("logs/stderr"), b"");
    write(&top.join("data/big.bin"), &pattern(3 * CHUNK_SIZE + 17, 1));
    write(&top.join("data/ünïcødé/名前.txt"), "内容".as_bytes());
    fs::create_dir_all(top.join("data/empty-dir")).unwrap();
}

/// Relative path -> contents (None for folders), for byte-for-byte comparison of trees.
fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = entry.file_type().unwrap();
            assert!(!ft.is_symlink(), "no symlinks expected: {}", path.display());
            if ft.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Leftover temporary folders of failed fetches in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lilypad-fetch-"))
        .collect()
}

/// The CID of content that is in no store.
fn absent_cid(dir: &Path) -> Cid {
    let p = dir.join("never-added");
    fs::write(&p, b"this content was never added\n").unwrap();
    cid_of_path(&p).unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
    store: DiskBlockstore,
    cid: Cid,
    url: String,
    addr: SocketAddr,
}

async fn serve_tree() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let src = root.join("outputs");
    make_tree(&src);
    let store = DiskBlockstore::open(root.join("store")).unwrap();
    let cid = add_path(&src, &store).unwrap();
    let (addr, _task) = gateway::serve(store.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Fixture {
        _tmp: tmp,
        url: format!("http://{addr}"),
        root,
        src,
        store,
        cid,
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_round_trip_is_byte_for_byte() {
    let f = serve_tree().await;
    let dest = f.root.join("downloads/job-1");
    let files = fetch(&f.url, &f.cid, &dest).await.unwrap();

    assert_eq!(snapshot(&dest), snapshot(&f.src));
    let mut listed: Vec<_> = files
        .iter()
        .map(|p| {
            p.strip_prefix(&dest)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listed.sort();
    let mut expected: Vec<_> = snapshot(&f.src)
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k)
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(leftovers(&f.root.join("downloads")).is_empty());
    // The fetched tree hashes to the same CID.
    assert_eq!(cid_of_path(&dest).unwrap(), f.cid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_single_file_and_into_empty_dir() {
    let f = serve_tree().await;
    let file = f.src.join("data/big.bin");
    let file_cid = cid_of_path(&file).unwrap();
    let dest = f.root.join("single");
    fs::create_dir(&dest).unwrap(); // an existing empty folder is fine
    let files = fetch(&f.url, &file_cid, &dest).await.unwrap();
    assert_eq!(files, vec![dest.join(file_cid.to_string())]);
    assert_eq!(fs::read(&files[0]).unwrap(), fs::read(&file).unwrap());

    // Now not empty: refused, nothing touched.
    let err = fetch(&f.url, &file_cid, &dest).await.unwrap_err();
    assert!(matches!(err, StoreError::DestinationExists { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_block_fails_verification_and_leaves_nothing() {
    let f = serve_tree().await;
    // The second chunk of data/big.bin: a raw leaf deep in the DAG.
    let chunk = &pattern(3 * CHUNK_SIZE + 17, 1)[CHUNK_SIZE..2 * CHUNK_SIZE];
    let leaf_path = f.root.join("leaf");
    fs::write(&leaf_path, chunk).unwrap();
    let leaf = cid_of_path(&leaf_path).unwrap();
    let block_file = f.store.block_path(&leaf);
    let mut bytes = fs::read(&block_file).unwrap();
    bytes[1000] ^= 0x01;
    fs::write(&block_file, &bytes).unwrap();

    let parent = f.root.join("downloads");
    let dest = parent.join("job-2");
    let err = fetch(&f.url, &f.cid, &dest).await.unwrap_err();
    match &err {
        StoreError::Verification { cid, .. } => assert_eq!(*cid, leaf),
        other => panic!("expected Verification, got {other}"),
    }
    assert!(err.to_string().contains(&leaf.to_string()));
    assert!(!err.is_retryable());
    assert!(!dest.exists(), "no partial destination");
    assert!(leftovers(&parent).is_empty(), "temporary folder removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_falls_back_to_raw_blocks() {
    let f = serve_tree().await;
    // A gateway that refuses CARs (501), so every block comes through ?format=raw.
    async fn no_car(req: Request, next: Next) -> Response {
        if req.uri().query().is_some_and(|q| q.contains("format=car")) {
            return (axum::http::StatusCode::NOT_IMPLEMENTED, "no CARs here").into_response();
        }
        next.run(req).await
    }
    let app = gateway::router(f.store.clone()).layer(middleware::from_fn(no_car));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dest = f.root.join("via-raw");
    fetch(&format!("http://{addr}/"), &f.cid, &dest)
        .await
        .unwrap();
    assert_eq!(snapshot(&dest), snapshot(&f.src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors() {
    let f = serve_tree().await;

    // Content the gateway does not have: 404, not retryable, nothing written.
    let absent = absent_cid(&f.root);
    let dest = f.root.join("absent");
    let err = fetch(&f.url, &absent, &dest).await.unwrap_err();
    assert!(matches!(err, StoreError::Http { status: 404, .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(!dest.exists());

    // Nobody listening: a retryable network error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = fetch(&format!("http://{closed}"), &f.cid, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Network { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(!dest.exists());
    assert!(leftovers(&f.root).is_empty());

    // A gateway missing a block in the middle of the DAG: its CAR breaks off there, the block
    // is then asked for on its own, and the 404 names it.
    let second_chunk = &pattern(3 * CHUNK_SIZE + 17, 1)[CHUNK_SIZE..2 * CHUNK_SIZE];
    let leaf_path = f.root.join("leaf");
    fs::write(&leaf_path, second_chunk).unwrap();
    let leaf = cid_of_path(&leaf_path).unwrap();
    fs::remove_file(f.store.block_path(&leaf)).unwrap();
    let err = fetch(&f.url, &f.cid, &dest).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Http { status: 404, url, .. } if url.contains(&leaf.to_string())),
        "{err}"
    );
    assert!(!dest.exists());
    assert!(leftovers(&f.root).is_empty());

    let err = fetch("ftp://x", &f.cid, &dest).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }));
    let _ = f.addr;
}

/// dag-pb bytes of a folder with the given (name, cid, tsize) links, encoded by hand.
fn dir_block(links: &[(&str, &Cid, u64)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for (name, cid, tsize) in links {
        let c = cid.to_bytes();
        let mut link = vec![0x0a];
        varint(&mut link, c.len() as u64);
        link.extend_from_slice(&c);
        link.push(0x12);
        varint(&mut link, name.len() as u64);
        link.extend_from_slice(name.as_bytes());
        link.push(0x18);
        varint(&mut link, *tsize);
        out.push(0x12);
        varint(&mut out, link.len() as u64);
        out.extend_from_slice(&link);
    }
    out.extend_from_slice(&[0x0a, 0x02, 0x08, 0x01]);
    out
}

fn dag_pb_cid(block: &[u8]) -> Cid {
    // CIDv1 bytes: version 1, codec dag-pb (0x70), sha2-256 (0x12) of 32 bytes, digest.
    let bytes = [&[0x01, 0x70, 0x12, 0x20][..], &Sha256::digest(block)[..]].concat();
    Cid::try_from(bytes.as_slice()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_names_are_refused() {
    let f = serve_tree().await;
    let leaf_file = f.root.join("evil-content");
    fs::write(&leaf_file, b"pwned\n").unwrap();
    let leaf = add_path(&leaf_file, &f.store).unwrap();
    for bad in ["..", "../escape", "a/b", "nul\0byte"] {
        let block = dir_block(&[(bad, &leaf, 6)]);
        let cid = dag_pb_cid(&block);
        f.store.put(&cid, &block).unwrap();
        let parent = f.root.join("traversal");
        let dest = parent.join("dest");
        let err = fetch(&f.url, &cid, &dest).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::UnsafeName { name, .. } if name == bad),
            "{bad:?}: {err}"
        );
        assert!(!err.is_retryable());
        assert!(!dest.exists());
        assert!(!parent.join("escape").exists());
        assert!(leftovers(&parent).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_responses() {
    let f = serve_tree().await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", f.url);
        async move { http.get(url).send().await.unwrap() }
    };

    // A file by path: bytes, ETag = CID of the file.
    let r = get(format!("/ipfs/{}/data/big.bin", f.cid)).await;
    assert_eq!(r.status(), 200);
    let big_cid = cid_of_path(&f.src.join("data/big.bin")).unwrap();
    assert_eq!(r.headers()["etag"], format!("\"{big_cid}\"").as_str());
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        r.headers()["content-length"],
        (3 * CHUNK_SIZE + 17).to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), pattern(3 * CHUNK_SIZE + 17, 1));

    // Unicode path, percent-encoded by the client.
    let r = get(format!(
        "/ipfs/{}/data/%C3%BCn%C3%AFc%C3%B8d%C3%A9/%E5%90%8D%E5%89%8D.txt",
        f.cid
    ))
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "内容");

    // A folder: JSON listing.
    for path in [format!("/ipfs/{}", f.cid), format!("/ipfs/{}/", f.cid)] {
        let r = get(path).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["cid"], f.cid.to_string());
        let entries = v["entries"].as_array().unwrap();
        let names: Vec<_> = entries
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [".hidden", "data", "empty", "logs", "result.json"]);
        assert_eq!(entries[1]["type"], "directory");
        assert_eq!(entries[4]["type"], "file");
        assert_eq!(entries[4]["size"], 11);
        assert_eq!(entries[2]["size"], 0);
    }
    let r = get(format!("/ipfs/{}/data", f.cid)).await;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let big = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "big.bin")
        .unwrap();
    assert_eq!(big["cid"], big_cid.to_string());
    assert_eq!(big["size"], 3 * CHUNK_SIZE + 17);

    // CAR by query and by Accept header; imports into a fresh store with the same root.
    for by_accept in [false, true] {
        let url = if by_accept {
            format!("{}/ipfs/{}", f.url, f.cid)
        } else {
            format!("{}/ipfs/{}?format=car", f.url, f.cid)
        };
        let mut req = http.get(url);
        if by_accept {
            req = req.header("accept", "application/vnd.ipld.car");
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/vnd.ipld.car"));
        let car = r.bytes().await.unwrap();
        let other = DiskBlockstore::open(f.root.join(format!("car-{by_accept}"))).unwrap();
        assert_eq!(import_car(&car[..], &other).unwrap(), vec![f.cid]);
        assert!(other.has(&big_cid).unwrap());
    }

    // Raw block.
    let r = get(format!("/ipfs/{}?format=raw", f.cid)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.ipld.raw");
    assert_eq!(r.bytes().await.unwrap(), f.store.get(&f.cid).unwrap());

    // Conditional request.
    let r = http
        .get(format!("{}/ipfs/{big_cid}", f.url))
        .header("if-none-match", format!("\"{big_cid}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Errors.
    let absent = absent_cid(&f.root).to_string();
    let r = get(format!("/ipfs/{absent}")).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains(&absent));
    let r = get("/ipfs/not-a-cid".into()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not-a-cid"));
    let r = get(format!("/ipfs/{}/nope/x", f.cid)).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("nope"));
    let r = get(format!("/ipfs/{}/result.json/inside", f.cid)).await;
    assert_eq!(r.status(), 404);
    let r = get(format!("/ipfs/{}?format=tar", f.cid)).await;
    assert_eq!(r.status(), 406, "a format this gateway does not serve");
    let r = get(format!("/ipfs/{}?format=zip", f.cid)).await;
    assert_eq!(r.status(), 400, "an unknown format");
    let r = get("/nothing-here".into()).await;
    assert_eq!(r.status(), 404);
}

/// A publisher hands a folder to a writable node as a CAR (`KuboClient::dag_import`, the Kubo
/// RPC call) and anyone then fetches it back verified; a CAR with a forged block is refused and
/// leaves nothing of the forged block in the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_import_into_a_writable_node_then_fetch_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let local = DiskBlockstore::open(dir.path().join("local")).unwrap();
    let root = add_path(&src, &local).unwrap();
    let car = dir.path().join("tree.car");
    lilypad_store::export_car(&local, &root, fs::File::create(&car).unwrap()).unwrap();

    let node = DiskBlockstore::open(dir.path().join("node")).unwrap();
    let (addr, _task) = gateway::serve_writable(node.clone(), "127.0.0.1:0".parse().unwrap(), 64 << 20).await.unwrap();
    let kubo = lilypad_store::KuboClient::new(&format!("http://{addr}")).unwrap();
    assert!(kubo.version().await.unwrap().starts_with("lilypad-store-"));
    let roots = kubo.dag_import(&car).await.unwrap();
    assert_eq!(roots, vec![root]);

    let dest = dir.path().join("back");
    fetch(&format!("http://{addr}"), &root, &dest).await.unwrap();
    assert_eq!(snapshot(&dest), snapshot(&src), "fetched back byte for byte");

    // Flip one byte of the last block's data: the import fails naming the bad block.
    let mut bytes = fs::read(&car).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let forged = dir.path().join("forged.car");
    fs::write(&forged, &bytes).unwrap();
    let empty = DiskBlockstore::open(dir.path().join("node2")).unwrap();
    let (addr2, _task2) = gateway::serve_writable(empty, "127.0.0.1:0".parse().unwrap(), 64 << 20).await.unwrap();
    let kubo2 = lilypad_store::KuboClient::new(&format!("http://{addr2}")).unwrap();
    let err = kubo2.dag_import(&forged).await.unwrap_err().to_string();
    assert!(err.contains("importing the CAR"), "{err}");

    // The read-only gateway has no import route.
    let (ro, _task3) = gateway::serve(node, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let kubo3 = lilypad_store::KuboClient::new(&format!("http://{ro}")).unwrap();
    assert!(kubo3.dag_import(&car).await.is_err(), "read-only gateway refuses imports");
}
