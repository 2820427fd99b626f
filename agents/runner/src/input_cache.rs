//! The cache of jobs' file and folder inputs, `<cache>/inputs`, kept under a total size.
//!
//! Each input fetched is kept as `<cid>/` (what the fetch wrote) beside a small `<cid>.use`
//! file that records its size in bytes and, as its modification time, when a job last used it.
//! A job using an entry holds a shared lock on its `.use` file ([`Pin`]) from before it looks
//! for the entry until its run is over; eviction takes the lock exclusively, so it never
//! removes an entry a running job has (or is about to have) mounted, in this process or
//! another sharing the folder. Locks are `flock`s: a process that dies lets go of them.
//!
//! When the entries add up to more than the cap, the least recently used ones that no job
//! holds are removed until they fit ([`InputCache::evict`]). An input larger than the cap is
//! never cached: its fetch is refused at the cap ([`InputCache::fetch_cap`]).

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lilypad_store::Cid;
use tracing::{info, warn};

/// The input cache's default cap: 10 GiB.
pub const DEFAULT_INPUT_CACHE_MAX: u64 = 10 << 30;

/// Suffix of an entry's use file (`<cid>.use`).
const USE_SUFFIX: &str = ".use";

/// The input cache in one folder, capped at `max_bytes` in all. Holds no state of its own
/// (it is all on disk), so it is cheap to make wherever it is needed.
#[derive(Clone, Debug)]
pub struct InputCache {
    root: PathBuf,
    max_bytes: u64,
}

/// A job's hold on one cache entry: while it lives, the entry is not evicted.
#[derive(Debug)]
pub struct Pin {
    file: File,
    cid: Cid,
}

impl Pin {
    /// The CID held.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }
}

/// What one [`InputCache::evict`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Entries removed.
    pub entries: usize,
    /// Bytes they held.
    pub bytes: u64,
    /// Bytes the cache holds after it (over the cap only when jobs hold the rest).
    pub left: u64,
}

impl InputCache {
    /// The cache in `root` (made when first written), at most `max_bytes` in all.
    pub fn new(root: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self { root: root.into(), max_bytes }
    }

    /// The folder it lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its cap, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the content of `cid` is (or would be) kept.
    pub fn entry(&self, cid: &Cid) -> PathBuf {
        self.root.join(cid.to_string())
    }

    fn use_file(&self, cid: &Cid) -> PathBuf {
        self.root.join(format!("{cid}{USE_SUFFIX}"))
    }

    /// The most bytes a fetch into this cache may bring for an input allowed `max_bytes`.
    pub fn fetch_cap(&self, max_bytes: u64) -> u64 {
        max_bytes.min(self.max_bytes)
    }

    /// Holds `cid`'s entry (present or not yet) against eviction, waiting while an eviction
    /// of it is under way. Blocking.
    pub fn pin(&self, cid: &Cid) -> std::io::Result<Pin> {
        fs::create_dir_all(&self.root)?;
        let path = self.use_file(cid);
        loop {
            let file = open_use_file(&path)?;
            file.lock_shared()?;
            // An eviction may have removed the file between the open and the lock: hold the
            // one at the path, or nothing holds the entry.
            if same_file(&file, &path) {
                return Ok(Pin { file, cid: *cid });
            }
        }
    }

    /// Records that the job holding `pin` uses its entry, of `bytes` bytes: the size, and now
    /// as its last use.
    pub fn record_use(&self, pin: &Pin, bytes: u64) -> std::io::Result<()> {
        let mut file = &pin.file;
        let text = bytes.to_string();
        let mut current = String::new();
        file.rewind()?;
        let _ = file.read_to_string(&mut current);
        if current != text {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(text.as_bytes())?;
        }
        file.set_modified(SystemTime::now())
    }

    /// Removes the least recently used entries no job holds until the cache is within its
    /// cap. Entries without a use file (an older version's) count by their size on disk, as
    /// used when they were last modified. Blocking.
    pub fn evict(&self) -> std::io::Result<Evicted> {
        let (mut entries, orphans) = self.entries()?;
        // use files of inputs never cached (refused, or their fetch failed)
        for cid in orphans {
            self.remove_unless_held(&cid)?;
        }
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut out = Evicted::default();
        if total > self.max_bytes {
            entries.sort_by_key(|e| e.last_used);
            for e in entries {
                if total <= self.max_bytes {
                    break;
                }
                if self.remove_unless_held(&e.cid)? {
                    total = total.saturating_sub(e.bytes);
                    out.entries += 1;
                    out.bytes += e.bytes;
                    info!(cid = %e.cid, bytes = e.bytes, "input evicted from the cache (least recently used)");
                }
            }
        }
        out.left = total;
        if total > self.max_bytes {
            warn!(cache = %self.root.display(), bytes = total, cap = self.max_bytes, "the input cache is over its cap: running jobs hold the rest");
        }
        Ok(out)
    }

