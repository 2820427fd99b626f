//! Blocks on disk, one file per block, named by CID.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use cid::Cid;
use tracing::trace;

use crate::error::{Result, StoreError};
use crate::hash::{canonical, hex, verify_block};

/// Where the importer sends the blocks it makes: a [`DiskBlockstore`], or nowhere (hash-only).
pub(crate) trait BlockSink {
    /// Stores a block whose CID the caller has just computed from `data`.
    fn put_block(&self, cid: &Cid, data: &[u8]) -> Result<()>;
}

/// Discards blocks: the importer's hash-only mode.
pub(crate) struct NullSink;

impl BlockSink for NullSink {
    fn put_block(&self, _cid: &Cid, _data: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Where blocks are read from when walking a DAG.
pub(crate) trait BlockSource {
    /// The block's bytes, or [`StoreError::NotFound`].
    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>>;
}

/// A blockstore in a folder: each block is a file `<root>/blocks/<xx>/<cid>`, where `<cid>` is
/// the block's CIDv1 in base32 (a CIDv0 is stored under its CIDv1 equivalent) and `<xx>` the first
/// byte of its sha2-256 digest in hex, which spreads blocks over 256 subfolders.
///
/// Writes are atomic: a block is written to a temporary file (`.tmp-*`, in the same subfolder)
/// and renamed into place, so a reader never sees a partial block. Blocks are not fsynced; a
/// crash can leave a stray `.tmp-*` file, which is never read. [`get`](Self::get) does
/// not re-hash what it reads (fetchers verify every block they receive); [`put`](Self::put)
/// verifies that the bytes match the CID.
///
/// Cloning is cheap (it is a path) and clones share the same folder.
#[derive(Debug, Clone)]
pub struct DiskBlockstore {
    root: PathBuf,
}

impl DiskBlockstore {
    /// Opens the blockstore in `root`, creating the folder and its layout if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let blocks = root.join("blocks");
        fs::create_dir_all(&blocks).map_err(|e| StoreError::io(&blocks, e))?;
        Ok(DiskBlockstore { root })
    }

    /// The folder this blockstore lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the `.tmp-*` files a killed writer left in the block folders and returns how many
    /// it removed. They are never read, but they take disk space and would pile up over crashes.
    /// A writer holds an exclusive lock (`flock`) on its temporary file until the block is
    /// renamed into place, and the system drops it when the writer dies: a file still locked is
    /// another live process's (two agents sharing one store folder) and is left alone. Call it
    /// when the process that owns this folder starts.
    pub fn remove_stray_temp_files(&self) -> Result<usize> {
        let blocks = self.root.join("blocks");
        let mut removed = 0;
        let shards = fs::read_dir(&blocks).map_err(|e| StoreError::io(&blocks, e))?;
        for shard in shards.flatten() {
            let Ok(entries) = fs::read_dir(shard.path()) else { continue };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let path = entry.path();
                    // a live writer's (locked), or one that is gone already, is skipped
                    let Ok(file) = fs::File::open(&path) else { continue };
                    if file.try_lock().is_err() {
                        continue;
                    }
                    match fs::remove_file(&path) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::io(&path, e)),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Stores `data` under `cid` after checking that it hashes to `cid`
    /// ([`StoreError::Verification`] otherwise). Storing a block that is already there is a no-op.
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        verify_block(cid, data)?;
        self.put_block(cid, data)
    }

    /// The bytes of block `cid`, or [`StoreError::NotFound`].
    pub fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        let path = self.block_path(cid);
        match fs::read(&path) {
            Ok(data) => Ok(data),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound { cid: *cid }),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Whether block `cid` is in the store.
    pub fn has(&self, cid: &Cid) -> Result<bool> {
        let path = self.block_path(cid);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// The file block `cid` is (or would be) stored in.
    pub fn block_path(&self, cid: &Cid) -> PathBuf {
        let key = canonical(cid);
        let digest = key.hash().digest();
        let shard = digest
            .first()
            .map(|b| hex(&[*b]))
            .unwrap_or_else(|| "00".into());
        self.root.join("blocks").join(shard).join(key.to_string())
    }
}

impl BlockSink for DiskBlockstore {
    fn put_block(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        let path = self.block_path(cid);
        if path.is_file() {
            return Ok(());
        }
        let Some(dir) = path.parent() else {
            return Err(StoreError::io(&path, ErrorKind::InvalidInput.into()));
        };
        // Only the shard folder, never its parents: a store whose folder was removed (a
        // fetch's temporary store, after the fetch gave up) must not be recreated by a write
        // still in flight.
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(dir, e)),
        }
        // The temporary file sits in the block's own shard folder: the rename stays within one
        // folder, and parallel writers rarely contend for the same folder.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(|e| StoreError::io(dir, e))?;
        // locked while it is being written: remove_stray_temp_files leaves a locked one alone
        tmp.as_file()
            .lock()
            .map_err(|e| StoreError::io(tmp.path().to_path_buf(), e))?;
        tmp.write_all(data)
            .map_err(|e| StoreError::io(tmp.path().to_path_buf(), e))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io(&path, e.error))?;
        trace!(%cid, bytes = data.len(), "stored block");
        Ok(())
    }
}

