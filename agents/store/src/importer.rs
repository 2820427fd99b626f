//! UnixFS importer that gives the CIDs of `ipfs add -r --cid-version=1` (Kubo).
//!
//! * Files are cut into [`CHUNK_SIZE`] (262144-byte) chunks, each stored as a raw block
//!   (codec 0x55). A file of at most one chunk is just that raw block; an empty file is the raw
//!   block of zero bytes.
//! * Larger files are a balanced tree of dag-pb nodes (codec 0x70) with at most [`MAX_LINKS`]
//!   (174) links each; every node carries UnixFS `Data{Type=File, filesize, blocksizes}`, and
//!   links have an empty name and the cumulative size of the child's blocks as Tsize. All leaves
//!   sit at the same depth; nodes fill left to right, as in Kubo's balanced layout.
//! * A folder is a dag-pb node with UnixFS `Data{Type=Directory}` and one link per entry, sorted by
//!   name bytes, each with the entry's name and cumulative size.
//! * A folder whose links would exceed [`HAMT_THRESHOLD`] (the sum of name and CID lengths over
//!   its entries is greater than 256 KiB: some 2,700 entries with 60-byte names, 7,000 with
//!   names like `file-0001.txt`) is a HAMT-sharded folder instead, fanout [`HAMT_FANOUT`], as
//!   Kubo builds it: see [`crate::hamt`] for its layout. Kubo counts every entry, subfolders
//!   included, in that sum; the JS importer (`ipfs-unixfs-importer` 17) counts a non-empty
//!   subfolder as 0 bytes while it builds, so for a folder near the threshold that is close only
//!   thanks to its subfolders the two can disagree; this importer follows Kubo.
//! * Hidden files (names starting with '.') are imported like any other: the result is that of
//!   `ipfs add -r -H --cid-version=1` (without `-H`, Kubo skips them; both agree for folders with
//!   no hidden entries). A provider must not silently drop outputs.
//!
//! Refused: symbolic links anywhere (they could point outside the published folder), sockets,
//! FIFOs and devices, and names that are not UTF-8.
//!
//! Files are streamed in chunk-sized reads through one reused buffer, so memory stays at one
//! chunk plus at most 174 pending links per tree level, whatever the file size.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Mutex, PoisonError};

use cid::Cid;
use tracing::debug;

use crate::blockstore::{BlockSink, DiskBlockstore, NullSink};
use crate::error::{Result, StoreError};
use crate::hamt;
use crate::hash::{dag_pb_cid, raw_cid};
use crate::pb;

/// Size of the fixed-size chunks files are cut into (Kubo's default `size-262144` chunker).
pub const CHUNK_SIZE: usize = 262_144;

/// Most links in one file node (Kubo's balanced layout).
pub const MAX_LINKS: usize = 174;

pub use crate::hamt::{HAMT_FANOUT, HAMT_THRESHOLD};

/// The root of an imported DAG, as its parent links to it.
#[derive(Debug, Clone, Copy)]
struct Imported {
    cid: Cid,
    /// Cumulative size of all blocks in the DAG (what a parent's link carries as Tsize).
    tsize: u64,
    /// File content bytes under this node (0 for folders).
    filesize: u64,
}

/// Imports the file or folder at `path` into `store`, writing every block as it goes, and
/// returns its root CID: the CID `ipfs add -r -H --cid-version=1 <path>` prints for it.
///
/// Blocks are written by a few background threads while this one reads and hashes (creating
/// one file per block is what limits the speed). If the import fails, the blocks already written
/// stay in the store: they are valid, just unreferenced.
///
/// Blocking (file system work): from async code, call it in `tokio::task::spawn_blocking`.
pub fn add_path(path: &Path, store: &DiskBlockstore) -> Result<Cid> {
    let writers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let root = ParallelSink::run(store, writers, |sink| import_path(path, sink, &mut Buffers::default()))?;
    debug!(path = %path.display(), cid = %root.cid, bytes = root.tsize, "imported");
    Ok(root.cid)
}

/// Hands blocks to writer threads through a bounded queue.
struct ParallelSink<'a> {
    tx: SyncSender<(Cid, Vec<u8>)>,
    failed: &'a AtomicBool,
}

