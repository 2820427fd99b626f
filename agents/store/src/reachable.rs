//! Keeps, out of a stream of blocks (a CAR), only those reachable from the roots.
//!
//! A CAR may carry any blocks at all: blocks of other DAGs, junk, the same block twice. Stored
//! blindly they fill the disk of whoever imports it. [`Reachable`] stores a block only once a
//! stored block (or a root) links to it. Blocks that arrive before their parent (a CAR need not
//! be in DFS order) wait in a bounded buffer and are dropped at the end if nothing claimed them.

use std::collections::{HashMap, HashSet};

use cid::Cid;
use tracing::debug;

use crate::blockstore::BlockSink;
use crate::dag::links_of;
use crate::error::Result;
use crate::hash::{canonical, verify_block};

/// Bytes of not-yet-claimed blocks held in memory while streaming.
pub(crate) const PENDING_CAP: usize = 32 << 20;

/// Streaming filter: [`offer`](Self::offer) every block as it arrives.
pub(crate) struct Reachable {
    wanted: HashSet<Cid>,
    stored: HashSet<Cid>,
    pending: HashMap<Cid, Vec<u8>>,
    pending_bytes: usize,
    /// Blocks offered that were not (yet) wanted.
    pub dropped: u64,
}

impl Reachable {
    /// Wants `roots` to begin with. `already` are blocks the sink already holds, whose links are
    /// wanted in turn (none for a fresh store).
    pub(crate) fn new(roots: &[Cid]) -> Self {
        Reachable {
            wanted: roots.iter().map(canonical).collect(),
            stored: HashSet::new(),
            pending: HashMap::new(),
            pending_bytes: 0,
            dropped: 0,
        }
    }

    /// Verifies and stores `block` if the DAG reaches it (then also any buffered blocks it
    /// reaches); buffers it otherwise, within [`PENDING_CAP`]. A block that does not match its
    /// CID is an error only when it is wanted: junk is dropped, whatever it holds.
    pub(crate) fn offer(&mut self, cid: &Cid, block: Vec<u8>, sink: &impl BlockSink) -> Result<()> {
        let key = canonical(cid);
        if self.stored.contains(&key) {
            return Ok(()); // a duplicate section
        }
        if !self.wanted.contains(&key) {
            if self.pending_bytes + block.len() <= PENDING_CAP && !self.pending.contains_key(&key) {
                self.pending_bytes += block.len();
                self.pending.insert(key, block);
            } else {
                self.dropped += 1;
            }
            return Ok(());
        }
        let mut queue = vec![(key, block)];
        while let Some((cid, block)) = queue.pop() {
            verify_block(&cid, &block)?;
            let links = links_of(&cid, &block)?;
            sink.put_block(&cid, &block)?;
            self.wanted.remove(&cid);
            self.stored.insert(cid);
            for link in links {
                let link = canonical(&link);
                if self.stored.contains(&link) || !self.wanted.insert(link) {
                    continue;
                }
                if let Some(waiting) = self.pending.remove(&link) {
                    self.pending_bytes -= waiting.len();
                    queue.push((link, waiting));
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: drops what nobody claimed. Returns (stored, dropped) counts.
    pub(crate) fn finish(mut self) -> (u64, u64) {
        self.dropped += self.pending.len() as u64;
        if self.dropped > 0 {
            debug!(
                dropped = self.dropped,
                "blocks outside the DAG were not kept"
            );
        }
        (self.stored.len() as u64, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{dag_pb_cid, raw_cid};
    use crate::pb;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Mem(RefCell<Vec<Cid>>);
    impl BlockSink for Mem {
        fn put_block(&self, cid: &Cid, _data: &[u8]) -> Result<()> {
            self.0.borrow_mut().push(*cid);
            Ok(())
        }
    }

    fn dir(links: &[(&Cid, &str)]) -> (Cid, Vec<u8>) {
        let block = pb::encode_node(
            links.iter().map(|(c, n)| (*c, *n, 1u64)),
            &pb::UNIXFS_DIRECTORY_DATA,
        );
        (dag_pb_cid(&block), block)
    }

    #[test]
    fn keeps_only_what_the_roots_reach_in_any_order() {
        let a = raw_cid(b"a");
        let b = raw_cid(b"b");
        let (sub, sub_block) = dir(&[(&b, "b")]);
        let (root, root_block) = dir(&[(&a, "a"), (&sub, "sub")]);
        let junk = raw_cid(b"junk");
        let sink = Mem::default();
        let mut r = Reachable::new(&[root]);
        // Children before parents, junk in between, a duplicate.
        r.offer(&b, b"b".to_vec(), &sink).unwrap();
        r.offer(&junk, b"junk".to_vec(), &sink).unwrap();
        r.offer(&sub, sub_block, &sink).unwrap();
        r.offer(&root, root_block, &sink).unwrap();
        r.offer(&a, b"a".to_vec(), &sink).unwrap();
        r.offer(&a, b"a".to_vec(), &sink).unwrap();
        let mut kept = sink.0.borrow().clone();
        kept.sort();
        let mut want = vec![root, sub, a, b];
        want.sort();
        assert_eq!(kept, want);
        assert_eq!(r.finish(), (4, 1));
    }

    #[test]
    fn forged_junk_is_dropped_but_a_forged_wanted_block_fails() {
        let a = raw_cid(b"a");
        let (root, root_block) = dir(&[(&a, "a")]);
        let sink = Mem::default();
        let mut r = Reachable::new(&[root]);
        r.offer(&raw_cid(b"x"), b"not x".to_vec(), &sink).unwrap();
        r.offer(&root, root_block, &sink).unwrap();
        assert!(r.offer(&a, b"not a".to_vec(), &sink).is_err());
    }
}
