//! Image archives: a module's image as a `docker save` tar, published by CID and pinned on
//! chain (`ModuleSpec.imageHash`), so providers that cannot reach a registry (or should not
//! run a module's build commands on their host) get the exact image from the network itself.
//!
//! Loading an archive is guarded (see [`crate::archive`]): it is read strictly first (no
//! `..`, absolute or duplicate entry names, one image, layers walked within
//! [`ArchiveLimits`] before the engine sees a byte), and the engine is then given an archive
//! written here holding only that image's config and layers, without any name. The image is
//! tagged [`Module::image_tag`] by us, and the engine must report the id we computed.
//!
//! Whoever runs a module records the [`ModuleImage`] (tag and id) it prepared, starts
//! containers by the id, and calls [`ModuleImage::verify`] before each run.

use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use lilypad_executor::Executor;
use lilypad_store::Cid;
use tracing::{info, warn};

use crate::archive::{self, Problem};
pub use crate::archive::{ArchiveInfo, ArchiveLimits};
use crate::{spec_hash_of, Module};

/// What went wrong with an image archive.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The archive cannot be read (a local I/O problem). Retryable.
    #[error("image archive {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The archive is not one this module may load. Fatal: the bytes pinned are wrong.
    #[error("image archive of {module}: {reason}")]
    Refused { module: String, reason: String },
    /// The engine failed to save, load or tag.
    #[error("image archive of {module}: {source}")]
    Docker {
        module: String,
        #[source]
        source: Box<lilypad_executor::ExecError>,
    },
    /// The engine's image for the module is not the one recorded when it was prepared.
    #[error(
        "image of {module}: the engine's {tag} is {found}, not the image {expected} prepared for the \
         module (re-tagged or removed since): prepare the image again"
    )]
    Changed { module: String, tag: String, expected: String, found: String },
    /// Adding the archive to the content store failed.
    #[error("image archive {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: Box<lilypad_store::StoreError>,
    },
}

impl ImageError {
    /// Worth trying again later (a local I/O or engine hiccup), as opposed to a bad archive.
    pub fn is_retryable(&self) -> bool {
        match self {
            ImageError::Io { .. } => true,
            ImageError::Docker { source, .. } => source.is_retryable(),
            ImageError::Store { source, .. } => source.is_retryable(),
            ImageError::Refused { .. } | ImageError::Changed { .. } => false,
        }
    }
}

/// A saved, content-addressed image archive.
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub path: PathBuf,
    /// Its UnixFS CID (what `ipfs add --cid-version=1` prints for the file).
    pub cid: Cid,
    /// What `ModuleSpec.imageHash` pins: the sha2-256 digest inside [`Self::cid`].
    pub image_hash: B256,
    pub image_id: String,
    pub bytes: u64,
}

/// A module's image in the engine, as it was prepared (built or loaded): record it per module,
/// start containers by [`Self::id`], and [`Self::verify`] it before each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleImage {
    /// [`Module::image_tag`].
    pub tag: String,
    /// The engine's image id (`sha256:<hex>`).
    pub id: String,
}

impl ModuleImage {
    /// Checks that the engine still holds this image and that the module's tag still names it.
    /// A tag moved to another image (or an image removed) is [`ImageError::Changed`]: do not
    /// run; prepare the image again.
    pub async fn verify(&self, module: &Module, executor: &Executor) -> Result<(), ImageError> {
        let docker = |source| ImageError::Docker { module: module.reference().to_string(), source: Box::new(source) };
        let changed = |found: String| ImageError::Changed {
            module: module.reference().to_string(),
            tag: self.tag.clone(),
            expected: self.id.clone(),
            found,
        };
        if !executor.has_image(&self.id).await.map_err(docker)? {
            return Err(changed("gone".into()));
        }
        if !executor.has_image(&self.tag).await.map_err(docker)? {
            return Err(changed("missing".into()));
        }
        let now = executor.image_id_of(&self.tag).await.map_err(docker)?;
        if now != self.id {
            return Err(changed(format!("image {now}")));
        }
        Ok(())
    }
}

/// The image the engine holds under [`Module::image_tag`], if any.
pub async fn module_image(module: &Module, executor: &Executor) -> Result<Option<ModuleImage>, ImageError> {
    let docker = |source| ImageError::Docker { module: module.reference().to_string(), source: Box::new(source) };
    let tag = module.image_tag();
    if !executor.has_image(&tag).await.map_err(docker)? {
        return Ok(None);
    }
    let id = executor.image_id_of(&tag).await.map_err(docker)?;
    Ok(Some(ModuleImage { tag, id }))
}

fn refused(module: String, p: Problem, path: &Path) -> ImageError {
    match p {
        Problem::Bad(reason) => ImageError::Refused { module, reason },
        Problem::Io(source) => ImageError::Io { path: path.to_path_buf(), source },
    }
}

/// Reads the archive at `path` strictly and walks its layers within the default
/// [`ArchiveLimits`]: the one image it holds, its id, and the names it carries (which are
/// never applied). Blocking.
pub fn inspect_archive(path: &Path) -> Result<ArchiveInfo, ImageError> {
    inspect_archive_with(path, &ArchiveLimits::default())
}

/// [`inspect_archive`] within `limits`. Blocking.
pub fn inspect_archive_with(path: &Path, limits: &ArchiveLimits) -> Result<ArchiveInfo, ImageError> {
    archive::inspect(path, limits).map(|p| p.info).map_err(|p| refused(path.display().to_string(), p, path))
}