impl ParallelSink<'_> {
    /// Runs `work` with a sink backed by `writers` threads writing into `store`. A write error
    /// (the first one) wins over the error `work` then stops with.
    fn run<T>(
        store: &DiskBlockstore,
        writers: usize,
        work: impl FnOnce(&ParallelSink<'_>) -> Result<T>,
    ) -> Result<T> {
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
        let (tx, rx) = sync_channel::<(Cid, Vec<u8>)>(2 * writers);
        let rx = Mutex::new(rx);
        let result = std::thread::scope(|scope| {
            for _ in 0..writers {
                scope.spawn(|| loop {
                    let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((cid, data)) = next else { break };
                    if failed.load(Ordering::Relaxed) {
                        continue; // drain until the importer notices and stops
                    }
                    if let Err(e) = store.put_block(&cid, &data) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                });
            }
            let sink = ParallelSink {
                tx,
                failed: &failed,
            };
            let result = work(&sink);
            drop(sink); // closes the queue: writers finish what is queued and exit
            result
        });
        match first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(e) => Err(e),
            None => result,
        }
    }
}

impl BlockSink for ParallelSink<'_> {
    fn put_block(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        let stopped = || StoreError::Unsupported {
            subject: cid.to_string(),
            what: "block writers stopped".into(),
        };
        if self.failed.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        self.tx.send((*cid, data.to_vec())).map_err(|_| stopped())
    }
}

/// Computes the root CID of the file or folder at `path` like [`add_path`], writing nothing.
pub fn cid_of_path(path: &Path) -> Result<Cid> {
    Ok(import_path(path, &NullSink, &mut Buffers::default())?.cid)
}

/// Chunk buffers one importing thread reuses from file to file: allocated (and zeroed) once
/// per thread, not once per file, which matters for folders of many small files.
#[derive(Default)]
struct Buffers {
    chunks: Vec<Vec<u8>>,
}

impl Buffers {
    /// At least `n` chunk-sized buffers; the first `n` of them.
    fn take(&mut self, n: usize) -> &mut [Vec<u8>] {
        if self.chunks.len() < n {
            self.chunks.resize_with(n, || vec![0u8; CHUNK_SIZE]);
        }
        &mut self.chunks[..n]
    }
}

fn import_path<S: BlockSink + Sync>(path: &Path, sink: &S, bufs: &mut Buffers) -> Result<Imported> {
    let meta = fs::symlink_metadata(path).map_err(|e| StoreError::io(path, e))?;
    import_typed(path, meta.file_type(), sink, bufs)
}

/// [`import_path`] of what is known to be of type `ft` (a folder entry's type, read with the
/// folder: no `stat` per entry).
fn import_typed<S: BlockSink + Sync>(path: &Path, ft: fs::FileType, sink: &S, bufs: &mut Buffers) -> Result<Imported> {
    if ft.is_symlink() {
        Err(StoreError::Symlink {
            path: path.to_path_buf(),
        })
    } else if ft.is_dir() {
        import_dir(path, sink, bufs)
    } else if ft.is_file() {
        import_file(path, sink, bufs)
    } else {
        Err(StoreError::Unsupported {
            subject: path.display().to_string(),
            what: "not a regular file or folder (socket, FIFO or device)".into(),
        })
    }
}

/// Chunks read and hashed together, per thread: a file of more than one chunk is taken in
/// batches of `HASH_BATCH_PER_THREAD * threads` chunks, each thread reading its chunks at their
/// own offsets and hashing them (SHA-256 and the copy out of the page cache are what bound
/// `ipfs add`), then given to the builder in order, so the DAG and its CIDs are exactly those
/// of the sequential import.
const HASH_BATCH_PER_THREAD: usize = 8;

/// Threads that hash one file's chunks: the machine's parallelism, at most 8. Read once per
/// process: `available_parallelism` reads the cgroup's CPU quota from `/proc` and `/sys` on
/// every call, which cost an eighth of the whole import of a folder of 4,000 small files.
fn hash_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

