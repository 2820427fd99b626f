//! Cross-checks our CIDs against an independent implementation: the JavaScript UnixFS importer
//! (`ipfs-unixfs-importer`, used by the JS IPFS stacks), configured as Kubo's
//! `ipfs add -r --cid-version=1` (see tests/js/cid.mjs for the options).
//!
//! Needs `node` and `npm`; the packages are installed by the test itself into tests/js
//! (`npm ci`, from the committed package-lock.json) when tests/js/node_modules is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lilypad_store::{add_path, cid_of_path, DiskBlockstore, CHUNK_SIZE, MAX_LINKS};

/// Deterministic bytes that differ from chunk to chunk (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, data).unwrap();
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Installs the JS importer into tests/js/node_modules if it is not there yet (once per test
/// process: tests run in parallel and two `npm ci` in one folder break each other).
fn ensure_js_importer() {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = js_dir();
    if dir
        .join("node_modules/ipfs-unixfs-importer/package.json")
        .is_file()
        && dir
            .join("node_modules/blockstore-core/package.json")
            .is_file()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .expect("npm is needed to install the JS importer for the CID cross-check");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// CIDs the JS importer gives for `paths`, in order.
fn js_cids(paths: &[PathBuf]) -> Vec<String> {
    ensure_js_importer();
    let out = Command::new("node")
        .arg(js_dir().join("cid.mjs"))
        .args(paths)
        .output()
        .expect("node is needed for the CID cross-check");
    assert!(
        out.status.success(),
        "cid.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let cids: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(
        cids.len(),
        paths.len(),
        "one CID per path from cid.mjs: {text}"
    );
    cids
}

#[test]
fn cids_match_the_js_importer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut paths: Vec<PathBuf> = Vec::new();

    // Single files around the chunk and tree boundaries.
    let sizes = [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        2 * CHUNK_SIZE,
        5_000_000,
        MAX_LINKS * CHUNK_SIZE,
        MAX_LINKS * CHUNK_SIZE + 1,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let p = root.join(format!("file-{size}"));
        write(&p, &pseudo_random(*size, i as u64 + 1));
        paths.push(p);
    }
    let hello = root.join("hello");
    write(&hello, b"hello\n");
    paths.push(hello);

    // A folder with a bit of everything.
    let tree = root.join("tree");
    write(&tree.join("a.txt"), b"hello\n");
    write(&tree.join("B.txt"), b"upper case sorts first\n");
    write(&tree.join("a-b"), b"dash\n");
    write(&tree.join("a b"), b"space\n");
    write(&tree.join(".hidden"), b"dotfile\n");
    write(&tree.join("empty-file"), b"");
    fs::create_dir_all(tree.join("empty-folder")).unwrap();
    write(&tree.join("données/résumé.txt"), "naïve café".as_bytes());
    write(
        &tree.join("données/日本語/データ.bin"),
        &pseudo_random(CHUNK_SIZE + 7, 20),
    );
    write(&tree.join("emoji 😀/x"), b"x");
    write(&tree.join("deep/a/b/c/d/e/f/g.txt"), b"deep\n");
    write(&tree.join("sub/exact"), &pseudo_random(CHUNK_SIZE, 21));
    write(
        &tree.join("sub/minus-one"),
        &pseudo_random(CHUNK_SIZE - 1, 22),
    );
    write(
        &tree.join("sub/two-chunks"),
        &pseudo_random(2 * CHUNK_SIZE + 1, 23),
    );
    write(&tree.join("sub/same-as-a.txt"), b"hello\n");
    paths.push(tree.clone());

    // A folder holding a 5 MB file, nested.
    let big = root.join("big");
    write(
        &big.join("inner/five-mb.bin"),
        &pseudo_random(5_000_000, 30),
    );
    write(&big.join("readme"), b"outputs\n");
    paths.push(big);

    // Root-level special cases.
    let empty = root.join("empty-root");
    fs::create_dir_all(&empty).unwrap();
    paths.push(empty);
    let only_empty = root.join("only-empty-sub");
    fs::create_dir_all(only_empty.join("nothing")).unwrap();
    paths.push(only_empty);
    let one = root.join("one-file");
    write(&one.join("f"), b"one\n");
    paths.push(one);

    // A folder with many entries (one block, well under the HAMT threshold).
    let many = root.join("many");
    for i in 0..300 {
        write(
            &many.join(format!("entry-{i:04}")),
            format!("{i}\n").as_bytes(),
        );
    }
    paths.push(many);

    // A nested path given directly (the root is the sub-folder, named by its own name).
    paths.push(tree.join("données"));

    let expected = js_cids(&paths);
    let mut mismatches = Vec::new();
    for (path, js) in paths.iter().zip(&expected) {
        let ours = cid_of_path(path).unwrap().to_string();
        if &ours != js {
            mismatches.push(format!("{}: ours {ours}, JS {js}", path.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "CID mismatches:\n{}",
        mismatches.join("\n")
    );

    // Known answers.
    let hello_idx = paths.iter().position(|p| p.ends_with("hello")).unwrap();
    assert_eq!(
        expected[hello_idx],
        "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
    );
    let empty_idx = paths
        .iter()
        .position(|p| p.ends_with("empty-root"))
        .unwrap();
    assert_eq!(
        expected[empty_idx],
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    );
    assert_eq!(
        expected[0], "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "empty file is the empty raw block"
    );

    // Writing blocks gives the same root as hashing only.
    let store = DiskBlockstore::open(root.join("store")).unwrap();
    let tree_idx = paths.iter().position(|p| p == &tree).unwrap();
    assert_eq!(
        add_path(&tree, &store).unwrap().to_string(),
        expected[tree_idx]
    );
}

/// HAMT-sharded folders (Kubo's autosharding: links estimate > 256 KiB, fanout 256,
/// murmur3-x64-64): the JS importer with Kubo's defaults must give the same CIDs, on both sides
/// of the threshold.
#[test]
fn sharded_folder_cids_match_the_js_importer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut paths: Vec<PathBuf> = Vec::new();

    // 4,000 outputs with 32-byte names: 4000 * (32 + 36) = 272,000 bytes of links: sharded.
    let outputs = root.join("four-thousand");
    for i in 0..4000 {
        write(
            &outputs.join(format!("{i:04}-lilypad-output-result.json")),
            format!("{{\"i\": {i}}}\n").as_bytes(),
        );
    }
    paths.push(outputs.clone());

    // Around the threshold: 28-byte names make each entry exactly 64 bytes, so 4,096 entries
    // are exactly 262,144 (not over: one block) and 4,097 are over (a HAMT).
    for count in [4095usize, 4096, 4097] {
        let dir = root.join(format!("threshold-{count}"));
        for i in 0..count {
            write(&dir.join(format!("{i:028}")), b"");
        }
        paths.push(dir);
    }

    // A sharded folder far over the threshold holding sub-folders (one of them sharded too, one
    // empty), files of several chunks and names that are not ASCII.
    let mixed = root.join("mixed");
    // 2,800 * (60 + 36) = 268,800 bytes of links, with the sub-folders below on top.
    for i in 0..2800 {
        write(
            &mixed.join(format!(
                "{i:05}-an-entry-whose-name-is-sixty-bytes-long-0123456789abcd"
            )),
            &pseudo_random(i % 700, i as u64),
        );
    }
    for i in 0..2800 {
        write(
            &mixed.join(format!(
                "nested/{i:05}-inner-sharded-folder-entry-sixty-bytes-long-0123456789"
            )),
            format!("{i}").as_bytes(),
        );
    }
    fs::create_dir_all(mixed.join("empty-folder")).unwrap();
    write(&mixed.join("small/a.txt"), b"hello\n");
    write(&mixed.join("données/résumé.txt"), "naïve".as_bytes());
    write(
        &mixed.join("big.bin"),
        &pseudo_random(3 * CHUNK_SIZE + 11, 99),
    );
    paths.push(mixed.clone());

    let expected = js_cids(&paths);
    let mut mismatches = Vec::new();
    for (path, js) in paths.iter().zip(&expected) {
        let ours = cid_of_path(path).unwrap().to_string();
        if &ours != js {
            mismatches.push(format!("{}: ours {ours}, JS {js}", path.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "CID mismatches:\n{}",
        mismatches.join("\n")
    );
    // The 4,096 and 4,097 folders differ in kind, not just in one entry: the JS importer shards
    // only the latter (checked by the CIDs above); and writing blocks gives the same root.
    let store = DiskBlockstore::open(root.join("store")).unwrap();
    assert_eq!(add_path(&mixed, &store).unwrap().to_string(), expected[4]);
}
