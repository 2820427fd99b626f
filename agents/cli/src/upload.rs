//! `lilypad run -i Name=@path`: a local file or folder given for a file or folder input (`cid`)
//! is imported into UnixFS (the CIDs `ipfs add -r --cid-version=1` prints), put on the IPFS node
//! providers fetch from (as `lilypad module publish` puts module folders there), and passed to
//! the job by its CID.

use std::path::{Path, PathBuf};

use eyre::WrapErr;
use lilypad_module::{InputType, Module};

/// Why a `@path` input could not be put on IPFS: the user's to fix, or the node's.
pub enum UploadFailure {
    BadInput(String),
    Infra(String),
}

/// `items` with every `Name=@path` replaced by `Name=<cid>` once the path is on the IPFS node
/// at `api`. With the module's folder known (`module`), `@` is taken only for its `cid`
/// inputs (a string input may start with `@`) and each path is checked against the input's
/// `maxBytes` before anything is uploaded; without it, an `@path` that exists is imported and
/// the provider checks it.
pub async fn put_local_inputs(items: &[String], module: Option<&Module>, api: Option<&str>) -> Result<Vec<String>, UploadFailure> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            out.push(item.clone());
            continue;
        };
        let Some(path) = value.strip_prefix('@') else {
            out.push(item.clone());
            continue;
        };
        let mut cap = None;
        match module.map(|m| m.inputs().iter().find(|d| d.name == key)) {
            // a string input may well start with '@'; an unknown name is the input check's
            Some(Some(d)) if d.ty == InputType::Cid => cap = d.max_bytes,
            Some(_) => {
                out.push(item.clone());
                continue;
            }
            // no folder to tell: an existing path is taken as one
            None if !Path::new(path).exists() => {
                out.push(item.clone());
                continue;
            }
            None => {}
        }
        let cid = put_path(key, Path::new(path), cap, api).await?;
        println!("📦 {path} is {cid} (input {key})");
        out.push(format!("{key}={cid}"));
    }
    Ok(out)
}

/// Imports `path` and puts it on the node at `api`; refuses a missing path, a path over `cap`
/// bytes, and a missing node before uploading anything.
async fn put_path(key: &str, path: &Path, cap: Option<u64>, api: Option<&str>) -> Result<lilypad_store::Cid, UploadFailure> {
    let bad = UploadFailure::BadInput;
    if path.as_os_str().is_empty() {
        return Err(bad(format!("input {key}=@ names no path: give {key}=@<file or folder>")));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| bad(format!("input {key}: cannot read {}: {e}", path.display())))?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(bad(format!("input {key}: {} is neither a file nor a folder", path.display())));
    }
    let owned: PathBuf = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || size_of(&owned))
        .await
        .map_err(|e| UploadFailure::Infra(format!("measuring {}: {e}", path.display())))?
        .map_err(|e| bad(format!("input {key}: reading {}: {e}", path.display())))?;
    if let Some(cap) = cap.filter(|cap| bytes > *cap) {
        return Err(bad(format!(
            "input {key}: {} holds {bytes} bytes, and the module takes at most {cap} for this input (its maxBytes): give a smaller file or folder",
            path.display()
        )));
    }
    let Some(api) = api else {
        return Err(bad(format!(
            "input {key}: no IPFS node to put {} on: pass --ipfs-api <Kubo RPC URL> (or set ipfs_api in the config file), or give the CID of content providers can fetch",
            path.display()
        )));
    };
    let infra = |e: eyre::Report| UploadFailure::Infra(format!("input {key}: putting {} on {api}: {e:#}", path.display()));
    let kubo = lilypad_store::KuboClient::new(api).map_err(|e| infra(e.into()))?;
    let work = tempfile::tempdir().wrap_err("temporary folder").map_err(infra)?;
    let store = lilypad_store::DiskBlockstore::open(work.path().join("blocks")).map_err(|e| infra(e.into()))?;
    let (p, s) = (path.to_path_buf(), store.clone());
    let root = tokio::task::spawn_blocking(move || lilypad_store::add_path(&p, &s).map_err(|e| e.to_string()))
        .await
        .map_err(|e| infra(eyre::eyre!("the import task failed: {e}")))?
        .map_err(|e| bad(format!("input {key}: importing {}: {e}", path.display())))?;
    crate::publish::import_root(&kubo, api, &store, work.path(), root, &format!("input {key}")).await.map_err(infra)?;
    Ok(root)
}

/// Bytes of the regular files under `path` (what the provider's fetch counts against the cap).
fn size_of(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut total = 0u64;
        for entry in std::fs::read_dir(path)? {
            total = total.saturating_add(size_of(&entry?.path())?);
        }
        Ok(total)
    } else {
        Ok(if meta.is_file() { meta.len() } else { 0 })
    }
}
