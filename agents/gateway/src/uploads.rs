//! Uploads (`POST /api/v1/uploads`): a web2 user's file, or folder as a tar archive, imported
//! with the store's UnixFS importer (the CID `ipfs add --cid-version=1` and `lilypad run -i
//! Name=@path` give), so a job can take it as a `cid` input.
//!
//! Where providers fetch it from: the configured IPFS node (`--ipfs-api`, a Kubo RPC API or
//! `lilypad devnet`'s node: `dag/import`, pinned there), which providers reach through their
//! IPFS gateways; and the gateway's own trustless gateway (`GET /ipfs/<cid>`, served from its
//! blockstore), for providers that list the gateway's public URL among their `--ipfs-gateway`s.
//!
//! One upload, in order (nothing half-written):
//! 1. the body is streamed to a staging folder, at most `max_bytes` (413 past it);
//! 2. it is imported there (a tar is unpacked first: regular files and folders only, no
//!    absolute or `..` paths) into a staging blockstore; its CID is known;
//! 3. the account is charged (the upload's row and its ledger entry in one transaction; too
//!    little credit: 402 and the staging folder removed);
//! 4. the blocks are put on the IPFS node (if one is configured); if that fails the charge is
//!    refunded (`upload:<id>:refund`), the upload marked failed, and the staging folder removed;
//! 5. the blocks move into the gateway's blockstore, listed in the upload's manifest.
//!
//! Retention: each upload is kept `retention` (default 7 days) from its upload; then
//! [`Uploads::collect_garbage`] removes its blocks from the gateway's blockstore (those no kept
//! upload shares) and marks it expired. What was pinned on the IPFS node stays there until that
//! node's operator unpins it.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use lilypad_store::{Cid, DiskBlockstore, KuboClient};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::db::{now_ms, Db, DbError};

/// Bytes in a MiB, the unit uploads are priced in.
pub const MIB: u128 = 1 << 20;
/// Most entries (files and folders) a folder upload may hold.
pub const MAX_ENTRIES: u64 = 100_000;

/// How uploads are limited, priced and kept.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Largest upload body, bytes.
    pub max_bytes: u64,
    /// Price per MiB of body, token base units (charged pro rata, rounded up).
    pub price_per_mib: u128,
    /// How long an upload is kept from its upload.
    pub retention: Duration,
    /// The IPFS node (Kubo RPC API) uploads are also put on, for providers to fetch them.
    pub ipfs_api: Option<String>,
}

impl Default for UploadOptions {
    /// 100 MiB, 0.001 LP per MiB, 7 days, no IPFS node.
    fn default() -> Self {
        UploadOptions { max_bytes: 100 << 20, price_per_mib: 1_000_000_000_000_000, retention: Duration::from_secs(7 * 24 * 3600), ipfs_api: None }
    }
}

/// What an upload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadKind {
    /// One file: the body's bytes.
    File,
    /// A folder: the body is a tar archive of its contents.
    Folder,
}

impl UploadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::File => "file",
            UploadKind::Folder => "folder",
        }
    }
}

