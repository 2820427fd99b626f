//! Safe extraction of a job's outputs from the tar stream the engine returns.
//!
//! The archive comes from inside the sandbox, so it is untrusted. Only regular files and
//! folders are written; everything else is skipped and reported: symlinks (a link to
//! `/etc/passwd` is neither copied as a link nor followed), hardlinks, devices, fifos, and any
//! entry whose path is absolute, contains `..`, or lies outside the expected top folder.
//! Files are created with `O_EXCL` under a folder this code created and which holds no links,
//! so nothing can be written outside it. Total bytes, entries and archive size are capped.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Page size used to estimate how full the outputs tmpfs was.
pub const PAGE: u64 = 4096;
/// Most skipped entries listed by name in [`ExtractReport::skipped`].
pub const MAX_LISTED_SKIPS: usize = 100;

/// Caps for [`extract_outputs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most bytes of file contents written.
    pub max_bytes: u64,
    /// Most archive entries looked at.
    pub max_entries: u64,
    /// Most bytes read from the archive (contents, headers and padding together).
    pub max_archive_bytes: u64,
    /// Top folder every entry must be under, stripped from the paths (the engine names the
    /// copied folder's base name first, e.g. `outputs/`). `None`: paths are kept as they are.
    pub strip_prefix: Option<String>,
}

/// What [`extract_outputs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Regular files written.
    pub files: u64,
    /// Folders created.
    pub dirs: u64,
    /// Entries not copied, with the reason (`"outputs/x: symlink"`), the first
    /// [`MAX_LISTED_SKIPS`].
    pub skipped: Vec<String>,
    /// All entries not copied.
    pub skipped_count: u64,
    /// Entries seen: each used an inode of the source tmpfs (tmpfs counts hardlinks too).
    pub inodes: u64,
    /// Pages the regular files occupied in the source tmpfs (sizes rounded up to [`PAGE`]).
    pub pages: u64,
    /// A cap was hit: extraction stopped there (a partly written file is removed).
    pub truncated: bool,
}

/// Why extraction failed (a malformed archive or an I/O error). Unsafe entries are not errors.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    /// The archive could not be read (cut stream, bad header).
    #[error("reading the outputs archive: {0}")]
    Archive(#[source] io::Error),
    /// Writing the destination failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl OutputsError {
    /// A cut stream or a full local disk may go away; a malformed archive will not.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            OutputsError::Archive(e) => matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::TimedOut
            ),
            OutputsError::Write { .. } => true,
        }
    }
}

