//! Image archives: a module's image as a `docker save` tar, published by CID and pinned on
//! chain (`ModuleSpec.imageHash`), so providers that cannot reach a registry (or should not
//! run a module's build commands on their host) get the exact image from the network itself.
//!
//! Loading an archive is guarded: `docker load` applies every tag an archive names, so an
//! archive could otherwise re-tag *another* module's image on the provider. An archive is
//! loaded only if it holds exactly one image, named by nothing but the module's own
//! [`Module::image_tag`] (or by nothing at all), and the engine must then report the image id
//! the archive's manifest announced.

use std::io::Read;
use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use lilypad_executor::Executor;
use lilypad_store::Cid;
use serde::Deserialize;
use tracing::info;

use crate::{spec_hash_of, Module};

/// Largest `manifest.json` / `index.json` / `repositories` read from an archive.
const MAX_META_BYTES: u64 = 1 << 20;

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
            ImageError::Refused { .. } => false,
        }
    }
}

/// What an archive says it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The image id it holds (`sha256:<hex>`: the digest of its config).
    pub image_id: String,
    /// The tags it would apply.
    pub tags: Vec<String>,
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

#[derive(Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Reads the archive's `manifest.json` (and `index.json` / `repositories` when present) and
/// returns the one image it holds and every name it would apply. Blocking.
pub fn inspect_archive(path: &Path) -> Result<ArchiveInfo, ImageError> {
    let refused = |reason: String| ImageError::Refused { module: path.display().to_string(), reason };
    let io = |source| ImageError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut manifest: Option<Vec<u8>> = None;
    let mut index: Option<Vec<u8>> = None;
    let mut repositories: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(io)? {
        let entry = entry.map_err(|e| refused(format!("not a tar archive: {e}")))?;
        let name = entry.path().map_err(|e| refused(format!("bad entry name: {e}")))?.to_string_lossy().into_owned();
        let slot = match name.trim_start_matches("./") {
            "manifest.json" => &mut manifest,
            "index.json" => &mut index,
            "repositories" => &mut repositories,
            _ => continue,
        };
        if entry.header().size().unwrap_or(u64::MAX) > MAX_META_BYTES {
            return Err(refused(format!("{name} is over {MAX_META_BYTES} bytes")));
        }
        let mut buf = Vec::new();
        entry.take(MAX_META_BYTES).read_to_end(&mut buf).map_err(io)?;
        *slot = Some(buf);
    }
    let manifest = manifest.ok_or_else(|| refused("no manifest.json: not a `docker save` archive".into()))?;
    let manifest: Vec<DockerManifest> =
        serde_json::from_slice(&manifest).map_err(|e| refused(format!("manifest.json: {e}")))?;
    let [image] = manifest.as_slice() else {
        return Err(refused(format!("it holds {} images; a module's archive holds exactly one", manifest.len())));
    };
    let hex = image
        .config
        .trim_start_matches("blobs/sha256/")
        .trim_end_matches(".json")
        .to_string();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused(format!("manifest.json names a config {:?} that is not a sha256 digest", image.config)));
    }
    let mut tags: Vec<String> = image.repo_tags.clone().unwrap_or_default();
    if let Some(index) = index {
        let index: OciIndex = serde_json::from_slice(&index).map_err(|e| refused(format!("index.json: {e}")))?;
        for m in index.manifests {
            if let Some(name) = m.annotations.get("io.containerd.image.name") {
                tags.push(name.trim_start_matches("docker.io/").trim_start_matches("library/").to_string());
            }
        }
    }
    if let Some(repos) = repositories {
        let repos: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
            serde_json::from_slice(&repos).map_err(|e| refused(format!("repositories: {e}")))?;
        for (repo, by_tag) in repos {
            for tag in by_tag.keys() {
                tags.push(format!("{repo}:{tag}"));
            }
        }
    }
    tags.sort();
    tags.dedup();
    Ok(ArchiveInfo { image_id: format!("sha256:{hex}"), tags })
}

