//! Modules and image archives from the network: fetched by the CIDs the chain pins, verified
//! block by block, kept in a local cache folder.
//!
//! ```text
//! <cache>/<folder CID>/            a module folder (specHash)
//! <cache>/images/<archive CID>.tar an image archive (imageHash)
//! ```

use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use lilypad_store::{Cid, StoreError};
use tracing::{info, warn};

use crate::{cid_from_spec_hash, Module};

/// Fetching a module or its image failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no IPFS gateway is configured to fetch {what} {cid} from (set one: --ipfs-gateway / LILYPAD_IPFS_GATEWAY)")]
    NoGateway { what: &'static str, cid: Cid },
    #[error("fetching {what} {cid}: every gateway failed; last: {source}")]
    Store {
        what: &'static str,
        cid: Cid,
        #[source]
        source: Box<StoreError>,
    },
    #[error("{what} {cid}: {reason}")]
    Bad { what: &'static str, cid: Cid, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// Worth trying again (the gateways were unreachable, a disk hiccup).
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Store { source, .. } => source.is_retryable(),
            FetchError::Io { .. } => true,
            FetchError::NoGateway { .. } | FetchError::Bad { .. } => false,
        }
    }
}

/// The module pinned by `spec_hash`, from the cache or else fetched from the first gateway
/// that has it, and checked against the hash ([`Module::load_pinned`]).
pub async fn fetch_module(spec_hash: B256, gateways: &[String], cache: &Path) -> Result<Module, FetchError> {
    let cid = cid_from_spec_hash(spec_hash);
    let dir = cache.join(cid.to_string());
    if dir.join(crate::SPEC_FILE).is_file() {
        if let Ok(m) = Module::load_pinned(&dir, spec_hash) {
            return Ok(m);
        }
        warn!(dir = %dir.display(), "cached module folder does not match its hash; fetching it again");
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(cache).map_err(|source| FetchError::Io { path: cache.to_path_buf(), source })?;
    fetch_into("module", &cid, gateways, &dir).await?;
    let module = Module::load_pinned(&dir, spec_hash).map_err(|e| FetchError::Bad { what: "module", cid, reason: e.to_string() })?;
    info!(module = %module.reference(), %cid, "module fetched");
    Ok(module)
}

/// The image archive pinned by `image_hash`, from the cache or else fetched. Returns its path.
pub async fn fetch_image_archive(image_hash: B256, gateways: &[String], cache: &Path) -> Result<PathBuf, FetchError> {
    let cid = cid_from_spec_hash(image_hash);
    let images = cache.join("images");
    let path = images.join(format!("{cid}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&images).map_err(|source| FetchError::Io { path: images.clone(), source })?;
    let tmp = images.join(format!("{cid}.fetching"));
    let _ = std::fs::remove_dir_all(&tmp);
    fetch_into("image archive", &cid, gateways, &tmp).await?;
    // A single file is written as `<dest>/<cid>`.
    let file = tmp.join(cid.to_string());
    if !file.is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(FetchError::Bad { what: "image archive", cid, reason: "is a folder, not a file".into() });
    }
    std::fs::rename(&file, &path).map_err(|source| FetchError::Io { path: path.clone(), source })?;
    let _ = std::fs::remove_dir_all(&tmp);
    info!(%cid, path = %path.display(), "image archive fetched");
    Ok(path)
}

async fn fetch_into(what: &'static str, cid: &Cid, gateways: &[String], dest: &Path) -> Result<(), FetchError> {
    let mut last = None;
    for gateway in gateways {
        match lilypad_store::fetch(gateway, cid, dest).await {
            Ok(_) => return Ok(()),
            Err(e @ StoreError::Verification { .. }) => {
                warn!(%gateway, %cid, error = %e, "gateway served bad blocks");
                last = Some(e);
            }
            Err(e) => {
                warn!(%gateway, %cid, error = %e, "gateway failed");
                last = Some(e);
            }
        }
    }
    match last {
        Some(source) => Err(FetchError::Store { what, cid: *cid, source: Box::new(source) }),
        None => Err(FetchError::NoGateway { what, cid: *cid }),
    }
}
