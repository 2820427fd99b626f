//! Fetch bombs (issue 18): content that verifies against its CIDs but would make a fetch write,
//! keep or wait without bound. Each case runs against a real gateway on 127.0.0.1 and must end
//! with a clear error, quickly, leaving nothing behind.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lilypad_store::{
    export_car, fetch_with, gateway, import_car, Cid, DiskBlockstore, FetchLimits, StoreError,
};
use sha2::{Digest, Sha256};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn cid_of(codec: u8, block: &[u8]) -> Cid {
    let bytes = [&[0x01, codec, 0x12, 0x20][..], &Sha256::digest(block)[..]].concat();
    Cid::try_from(bytes.as_slice()).unwrap()
}

fn raw(data: &[u8]) -> Cid {
    cid_of(0x55, data)
}

/// dag-pb node with `links` (cid, name, tsize) and UnixFS `data`, encoded as Kubo does.
fn pb_node(links: &[(Cid, &str, u64)], unixfs: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (cid, name, tsize) in links {
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
    out.push(0x0a);
    varint(&mut out, unixfs.len() as u64);
    out.extend_from_slice(unixfs);
    out
}

/// A UnixFS file node over `children` (cid, declared size), declaring `filesize`.
fn file_node(children: &[(Cid, u64)], filesize: u64) -> Vec<u8> {
    let mut fs = vec![0x08, 0x02, 0x18];
    varint(&mut fs, filesize);
    for (_, size) in children {
        fs.push(0x20);
        varint(&mut fs, *size);
    }
    let links: Vec<_> = children.iter().map(|(c, s)| (*c, "", *s)).collect();
    pb_node(&links, &fs)
}

fn dir_node(entries: &[(String, Cid)]) -> Vec<u8> {
    let links: Vec<_> = entries.iter().map(|(n, c)| (*c, n.as_str(), 1)).collect();
    pb_node(&links, &[0x08, 0x01])
}

fn put(store: &DiskBlockstore, codec: u8, block: &[u8]) -> Cid {
    let cid = cid_of(codec, block);
    store.put(&cid, block).unwrap();
    cid
}

async fn serve(store: &DiskBlockstore) -> String {
    let (addr, _task) = gateway::serve(store.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    format!("http://{addr}")
}

fn leftovers(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| d.filter(|e| e.is_ok()).count())
        .unwrap_or(0)
}

fn limits(max_bytes: u64, max_files: u64, max_blocks: u64, secs: u64) -> FetchLimits {
    FetchLimits {
        max_bytes,
        max_files,
        max_blocks,
        max_depth: 64,
        deadline: Duration::from_secs(secs),
    }
}

/// The bomb: three blocks, about 1 MB as a CAR, that describe a 1 GiB file (a node
/// linking one 1 MiB leaf 32 times, linked 32 times by the root). Refused from the declared
/// size before a byte is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_block_car_declaring_a_gibibyte_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let leaf = vec![7u8; 1 << 20];
    let leaf_cid = put(&store, 0x55, &leaf);
    let mid = put(
        &store,
        0x70,
        &file_node(&vec![(leaf_cid, 1 << 20); 32], 32 << 20),
    );
    let root = put(
        &store,
        0x70,
        &file_node(&vec![(mid, 32 << 20); 32], 1 << 30),
    );
    let mut car = Vec::new();
    assert_eq!(export_car(&store, &root, &mut car).unwrap(), 3);
    assert!(
        car.len() < 1_100_000,
        "the CAR is about 1 MB: {}",
        car.len()
    );

    let url = serve(&store).await;
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let err = fetch_with(
        &url,
        &root,
        &out.join("dest"),
        &limits(100 << 20, 1000, 1000, 30),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::LimitExceeded { what, .. } if what.contains("declare")),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(leftovers(&out), 0, "nothing written");
}

/// The same blocks with a root that lies about its size (2 MiB in two children) while linking
/// the 32 MiB node: caught at the first child, not after streaming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lying_about_its_size_is_caught_at_the_first_child() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let leaf_cid = put(&store, 0x55, &vec![7u8; 1 << 20]);
    let mid = put(
        &store,
        0x70,
        &file_node(&vec![(leaf_cid, 1 << 20); 32], 32 << 20),
    );
    let root = put(
        &store,
        0x70,
        &file_node(&[(mid, 1 << 20), (mid, 1 << 20)], 2 << 20),
    );
    let url = serve(&store).await;
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = fetch_with(
        &url,
        &root,
        &out.join("dest"),
        &limits(100 << 20, 1000, 1000, 30),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::Malformed { reason, .. } if reason.contains("parent says")),
        "{err}"
    );
    assert_eq!(leftovers(&out), 0);
}