/// Checks that `info` may be loaded for `module`: nothing but the module's own tag.
pub fn check_archive_for(module: &Module, info: &ArchiveInfo) -> Result<(), ImageError> {
    let expected = module.image_tag();
    let expected_short = expected.trim_start_matches("docker.io/");
    if let Some(other) = info.tags.iter().find(|t| t.as_str() != expected_short) {
        return Err(ImageError::Refused {
            module: module.reference().to_string(),
            reason: format!("it would tag {other:?}; a module's archive may only name {expected:?}"),
        });
    }
    Ok(())
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
    let bytes = executor.save_image(&tag, dest).await.map_err(docker)?;
    let (path, store) = (dest.to_path_buf(), store.clone());
    let (info, cid) = tokio::task::spawn_blocking(move || -> Result<(ArchiveInfo, Cid), ImageError> {
        let info = inspect_archive(&path)?;
        let cid = lilypad_store::add_path(&path, &store)
            .map_err(|source| ImageError::Store { path: path.clone(), source: Box::new(source) })?;
        Ok((info, cid))
    })
    .await
    .map_err(|e| ImageError::Io { path: dest.to_path_buf(), source: std::io::Error::other(e) })??;
    check_archive_for(module, &info)?;
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
/// module's image and returns the tag to run. Refused unless the archive holds one image
/// named by nothing but [`Module::image_tag`]; the engine must then have that image under
/// the tag, with the id the archive announced.
pub async fn load_image_archive(module: &Module, executor: &Executor, path: &Path) -> Result<String, ImageError> {
    let p = path.to_path_buf();
    let info = tokio::task::spawn_blocking(move || inspect_archive(&p))
        .await
        .map_err(|e| ImageError::Io { path: path.to_path_buf(), source: std::io::Error::other(e) })??;
    check_archive_for(module, &info)?;
    let docker = |source| ImageError::Docker { module: module.reference().to_string(), source: Box::new(source) };
    let file = tokio::fs::File::open(path).await.map_err(|source| ImageError::Io { path: path.to_path_buf(), source })?;
    let loaded = executor.load_image(file).await.map_err(docker)?;
    if loaded != info.image_id {
        return Err(ImageError::Refused {
            module: module.reference().to_string(),
            reason: format!("the engine loaded image {loaded}, not the {} the archive announced", info.image_id),
        });
    }
    let tag = module.image_tag();
    executor.tag_image(&info.image_id, &tag).await.map_err(docker)?;
    let now = executor.image_id_of(&tag).await.map_err(docker)?;
    if now != info.image_id {
        return Err(ImageError::Refused {
            module: module.reference().to_string(),
            reason: format!("{tag} is image {now} after loading, not {}", info.image_id),
        });
    }
    info!(module = %module.reference(), %tag, image = %info.image_id, "image loaded from its archive");
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    const CFG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn inspect_reads_the_image_id_and_every_name() {
        let manifest = format!(r#"[{{"Config":"blobs/sha256/{CFG}","RepoTags":["lilypad/a:1-abc"],"Layers":[]}}]"#);
        let index = r#"{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/lilypad/evil:1"}}]}"#;
        let f = tar_with(&[("manifest.json", manifest.as_bytes()), ("index.json", index.as_bytes())]);
        let info = inspect_archive(f.path()).unwrap();
        assert_eq!(info.image_id, format!("sha256:{CFG}"));
        assert_eq!(info.tags, vec!["lilypad/a:1-abc".to_string(), "lilypad/evil:1".to_string()]);
    }

    #[test]
    fn inspect_refuses_two_images_and_missing_manifest() {
        let two = format!(r#"[{{"Config":"{CFG}.json"}},{{"Config":"{CFG}.json"}}]"#);
        let f = tar_with(&[("manifest.json", two.as_bytes())]);
        let e = inspect_archive(f.path()).unwrap_err().to_string();
        assert!(e.contains("holds 2 images"), "{e}");
        let f = tar_with(&[("other", b"x")]);
        let e = inspect_archive(f.path()).unwrap_err().to_string();
        assert!(e.contains("no manifest.json"), "{e}");
        let bad = r#"[{"Config":"../../etc/passwd"}]"#;
        let f = tar_with(&[("manifest.json", bad.as_bytes())]);
        assert!(inspect_archive(f.path()).unwrap_err().to_string().contains("not a sha256 digest"));
    }

    #[test]
    fn legacy_repositories_names_count_too() {
        let manifest = format!(r#"[{{"Config":"{CFG}.json","RepoTags":null}}]"#);
        let repos = r#"{"lilypad/lilysay":{"0.1.0-41fbb1d24584":"x"}}"#;
        let f = tar_with(&[("manifest.json", manifest.as_bytes()), ("repositories", repos.as_bytes())]);
        let info = inspect_archive(f.path()).unwrap();
        assert_eq!(info.tags, vec!["lilypad/lilysay:0.1.0-41fbb1d24584".to_string()]);
    }
}
