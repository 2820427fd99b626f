//! The outputs folder after a run: links and special files removed (and listed), sizes
//! checked against the caps once more (a sparse file can be long without writing), entries past
//! the caps removed in a fixed order so that every host keeps the same ones.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Most removed entries listed by name in [`Collected::skipped`].
pub const MAX_LISTED_SKIPS: usize = 100;

/// What [`collect`] found and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub bytes: u64,
    pub files: u64,
    pub entries: u64,
    pub skipped: Vec<String>,
    pub skipped_count: u64,
    /// An entry was removed for going past a cap.
    pub truncated: bool,
}

impl Collected {
    fn skip(&mut self, rel: &Path, why: &str) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_LISTED_SKIPS {
            tracing::warn!(entry = %rel.display(), reason = why, "output entry removed");
            self.skipped.push(format!("outputs/{}: {why}", rel.display()));
        }
    }
}

/// Walks `root` in name order (depth first), removing links and special files, and regular
/// files or folders past `max_bytes` / `max_files` (entries, folders included).
pub fn collect(root: &Path, max_bytes: u64, max_files: u64) -> io::Result<Collected> {
    let mut c = Collected::default();
    walk(root, PathBuf::new(), max_bytes, max_files, &mut c)?;
    Ok(c)
}

fn walk(root: &Path, rel: PathBuf, max_bytes: u64, max_files: u64, c: &mut Collected) -> io::Result<()> {
    let dir = root.join(&rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let path = root.join(&r);
        let meta = path.symlink_metadata()?;
        let ft = meta.file_type();
        if ft.is_symlink() || !(ft.is_file() || ft.is_dir()) {
            fs::remove_file(&path)?;
            c.skip(&r, if ft.is_symlink() { "symlink" } else { "special file" });
            continue;
        }
        let too_many = c.entries >= max_files;
        let too_big = ft.is_file() && c.bytes.saturating_add(meta.len()) > max_bytes;
        if too_many || too_big {
            c.truncated = true;
            if ft.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            c.skip(&r, if too_big { "past outputs.maxBytes" } else { "past outputs.maxFiles" });
            continue;
        }
        c.entries += 1;
        if ft.is_dir() {
            walk(root, r, max_bytes, max_files, c)?;
        } else {
            c.bytes += meta.len();
            c.files += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_links_and_entries_past_the_caps_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a"), b"1234").unwrap();
        fs::create_dir(root.join("b")).unwrap();
        fs::write(root.join("b/c"), b"56").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("l")).unwrap();
        fs::write(root.join("z"), b"7").unwrap();
        let c = collect(root, 100, 3).unwrap();
        assert_eq!((c.bytes, c.files, c.entries), (6, 2, 3));
        assert!(c.truncated);
        assert_eq!(c.skipped, vec!["outputs/l: symlink", "outputs/z: past outputs.maxFiles"]);
        assert!(!root.join("l").exists() && !root.join("z").exists());
        // within the caps nothing is cut
        let c = collect(root, 100, 100).unwrap();
        assert!(!c.truncated && c.skipped.is_empty());
    }

    #[test]
    fn a_file_past_the_byte_cap_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        let c = collect(dir.path(), 1 << 20, 10).unwrap();
        assert!(c.truncated);
        assert_eq!(c.files, 0);
        assert!(!dir.path().join("sparse").exists());
    }
}