/// Saves the module's built image ([`Module::image_tag`]) as an archive at `dest` and adds it
/// to `store`, giving the CID and the `imageHash` to publish.
pub async fn save_image_archive(
    module: &Module,
    executor: &Executor,
    dest: &Path,
    store: &lilypad_store::DiskBlockstore,
) -> Result<ImageArchive, ImageError> {
    let tag = module.image_tag();
    let docker = |source| ImageError::Docker { module: module.reference().to_string(), source: Box::new(source) };
    // Saved by id: the archive names nothing (names in archives are never applied anyway).
    let id = executor.image_id_of(&tag).await.map_err(docker)?;
    let bytes = executor.save_image(&id, dest).await.map_err(docker)?;
    let (path, store) = (dest.to_path_buf(), store.clone());
    let (info, cid) = tokio::task::spawn_blocking(move || -> Result<(ArchiveInfo, Cid), ImageError> {
        let info = inspect_archive(&path)?;
        let cid = lilypad_store::add_path(&path, &store)
            .map_err(|source| ImageError::Store { path: path.clone(), source: Box::new(source) })?;
        Ok((info, cid))
    })
    .await
    .map_err(|e| ImageError::Io { path: dest.to_path_buf(), source: std::io::Error::other(e) })??;
    if info.image_id != id {
        return Err(ImageError::Refused {
            module: module.reference().to_string(),
            reason: format!("the engine saved image {}, not {id}", info.image_id),
        });
    }
    let image_hash = spec_hash_of(&cid).ok_or_else(|| ImageError::Refused {
        module: module.reference().to_string(),
        reason: format!("its CID {cid} is not sha2-256"),
    })?;
    if cid.codec() != lilypad_store::CODEC_DAG_PB {
        return Err(ImageError::Refused {
            module: module.reference().to_string(),
            reason: format!("the archive is under 256 KiB (CID {cid} is a raw block); image archives are published as UnixFS files"),
        });
    }
    info!(module = %module.reference(), %cid, bytes, image = %info.image_id, "image archive saved");
    Ok(ImageArchive { path: dest.to_path_buf(), cid, image_hash, image_id: info.image_id, bytes })
}

/// Loads the archive at `path` (already verified against its CID by the fetch) as the
/// module's image, within the default [`ArchiveLimits`]. See [`load_image_archive_with`].
pub async fn load_image_archive(module: &Module, executor: &Executor, path: &Path) -> Result<ModuleImage, ImageError> {
    load_image_archive_with(module, executor, path, &ArchiveLimits::default()).await
}

/// Loads the archive at `path` as the module's image:
///
/// 1. reads it strictly and walks its layers within `limits` (refused: `..`, absolute or
///    duplicate names, more than one image, sparse files, layers expanding past the caps,
///    layers whose digest is not the config's);
/// 2. streams to the engine an archive of our own holding only that image's config and
///    layers, with no name: names in the published archive never reach the engine;
/// 3. checks that the engine loaded the image id computed from the config, tags it
///    [`Module::image_tag`] and checks the tag names it.
///
/// Returns the [`ModuleImage`] to record: run containers by its id.
pub async fn load_image_archive_with(
    module: &Module,
    executor: &Executor,
    path: &Path,
    limits: &ArchiveLimits,
) -> Result<ModuleImage, ImageError> {
    let name = module.reference().to_string();
    let io = |source| ImageError::Io { path: path.to_path_buf(), source };
    let (p, l) = (path.to_path_buf(), limits.clone());
    let plan = tokio::task::spawn_blocking(move || archive::inspect(&p, &l))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(|p| refused(name.clone(), p, path))?;
    let info = &plan.info;
    if !info.tags.is_empty() {
        warn!(module = %name, names = ?info.tags, "the image archive names images; names in archives are not applied");
    }
    let docker = |source| ImageError::Docker { module: name.clone(), source: Box::new(source) };
    let file = std::fs::File::open(path).map_err(io)?;
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let writer = tokio_util::io::SyncIoBridge::new(writer);
    let plan_w = plan.clone();
    let write = tokio::task::spawn_blocking(move || archive::write_canonical(&file, &plan_w, writer));
    let loaded = executor.load_image(reader).await;
    let written = write.await.map_err(|e| io(std::io::Error::other(e)))?;
    let loaded = match (loaded, written) {
        (Ok(id), Ok(())) => id,
        // The engine stopped reading: its error says why.
        (Err(e), Ok(())) => return Err(docker(e)),
        (Err(e), Err(w)) if w.kind() == std::io::ErrorKind::BrokenPipe => return Err(docker(e)),
        (_, Err(w)) => return Err(io(w)),
    };
    if loaded != info.image_id {
        return Err(ImageError::Refused {
            module: name,
            reason: format!("the engine loaded image {loaded}, not the {} computed from the archive", info.image_id),
        });
    }
    let tag = module.image_tag();
    executor.tag_image(&info.image_id, &tag).await.map_err(docker)?;
    let image = ModuleImage { tag, id: info.image_id.clone() };
    image.verify(module, executor).await?;
    info!(module = %name, tag = %image.tag, image = %image.id, layers = info.layers, bytes = info.expanded_bytes, "image loaded from its archive");
    Ok(image)
}