/// Extracts the regular files and folders of the tar stream `reader` into `dest` (created if
/// missing; it must not contain symlinks), within `limits`. See the module docs for what is
/// skipped.
pub fn extract_outputs<R: Read>(
    reader: R,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport, OutputsError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputsError::Write { path, source }
    };
    fs::create_dir_all(dest).map_err(werr(dest))?;
    let mut report = ExtractReport::default();
    let counted = CappedReader {
        inner: reader,
        left: limits.max_archive_bytes,
        hit: false,
    };
    let mut archive = tar::Archive::new(counted);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return Err(OutputsError::Archive(e)),
    };
    let mut seen: u64 = 0;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) if is_cap(&e) => {
                report.truncated = true;
                break;
            }
            Err(e) => return Err(OutputsError::Archive(e)),
        };
        seen += 1;
        if seen > limits.max_entries {
            report.truncated = true;
            break;
        }
        let raw = match entry.path() {
            Ok(p) => p.into_owned(),
            Err(e) => return Err(OutputsError::Archive(e)),
        };
        let shown = raw.display().to_string();
        let kind = entry.header().entry_type();
        report.inodes += 1;
        let rel = match safe_relative(&raw, limits.strip_prefix.as_deref()) {
            Some(r) => r,
            None => {
                skip(&mut report, &shown, "unsafe path");
                continue;
            }
        };
        if rel.as_os_str().is_empty() {
            // The top folder itself.
            continue;
        }
        let target = dest.join(&rel);
        if kind.is_dir() {
            match fs::create_dir_all(&target) {
                Ok(()) => report.dirs += 1,
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        || e.kind() == io::ErrorKind::NotADirectory =>
                {
                    skip(&mut report, &shown, "path taken by a file");
                }
                Err(e) => return Err(werr(&target)(e)),
            }
            continue;
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            let why = if kind.is_symlink() {
                "symlink"
            } else if kind.is_hard_link() {
                "hardlink"
            } else if kind.is_fifo() {
                "fifo"
            } else if kind.is_character_special() || kind.is_block_special() {
                "device"
            } else {
                "unsupported entry type"
            };
            skip(&mut report, &shown, why);
            continue;
        }
        let size = entry.size();
        report.pages += size.div_ceil(PAGE);
        if report.bytes.saturating_add(size) > limits.max_bytes {
            report.truncated = true;
            break;
        }
        if let Some(parent) = target.parent() {
            match fs::create_dir_all(parent) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        || e.kind() == io::ErrorKind::NotADirectory =>
                {
                    skip(&mut report, &shown, "path taken by a file");
                    continue;
                }
                Err(e) => return Err(werr(parent)(e)),
            }
        }
        let file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
        {
            Ok(f) => f,
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    || e.kind() == io::ErrorKind::IsADirectory =>
            {
                skip(&mut report, &shown, "duplicate path");
                continue;
            }
            Err(e) => return Err(werr(&target)(e)),
        };
        let copied = match copy_file(&mut entry, file, &target, limits.max_bytes - report.bytes)? {
            Copied::Whole(n) => n,
            Copied::OverCap => {
                report.truncated = true;
                break;
            }
            Copied::ReadFailed(e) if is_cap(&e) => {
                report.truncated = true;
                break;
            }
            Copied::ReadFailed(e) => return Err(OutputsError::Archive(e)),
        };
        if copied < size {
            let _ = fs::remove_file(&target);
            return Err(OutputsError::Archive(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{shown}: archive ended {} bytes early", size - copied),
            )));
        }
        report.bytes += copied;
        report.files += 1;
    }
    Ok(report)
}

/// Copies the regular files and folders of `src`, a job's outputs volume as this host sees it
/// (its mount point, while its holder keeps it mounted and no process of the job is left to
/// change it), into `dest` (created if missing), within `limits`: the same copy, skips,
/// report and caps as [`extract_outputs`] of the engine's archive of that folder, the entries
/// named under `shown` (`outputs`), without the engine packing an archive. Symlinks are never
/// followed (each entry is looked at with `lstat` and a file is opened with `O_NOFOLLOW` and
/// checked to be the same regular file); a file seen again through a hard link is skipped as
/// the archive's hard link entry would be. Folders are walked in name order.
pub fn copy_outputs_dir(
    src: &Path,
    dest: &Path,
    limits: &ExtractLimits,
    shown: &str,
) -> Result<ExtractReport, OutputsError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputsError::Write { path, source }
    };
    fs::create_dir_all(dest).map_err(werr(dest))?;
    let mut report = ExtractReport { inodes: 1, ..Default::default() };
    let mut linked = std::collections::HashSet::new();
    let mut seen: u64 = 1;
    let mut dirs = vec![PathBuf::new()];
    'walk: while let Some(rel_dir) = dirs.pop() {
        let mut names: Vec<_> = fs::read_dir(src.join(&rel_dir))
            .and_then(|it| it.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>())
            .map_err(OutputsError::Archive)?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            seen += 1;
            if seen > limits.max_entries {
                report.truncated = true;
                break 'walk;
            }
            report.inodes += 1;
            let rel = rel_dir.join(&name);
            let from = src.join(&rel);
            let target = dest.join(&rel);
            let shown = format!("{shown}/{}", rel.display());
            let meta = fs::symlink_metadata(&from).map_err(OutputsError::Archive)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&target).map_err(werr(&target))?;
                report.dirs += 1;
                subdirs.push(rel);
                continue;
            }
            if !kind.is_file() {
                let why = if kind.is_symlink() { "symlink" } else if is_fifo(&kind) { "fifo" } else { "device" };
                skip(&mut report, &shown, why);
                continue;
            }
            if meta.nlink() > 1 && !linked.insert((meta.dev(), meta.ino())) {
                skip(&mut report, &shown, "hardlink");
                continue;
            }
            let size = meta.len();
            report.pages += size.div_ceil(PAGE);
            if report.bytes.saturating_add(size) > limits.max_bytes {
                report.truncated = true;
                break 'walk;
            }
            let mut input = fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix_flags::NOFOLLOW_NONBLOCK)
                .open(&from)
                .map_err(OutputsError::Archive)?;
            let opened = input.metadata().map_err(OutputsError::Archive)?;
            if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
                skip(&mut report, &shown, "changed while copied");
                continue;
            }
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(werr(&target))?;
            let copied = match copy_file(&mut input, file, &target, limits.max_bytes - report.bytes)? {
                Copied::Whole(n) => n,
                Copied::OverCap => {
                    report.truncated = true;
                    break 'walk;
                }
                Copied::ReadFailed(e) => return Err(OutputsError::Archive(e)),
            };
            report.bytes += copied;
            report.files += 1;
        }
        // depth first, in name order
        dirs.extend(subdirs.into_iter().rev());
    }
    Ok(report)
}

