//! A job's file and folder inputs (`cid` inputs): fetched by CID from the agent's IPFS gateways,
//! every block verified, within the input's `maxBytes`, kept in a cache by CID (capped in
//! total, least recently used out first: [`InputCache`]), and laid out for the run as
//! `<result_dir>.inputs/<Name>`, which the engine mounts read-only at `/inputs`.
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
use crate::input_cache::{size_of, InputCache, Pin};
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

/// A job's inputs laid out for its run. The cache entries they come from are held against
/// eviction while this lives, and the folder is removed when it is dropped (the cache keeps
/// the content): keep it until the run is over.
#[derive(Debug)]
pub struct LaidOut {
    dir: PathBuf,
    _pins: Vec<Pin>,
}

impl LaidOut {
    /// The folder holding `<Name>` per input, for the engine to mount at `/inputs`.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LaidOut {
    fn drop(&mut self) {
        remove_inputs(&self.dir);
    }
}

/// The input cache of `sources`: `<cache>/inputs`, capped at `sources.input_cache_max`.
pub fn input_cache(sources: &Sources) -> InputCache {
    InputCache::new(sources.cache.join("inputs"), sources.input_cache_max)
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
) -> Result<Option<LaidOut>, RunError> {
    if inputs.is_empty() {
        return Ok(None);
    }
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { job, action, path, source }
    };
    let cache = input_cache(sources);
    let started = tokio::time::Instant::now();
    let mut cached = Vec::with_capacity(inputs.len());
    let mut pins = Vec::with_capacity(inputs.len());
    for input in inputs {
        let left = deadline.saturating_sub(started.elapsed());
        let (content, pin) = fetch_cached(job, input, sources, &cache, left).await?;
        cached.push(content);
        pins.push(pin);
    }
    let _ = fs::remove_dir_all(dest);
    // from here on, an error removes what was laid out
    let laid = LaidOut { dir: dest.to_path_buf(), _pins: pins };
    fs::create_dir_all(dest).map_err(io("creating", dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(io("opening up", dest))?;
    for (input, content) in inputs.iter().zip(cached) {
        let target = dest.join(&input.name);
        link_tree(&content, &target).map_err(io("laying out the input at", &target))?;
    }
    Ok(Some(laid))
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

/// The input's content in the cache, fetched first if it is not there, and the hold on its
/// cache entry.
async fn fetch_cached(job: U256, input: &DataInput, sources: &Sources, cache: &InputCache, deadline: Duration) -> Result<(PathBuf, Pin), RunError> {
    let cid = input.cid;
    let refused = |source: StoreError| RunError::InputData { job, input: input.name.clone(), cid, source: Box::new(source) };
    if sources.gateways.is_empty() {
        return Err(RunError::NoInputSource { job, input: input.name.clone(), cid });
    }
    let entry = cache.entry(&cid);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { job, action, path, source }
    };
    let pin = {
        let (cache, root) = (cache.clone(), cache.root().to_path_buf());
        blocking(job, &root, move || cache.pin(&cid)).await?
    };
    if !entry.exists() {
        // never more than the cache holds: an input over its cap is refused, not cached
        let mut limits = input_fetch_limits(input, deadline);
        let capped = cache.fetch_cap(input.max_bytes) < input.max_bytes;
        limits.max_bytes = cache.fetch_cap(input.max_bytes);
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
        match last {
            Some(source @ StoreError::LimitExceeded { .. }) if capped => {
                return Err(RunError::InputOverCache { job, input: input.name.clone(), cid, cap: cache.max_bytes(), source: Box::new(source) });
            }
            Some(e) => return Err(refused(e)),
            None => {}
        }
        open_up(&entry).map_err(io("opening up", &entry))?;
    }
    // A copy cached for another module may be over this input's cap.
    let bytes = size_of(&entry).map_err(io("measuring", &entry))?;
    if bytes > input.max_bytes {
        return Err(refused(StoreError::LimitExceeded {
            cid,
            what: format!("{bytes} bytes of content, over the input's maxBytes {}", input.max_bytes),
        }));
    }
    cache.record_use(&pin, bytes).map_err(io("recording the use of", &entry))?;
    {
        // the cache may now be over its cap: the least recently used entries no job holds go
        let (cache, root) = (cache.clone(), cache.root().to_path_buf());
        blocking(job, &root, move || cache.evict()).await?;
    }
    Ok((content_of(&entry, &cid), pin))
}

/// `f` (file system work) on the blocking pool; its I/O error as job `job`'s, about `path`.
async fn blocking<T: Send + 'static>(job: U256, path: &Path, f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, RunError> {
    let path = path.to_path_buf();
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RunError::Io { job, action: "keeping the input cache", path, source }),
        Err(_) => Err(RunError::Panicked { job, task: "the input cache" }),
    }
}

/// Tidies an agent's cache at its start: removes what fetches cut short by a killed process
/// left in `<cache>/inputs`, `<cache>/modules` and `<cache>/images` (never a fetch still
/// running, here or in another process: [`lilypad_store::remove_fetch_leftovers`]), and
/// evicts inputs over the cache's cap (it may have been lowered). Logs what it did; a
/// failure is logged, not fatal.
pub fn remove_fetch_leftovers(sources: &Sources) {
    for sub in ["inputs", "modules", "images"] {
        let dir = sources.cache.join(sub);
        match lilypad_store::remove_fetch_leftovers(&dir) {
            Ok(0) => {}
            Ok(removed) => info!(dir = %dir.display(), removed, "removed what fetches cut short left"),
            Err(e) => warn!(dir = %dir.display(), error = %e, "cannot remove what fetches cut short left"),
        }
    }
    let cache = input_cache(sources);
    if let Err(e) = cache.evict() {
        warn!(cache = %cache.root().display(), error = %e, "cannot bring the input cache within its cap");
    }
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
fn remove_inputs(dir: &Path) {
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
        assert_eq!(crate::input_cache::size_of(&src).unwrap(), 11);
        let dst = tmp.path().join("dst");
        link_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("sub/b.txt")).unwrap(), b"world!");
        assert_eq!(inputs_dir_for(Path::new("/x/results/7")), Path::new("/x/results/7.inputs"));
    }
}
