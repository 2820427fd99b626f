//! Modules and image archives from the network: fetched by the CIDs the chain pins, verified
//! block by block, kept in a local cache folder.
//!
//! ```text
//! <cache>/<folder CID>/            a module folder (specHash)
//! <cache>/images/<archive CID>.tar an image archive (imageHash)
//! ```

//!
//! Every fetch runs within [`FetchLimits`] ([`module_fetch_limits`], [`image_fetch_limits`]):
//! the CIDs are chosen by whoever published the module, and content that verifies can still
//! describe a file of a terabyte or a folder of a million entries (a fetch bomb).

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::B256;
use lilypad_store::{Cid, FetchLimits, StoreError};
use tracing::{info, warn};

use crate::{cid_from_spec_hash, ArchiveLimits, Module};

/// Most bytes a module folder fetched by CID may hold (sources, a Dockerfile, small assets;
/// large models belong in the image archive).
pub const MODULE_FOLDER_MAX_BYTES: u64 = 1 << 30;
/// Most files and folders in a module folder fetched by CID.
pub const MODULE_FOLDER_MAX_FILES: u64 = 10_000;
/// Deepest folder nesting in a module folder fetched by CID.
pub const MODULE_FOLDER_MAX_DEPTH: usize = 32;
/// The whole fetch of a module folder.
pub const MODULE_FOLDER_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// The whole fetch of an image archive.
pub const IMAGE_ARCHIVE_DEADLINE: Duration = Duration::from_secs(60 * 60);

/// Blocks a fetch of `max_bytes` in `max_files` may need: chunks of at least 4 KiB (the
/// importer's are 256 KiB), a node or two per file, and room for the DAG's inner nodes.
fn blocks_for(max_bytes: u64, max_files: u64) -> u64 {
    (max_bytes / 4096).saturating_add(max_files.saturating_mul(2)).saturating_add(1024)
}

/// What fetching a module folder (`specHash`) may take: [`MODULE_FOLDER_MAX_BYTES`],
/// [`MODULE_FOLDER_MAX_FILES`], [`MODULE_FOLDER_MAX_DEPTH`], [`MODULE_FOLDER_DEADLINE`].
pub fn module_fetch_limits() -> FetchLimits {
    FetchLimits {
        max_bytes: MODULE_FOLDER_MAX_BYTES,
        max_files: MODULE_FOLDER_MAX_FILES,
        max_blocks: blocks_for(MODULE_FOLDER_MAX_BYTES, MODULE_FOLDER_MAX_FILES),
        max_depth: MODULE_FOLDER_MAX_DEPTH,
        deadline: MODULE_FOLDER_DEADLINE,
    }
}

/// What fetching an image archive (`imageHash`) may take, from the caps its loading will be
/// held to: one file of at most `archive.max_bytes` (the layers) plus two 512-byte tar
/// headers per entry and 64 MiB for the manifest, configs and padding;
/// [`IMAGE_ARCHIVE_DEADLINE`]. An archive too large to pass [`crate::inspect_archive_with`]
/// is refused before it is written.
pub fn image_fetch_limits(archive: &ArchiveLimits) -> FetchLimits {
    let max_bytes = archive
        .max_bytes
        .saturating_add(archive.max_entries.saturating_mul(1024))
        .saturating_add(64 << 20);
    FetchLimits {
        max_bytes,
        max_files: 1,
        max_blocks: blocks_for(max_bytes, 1),
        max_depth: 1,
        deadline: IMAGE_ARCHIVE_DEADLINE,
    }
}

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
/// that has it within [`module_fetch_limits`], and checked against the hash
/// ([`Module::load_pinned`]).
pub async fn fetch_module(spec_hash: B256, gateways: &[String], cache: &Path) -> Result<Module, FetchError> {
    fetch_module_with(spec_hash, gateways, cache, &module_fetch_limits()).await
}

/// [`fetch_module`] within `limits`.
pub async fn fetch_module_with(
    spec_hash: B256,
    gateways: &[String],
    cache: &Path,
    limits: &FetchLimits,
) -> Result<Module, FetchError> {
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
    fetch_into("module", &cid, gateways, &dir, limits).await?;
    let module = Module::load_pinned(&dir, spec_hash).map_err(|e| FetchError::Bad { what: "module", cid, reason: e.to_string() })?;
    info!(module = %module.reference(), %cid, "module fetched");
    Ok(module)
}

/// The image archive pinned by `image_hash`, from the cache or else fetched within
/// [`image_fetch_limits`] of the default [`ArchiveLimits`]. Returns its path.
pub async fn fetch_image_archive(image_hash: B256, gateways: &[String], cache: &Path) -> Result<PathBuf, FetchError> {
    fetch_image_archive_with(image_hash, gateways, cache, &image_fetch_limits(&ArchiveLimits::default())).await
}

/// [`fetch_image_archive`] within `limits`.
pub async fn fetch_image_archive_with(
    image_hash: B256,
    gateways: &[String],
    cache: &Path,
    limits: &FetchLimits,
) -> Result<PathBuf, FetchError> {
    let cid = cid_from_spec_hash(image_hash);
    let images = cache.join("images");
    let path = images.join(format!("{cid}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&images).map_err(|source| FetchError::Io { path: images.clone(), source })?;
    let tmp = images.join(format!("{cid}.fetching"));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = fetch_into("image archive", &cid, gateways, &tmp, limits).await {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
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

async fn fetch_into(
    what: &'static str,
    cid: &Cid,
    gateways: &[String],
    dest: &Path,
    limits: &FetchLimits,
) -> Result<(), FetchError> {
    let mut last = None;
    for gateway in gateways {
        match lilypad_store::fetch_with(gateway, cid, dest, limits).await {
            Ok(_) => return Ok(()),
            // Content over the limits is the same content at every gateway: do not download
            // it again from the next one.
            Err(e @ StoreError::LimitExceeded { .. }) => {
                warn!(%gateway, %cid, error = %e, "refused: over the fetch limits");
                return Err(FetchError::Store { what, cid: *cid, source: Box::new(e) });
            }
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