fn import_file<S: BlockSink>(path: &Path, sink: &S, bufs: &mut Buffers) -> Result<Imported> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let threads = hash_threads();
    // The first chunk alone (most files are small): a file of at most one chunk is that
    // chunk's raw block, with no builder or batch to set up.
    let first = bufs.take(1);
    let n = read_full_at(&file, &mut first[0], 0).map_err(|e| StoreError::io(path, e))?;
    let cid = raw_cid(&first[0][..n]);
    if n < CHUNK_SIZE {
        sink.put_block(&cid, &first[0][..n])?;
        let len = n as u64;
        return Ok(Imported { cid, tsize: len, filesize: len });
    }
    let mut builder = FileBuilder::default();
    builder.push_leaf(cid, &first[0], sink)?;
    // The size the file has now sizes the batches, so that a file of a few chunks is split
    // evenly over the threads (reads past its end would leave a thread idle); the reading
    // itself still ends where the file does, whatever its size by then.
    let size = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut lens: Vec<usize> = Vec::new();
    let mut cids: Vec<Cid> = Vec::new();
    let mut offset = CHUNK_SIZE as u64;
    loop {
        // a batch of chunks read and hashed at once: as many as the threads read and hash
        // together, or those left (at least one, which finds the end)
        let left = size.saturating_sub(offset).div_ceil(CHUNK_SIZE as u64);
        let want = usize::try_from(left).unwrap_or(usize::MAX).clamp(1, HASH_BATCH_PER_THREAD * threads);
        let batch = bufs.take(want);
        let read = read_and_hash(&file, batch, offset, threads);
        lens.clear();
        cids.clear();
        let mut at_end = false;
        for result in read {
            let (n, cid) = result.map_err(|e| StoreError::io(path, e))?;
            if n == 0 && (builder.has_chunks() || !lens.is_empty()) {
                at_end = true;
                break;
            }
            lens.push(n);
            cids.push(cid);
            if n < CHUNK_SIZE {
                at_end = true;
                break;
            }
        }
        for ((buf, &n), cid) in bufs.take(want).iter().zip(&lens).zip(&cids) {
            builder.push_leaf(*cid, &buf[..n], sink)?;
            offset += n as u64;
        }
        if at_end {
            break;
        }
    }
    builder.finish(sink)
}

/// Reads `bufs.len()` consecutive chunks of `file` from `offset` (each at its own position,
/// so threads read in parallel) and hashes each: `(bytes read, raw-block CID of them)` in
/// order. A chunk past the end of the file reads 0 bytes. On `threads` threads when there are
/// several chunks, on this one otherwise.
fn read_and_hash(file: &File, bufs: &mut [Vec<u8>], offset: u64, threads: usize) -> Vec<std::io::Result<(usize, Cid)>> {
    let one = |buf: &mut Vec<u8>, at: u64| -> std::io::Result<(usize, Cid)> {
        let n = read_full_at(file, buf, at)?;
        Ok((n, raw_cid(&buf[..n])))
    };
    let chunk_offset = |i: usize| offset + (i * CHUNK_SIZE) as u64;
    if bufs.len() < 2 || threads < 2 {
        return bufs.iter_mut().enumerate().map(|(i, b)| one(b, chunk_offset(i))).collect();
    }
    let per = bufs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = bufs
            .chunks_mut(per)
            .enumerate()
            .map(|(t, part)| {
                let first = t * per;
                scope.spawn(move || part.iter_mut().enumerate().map(|(i, b)| one(b, chunk_offset(first + i))).collect::<Vec<_>>())
            })
            .collect();
        // neither reading nor hashing panics; a panicking thread is re-raised here as in
        // sequential code
        parts.into_iter().flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Reads at `offset` until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Builds the balanced file DAG bottom-up as chunks arrive.
///
/// `levels[0]` holds leaves not yet given a parent, `levels[k]` nodes of height k. A level is
/// turned into a parent node only once it is full *and* another node arrives for it, so a
/// file of exactly 174 chunks gets one root over 174 leaves, and one of 175 chunks a root over
/// a full node and a node with one leaf, as Kubo's balanced builder makes them.
#[derive(Default)]
struct FileBuilder {
    levels: Vec<Vec<Imported>>,
}

impl FileBuilder {
    fn has_chunks(&self) -> bool {
        self.levels.first().is_some_and(|l| !l.is_empty())
    }

    /// Adds the next chunk, `cid` being its raw-block CID.
    fn push_leaf<S: BlockSink>(&mut self, cid: Cid, chunk: &[u8], sink: &S) -> Result<()> {
        sink.put_block(&cid, chunk)?;
        let len = chunk.len() as u64;
        self.push(
            0,
            Imported {
                cid,
                tsize: len,
                filesize: len,
            },
            sink,
        )
    }

    fn push<S: BlockSink>(&mut self, level: usize, node: Imported, sink: &S) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        if self.levels[level].len() == MAX_LINKS {
            let children = std::mem::take(&mut self.levels[level]);
            let parent = file_node(&children, sink)?;
            self.push(level + 1, parent, sink)?;
        }
        self.levels[level].push(node);
        Ok(())
    }

    fn finish<S: BlockSink>(mut self, sink: &S) -> Result<Imported> {
        let mut level = 0;
        while level < self.levels.len() {
            let children = std::mem::take(&mut self.levels[level]);
            let top = level + 1 == self.levels.len();
            match children.as_slice() {
                [] => {}
                [only] if top => return Ok(*only),
                _ if top => return file_node(&children, sink),
                _ => {
                    let parent = file_node(&children, sink)?;
                    self.push(level + 1, parent, sink)?;
                }
            }
            level += 1;
        }
        // push_leaf is always called at least once (an empty file is one empty chunk).
        Err(StoreError::Unsupported {
            subject: "file".into(),
            what: "file builder finished without chunks".into(),
        })
    }
}

