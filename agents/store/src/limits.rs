//! Limits a reader of untrusted content sets: how much a fetch may write, download and take.
//!
//! Content addressing proves that bytes are the ones asked for, not that they are reasonable: a
//! 1 MB CAR of three blocks can describe a 1 GiB file (a node linking the same child again and
//! again), a folder can link the same sub-folder a hundred times per level, a CAR stream can
//! carry blocks that belong to no DAG, and a server can trickle bytes for ever. Every fetch
//! therefore runs under a [`FetchLimits`], chosen by its caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cid::Cid;

use crate::error::{Result, StoreError};

/// What one fetch may do. Each consumer passes its own: a provider fetching a module, a
/// mediator fetching a result (bounded by the module's output caps), `lilypad run`, the web2
/// gateway. [`Default`] is generous (for a user's own `lilypad ipfs get`); services should pass
/// tighter ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// Content bytes written, summed over all files (as declared by the DAG, checked before a
    /// byte is written, and as actually written).
    pub max_bytes: u64,
    /// Files and folders written (the root folder included).
    pub max_files: u64,
    /// Blocks received from the network (CAR sections, wanted or not, and single blocks).
    pub max_blocks: u64,
    /// Deepest folder nesting written.
    pub max_depth: usize,
    /// The whole fetch, from the first request to the last file written.
    pub deadline: Duration,
}

impl Default for FetchLimits {
    /// 16 GiB, 1,000,000 files and folders, 2,000,000 blocks, 256 levels, one hour.
    fn default() -> Self {
        FetchLimits {
            max_bytes: 16 << 30,
            max_files: 1_000_000,
            max_blocks: 2_000_000,
            max_depth: 256,
            deadline: Duration::from_secs(3600),
        }
    }
}

impl FetchLimits {
    /// Bytes that may be downloaded in all (CAR and single blocks, kept or dropped): the content
    /// plus room for the DAG's own nodes, `2 * max_bytes + 64 MiB`.
    pub fn max_download_bytes(&self) -> u64 {
        self.max_bytes.saturating_mul(2).saturating_add(64 << 20)
    }
}

/// Counters of one fetch against its limits, shared by its tasks.
#[derive(Debug)]
pub(crate) struct Budget {
    pub limits: FetchLimits,
    pub root: Cid,
    deadline: Instant,
    blocks: AtomicU64,
    downloaded: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limits: &FetchLimits, root: Cid) -> Self {
        Budget {
            limits: limits.clone(),
            root,
            deadline: Instant::now() + limits.deadline,
            blocks: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// [`StoreError::DeadlineExceeded`] once the deadline has passed.
    pub(crate) fn check_deadline(&self) -> Result<()> {
        if Instant::now() >= self.deadline {
            return Err(self.deadline_error());
        }
        Ok(())
    }

    pub(crate) fn deadline_error(&self) -> StoreError {
        StoreError::DeadlineExceeded {
            what: format!("fetching {}", self.root),
            seconds: self.limits.deadline.as_secs(),
        }
    }

    /// Counts one block of `len` bytes received from the network.
    pub(crate) fn received(&self, cid: &Cid, len: usize) -> Result<()> {
        let blocks = self.blocks.fetch_add(1, Ordering::Relaxed) + 1;
        if blocks > self.limits.max_blocks {
            return Err(StoreError::LimitExceeded {
                cid: *cid,
                what: format!(
                    "more than {} blocks received while fetching {}",
                    self.limits.max_blocks, self.root
                ),
            });
        }
        let total = self.downloaded.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        let cap = self.limits.max_download_bytes();
        if total > cap {
            return Err(StoreError::LimitExceeded {
                cid: *cid,
                what: format!(
                    "more than {cap} bytes downloaded while fetching {}",
                    self.root
                ),
            });
        }
        Ok(())
    }

    /// Blocks received so far.
    pub(crate) fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Relaxed)
    }
}