fn is_fifo(kind: &fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_fifo()
}

/// `O_NOFOLLOW | O_NONBLOCK` (opening a fifo never blocks; a symlink is refused).
mod nix_flags {
    pub const NOFOLLOW_NONBLOCK: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;
}

fn skip(report: &mut ExtractReport, path: &str, why: &str) {
    report.skipped_count += 1;
    if report.skipped.len() < MAX_LISTED_SKIPS {
        tracing::warn!(entry = path, reason = why, "output entry not copied");
        report.skipped.push(format!("{path}: {why}"));
    } else {
        tracing::debug!(entry = path, reason = why, "output entry not copied");
    }
}

/// `path` as a relative path of plain names below `prefix` (stripped), or `None` when it is
/// absolute, climbs with `..`, or is not under `prefix`.
pub fn safe_relative(path: &Path, prefix: Option<&str>) -> Option<PathBuf> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let mut it = names.into_iter();
    if let Some(p) = prefix {
        if it.next()? != p {
            return None;
        }
    }
    Some(it.collect())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// What copying one output file under the byte cap gave ([`copy_file`]).
enum Copied {
    /// All of it: this many bytes, within the cap.
    Whole(u64),
    /// More than the cap allowed: the file was removed.
    OverCap,
    /// Reading failed (the caller says whether that is the cap or a broken source): the file
    /// was removed.
    ReadFailed(io::Error),
}

/// Copies `input` into `file` (just created at `target`) with at most `allowed` bytes, and
/// removes `target` when the copy fails or goes over; a write error is returned as such.
fn copy_file<R: Read>(input: &mut R, mut file: fs::File, target: &Path, allowed: u64) -> Result<Copied, OutputsError> {
    let result = copy_limited(input, &mut file, allowed);
    drop(file);
    let copied = match result {
        Ok(n) if n <= allowed => return Ok(Copied::Whole(n)),
        Ok(_) => Copied::OverCap,
        Err(CopyError::Read(e)) => Copied::ReadFailed(e),
        Err(CopyError::Write(source)) => {
            let _ = fs::remove_file(target);
            return Err(OutputsError::Write { path: target.to_path_buf(), source });
        }
    };
    let _ = fs::remove_file(target);
    Ok(copied)
}

/// Copies at most `limit + 1` bytes (so the caller sees when there was more).
fn copy_limited<R: Read, W: Write>(r: &mut R, w: &mut W, limit: u64) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let want = (limit + 1 - total).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(total);
        }
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        total += n as u64;
        if total > limit {
            return Ok(total);
        }
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

const CAP_MSG: &str = "lilypad: outputs archive larger than its cap";

fn is_cap(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.to_string() == CAP_MSG)
}