/// A folder DAG bomb: six levels of folders, each linking the next one 100 times under
/// different names (10^12 files from 7 blocks). Stopped at the file limit while counting,
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_bomb_stops_at_the_file_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let mut child = put(&store, 0x55, b"x");
    for _ in 0..6 {
        let entries: Vec<_> = (0..100).map(|i| (format!("e{i:02}"), child)).collect();
        child = put(&store, 0x70, &dir_node(&entries));
    }
    let url = serve(&store).await;
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let err = fetch_with(
        &url,
        &child,
        &out.join("dest"),
        &limits(1 << 30, 10_000, 1000, 60),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::LimitExceeded { what, .. } if what.contains("files and folders")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(leftovers(&out), 0);

    // Nesting deeper than the depth limit is refused too.
    let mut deep = put(&store, 0x55, b"y");
    for _ in 0..80 {
        deep = put(&store, 0x70, &dir_node(&[("d".to_string(), deep)]));
    }
    let err = fetch_with(
        &url,
        &deep,
        &out.join("deep"),
        &limits(1 << 30, 10_000, 1000, 60),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::LimitExceeded { what, .. } if what.contains("nested")),
        "{err}"
    );
}

/// A CAR carrying 2,000 blocks outside the DAG: they count against the block limit, and
/// what is imported keeps only the DAG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn car_blocks_outside_the_dag_are_counted_and_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let a = put(&store, 0x55, b"hello\n");
    let root = put(&store, 0x70, &dir_node(&[("a.txt".to_string(), a)]));
    let mut car = Vec::new();
    export_car(&store, &root, &mut car).unwrap();
    let mut junk = Vec::new();
    for i in 0..2000u32 {
        let block = format!("junk block {i} {}", "z".repeat(1000)).into_bytes();
        let cid = raw(&block);
        let bytes = cid.to_bytes();
        varint(&mut car, (bytes.len() + block.len()) as u64);
        car.extend_from_slice(&bytes);
        car.extend_from_slice(&block);
        junk.push(cid);
    }

    // Imported: the DAG's two blocks, none of the junk.
    let imported = DiskBlockstore::open(tmp.path().join("imported")).unwrap();
    assert_eq!(import_car(&car[..], &imported).unwrap(), vec![root]);
    assert!(imported.has(&root).unwrap() && imported.has(&a).unwrap());
    assert!(junk.iter().all(|j| !imported.has(j).unwrap()));

    // Served by a gateway that appends the junk to every CAR.
    let car = bytes::Bytes::from(car);
    let app = Router::new().route(
        "/ipfs/{cid}",
        get(move || {
            let car = car.clone();
            async move {
                (
                    [("content-type", "application/vnd.ipld.car; version=1")],
                    car,
                )
                    .into_response()
            }
        }),
    );
    let addr = spawn(app).await;
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = fetch_with(
        &format!("http://{addr}"),
        &root,
        &out.join("d"),
        &limits(1 << 20, 100, 500, 30),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::LimitExceeded { what, .. } if what.contains("blocks received")),
        "{err}"
    );
    assert_eq!(leftovers(&out), 0);
    // With room for them, the fetch succeeds with just the folder's file.
    let files = fetch_with(
        &format!("http://{addr}"),
        &root,
        &out.join("d"),
        &limits(1 << 20, 100, 5000, 30),
    )
    .await
    .unwrap();
    assert_eq!(files, vec![out.join("d/a.txt")]);
}

async fn spawn(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A gateway that starts a CAR and then trickles a byte every 200 ms for ever (under any read
/// timeout), and one that never answers: the overall deadline ends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_gateway_hits_the_deadline() {
    async fn trickle() -> Response {
        let stream = futures_util::stream::unfold(0u64, |n| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // A header length that never completes: 0xff continuation bytes.
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[0xff])),
                n + 1,
            ))
        });
        (
            [("content-type", "application/vnd.ipld.car; version=1")],
            Body::from_stream(stream),
        )
            .into_response()
    }
    async fn silent() -> Response {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "late".into_response()
    }
    let tmp = tempfile::tempdir().unwrap();
    let cid = raw(b"anything");
    for app in [
        Router::new().route("/ipfs/{cid}", get(trickle)),
        Router::new().route("/ipfs/{cid}", get(silent)),
    ] {
        let addr = spawn(app).await;
        let out = tmp.path().join(format!("out-{}", addr.port()));
        fs::create_dir(&out).unwrap();
        let started = Instant::now();
        let err = fetch_with(
            &format!("http://{addr}"),
            &cid,
            &out.join("d"),
            &limits(1 << 20, 10, 10, 2),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::DeadlineExceeded { .. }), "{err}");
        assert!(err.is_retryable());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(6),
            "{took:?}"
        );
        // The temporary folder goes when its last writer (a blocking task fed by the dropped
        // download) sees the end of its input: at once, or a moment later on a loaded machine.
        let waited = Instant::now();
        while leftovers(&out) != 0 && waited.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(leftovers(&out), 0, "the fetch's temporary folder outlived its writers");
    }
}