impl BlockSource for DiskBlockstore {
    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        self.get(cid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{dag_pb_cid, raw_cid};

    #[test]
    fn stray_temp_files_of_a_killed_writer_are_removed_and_blocks_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path().join("store")).unwrap();
        let cid = raw_cid(b"kept\n");
        store.put(&cid, b"kept\n").unwrap();
        let shard = store.block_path(&cid).parent().unwrap().to_path_buf();
        std::fs::write(shard.join(".tmp-abc123"), b"half a blo").unwrap();
        // a live writer's temporary file (locked, as put_block locks its own) is left alone
        let writing = std::fs::File::create(shard.join(".tmp-live")).unwrap();
        writing.lock().unwrap();
        assert_eq!(store.remove_stray_temp_files().unwrap(), 1);
        assert!(shard.join(".tmp-live").exists());
        drop(writing); // the writer died: its lock is gone
        assert_eq!(store.remove_stray_temp_files().unwrap(), 1);
        assert!(!shard.join(".tmp-live").exists());
        assert!(!shard.join(".tmp-abc123").exists());
        assert_eq!(store.get(&cid).unwrap(), b"kept\n");
        assert_eq!(store.remove_stray_temp_files().unwrap(), 0);
    }

    #[test]
    fn put_get_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path().join("store")).unwrap();
        let cid = raw_cid(b"hello\n");
        assert!(!store.has(&cid).unwrap());
        assert!(matches!(store.get(&cid), Err(StoreError::NotFound { cid: c }) if c == cid));

        store.put(&cid, b"hello\n").unwrap();
        store.put(&cid, b"hello\n").unwrap(); // idempotent
        assert!(store.has(&cid).unwrap());
        assert_eq!(store.get(&cid).unwrap(), b"hello\n");

        let path = store.block_path(&cid);
        assert!(path.starts_with(dir.path().join("store").join("blocks")));
        assert_eq!(path.file_name().unwrap(), cid.to_string().as_str());
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn put_refuses_bytes_that_do_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path()).unwrap();
        let cid = raw_cid(b"hello\n");
        let err = store.put(&cid, b"bye\n").unwrap_err();
        assert!(matches!(err, StoreError::Verification { cid: c, .. } if c == cid));
        assert!(!store.has(&cid).unwrap());
    }

    #[test]
    fn v0_and_v1_address_the_same_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path()).unwrap();
        let data = [0x0a, 0x02, 0x08, 0x01];
        let v1 = dag_pb_cid(&data);
        let v0 = Cid::new_v0(*v1.hash()).unwrap();
        store.put(&v0, &data).unwrap();
        assert!(store.has(&v1).unwrap());
        assert_eq!(store.get(&v1).unwrap(), data);
    }
}
