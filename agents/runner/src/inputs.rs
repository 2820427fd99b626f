//! A job's file and folder inputs (`cid` inputs): fetched by CID from the agent's IPFS gateways,
//! every block verified, within the input's `maxBytes`, kept in a cache by CID, and laid out
//! for the run as `<result_dir>.inputs/<Name>`, which the engine mounts read-only at `/inputs`.
//!
//! The provider and the mediator both run jobs through here, so a re-run sees the same bytes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_module::DataInput;
use lilypad_store::{Cid, FetchLimits, StoreError};
use tracing::{info, warn};

use crate::error::RunError;
use crate::resolve::Sources;

/// Most files and folders one `cid` input may hold.
pub const MAX_INPUT_FILES: u64 = 100_000;
/// Deepest folder nesting of one `cid` input.
pub const MAX_INPUT_DEPTH: usize = 64;

/// The folder a job's inputs are laid out in for the run of `result_dir`: `<result_dir>.inputs`.
pub fn inputs_dir_for(result_dir: &Path) -> PathBuf {
    result_dir.with_extension("inputs")
}

/// The limits one input is fetched under.
pub fn input_fetch_limits(input: &DataInput, deadline: Duration) -> FetchLimits {
    FetchLimits {
        max_bytes: input.max_bytes,
        max_files: MAX_INPUT_FILES,
        // every 256 KiB chunk and node, and room for the folders' own blocks
        max_blocks: input.max_bytes / (256 << 10) + 2 * MAX_INPUT_FILES + 64,
        max_depth: MAX_INPUT_DEPTH,
        deadline,
    }
}

/// Fetches every `cid` input of job `job` (or finds it in `<cache>/inputs/<cid>`) and lays
/// them out in `dest` (made anew) as `dest/<Name>`: a file, or a folder. Nothing to do (and
/// `Ok(None)`) when there are none. The whole fetch ends by `deadline`.
pub async fn prepare_inputs(
    job: U256,
    inputs: &[DataInput],
    sources: &Sources,
    dest: &Path,
    deadline: Duration,
) -> Result<Option<PathBuf>, RunError> {
    if inputs.is_empty() {
        return Ok(None);
    }
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { job, action, path, source }
    };
    let started = tokio::time::Instant::now();
    let mut cached = Vec::with_capacity(inputs.len());
    for input in inputs {
        let left = deadline.saturating_sub(started.elapsed());
        cached.push(fetch_cached(job, input, sources, left).await?);
    }
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).map_err(io("creating", dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(io("opening up", dest))?;
    for (input, content) in inputs.iter().zip(cached) {
        let target = dest.join(&input.name);
        link_tree(&content, &target).map_err(io("laying out the input at", &target))?;
    }
    Ok(Some(dest.to_path_buf()))
}

/// What a cached fetch of `cid` holds: the file itself, or the folder.
fn content_of(entry: &Path, cid: &Cid) -> PathBuf {
    // A fetched file is written as `<entry>/<cid>`; a folder cannot hold an entry named by its
    // own CID (the name is part of the folder's hash), so that one entry means a file.
    let file = entry.join(cid.to_string());
    let only_entry = fs::read_dir(entry).map(|mut d| d.next().is_some() && d.next().is_none()).unwrap_or(false);
    if only_entry && fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
        file
    } else {
        entry.to_path_buf()
    }
}

/// The input's content in the cache, fetched first if it is not there.
async fn fetch_cached(job: U256, input: &DataInput, sources: &Sources, deadline: Duration) -> Result<PathBuf, RunError> {
    let cid = input.cid;
    let refused = |source: StoreError| RunError::InputData { job, input: input.name.clone(), cid, source: Box::new(source) };
    if sources.gateways.is_empty() {
        return Err(RunError::NoInputSource { job, input: input.name.clone(), cid });
    }
    let entry = sources.cache.join("inputs").join(cid.to_string());
    if !entry.exists() {
        let limits = input_fetch_limits(input, deadline);
        let mut last = None;
        for gateway in &sources.gateways {
            match lilypad_store::fetch_with(gateway, &cid, &entry, &limits).await {
                Ok(files) => {
                    info!(job = %job, input = %input.name, %cid, files = files.len(), %gateway, "input fetched and verified");
                    last = None;
                    break;
                }
                // Another run fetched it meanwhile.
                Err(StoreError::DestinationExists { .. }) if entry.exists() => {
                    last = None;
                    break;
                }
                Err(e) => {
                    warn!(job = %job, input = %input.name, %cid, %gateway, error = %e, "fetching the input failed");
                    // a limit or a forged block is the same whichever gateway serves it
                    let fatal = matches!(e, StoreError::LimitExceeded { .. } | StoreError::Verification { .. });
                    last = Some(e);
                    if fatal {
                        break;
                    }
                }
            }
        }
        if let Some(e) = last {
            return Err(refused(e));
        }
        open_up(&entry).map_err(|source| RunError::Io { job, action: "opening up", path: entry.clone(), source })?;
    }
    // A copy cached for another module may be over this input's cap.
    let bytes = size_of(&entry).map_err(|source| RunError::Io { job, action: "measuring", path: entry.clone(), source })?;
    if bytes > input.max_bytes {
        return Err(refused(StoreError::LimitExceeded {
            cid,
            what: format!("{bytes} bytes of content, over the input's maxBytes {}", input.max_bytes),
        }));
    }
    Ok(content_of(&entry, &cid))
}

/// Makes the fetched content readable by the job's user: folders 0755, files 0644 (the
/// fetch's temporary folder is private).
fn open_up(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(path)? {
            open_up(&entry?.path())?;
        }
    } else if meta.is_file() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Bytes of the regular files under `path`.
fn size_of(path: &Path) -> std::io::Result<u64> {
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

/// `from` (a file or folder) recreated at `to` with hard links to its files (copies where a
/// link cannot be made, e.g. across file systems). The run's mount is read-only, so the
/// cached files cannot be changed through the links.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir(to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.is_file() && fs::hard_link(from, to).is_err() {
        fs::copy(from, to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Removes a run's laid-out inputs (the cache keeps the content).
pub(crate) fn remove_inputs(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %dir.display(), error = %e, "cannot remove a run's inputs folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_file_is_told_from_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let cid = lilypad_store::parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap();
        let file = tmp.path().join("f");
        fs::create_dir(&file).unwrap();
        fs::write(file.join(cid.to_string()), b"").unwrap();
        assert_eq!(content_of(&file, &cid), file.join(cid.to_string()));
        let folder = tmp.path().join("d");
        fs::create_dir(&folder).unwrap();
        fs::write(folder.join("a.txt"), b"x").unwrap();
        assert_eq!(content_of(&folder, &cid), folder);
    }

    #[test]
    fn a_folder_is_laid_out_with_links_and_sized() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.txt"), b"hello").unwrap();
        fs::write(src.join("sub/b.txt"), b"world!").unwrap();
        assert_eq!(size_of(&src).unwrap(), 11);
        let dst = tmp.path().join("dst");
        link_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("sub/b.txt")).unwrap(), b"world!");
        assert_eq!(inputs_dir_for(Path::new("/x/results/7")), Path::new("/x/results/7.inputs"));
    }
}