/// Why an upload was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body is over the limit.
    #[error("uploads may have at most {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body could not be read from the client.
    #[error("reading the upload: {0}")]
    Body(String),
    /// The tar archive is malformed or holds what cannot be imported.
    #[error("the tar archive {0}")]
    BadArchive(String),
    /// The importer refused the content.
    #[error("importing the upload: {0}")]
    Import(String),
    /// The IPFS node refused or could not be reached.
    #[error("putting {cid} on the IPFS node: {reason}")]
    Ipfs { cid: Cid, reason: String },
    /// The configured IPFS node's URL is not usable.
    #[error("the IPFS node (--ipfs-api) {0}")]
    IpfsApi(String),
    /// The gateway's own files.
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, #[source] source: io::Error },
    /// A blocking task panicked.
    #[error("the import task failed: {0}")]
    Task(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UploadError {
    let path = path.to_path_buf();
    move |source| UploadError::Io { action, path, source }
}

/// An upload imported into its staging folder, not yet charged or published. Dropping it
/// removes the folder.
pub struct Staged {
    dir: tempfile::TempDir,
    store: DiskBlockstore,
    pub cid: Cid,
    pub bytes: u64,
    pub kind: UploadKind,
}

/// The gateway's uploads: their blockstore (served at `/ipfs/<cid>`), staging folder,
/// manifests, and the IPFS node they are put on.
pub struct Uploads {
    pub options: UploadOptions,
    store: DiskBlockstore,
    staging: PathBuf,
    manifests: PathBuf,
    kubo: Option<KuboClient>,
    /// Held while blocks move into the store and while garbage is collected.
    moving: Mutex<()>,
}

impl Uploads {
    /// Opens (creating) the uploads folder `dir`: `dir/blocks`, `dir/staging` (emptied: what a
    /// killed upload left), `dir/manifests`.
    pub fn open(dir: &Path, options: UploadOptions) -> Result<Uploads, UploadError> {
        let store = DiskBlockstore::open(dir.join("store")).map_err(|e| UploadError::Io { action: "opening", path: dir.join("store"), source: io::Error::other(e.to_string()) })?;
        if let Err(e) = store.remove_stray_temp_files() {
            warn!(error = %e, "cannot remove stray temporary files of the uploads blockstore");
        }
        let staging = dir.join("staging");
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(io_err("creating", &staging))?;
        let manifests = dir.join("manifests");
        fs::create_dir_all(&manifests).map_err(io_err("creating", &manifests))?;
        let kubo = match &options.ipfs_api {
            Some(api) => Some(KuboClient::new(api).map_err(|e| UploadError::IpfsApi(format!("{api}: {e}")))?),
            None => None,
        };
        Ok(Uploads { options, store, staging, manifests, kubo, moving: Mutex::new(()) })
    }

    /// The blockstore uploads are served from.
    pub fn store(&self) -> &DiskBlockstore {
        &self.store
    }

    /// The price of an upload of `bytes`: `price_per_mib` pro rata, rounded up.
    pub fn price_of(&self, bytes: u64) -> u128 {
        price_of(bytes, self.options.price_per_mib)
    }

    /// Streams `body` into a staging folder (at most `max_bytes`) and imports it as `kind`.
    pub async fn stage<E: std::fmt::Display>(&self, kind: UploadKind, mut body: impl Stream<Item = Result<Bytes, E>> + Unpin) -> Result<Staged, UploadError> {
        let dir = tempfile::Builder::new().prefix("up-").tempdir_in(&self.staging).map_err(io_err("creating a staging folder in", &self.staging))?;
        let path = dir.path().join("body");
        let mut file = tokio::fs::File::create(&path).await.map_err(io_err("creating", &path))?;
        let mut bytes = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                // axum's limit, if any, shows as a body error: say which
                let text = e.to_string();
                if text.contains("length limit") { UploadError::TooLarge { limit: self.options.max_bytes } } else { UploadError::Body(text) }
            })?;
            bytes = bytes.saturating_add(chunk.len() as u64);
            if bytes > self.options.max_bytes {
                return Err(UploadError::TooLarge { limit: self.options.max_bytes });
            }
            file.write_all(&chunk).await.map_err(io_err("writing", &path))?;
        }
        file.flush().await.map_err(io_err("writing", &path))?;
        drop(file);
        let store = DiskBlockstore::open(dir.path().join("store")).map_err(|e| UploadError::Import(e.to_string()))?;
        let (root, s) = (dir.path().to_path_buf(), store.clone());
        let cid = tokio::task::spawn_blocking(move || -> Result<Cid, UploadError> {
            let body = root.join("body");
            let content = match kind {
                UploadKind::File => body,
                UploadKind::Folder => {
                    let tree = root.join("tree");
                    unpack(&body, &tree)?;
                    fs::remove_file(&body).map_err(io_err("removing", &body))?;
                    tree
                }
            };
            lilypad_store::add_path(&content, &s).map_err(|e| UploadError::Import(e.to_string()))
        })
        .await
        .map_err(|e| UploadError::Task(e.to_string()))??;
        Ok(Staged { dir, store, cid, bytes, kind })
    }

    /// Puts a staged (and charged) upload on the IPFS node, if one is configured, then moves
    /// its blocks into the gateway's blockstore under the manifest of `upload_id`.
    pub async fn publish(&self, upload_id: &str, staged: Staged) -> Result<(), UploadError> {
        let cid = staged.cid;
        if let Some(kubo) = &self.kubo {
            let car = staged.dir.path().join("upload.car");
            let (s, c) = (staged.store.clone(), car.clone());
            tokio::task::spawn_blocking(move || -> Result<u64, String> {
                let file = fs::File::create(&c).map_err(|e| e.to_string())?;
                lilypad_store::export_car(&s, &cid, io::BufWriter::new(file)).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| UploadError::Task(e.to_string()))?
            .map_err(|reason| UploadError::Ipfs { cid, reason: format!("writing its CAR: {reason}") })?;
            let roots = kubo.dag_import(&car).await.map_err(|e| UploadError::Ipfs { cid, reason: e.to_string() })?;
            if !roots.iter().any(|r| r.to_string() == cid.to_string()) {
                return Err(UploadError::Ipfs { cid, reason: format!("the node imported {roots:?}, not {cid}") });
            }
            info!(upload = upload_id, %cid, "upload put on the IPFS node");
        }
        let _moving = self.moving.lock().await;
        let (from, store, manifest) = (staged.store.clone(), self.store.clone(), self.manifests.join(upload_id));
        tokio::task::spawn_blocking(move || move_blocks(&from, &store, &manifest)).await.map_err(|e| UploadError::Task(e.to_string()))??;
        drop(staged);
        Ok(())
    }

    /// Removes the content of uploads past their retention (the blocks no kept upload shares)
    /// and marks them expired; returns how many.
    pub async fn collect_garbage(&self, db: &Db) -> Result<usize, DbError> {
        let now = now_ms();
        let expired = db.uploads_to_remove(now).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let _moving = self.moving.lock().await;
        let kept_ids = db.kept_upload_ids(now).await?;
        let manifests = self.manifests.clone();
        let store = self.store.clone();
        let ids: Vec<String> = expired.iter().map(|u| u.id.clone()).collect();
        let removed = tokio::task::spawn_blocking(move || {
            let mut kept = HashSet::new();
            for id in &kept_ids {
                kept.extend(read_manifest(&manifests.join(id)));
            }
            let mut blocks = 0usize;
            for id in &ids {
                let manifest = manifests.join(id);
                for cid in read_manifest(&manifest) {
                    if !kept.contains(&cid) {
                        if let Ok(parsed) = cid.parse::<Cid>() {
                            if fs::remove_file(store.block_path(&parsed)).is_ok() {
                                blocks += 1;
                            }
                        }
                    }
                }
                let _ = fs::remove_file(&manifest);
            }
            blocks
        })
        .await
        .unwrap_or(0);
        for upload in &expired {
            db.set_upload_state(&upload.id, "stored", "expired").await?;
        }
        info!(uploads = expired.len(), blocks = removed, "expired uploads removed");
        Ok(expired.len())
    }

    /// Runs [`Uploads::collect_garbage`] every `every` until the task is stopped.
    pub async fn collect_forever(self: std::sync::Arc<Self>, db: std::sync::Arc<Db>, every: Duration) -> Result<(), DbError> {
        let mut failures = lilypad_chain::FailureLog::new("removing expired uploads");
        loop {
            match self.collect_garbage(&db).await {
                Ok(_) => failures.succeeded(),
                Err(e) => {
                    failures.failed(&e);
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// `price_per_mib` for `bytes`, pro rata, rounded up (saturating).
pub fn price_of(bytes: u64, price_per_mib: u128) -> u128 {
    let total = u128::from(bytes).saturating_mul(price_per_mib);
    total / MIB + u128::from(total % MIB != 0)
}

/// The block CIDs listed in a manifest (none if it is missing).
fn read_manifest(path: &Path) -> Vec<String> {
    fs::read_to_string(path).map(|t| t.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()).unwrap_or_default()
}

/// Writes the manifest (every block of `from`), then moves each block into `store` (a block
/// already there stays).
fn move_blocks(from: &DiskBlockstore, store: &DiskBlockstore, manifest: &Path) -> Result<(), UploadError> {
    let blocks_dir = from.root().join("blocks");
    let mut cids = Vec::new();
    for shard in fs::read_dir(&blocks_dir).map_err(io_err("listing", &blocks_dir))? {
        let shard = shard.map_err(io_err("listing", &blocks_dir))?.path();
        for entry in fs::read_dir(&shard).map_err(io_err("listing", &shard))? {
            let entry = entry.map_err(io_err("listing", &shard))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(cid) = name.parse::<Cid>() {
                cids.push((cid, entry.path()));
            }
        }
    }
    let tmp = manifest.with_extension("tmp");
    let text: String = cids.iter().map(|(c, _)| format!("{c}\n")).collect();
    fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
    fs::rename(&tmp, manifest).map_err(io_err("writing", manifest))?;
    for (cid, path) in cids {
        let target = store.block_path(&cid);
        if target.is_file() {
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::rename(&path, &target).map_err(io_err("moving a block to", &target))?;
    }
    Ok(())
}

/// Unpacks the tar archive `archive` into `dest` (created): regular files and folders only,
/// relative paths that stay inside, at most [`MAX_ENTRIES`] entries.
fn unpack(archive: &Path, dest: &Path) -> Result<(), UploadError> {
    fs::create_dir_all(dest).map_err(io_err("creating", dest))?;
    let file = fs::File::open(archive).map_err(io_err("opening", archive))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    let entries = tar.entries().map_err(|e| UploadError::BadArchive(format!("cannot be read: {e}")))?;
    let mut count = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| UploadError::BadArchive(format!("is malformed: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(UploadError::BadArchive(format!("has more than {MAX_ENTRIES} entries")));
        }
        let raw = entry.path().map_err(|e| UploadError::BadArchive(format!("has an entry whose name cannot be read: {e}")))?.into_owned();
        let mut rel = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                _ => return Err(UploadError::BadArchive(format!("has the entry {:?}: only relative paths inside the folder are allowed", raw.display().to_string()))),
            }
        }
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue; // "./" itself
            }
            return Err(UploadError::BadArchive("has a file with an empty name".into()));
        }
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(io_err("creating", &target))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            let mut out = fs::File::create(&target).map_err(io_err("creating", &target))?;
            io::copy(&mut entry, &mut out).map_err(|e| UploadError::BadArchive(format!("is cut short in {:?}: {e}", rel.display().to_string())))?;
        } else if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        } else {
            return Err(UploadError::BadArchive(format!(
                "has {:?}, a {kind:?} entry: only regular files and folders can be uploaded (no links or devices)",
                rel.display().to_string()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_priced_per_mib_pro_rata_rounded_up() {
        let lp = 1_000_000_000_000_000_000u128;
        assert_eq!(price_of(0, lp), 0);
        assert_eq!(price_of(1 << 20, lp), lp);
        assert_eq!(price_of(1 << 19, lp), lp / 2);
        assert_eq!(price_of(1, 3), 1, "a byte of a priced MiB is never free");
        assert_eq!(price_of(u64::MAX, u128::MAX), u128::MAX / MIB + 1, "saturates, never wraps");
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses `..`: write the raw name as a hostile archive would
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_tar_unpacks_to_the_folder_ipfs_add_imports() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        fs::write(&archive, tar_of(&[("./", tar::EntryType::Directory, b""), ("./a.txt", tar::EntryType::Regular, b"one two\n"), ("sub/b.txt", tar::EntryType::Regular, b"three\n")])).unwrap();
        let tree = dir.path().join("tree");
        unpack(&archive, &tree).unwrap();
        assert_eq!(fs::read_to_string(tree.join("a.txt")).unwrap(), "one two\n");
        assert_eq!(fs::read_to_string(tree.join("sub/b.txt")).unwrap(), "three\n");
        // the same files laid out by hand: the same CID
        let by_hand = dir.path().join("by-hand");
        fs::create_dir_all(by_hand.join("sub")).unwrap();
        fs::write(by_hand.join("a.txt"), "one two\n").unwrap();
        fs::write(by_hand.join("sub/b.txt"), "three\n").unwrap();
        assert_eq!(lilypad_store::cid_of_path(&tree).unwrap(), lilypad_store::cid_of_path(&by_hand).unwrap());
    }

    #[test]
    fn hostile_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, entries) in [
            ("escape", vec![("../evil.txt", tar::EntryType::Regular, &b"x"[..])]),
            ("absolute", vec![("/etc/evil", tar::EntryType::Regular, &b"x"[..])]),
            ("symlink", vec![("link", tar::EntryType::Symlink, &b""[..])]),
            ("device", vec![("dev", tar::EntryType::Char, &b""[..])]),
        ] {
            let archive = dir.path().join(format!("{name}.tar"));
            fs::write(&archive, tar_of(&entries)).unwrap();
            let err = unpack(&archive, &dir.path().join(name)).unwrap_err();
            assert!(matches!(err, UploadError::BadArchive(_)), "{name}: {err}");
        }
        assert!(!dir.path().join("evil.txt").exists());
        let junk = dir.path().join("junk.tar");
        fs::write(&junk, vec![7u8; 1024]).unwrap();
        assert!(matches!(unpack(&junk, &dir.path().join("junk")), Err(UploadError::BadArchive(_))));
    }
}
