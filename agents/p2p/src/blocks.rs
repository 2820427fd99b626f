//! The store's blockstore as bitswap sees it ([`blockstore::Blockstore`], beetswap's trait).

use std::sync::Arc;

use blockstore::Blockstore;
use cid::CidGeneric;
use lilypad_store::{Cid, DiskBlockstore, StoreError};
use tracing::debug;

/// A [`DiskBlockstore`] for bitswap. Served blocks are read from disk off the async threads.
///
/// [`StoreBlocks::read_only`] (what a provider serves): puts are refused, so nothing a peer
/// sends can be written, and this node answers only for what its store holds.
/// [`StoreBlocks::writable`] (a node that fetches): blocks the node asked for and received are
/// stored, each checked against its CID by [`DiskBlockstore::put`].
#[derive(Debug, Clone)]
pub struct StoreBlocks {
    store: Arc<DiskBlockstore>,
    writable: bool,
}

impl StoreBlocks {
    /// Serves what `store` holds; writes nothing.
    pub fn read_only(store: DiskBlockstore) -> Self {
        Self { store: Arc::new(store), writable: false }
    }

    /// Serves what `store` holds and keeps the blocks this node fetches.
    pub fn writable(store: DiskBlockstore) -> Self {
        Self { store: Arc::new(store), writable: true }
    }
}

/// The CID as the store names it (64-byte multihashes at most, like every CID this project
/// makes); `None` for one that does not fit.
fn store_cid<const S: usize>(cid: &CidGeneric<S>) -> Option<Cid> {
    Cid::try_from(cid.to_bytes()).ok()
}

fn fatal(e: impl std::fmt::Display) -> blockstore::Error {
    blockstore::Error::FatalDatabaseError(e.to_string())
}

impl Blockstore for StoreBlocks {
    async fn get<const S: usize>(&self, cid: &CidGeneric<S>) -> blockstore::Result<Option<Vec<u8>>> {
        let Some(cid) = store_cid(cid) else { return Ok(None) };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.get(&cid)).await {
            Ok(Ok(data)) => Ok(Some(data)),
            Ok(Err(StoreError::NotFound { .. })) => Ok(None),
            Ok(Err(e)) => {
                debug!(%cid, error = %e, "cannot read a block asked for");
                Err(fatal(e))
            }
            Err(e) => Err(blockstore::Error::ExecutorError(e.to_string())),
        }
    }

    async fn has<const S: usize>(&self, cid: &CidGeneric<S>) -> blockstore::Result<bool> {
        let Some(cid) = store_cid(cid) else { return Ok(false) };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.has(&cid)).await {
            Ok(result) => result.map_err(fatal),
            Err(e) => Err(blockstore::Error::ExecutorError(e.to_string())),
        }
    }

    async fn put_keyed<const S: usize>(&self, cid: &CidGeneric<S>, data: &[u8]) -> blockstore::Result<()> {
        if !self.writable {
            return Err(fatal(format!("this node serves its store read-only: block {cid} not stored")));
        }
        let Some(cid) = store_cid(cid) else { return Err(blockstore::Error::CidTooLarge) };
        let store = self.store.clone();
        let data = data.to_vec();
        match tokio::task::spawn_blocking(move || store.put(&cid, &data)).await {
            Ok(result) => result.map_err(fatal),
            Err(e) => Err(blockstore::Error::ExecutorError(e.to_string())),
        }
    }

    async fn remove<const S: usize>(&self, cid: &CidGeneric<S>) -> blockstore::Result<()> {
        Err(fatal(format!("bitswap does not remove blocks from this store ({cid})")))
    }

    async fn close(self) -> blockstore::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(data: &[u8]) -> Cid {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data);
        Cid::new_v1(lilypad_store::CODEC_RAW, cid::multihash::Multihash::wrap(0x12, &digest).unwrap())
    }

    #[tokio::test]
    async fn a_read_only_store_serves_what_it_holds_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path()).unwrap();
        let held = raw(b"held\n");
        store.put(&held, b"held\n").unwrap();
        let blocks = StoreBlocks::read_only(store.clone());
        assert_eq!(blocks.get(&held).await.unwrap().as_deref(), Some(&b"held\n"[..]));
        let other = raw(b"other\n");
        assert_eq!(blocks.get(&other).await.unwrap(), None, "a block not held is None, not an error");
        assert!(blocks.put_keyed(&other, b"other\n").await.is_err());
        assert!(!store.has(&other).unwrap(), "nothing written");
    }

    #[tokio::test]
    async fn a_writable_store_keeps_only_blocks_that_match_their_cid() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path()).unwrap();
        let blocks = StoreBlocks::writable(store.clone());
        let cid = raw(b"fetched\n");
        assert!(blocks.put_keyed(&cid, b"forged\n").await.is_err());
        assert!(!store.has(&cid).unwrap());
        blocks.put_keyed(&cid, b"fetched\n").await.unwrap();
        assert!(blocks.has(&cid).await.unwrap());
    }
}
