//! The caps on `/outputs`, enforced while the module runs.
//!
//! WASI preview 1 writes files through a handful of host functions. Those that add bytes or
//! entries are replaced in the linker by wrappers that check a [`Quota`] first and then call
//! wasmtime-wasi's own implementation: a write that would pass [`Quota::max_bytes`], or a new
//! file, folder or link past [`Quota::max_files`], fails with `ENOSPC`, as on the size-capped
//! tmpfs of a Docker run. Counting is cumulative (a rewrite counts again); when a count reaches
//! its cap the folder is measured and the count set to what is really there, so only what the
//! folder holds is refused. Everything here depends only on what the module does, so two hosts
//! refuse the same write.
//!
//! stdout and stderr (fds 1 and 2) are not counted here (they have their own caps) unless the
//! module closed or renumbered one of fds 0-2, after which a write to them may reach a file
//! and is counted.

use std::path::{Path, PathBuf};

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use crate::host::Host;

/// WASI `errno` values used here.
const ERRNO_NOSPC: i32 = 51;
/// `oflags::creat`.
const OFLAGS_CREAT: i32 = 1;

const MODULE: &str = "wasi_snapshot_preview1";

/// Caps and counts for one run.
#[derive(Debug)]
pub struct Quota {
    /// The host folder given as `/outputs`.
    pub root: PathBuf,
    pub max_bytes: u64,
    pub max_files: u64,
    bytes: u64,
    files: u64,
    stdio_replaced: bool,
    /// A write or a creation was refused.
    pub hit: bool,
}

/// What a folder holds: bytes of regular files, and entries (files, folders, links...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
}

/// Measures `root` without following links, stopping once `entry_limit` entries were seen.
pub fn measure(root: &Path, entry_limit: u64) -> std::io::Result<Usage> {
    let mut usage = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            usage.entries += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                usage.bytes = usage.bytes.saturating_add(meta.len());
            }
            if usage.entries > entry_limit {
                return Ok(usage);
            }
        }
    }
    Ok(usage)
}

impl Quota {
    pub fn new(root: PathBuf, max_bytes: u64, max_files: u64) -> Self {
        Quota {
            root,
            max_bytes,
            max_files,
            bytes: 0,
            files: 0,
            stdio_replaced: false,
            hit: false,
        }
    }

    fn remeasure(&mut self) {
        // The folder is this run's own; failing to read it leaves the (higher) counts as they are.
        if let Ok(u) = measure(&self.root, self.max_files.saturating_add(1)) {
            self.bytes = u.bytes;
            self.files = u.entries;
        }
    }

    /// May `n` more bytes be written? Refusing marks the quota hit.
    fn allow_bytes(&mut self, n: u64) -> bool {
        if self.bytes.saturating_add(n) <= self.max_bytes {
            return true;
        }
        self.remeasure();
        let ok = self.bytes.saturating_add(n) <= self.max_bytes;
        self.hit |= !ok;
        ok
    }

    /// May one more entry be created?
    fn allow_entry(&mut self) -> bool {
        if self.files < self.max_files {
            return true;
        }
        self.remeasure();
        let ok = self.files < self.max_files;
        self.hit |= !ok;
        ok
    }

    fn counts_fd(&self, fd: i32) -> bool {
        !(1..=2).contains(&fd) || self.stdio_replaced
    }
}

/// Sum of the lengths of the `iovs_len` ciovecs at `iovs` in the guest's memory; `None` when
/// they are out of bounds (the real call then fails with `EFAULT`).
fn iovec_total(caller: &mut Caller<'_, Host>, iovs: i32, iovs_len: i32) -> Option<u64> {
    let Some(Extern::Memory(m)) = caller.get_export("memory") else {
        return None;
    };
    let data = m.data(&caller);
    let start = usize::try_from(iovs as u32).ok()?;
    let count = usize::try_from(iovs_len as u32).ok()?;
    let bytes = data.get(start..start.checked_add(count.checked_mul(8)?)?)?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from(u32::from_le_bytes([c[4], c[5], c[6], c[7]])))
            .fold(0u64, u64::saturating_add),
    )
}