/// Makes the dag-pb file node over `children` and stores it.
fn file_node<S: BlockSink>(children: &[Imported], sink: &S) -> Result<Imported> {
    let filesize: u64 = children.iter().map(|c| c.filesize).sum();
    let data = pb::encode_unixfs_file(filesize, children.iter().map(|c| c.filesize));
    let block = pb::encode_node(children.iter().map(|c| (&c.cid, "", c.tsize)), &data);
    let cid = dag_pb_cid(&block);
    sink.put_block(&cid, &block)?;
    let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    Ok(Imported {
        cid,
        tsize,
        filesize,
    })
}

/// Threads importing folder entries beside the walking threads, in the whole process: at most
/// one fewer than [`hash_threads`], so nested folders do not multiply threads.
static ENTRY_HELPERS: AtomicUsize = AtomicUsize::new(0);

/// Takes up to `want` of the spare entry-import threads; gives them back when dropped.
struct HelperTickets(usize);

impl HelperTickets {
    fn take(want: usize) -> Self {
        let limit = hash_threads().saturating_sub(1);
        let mut got = 0;
        let _ = ENTRY_HELPERS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
            got = want.min(limit.saturating_sub(busy));
            Some(busy + got)
        });
        HelperTickets(got)
    }
}

impl Drop for HelperTickets {
    fn drop(&mut self) {
        ENTRY_HELPERS.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Imports every path (of the type its folder listed it with), in order; the entries of one
/// folder on spare threads when there are any (small files are hashed whole, one per
/// thread), else one after the other. The first failure (in `paths` order among those tried)
/// is returned.
fn import_all<S: BlockSink + Sync>(paths: &[(std::path::PathBuf, fs::FileType)], sink: &S, bufs: &mut Buffers) -> Result<Vec<Imported>> {
    let tickets = HelperTickets::take(paths.len().saturating_sub(1));
    if tickets.0 == 0 {
        return paths.iter().map(|(p, ft)| import_typed(p, *ft, sink, bufs)).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<Imported>>>> = paths.iter().map(|_| Mutex::new(None)).collect();
    let work = |bufs: &mut Buffers| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= paths.len() || failed.load(Ordering::Relaxed) {
            break;
        }
        let (path, ft) = &paths[i];
        let result = import_typed(path, *ft, sink, bufs);
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
    };
    std::thread::scope(|scope| {
        for _ in 0..tickets.0 {
            scope.spawn(|| work(&mut Buffers::default()));
        }
        work(bufs);
    });
    drop(tickets);
    let mut out = Vec::with_capacity(paths.len());
    let mut first_error = None;
    for (slot, (path, _)) in results.into_iter().zip(paths) {
        match slot.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(Ok(imported)) => out.push(imported),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None if first_error.is_none() && !failed.load(Ordering::Relaxed) => {
                return Err(StoreError::Unsupported { subject: path.display().to_string(), what: "not imported".into() });
            }
            None => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn import_dir<S: BlockSink + Sync>(path: &Path, sink: &S, bufs: &mut Buffers) -> Result<Imported> {
    let mut names: Vec<String> = Vec::new();
    let mut paths: Vec<(std::path::PathBuf, fs::FileType)> = Vec::new();
    let read = fs::read_dir(path).map_err(|e| StoreError::io(path, e))?;
    for entry in read {
        let entry = entry.map_err(|e| StoreError::io(path, e))?;
        let child = entry.path();
        // the type the folder lists (no stat where the file system gives it)
        let ft = entry.file_type().map_err(|e| StoreError::io(&child, e))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| StoreError::InvalidName {
                path: child.clone(),
            })?;
        names.push(name);
        paths.push((child, ft));
    }
    let imported = import_all(&paths, sink, bufs)?;
    let mut entries: Vec<(String, Imported)> = names.into_iter().zip(imported).collect();
    // dag-pb requires links sorted by name bytes; String's Ord is byte order.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    let estimate: usize = entries
        .iter()
        .map(|(name, c)| name.len() + c.cid.encoded_len())
        .sum();
    if estimate > HAMT_THRESHOLD {
        let count = entries.len();
        let shard_entries = entries
            .into_iter()
            .map(|(name, c)| hamt::ShardEntry {
                name,
                cid: c.cid,
                tsize: c.tsize,
            })
            .collect();
        let (cid, tsize) = hamt::build(shard_entries, sink)?;
        debug!(path = %path.display(), entries = count, estimate, %cid, "sharded folder (HAMT)");
        return Ok(Imported {
            cid,
            tsize,
            filesize: 0,
        });
    }

    let block = pb::encode_node(
        entries
            .iter()
            .map(|(name, c)| (&c.cid, name.as_str(), c.tsize)),
        &pb::UNIXFS_DIRECTORY_DATA,
    );
    let cid = dag_pb_cid(&block);
    sink.put_block(&cid, &block)?;
    let tsize = block.len() as u64 + entries.iter().map(|(_, c)| c.tsize).sum::<u64>();
    Ok(Imported {
        cid,
        tsize,
        filesize: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{decode_node, decode_unixfs, UNIXFS_DIRECTORY, UNIXFS_FILE};
    use std::collections::HashMap;

    /// Keeps blocks in memory so tests can inspect the DAG.
    #[derive(Default)]
    struct MemSink(Mutex<HashMap<Cid, Vec<u8>>>);

    impl BlockSink for MemSink {
        fn put_block(&self, cid: &Cid, data: &[u8]) -> Result<()> {
            self.0.lock().unwrap().insert(*cid, data.to_vec());
            Ok(())
        }
    }

    impl crate::blockstore::BlockSource for MemSink {
        fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
            self.0
                .lock()
                .unwrap()
                .get(cid)
                .cloned()
                .ok_or(StoreError::NotFound { cid: *cid })
        }
    }

    impl MemSink {
        fn get(&self, cid: &Cid) -> Vec<u8> {
            self.0.lock().unwrap().get(cid).cloned().expect("block present")
        }
    }

    /// Imports `len` bytes of a deterministic pattern through the file builder.
    fn import_bytes(data: &[u8], sink: &MemSink) -> Imported {
        let mut b = FileBuilder::default();
        let mut chunks = data.chunks(CHUNK_SIZE);
        match chunks.next() {
            None => b.push_leaf(raw_cid(&[]), &[], sink).unwrap(),
            Some(first) => {
                b.push_leaf(raw_cid(first), first, sink).unwrap();
                for c in chunks {
                    b.push_leaf(raw_cid(c), c, sink).unwrap();
                }
            }
        }
        b.finish(sink).unwrap()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Depth of the tree and number of leaves, checking UnixFS sizes on the way.
    fn shape(sink: &MemSink, cid: &Cid) -> (usize, usize, u64) {
        if cid.codec() == crate::hash::CODEC_RAW {
            return (0, 1, sink.get(cid).len() as u64);
        }
        let node = decode_node(&sink.get(cid)).unwrap();
        let fs = decode_unixfs(node.data.as_deref().unwrap()).unwrap();
        assert_eq!(fs.kind, UNIXFS_FILE);
        assert!(node.links.len() <= MAX_LINKS);
        assert_eq!(fs.blocksizes.len(), node.links.len());
        let mut depth = None;
        let mut leaves = 0;
        let mut size = 0;
        for (link, bs) in node.links.iter().zip(&fs.blocksizes) {
            assert_eq!(link.name.as_deref(), Some(""));
            let (d, l, s) = shape(sink, &link.cid);
            assert_eq!(s, *bs, "blocksize of child");
            assert!(
                depth.is_none() || depth == Some(d),
                "leaves all at one depth"
            );
            depth = Some(d);
            leaves += l;
            size += s;
        }
        assert_eq!(fs.filesize, Some(size));
        (depth.unwrap() + 1, leaves, size)
    }

    #[test]
    fn a_file_hashed_in_parallel_batches_gives_the_sequential_dag() {
        // sizes around one chunk, one batch and a full 174-link node, whatever the thread count
        let batch = HASH_BATCH_PER_THREAD * hash_threads();
        let dir = tempfile::tempdir().unwrap();
        for chunks in [0, 1, 2, batch, batch + 1, 2 * batch + 1, MAX_LINKS + 1] {
            for extra in [0usize, 1] {
                let len = chunks * CHUNK_SIZE + extra;
                let data: Vec<u8> = pattern(len).iter().enumerate().map(|(i, b)| b ^ (i / CHUNK_SIZE) as u8).collect();
                let path = dir.path().join(format!("f{chunks}-{extra}"));
                std::fs::write(&path, &data).unwrap();
                let sequential = import_bytes(&data, &MemSink::default());
                let sink = MemSink::default();
                let parallel = import_file(&path, &sink, &mut Buffers::default()).unwrap();
                assert_eq!(parallel.cid, sequential.cid, "{len} bytes ({chunks} chunks + {extra})");
                assert_eq!((parallel.tsize, parallel.filesize), (sequential.tsize, sequential.filesize));
            }
        }
        // and with reading and hashing spread over several threads explicitly
        let path = dir.path().join("nine");
        let data: Vec<u8> = (0..9 * CHUNK_SIZE + 5).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut bufs = vec![vec![0u8; CHUNK_SIZE]; 11];
        let got: Vec<(usize, Cid)> = read_and_hash(&file, &mut bufs, 0, 4).into_iter().map(Result::unwrap).collect();
        let mut want: Vec<(usize, Cid)> = data.chunks(CHUNK_SIZE).map(|c| (c.len(), raw_cid(c))).collect();
        want.push((0, raw_cid(&[]))); // 9 full chunks, 5 bytes, then one read past the end
        assert_eq!(got, want, "in order, past the end as empty reads");
    }

    #[test]
    fn chunk_boundaries() {
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE] {
            let sink = MemSink::default();
            let data = pattern(len);
            let root = import_bytes(&data, &sink);
            assert_eq!(root.cid, raw_cid(&data), "{len} bytes is a single raw leaf");
            assert_eq!(root.tsize, len as u64);
        }
        let sink = MemSink::default();
        let data = pattern(CHUNK_SIZE + 1);
        let root = import_bytes(&data, &sink);
        assert_eq!(root.cid.codec(), crate::hash::CODEC_DAG_PB);
        assert_eq!(shape(&sink, &root.cid), (1, 2, CHUNK_SIZE as u64 + 1));
        let node = decode_node(&sink.get(&root.cid)).unwrap();
        assert_eq!(node.links[0].cid, raw_cid(&data[..CHUNK_SIZE]));
        assert_eq!(node.links[1].cid, raw_cid(&data[CHUNK_SIZE..]));
        assert_eq!(node.links[1].tsize, Some(1));
        let block_len = sink.get(&root.cid).len() as u64;
        assert_eq!(root.tsize, block_len + CHUNK_SIZE as u64 + 1);
    }

    #[test]
    fn tree_shapes() {
        // Chunks of one byte each would not be Kubo's chunking, but exercise the same tree
        // builder cheaply: the shape depends only on the number of chunks.
        for (chunks, depth) in [
            (2, 1),
            (MAX_LINKS, 1),
            (MAX_LINKS + 1, 2),
            (MAX_LINKS * MAX_LINKS, 2),
            (MAX_LINKS * MAX_LINKS + 1, 3),
        ] {
            let sink = MemSink::default();
            let mut b = FileBuilder::default();
            for i in 0..chunks {
                let c = (i as u32).to_le_bytes();
                b.push_leaf(raw_cid(&c), &c, &sink).unwrap();
            }
            let root = b.finish(&sink).unwrap();
            let (d, leaves, size) = shape(&sink, &root.cid);
            assert_eq!(
                (d, leaves, size),
                (depth, chunks, 4 * chunks as u64),
                "{chunks} chunks"
            );
            if chunks == MAX_LINKS + 1 {
                // Root over a full node and a node with a single leaf.
                let node = decode_node(&sink.get(&root.cid)).unwrap();
                assert_eq!(node.links.len(), 2);
                let last = decode_node(&sink.get(&node.links[1].cid)).unwrap();
                assert_eq!(last.links.len(), 1);
            }
        }
    }

    #[test]
    fn two_level_tree_from_a_file() {
        // 174 * 262144 + 1 bytes: the first size that needs a second level of file nodes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let f = File::create(&path).unwrap();
        f.set_len((MAX_LINKS * CHUNK_SIZE + 1) as u64).unwrap(); // sparse zeros
        let sink = MemSink::default();
        let root = import_path(&path, &sink, &mut Buffers::default()).unwrap();
        assert_eq!(
            shape(&sink, &root.cid),
            (2, MAX_LINKS + 1, (MAX_LINKS * CHUNK_SIZE + 1) as u64)
        );
        // Identical zero chunks dedupe: full chunk, 1-byte chunk, two file nodes, root.
        assert_eq!(sink.0.lock().unwrap().len(), 5);
        assert_eq!(cid_of_path(&path).unwrap(), root.cid);
    }

    #[test]
    fn folder_links_sorted_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("b-sub/ü-nested")).unwrap();
        fs::create_dir_all(top.join("empty")).unwrap();
        fs::write(top.join("a.txt"), b"hello\n").unwrap();
        fs::write(top.join("B.txt"), b"upper\n").unwrap();
        fs::write(top.join(".hidden"), b"").unwrap();
        fs::write(
            top.join("b-sub/ü-nested/データ.bin"),
            pattern(CHUNK_SIZE + 10),
        )
        .unwrap();
        let sink = MemSink::default();
        let root = import_path(&top, &sink, &mut Buffers::default()).unwrap();

        let node = decode_node(&sink.get(&root.cid)).unwrap();
        assert_eq!(
            decode_unixfs(node.data.as_deref().unwrap()).unwrap().kind,
            UNIXFS_DIRECTORY
        );
        let names: Vec<_> = node.links.iter().map(|l| l.name.clone().unwrap()).collect();
        assert_eq!(names, [".hidden", "B.txt", "a.txt", "b-sub", "empty"]);
        assert_eq!(node.links[2].cid, raw_cid(b"hello\n"));
        assert_eq!(node.links[2].tsize, Some(6));
        assert_eq!(node.links[4].tsize, Some(4)); // the empty folder's 4-byte block
        let sum: u64 = node.links.iter().map(|l| l.tsize.unwrap()).sum();
        assert_eq!(root.tsize, sink.get(&root.cid).len() as u64 + sum);
        assert_eq!(cid_of_path(&top).unwrap(), root.cid);
    }

    #[test]
    fn unicode_names_sort_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["z", "é", "e", "Ω", "a b", "😀", "E"] {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let sink = MemSink::default();
        let root = import_path(dir.path(), &sink, &mut Buffers::default()).unwrap();
        let node = decode_node(&sink.get(&root.cid)).unwrap();
        let names: Vec<_> = node.links.iter().map(|l| l.name.clone().unwrap()).collect();
        assert_eq!(names, ["E", "a b", "e", "z", "é", "Ω", "😀"]);
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("sub")).unwrap();
        fs::write(top.join("sub/ok"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", top.join("sub/link")).unwrap();
        let err = cid_of_path(&top).unwrap_err();
        assert!(
            matches!(&err, StoreError::Symlink { path } if path.ends_with("sub/link")),
            "{err}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn non_utf8_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xff");
        fs::write(dir.path().join(name), b"x").unwrap();
        assert!(matches!(
            cid_of_path(dir.path()),
            Err(StoreError::InvalidName { .. })
        ));
    }

    #[test]
    fn add_path_reports_block_write_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path().join("store")).unwrap();
        let top = dir.path().join("top");
        for i in 0..50 {
            write_file(&top.join(format!("f{i}")), &pattern(1000 + i));
        }
        // Block one leaf's shard folder with a plain file: its write fails.
        let victim = raw_cid(&pattern(1025));
        let shard = store.block_path(&victim).parent().unwrap().to_path_buf();
        fs::create_dir_all(shard.parent().unwrap()).unwrap();
        fs::write(&shard, b"in the way").unwrap();
        let err = add_path(&top, &store).unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { path, .. } if path.starts_with(&shard)),
            "{err}"
        );
        // Once unblocked, the same import succeeds and every block is there.
        fs::remove_file(&shard).unwrap();
        let root = add_path(&top, &store).unwrap();
        assert_eq!(root, cid_of_path(&top).unwrap());
        assert!(store.has(&victim).unwrap());
    }

    fn write_file(path: &Path, data: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn missing_path_is_an_io_error_naming_it() {
        let err = cid_of_path(Path::new("/nonexistent/lilypad")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/lilypad"), "{err}");
    }

    #[test]
    fn folder_over_the_threshold_is_sharded() {
        let dir = tempfile::tempdir().unwrap();
        // 4096 entries * (28-byte name + 36-byte CID) = 262144: exactly the threshold, one block.
        let name = |i: usize| format!("{i:028}");
        for i in 0..4096 {
            File::create(dir.path().join(name(i))).unwrap();
        }
        let sink = MemSink::default();
        let flat = import_path(dir.path(), &sink, &mut Buffers::default()).unwrap();
        let node = decode_node(&sink.get(&flat.cid)).unwrap();
        assert_eq!(node.links.len(), 4096);
        let fs = decode_unixfs(node.data.as_deref().unwrap()).unwrap();
        assert_eq!(fs.kind, UNIXFS_DIRECTORY);
        // One more: a HAMT whose root links to sub-shards ("XX") and entries ("XX<name>").
        File::create(dir.path().join(name(4096))).unwrap();
        let sink = MemSink::default();
        let sharded = import_path(dir.path(), &sink, &mut Buffers::default()).unwrap();
        let node = decode_node(&sink.get(&sharded.cid)).unwrap();
        let fs = decode_unixfs(node.data.as_deref().unwrap()).unwrap();
        assert_eq!(fs.kind, crate::pb::UNIXFS_HAMT_SHARD);
        assert_eq!(fs.fanout, Some(256));
        assert_eq!(fs.hash_type, Some(0x22));
        assert_eq!(
            node.links.len(),
            256,
            "4097 names fill every slot of the root"
        );
        assert_eq!(fs.data.as_deref(), Some(&[0xff; 32][..]));
        let names: Vec<_> = node.links.iter().map(|l| l.name.clone().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "links in slot order");
        assert!(
            names.iter().all(|n| n.len() == 2 || n.len() == 30),
            "{names:?}"
        );
        // Every entry is reachable exactly once through the shards.
        let mut found = Vec::new();
        crate::hamt::for_each_entry(&sink, &sharded.cid, &node.links, &fs, &mut |n, _| {
            found.push(n.to_string());
            Ok(())
        })
        .unwrap();
        found.sort();
        let expected: Vec<String> = (0..4097).map(name).collect();
        assert_eq!(found, expected);
        // Tsize sums the whole DAG: every shard block plus 4097 empty files of 0 bytes.
        let mut blocks = 0u64;
        for (cid, data) in sink.0.lock().unwrap().iter() {
            if cid.codec() == crate::hash::CODEC_DAG_PB {
                blocks += data.len() as u64;
            }
        }
        assert_eq!(sharded.tsize, blocks);
    }
}
