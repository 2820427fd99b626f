//! Fetch bombs against a provider's module and image-archive fetches (issue 18): content that
//! verifies against the CID the chain pins but describes far more than a module may hold. Each
//! is served by a real gateway on 127.0.0.1 and must be refused quickly, before it is written,
//! leaving nothing in the cache.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use lilypad_module::{
    fetch_image_archive, fetch_module, image_fetch_limits, module_fetch_limits, spec_hash_of, ArchiveLimits, FetchError,
};
use lilypad_store::{gateway, Cid, DiskBlockstore, StoreError};
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

/// A dag-pb node with `links` (cid, name, tsize) and UnixFS `data`, encoded as Kubo does.
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

/// A UnixFS file node linking `child` (of `child_size` bytes) `times` times.
fn file_node(child: Cid, child_size: u64, times: usize) -> Vec<u8> {
    let mut fs = vec![0x08, 0x02, 0x18];
    varint(&mut fs, child_size * times as u64);
    for _ in 0..times {
        fs.push(0x20);
        varint(&mut fs, child_size);
    }
    let links = vec![(child, "", child_size); times];
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

/// A file of `leaves * per_mid` times 256 KiB, in three blocks: one leaf, a node linking it
/// `per_mid` times, a root linking that node `mids` times.
fn bomb_file(store: &DiskBlockstore, per_mid: usize, mids: usize) -> (Cid, u64) {
    let leaf = vec![0x42u8; 256 << 10];
    let leaf_cid = put(store, 0x55, &leaf);
    let mid_size = (256u64 << 10) * per_mid as u64;
    let mid = put(store, 0x70, &file_node(leaf_cid, 256 << 10, per_mid));
    let root = put(store, 0x70, &file_node(mid, mid_size, mids));
    (root, mid_size * mids as u64)
}

async fn serve(store: &DiskBlockstore) -> String {
    let (addr, _task) = gateway::serve(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    format!("http://{addr}")
}

fn hash_of(cid: &Cid) -> B256 {
    spec_hash_of(cid).unwrap()
}

fn assert_limit(err: FetchError, started: Instant, what: &str) {
    assert!(started.elapsed() < Duration::from_secs(20), "{what}: refused only after {:?}", started.elapsed());
    assert!(!err.is_retryable(), "{what}: a bomb is refused for good: {err}");
    match err {
        FetchError::Store { source, .. } => {
            assert!(matches!(*source, StoreError::LimitExceeded { .. }), "{what}: expected a limit, got {source}")
        }
        other => panic!("{what}: expected a limit, got {other}"),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// A module folder whose spec file declares 2 GiB (three blocks) is refused before a byte is
/// written, from the declared size, and the cache keeps nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_folder_declaring_gibibytes_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let (file, size) = bomb_file(&store, 64, 128);
    assert!(size > module_fetch_limits().max_bytes);
    let root = put(&store, 0x70, &dir_node(&[("lilypad-module.json".to_string(), file)]));
    let url = serve(&store).await;
    let cache = tmp.path().join("cache");

    let started = Instant::now();
    let err = fetch_module(hash_of(&root), &[url], &cache).await.unwrap_err();
    assert_limit(err, started, "2 GiB module folder");
    assert!(entries(&cache).is_empty(), "the cache holds {:?}", entries(&cache));
}

/// A module folder naming one empty file under more names than a module may hold is refused
/// from the count, before any is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_folder_with_too_many_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let empty = put(&store, 0x70, &pb_node(&[], &[0x08, 0x02, 0x18, 0x00]));
    let n = module_fetch_limits().max_files as usize + 1;
    let names: Vec<_> = (0..n).map(|i| (format!("f{i:05}"), empty)).collect();
    let root = put(&store, 0x70, &dir_node(&names));
    let url = serve(&store).await;
    let cache = tmp.path().join("cache");

    let started = Instant::now();
    let err = fetch_module(hash_of(&root), &[url], &cache).await.unwrap_err();
    assert_limit(err, started, "module folder of 10,001 files");
    assert!(entries(&cache).is_empty(), "the cache holds {:?}", entries(&cache));
}

/// An image archive declaring 32 GiB (over what loading would accept) is refused before it is
/// written, and the images folder keeps no partial archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_archive_over_the_archive_caps_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let (file, size) = bomb_file(&store, 4096, 32);
    assert!(size > image_fetch_limits(&ArchiveLimits::default()).max_bytes);
    let url = serve(&store).await;
    let cache = tmp.path().join("cache");

    let started = Instant::now();
    let err = fetch_image_archive(hash_of(&file), &[url], &cache).await.unwrap_err();
    assert_limit(err, started, "32 GiB image archive");
    assert!(entries(&cache.join("images")).is_empty(), "images holds {:?}", entries(&cache.join("images")));
}

/// Within its limits the same path still fetches: a small module folder is written and
/// checked against its hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_folder_within_the_limits_is_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("lilysay");
    std::fs::create_dir(&folder).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules/lilysay");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), folder.join(entry.file_name())).unwrap();
        }
    }
    let module = lilypad_module::Module::load(&folder).unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let cid = lilypad_store::add_path(&folder, &store).unwrap();
    assert_eq!(&cid, module.cid());
    let url = serve(&store).await;

    let fetched = fetch_module(module.spec_hash(), &[url], &tmp.path().join("cache")).await.unwrap();
    assert_eq!(fetched.reference().to_string(), module.reference().to_string());
}