/// A reader that fails with a recognisable error after `left` bytes.
struct CappedReader<R> {
    inner: R,
    left: u64,
    hit: bool,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hit || (self.left == 0 && !buf.is_empty()) {
            self.hit = true;
            return Err(io::Error::other(CAP_MSG));
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ExtractLimits {
        ExtractLimits {
            max_bytes: 1 << 20,
            max_entries: 1000,
            max_archive_bytes: 16 << 20,
            strip_prefix: Some("outputs".into()),
        }
    }

    /// A tar entry with a raw name written into the header bytes (so `../` and absolute paths
    /// get through, which `tar::Builder` would refuse).
    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        {
            let bytes = h.as_old_mut();
            bytes.name = [0; 100];
            bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            let bytes = h.as_old_mut();
            bytes.linkname = [0; 100];
            bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn list(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let ft = fs::symlink_metadata(&p).unwrap().file_type();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                assert!(!ft.is_symlink(), "symlink created: {rel}");
                if ft.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn regular_files_and_folders_are_copied() {
        let t = tar_of(|b| {
            raw_entry(b, "outputs/", tar::EntryType::Directory, None, b"");
            raw_entry(b, "outputs/a.txt", tar::EntryType::Regular, None, b"hello");
            raw_entry(b, "outputs/sub/", tar::EntryType::Directory, None, b"");
            raw_entry(
                b,
                "outputs/sub/b.bin",
                tar::EntryType::Regular,
                None,
                &[7u8; 5000],
            );
            raw_entry(b, "outputs/deep/er/c", tar::EntryType::Regular, None, b"c");
        });
        let d = tempfile::tempdir().unwrap();
        let r = extract_outputs(&t[..], d.path(), &limits()).unwrap();
        assert_eq!(
            list(d.path()),
            [
                "a.txt",
                "deep/",
                "deep/er/",
                "deep/er/c",
                "sub/",
                "sub/b.bin"
            ]
        );
        assert_eq!(fs::read(d.path().join("a.txt")).unwrap(), b"hello");
        assert_eq!(r.files, 3);
        assert_eq!(r.bytes, 5 + 5000 + 1);
        assert_eq!(r.pages, 1 + 2 + 1);
        assert_eq!(r.skipped_count, 0);
        assert!(!r.truncated);
    }

    #[test]
    fn parent_dir_escapes_are_skipped() {
        let outside = tempfile::tempdir().unwrap();
        let dest = outside.path().join("dest");
        let t = tar_of(|b| {
            raw_entry(b, "outputs/../x", tar::EntryType::Regular, None, b"evil");
            raw_entry(b, "../x", tar::EntryType::Regular, None, b"evil");
            raw_entry(
                b,
                "outputs/sub/../../x",
                tar::EntryType::Regular,
                None,
                b"evil",
            );
            raw_entry(b, "outputs/ok", tar::EntryType::Regular, None, b"ok");
        });
        let r = extract_outputs(&t[..], &dest, &limits()).unwrap();
        assert_eq!(list(&dest), ["ok"]);
        assert!(!outside.path().join("x").exists());
        assert_eq!(r.skipped_count, 3);
        assert!(
            r.skipped.iter().all(|s| s.ends_with("unsafe path")),
            "{:?}",
            r.skipped
        );
    }

    #[test]
    fn absolute_paths_and_foreign_prefixes_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        let dest = d.path().join("dest");
        let abs = format!("{}", victim.display());
        let t = tar_of(|b| {
            raw_entry(b, &abs, tar::EntryType::Regular, None, b"evil");
            raw_entry(
                b,
                "/etc/lilypad-test-should-not-exist",
                tar::EntryType::Regular,
                None,
                b"evil",
            );
            raw_entry(b, "other/file", tar::EntryType::Regular, None, b"evil");
            raw_entry(
                b,
                "outputs",
                tar::EntryType::Regular,
                None,
                b"top is a file",
            );
        });
        let r = extract_outputs(&t[..], &dest, &limits()).unwrap();
        assert!(list(&dest).is_empty());
        assert!(!victim.exists());
        assert!(!Path::new("/etc/lilypad-test-should-not-exist").exists());
        assert_eq!(r.skipped_count, 3, "{:?}", r.skipped);
    }

    #[test]
    fn symlinks_are_not_created_nor_followed() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("dest");
        let t = tar_of(|b| {
            raw_entry(
                b,
                "outputs/passwd",
                tar::EntryType::Symlink,
                Some("/etc/passwd"),
                b"",
            );
            raw_entry(b, "outputs/up", tar::EntryType::Symlink, Some(".."), b"");
            // A file "through" the link must not land outside either.
            raw_entry(
                b,
                "outputs/up/escaped",
                tar::EntryType::Regular,
                None,
                b"evil",
            );
            raw_entry(b, "outputs/real", tar::EntryType::Regular, None, b"real");
        });
        let r = extract_outputs(&t[..], &dest, &limits()).unwrap();
        // `up` was skipped, so `up/escaped` is an ordinary folder + file inside dest.
        assert_eq!(list(&dest), ["real", "up/", "up/escaped"]);
        assert!(!d.path().join("escaped").exists());
        assert_eq!(
            r.skipped,
            ["outputs/passwd: symlink", "outputs/up: symlink"]
        );
    }

    #[test]
    fn hardlinks_devices_and_fifos_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(|b| {
            raw_entry(b, "outputs/a", tar::EntryType::Regular, None, b"a");
            raw_entry(b, "outputs/h", tar::EntryType::Link, Some("outputs/a"), b"");
            raw_entry(
                b,
                "outputs/shadow",
                tar::EntryType::Link,
                Some("/etc/shadow"),
                b"",
            );
            raw_entry(b, "outputs/fifo", tar::EntryType::Fifo, None, b"");
            raw_entry(b, "outputs/dev", tar::EntryType::Char, None, b"");
        });
        let r = extract_outputs(&t[..], d.path(), &limits()).unwrap();
        assert_eq!(list(d.path()), ["a"]);
        assert_eq!(r.skipped_count, 4, "{:?}", r.skipped);
        assert_eq!(r.inodes, 5);
    }