    /// Removes `cid`'s entry and use file unless a job holds it. Whether it was removed.
    fn remove_unless_held(&self, cid: &Cid) -> std::io::Result<bool> {
        let path = self.use_file(cid);
        let file = open_use_file(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        if !same_file(&file, &path) {
            return Ok(false); // another eviction took it meanwhile
        }
        match fs::remove_dir_all(self.entry(cid)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // removed while locked: whoever waits on this file sees it is gone and takes a new one
        fs::remove_file(&path)?;
        Ok(true)
    }

    /// The entries on disk (folders named by a CID), and the CIDs of use files with no entry.
    fn entries(&self) -> std::io::Result<(Vec<Entry>, Vec<Cid>)> {
        let dir = match fs::read_dir(&self.root) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut orphans = Vec::new();
        for item in dir {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(cid) = name.strip_suffix(USE_SUFFIX).and_then(|n| lilypad_store::parse_cid(n).ok()) {
                if !self.entry(&cid).exists() {
                    orphans.push(cid);
                }
                continue;
            }
            let Ok(cid) = lilypad_store::parse_cid(name) else { continue };
            let path = item.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if !meta.is_dir() {
                continue;
            }
            let use_file = self.use_file(&cid);
            let recorded = fs::read_to_string(&use_file).ok().and_then(|t| t.trim().parse::<u64>().ok());
            let bytes = match recorded {
                Some(bytes) => bytes,
                None => size_of(&path).unwrap_or(0),
            };
            let last_used = fs::metadata(&use_file).and_then(|m| m.modified()).or_else(|_| meta.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Entry { cid, bytes, last_used });
        }
        Ok((out, orphans))
    }
}

struct Entry {
    cid: Cid,
    bytes: u64,
    last_used: SystemTime,
}

fn open_use_file(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// Whether `file` is the file at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Bytes of the regular files under `path`.
pub(crate) fn size_of(path: &Path) -> std::io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut total = 0u64;
        for entry in fs::read_dir(path)? {
            total = total.saturating_add(size_of(&entry?.path())?);
        }
        Ok(total)
    } else if meta.is_file() {
        Ok(meta.len())
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cid_of(text: &str) -> Cid {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, text).unwrap();
        lilypad_store::cid_of_path(&f).unwrap()
    }

    /// Puts an entry of `bytes` bytes for `cid`, used `secs_ago` seconds ago; returns its pin.
    fn put(cache: &InputCache, cid: &Cid, bytes: usize, secs_ago: u64) -> Pin {
        let pin = cache.pin(cid).unwrap();
        let entry = cache.entry(cid);
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join(cid.to_string()), vec![7u8; bytes]).unwrap();
        cache.record_use(&pin, bytes as u64).unwrap();
        pin.file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago)).unwrap();
        pin
    }

    #[test]
    fn the_least_recently_used_entries_go_first_and_held_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::new(dir.path().join("inputs"), 2500);
        let (old, older, oldest, new) = (cid_of("a"), cid_of("b"), cid_of("c"), cid_of("d"));
        let held = put(&cache, &oldest, 1000, 300); // a running job has it mounted
        drop(put(&cache, &older, 1000, 200));
        drop(put(&cache, &old, 1000, 100));
        assert_eq!(cache.evict().unwrap(), Evicted { entries: 1, bytes: 1000, left: 2000 }, "over by 500: one goes");
        assert!(cache.entry(&oldest).exists(), "held by a running job: kept though the oldest");
        assert!(!cache.entry(&older).exists() && !cache.use_file(&older).exists(), "the least recently used of the others");
        assert!(cache.entry(&old).exists());

        // a new entry: the held one still stays, the other goes
        drop(put(&cache, &new, 1000, 0));
        assert_eq!(cache.evict().unwrap(), Evicted { entries: 1, bytes: 1000, left: 2000 });
        assert!(!cache.entry(&old).exists() && cache.entry(&new).exists() && cache.entry(&oldest).exists());

        // let go, and used again: now it is the most recent
        drop(held);
        let again = cache.pin(&oldest).unwrap();
        cache.record_use(&again, 1000).unwrap();
        drop(again);
        let small = InputCache::new(cache.root(), 1000);
        assert_eq!(small.evict().unwrap(), Evicted { entries: 1, bytes: 1000, left: 1000 });
        assert!(!cache.entry(&new).exists() && cache.entry(&oldest).exists(), "use refreshes an entry");
    }

    #[test]
    fn over_the_cap_with_every_entry_held_nothing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::new(dir.path(), 100);
        let (a, b) = (cid_of("a"), cid_of("b"));
        let _pa = put(&cache, &a, 80, 10);
        let _pb = put(&cache, &b, 80, 5);
        // a second holder of the same entry (another job, another process: its own open file)
        let _pa2 = cache.pin(&a).unwrap();
        assert_eq!(cache.evict().unwrap(), Evicted { entries: 0, bytes: 0, left: 160 });
        assert!(cache.entry(&a).exists() && cache.entry(&b).exists());
        assert_eq!(cache.fetch_cap(1 << 20), 100);
        assert_eq!(cache.fetch_cap(50), 50);
    }

    #[test]
    fn entries_without_a_use_file_are_sized_on_disk_and_other_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::new(dir.path(), 10);
        let a = cid_of("a");
        fs::create_dir_all(cache.entry(&a).join("sub")).unwrap();
        fs::write(cache.entry(&a).join("sub/x"), [1u8; 30]).unwrap();
        fs::create_dir(dir.path().join(".lilypad-fetch-x")).unwrap();
        fs::write(dir.path().join("notes"), [1u8; 100]).unwrap();
        assert_eq!(cache.evict().unwrap(), Evicted { entries: 1, bytes: 30, left: 0 });
        assert!(dir.path().join(".lilypad-fetch-x").exists() && dir.path().join("notes").exists());
        assert_eq!(InputCache::new(dir.path().join("none"), 0).evict().unwrap(), Evicted::default());
        // the use file of an input never cached goes too, unless a job holds it
        let (b, c) = (cid_of("b"), cid_of("c"));
        drop(cache.pin(&b).unwrap());
        let held = cache.pin(&c).unwrap();
        cache.evict().unwrap();
        assert!(!cache.use_file(&b).exists());
        assert!(cache.use_file(&c).exists());
        drop(held);
    }
}