/// The `u32` the real call stored at `ptr` (a count of bytes written).
fn read_u32(caller: &mut Caller<'_, Host>, ptr: i32) -> u64 {
    let Some(Extern::Memory(m)) = caller.get_export("memory") else {
        return 0;
    };
    let start = ptr as u32 as usize;
    m.data(&caller)
        .get(start..start + 4)
        .map_or(0, |b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// Calls wasmtime-wasi's own implementation of `$func`, exactly as its linker entry does.
macro_rules! real {
    ($caller:ident, $func:ident ( $($arg:expr),* )) => {{
        let export = $caller.get_export("memory");
        let fuel = $caller.as_context_mut().hostcall_fuel();
        match &export {
            Some(Extern::Memory(m)) => {
                let (mem, host) = m.data_and_store_mut(&mut $caller);
                let ctx = &mut host.wasi;
                ctx.set_hostcall_fuel(fuel);
                let mut mem = wiggle::GuestMemory::Unshared(mem);
                wasmtime_wasi::runtime::in_tokio(p1::$func(ctx, &mut mem $(, $arg)*))
            }
            _ => wasmtime::bail!("missing required memory export"),
        }
    }};
}

/// Replaces the functions of WASI preview 1 that write to files with quota-checking wrappers.
/// Call after `wasmtime_wasi::p1::add_to_linker_sync`.
pub fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, Host>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| -> wasmtime::Result<i32> {
            let counted = caller.data().quota.counts_fd(fd);
            if counted {
                let n = iovec_total(&mut caller, iovs, iovs_len).unwrap_or(0);
                if !caller.data_mut().quota.allow_bytes(n) {
                    return Ok(ERRNO_NOSPC);
                }
            }
            let errno = real!(caller, fd_write(fd, iovs, iovs_len, nwritten))?;
            if counted && errno == 0 {
                let n = read_u32(&mut caller, nwritten);
                let q = &mut caller.data_mut().quota;
                q.bytes = q.bytes.saturating_add(n);
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut caller: Caller<'_, Host>, fd: i32, iovs: i32, iovs_len: i32, offset: i64, nwritten: i32| -> wasmtime::Result<i32> {
            let n = iovec_total(&mut caller, iovs, iovs_len).unwrap_or(0);
            if !caller.data_mut().quota.allow_bytes(n) {
                return Ok(ERRNO_NOSPC);
            }
            let errno = real!(caller, fd_pwrite(fd, iovs, iovs_len, offset, nwritten))?;
            if errno == 0 {
                let n = read_u32(&mut caller, nwritten);
                let q = &mut caller.data_mut().quota;
                q.bytes = q.bytes.saturating_add(n);
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, Host>, fd: i32, size: i64| -> wasmtime::Result<i32> {
            // Growing a file this way writes no data (the file is sparse), but its length
            // counts when the outputs are collected: refuse lengths past the cap.
            if size as u64 > caller.data().quota.max_bytes {
                caller.data_mut().quota.hit = true;
                return Ok(ERRNO_NOSPC);
            }
            real!(caller, fd_filestat_set_size(fd, size))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut caller: Caller<'_, Host>,
         fd: i32,
         dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         rights_base: i64,
         rights_inheriting: i64,
         fdflags: i32,
         opened: i32|
         -> wasmtime::Result<i32> {
            let creates = oflags & OFLAGS_CREAT != 0;
            if creates && !caller.data_mut().quota.allow_entry() {
                return Ok(ERRNO_NOSPC);
            }
            let errno = real!(
                caller,
                path_open(fd, dirflags, path, path_len, oflags, rights_base, rights_inheriting, fdflags, opened)
            )?;
            if creates && errno == 0 {
                caller.data_mut().quota.files += 1;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        |mut caller: Caller<'_, Host>, fd: i32, path: i32, path_len: i32| -> wasmtime::Result<i32> {
            if !caller.data_mut().quota.allow_entry() {
                return Ok(ERRNO_NOSPC);
            }
            let errno = real!(caller, path_create_directory(fd, path, path_len))?;
            if errno == 0 {
                caller.data_mut().quota.files += 1;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut caller: Caller<'_, Host>, old: i32, old_len: i32, fd: i32, new: i32, new_len: i32| -> wasmtime::Result<i32> {
            if !caller.data_mut().quota.allow_entry() {
                return Ok(ERRNO_NOSPC);
            }
            let errno = real!(caller, path_symlink(old, old_len, fd, new, new_len))?;
            if errno == 0 {
                caller.data_mut().quota.files += 1;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        |mut caller: Caller<'_, Host>, old_fd: i32, flags: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32| -> wasmtime::Result<i32> {
            if !caller.data_mut().quota.allow_entry() {
                return Ok(ERRNO_NOSPC);
            }
            let errno = real!(caller, path_link(old_fd, flags, old, old_len, new_fd, new, new_len))?;
            if errno == 0 {
                caller.data_mut().quota.files += 1;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_close",
        |mut caller: Caller<'_, Host>, fd: i32| -> wasmtime::Result<i32> {
            let errno = real!(caller, fd_close(fd))?;
            if errno == 0 && (0..=2).contains(&fd) {
                caller.data_mut().quota.stdio_replaced = true;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_renumber",
        |mut caller: Caller<'_, Host>, from: i32, to: i32| -> wasmtime::Result<i32> {
            let errno = real!(caller, fd_renumber(from, to))?;
            if errno == 0 && ((0..=2).contains(&from) || (0..=2).contains(&to)) {
                caller.data_mut().quota.stdio_replaced = true;
            }
            Ok(errno)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_corrected_by_measuring_when_they_reach_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 100]).unwrap();
        let mut q = Quota::new(dir.path().into(), 150, 2);
        // 100 bytes written, then rewritten: 200 counted, but the folder holds 100
        q.bytes = 200;
        assert!(q.allow_bytes(50), "the folder holds 100 bytes: 50 more fit");
        assert_eq!(q.bytes, 100);
        assert!(!q.allow_bytes(51));
        assert!(q.hit);
        // one entry counted; a second fits; at two the folder is measured (one entry) again
        q.files = 2;
        assert!(q.allow_entry());
        std::fs::create_dir(dir.path().join("d")).unwrap();
        q.files = 2;
        assert!(!q.allow_entry());
    }

    #[test]
    fn stdout_and_stderr_are_not_counted_until_replaced() {
        let mut q = Quota::new(PathBuf::from("/nonexistent"), 1, 1);
        assert!(!q.counts_fd(1) && !q.counts_fd(2) && q.counts_fd(3) && q.counts_fd(0));
        q.stdio_replaced = true;
        assert!(q.counts_fd(1));
    }

    #[test]
    fn measure_counts_entries_and_file_bytes_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), b"12345").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let u = measure(dir.path(), 100).unwrap();
        assert_eq!(u, Usage { bytes: 5, entries: 3 });
    }
}