    #[test]
    fn duplicates_do_not_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(|b| {
            raw_entry(b, "outputs/a", tar::EntryType::Regular, None, b"first");
            raw_entry(b, "outputs/a", tar::EntryType::Regular, None, b"second");
            raw_entry(
                b,
                "outputs/a/b",
                tar::EntryType::Regular,
                None,
                b"under a file",
            );
        });
        let r = extract_outputs(&t[..], d.path(), &limits()).unwrap();
        assert_eq!(fs::read(d.path().join("a")).unwrap(), b"first");
        assert_eq!(r.skipped_count, 2, "{:?}", r.skipped);
    }

    #[test]
    fn total_size_cap_stops_and_removes_the_partial_file() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(|b| {
            raw_entry(b, "outputs/a", tar::EntryType::Regular, None, &[1u8; 600]);
            raw_entry(b, "outputs/b", tar::EntryType::Regular, None, &[2u8; 600]);
            raw_entry(b, "outputs/c", tar::EntryType::Regular, None, b"c");
        });
        let l = ExtractLimits {
            max_bytes: 1000,
            ..limits()
        };
        let r = extract_outputs(&t[..], d.path(), &l).unwrap();
        assert!(r.truncated);
        assert_eq!(list(d.path()), ["a"]);
        assert_eq!(r.bytes, 600);
    }

    #[test]
    fn lying_header_sizes_cannot_exceed_the_cap() {
        // A header claiming a small size followed by more data is just a bad archive; one claiming
        // more than the cap is refused before any byte is written.
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(|b| {
            raw_entry(
                b,
                "outputs/big",
                tar::EntryType::Regular,
                None,
                &[0u8; 4096],
            )
        });
        let l = ExtractLimits {
            max_bytes: 4095,
            ..limits()
        };
        let r = extract_outputs(&t[..], d.path(), &l).unwrap();
        assert!(r.truncated);
        assert!(list(d.path()).is_empty());
    }

    #[test]
    fn entry_and_archive_caps() {
        let t = tar_of(|b| {
            for i in 0..50 {
                raw_entry(
                    b,
                    &format!("outputs/f{i}"),
                    tar::EntryType::Regular,
                    None,
                    b"x",
                );
            }
        });
        let d = tempfile::tempdir().unwrap();
        let r = extract_outputs(
            &t[..],
            d.path(),
            &ExtractLimits {
                max_entries: 10,
                ..limits()
            },
        )
        .unwrap();
        assert!(r.truncated);
        assert_eq!(r.files, 10);
        let d = tempfile::tempdir().unwrap();
        let r = extract_outputs(
            &t[..],
            d.path(),
            &ExtractLimits {
                max_archive_bytes: 10 * 1024,
                ..limits()
            },
        )
        .unwrap();
        assert!(r.truncated);
        assert!(r.files < 50 && r.files >= 5, "{}", r.files);
    }

    #[test]
    fn truncated_archive_is_an_error() {
        let t = tar_of(|b| raw_entry(b, "outputs/a", tar::EntryType::Regular, None, &[1u8; 5000]));
        let d = tempfile::tempdir().unwrap();
        let e = extract_outputs(&t[..2000], d.path(), &limits()).unwrap_err();
        assert!(matches!(e, OutputsError::Archive(_)), "{e}");
        assert!(list(d.path()).is_empty(), "the partial file is removed");
    }

    #[test]
    fn safe_relative_paths() {
        let p = |s: &str| safe_relative(Path::new(s), Some("outputs"));
        assert_eq!(p("outputs/a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(p("./outputs/./a"), Some(PathBuf::from("a")));
        assert_eq!(p("outputs"), Some(PathBuf::new()));
        assert_eq!(p("outputs/../a"), None);
        assert_eq!(p("/outputs/a"), None);
        assert_eq!(p("other/a"), None);
        assert_eq!(p(""), None);
        assert_eq!(
            safe_relative(Path::new("a/b"), None),
            Some(PathBuf::from("a/b"))
        );
    }

    #[test]
    fn a_volume_seen_on_this_host_is_copied_like_its_archive() {
        use std::os::unix::fs::symlink;
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("d/e")).unwrap();
        fs::write(s.join("a.txt"), "aaa").unwrap();
        fs::write(s.join("d/e/deep"), vec![7u8; 5000]).unwrap();
        fs::write(s.join("real"), "real\n").unwrap();
        fs::hard_link(s.join("real"), s.join("zhard")).unwrap();
        symlink("/etc/passwd", s.join("passwd")).unwrap();
        symlink("..", s.join("d/up")).unwrap();
        let fifo = std::ffi::CString::new(s.join("fifo").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("outputs");
        let r = copy_outputs_dir(s, &dest, &limits(), "outputs").unwrap();
        assert_eq!(fs::read_to_string(dest.join("a.txt")).unwrap(), "aaa");
        assert_eq!(fs::read(dest.join("d/e/deep")).unwrap(), vec![7u8; 5000]);
        assert_eq!(fs::read_to_string(dest.join("real")).unwrap(), "real\n");
        for gone in ["zhard", "passwd", "d/up", "fifo"] {
            assert!(fs::symlink_metadata(dest.join(gone)).is_err(), "{gone} copied");
        }
        let mut skipped = r.skipped.clone();
        skipped.sort();
        assert_eq!(skipped, ["outputs/d/up: symlink", "outputs/fifo: fifo", "outputs/passwd: symlink", "outputs/zhard: hardlink"]);
        assert_eq!((r.files, r.dirs, r.bytes, r.skipped_count), (3, 2, 5008, 4));
        // the top folder and nine entries, as the archive's entries count them
        assert_eq!(r.inodes, 10);
        assert_eq!(r.pages, 1 + 2 + 1);
        assert!(!r.truncated);

        // the byte cap stops the copy, leaving no partial file
        let capped = ExtractLimits { max_bytes: 4000, ..limits() };
        let dest2 = out.path().join("capped");
        let r = copy_outputs_dir(s, &dest2, &capped, "outputs").unwrap();
        assert!(r.truncated);
        assert!(r.bytes <= 4000 && !dest2.join("d/e/deep").exists());
        // and so does the entry cap
        let few = ExtractLimits { max_entries: 3, ..limits() };
        let r = copy_outputs_dir(s, &out.path().join("few"), &few, "outputs").unwrap();
        assert!(r.truncated);
    }
}
