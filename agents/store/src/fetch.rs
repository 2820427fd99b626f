//! Fetching a DAG from a gateway, verifying every block, and writing it out atomically, within
//! limits the caller sets ([`FetchLimits`]).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::blockstore::{BlockSink, DiskBlockstore};
use crate::car::{CarDecoder, MAX_BLOCK_SIZE};
use crate::dag;
use crate::error::{Result, StoreError};
use crate::hash::{verify_block, CODEC_RAW};
use crate::limits::{Budget, FetchLimits};
use crate::reachable::Reachable;
use crate::write;

/// Single blocks asked for at once when a gateway does not serve (whole) CARs.
const PARALLEL_BLOCKS: usize = 8;

/// [`fetch_with`] under [`FetchLimits::default`] (generous: for a user's own downloads).
pub async fn fetch(gateway: &str, cid: &Cid, dest: &Path) -> Result<Vec<PathBuf>> {
    fetch_with(gateway, cid, dest, &FetchLimits::default()).await
}

/// Downloads the DAG `cid` from the path gateway at `gateway` (e.g. `http://127.0.0.1:8080`),
/// verifies every block against its CID, and writes the content to `dest`, within `limits`.
/// Returns the paths of the files written (folders are not listed), in DAG order.
///
/// * A folder's entries are written directly in `dest` (which becomes that folder). A single file
///   is written as `dest/<cid>`. HAMT-sharded folders are walked shard by shard.
/// * The DAG is asked for as one CAR (`?format=car`, `Accept: application/vnd.ipld.car;
///   version=1; order=dfs; dups=n`). Only blocks reachable from `cid` are kept from it; when the
///   gateway does not serve CARs, or its CAR lacks blocks, the missing blocks are fetched with
///   `?format=raw`, a few at a time.
/// * Limits: every block received counts against `max_blocks` (and the download against
///   [`FetchLimits::max_download_bytes`]); before anything is written, the files and folders
///   are counted and the sizes the file nodes declare added up against `max_files`,
///   `max_depth` and `max_bytes`; while writing, each node's declared sizes are checked against
///   its children's. The whole call ends with [`StoreError::DeadlineExceeded`] at `deadline`.
/// * Atomic: everything is written into a temporary folder next to `dest` and renamed to `dest`
///   at the end, so on any error `dest` is left as it was (absent, or an empty folder).
/// * `dest` must not exist, or be an empty folder: [`StoreError::DestinationExists`] otherwise.
/// * Fatal errors: a block that does not match its CID ([`StoreError::Verification`], naming
///   it), an entry name that could escape `dest` (`..`, `/`, NUL: [`StoreError::UnsafeName`]),
///   a limit ([`StoreError::LimitExceeded`]), symlinks ([`StoreError::Unsupported`]). Network
///   failures, 5xx and the deadline are [`StoreError::is_retryable`].
pub async fn fetch_with(
    gateway: &str,
    cid: &Cid,
    dest: &Path,
    limits: &FetchLimits,
) -> Result<Vec<PathBuf>> {
    let client = default_client(gateway)?;
    fetch_with_client(&client, gateway, cid, dest, limits).await
}

/// The HTTP client [`fetch_with`] uses: connect and read timeouts, redirects followed.
fn default_client(gateway: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("lilypad-store/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|source| StoreError::Network {
            url: gateway.to_string(),
            source,
        })
}

/// [`fetch_with`] through the caller's `client`: a server that fetches from URLs others chose
/// (a provider's announced endpoints) gives one that refuses to connect to its own network (a
/// DNS resolver that filters addresses, no redirects). Everything else is [`fetch_with`]'s.
pub async fn fetch_with_client(
    client: &reqwest::Client,
    gateway: &str,
    cid: &Cid,
    dest: &Path,
    limits: &FetchLimits,
) -> Result<Vec<PathBuf>> {
    let budget = Arc::new(Budget::new(limits, *cid));
    let deadline = tokio::time::Instant::from_std(budget.deadline());
    match tokio::time::timeout_at(deadline, fetch_inner(client, gateway, cid, dest, budget.clone())).await {
        Ok(result) => result,
        // Dropping the fetch drops its temporary folder; a write still running on the blocking
        // pool checks the same deadline and stops at its next block.
        Err(_) => Err(budget.deadline_error()),
    }
}

async fn fetch_inner(
    client: &reqwest::Client,
    gateway: &str,
    cid: &Cid,
    dest: &Path,
    budget: Arc<Budget>,
) -> Result<Vec<PathBuf>> {
    let base = gateway_base(gateway)?;
    let cid = *cid;
    let dest = dest.to_path_buf();

    // Every blocking task that writes into the temporary folder holds `scratch`: the folder is
    // removed when the last of them ends, so a fetch cut short (its deadline, or its caller
    // gone) never races a block write still under way and leaves half a folder behind.
    let (scratch, store) = {
        let dest = dest.clone();
        blocking(move || prepare(&dest)).await?
    };

    // The CAR is only a faster path: when it fails on the way (the gateway dropped the
    // connection, e.g. because it could not produce a block and aborted the stream before its
    // headers went out), the blocks are asked for one by one, which names what is missing. An
    // unreachable gateway still ends in a Network error there.
    let got_car = match download_car(client, &base, &cid, &store, &scratch, &budget).await {
        Ok(got) => got,
        Err(e @ StoreError::Network { .. }) => {
            warn!(%cid, error = %e, "CAR download failed; fetching blocks one by one");
            true
        }
        Err(e) => return Err(e),
    };
    // Fill in whatever the CAR did not hold (everything, if there was no CAR).
    let mut fetched = 0usize;
    loop {
        let missing = {
            let store = store.clone();
            blocking(move || find_missing(&store, &cid)).await?
        };
        if missing.is_empty() {
            break;
        }
        if got_car {
            warn!(%cid, missing = missing.len(), "CAR was incomplete; fetching blocks one by one");
        }
        fetched += missing.len();
        // Downloads run a few at a time; each block is written before the next is taken, so
        // an error leaves no write in flight.
        let mut downloads = futures_util::stream::iter(missing)
            .map(|block_cid| {
                let (client, base, budget) = (&client, &base, &budget);
                async move { (block_cid, fetch_block(client, base, &block_cid, budget).await) }
            })
            .buffer_unordered(PARALLEL_BLOCKS);
        while let Some((block_cid, data)) = downloads.next().await {
            let data = data?;
            let (store, scratch) = (store.clone(), scratch.clone());
            blocking(move || {
                let _writing = scratch;
                store.put_block(&block_cid, &data)
            })
            .await?;
        }
    }
    debug!(%cid, raw_blocks = fetched, blocks = budget.blocks(), "DAG complete");

    let files = blocking(move || {
        let plan = write::plan(&store, &cid, &budget)?;
        debug!(%cid, ?plan, "writing");
        let tree = scratch.dir.path().join("tree");
        let rel = write::write_tree(&store, &cid, &tree, &budget)?;
        fs::rename(&tree, &dest).map_err(|e| {
            if dest.exists() {
                StoreError::DestinationExists { path: dest.clone() }
            } else {
                StoreError::io(&dest, e)
            }
        })?;
        drop(scratch); // removes the blocks (once no other task holds the folder)
        Ok(rel.into_iter().map(|p| dest.join(p)).collect::<Vec<_>>())
    })
    .await?;
    info!(%cid, files = files.len(), "fetched and verified");
    Ok(files)
}

/// Whether `source` is something [`fetch_with`] can fetch from: an http(s) URL. Endpoints
/// announced on chain also hold libp2p multiaddrs (`/ip4/.../tcp/.../p2p/...`, for bitswap),
/// which an HTTP fetch skips.
pub fn is_gateway_url(source: &str) -> bool {
    gateway_base(source).is_ok()
}

fn gateway_base(gateway: &str) -> Result<String> {
    let url = reqwest::Url::parse(gateway).map_err(|e| StoreError::InvalidUrl {
        url: gateway.into(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StoreError::InvalidUrl {
            url: gateway.into(),
            reason: "scheme must be http or https".into(),
        });
    }
    Ok(gateway.trim_end_matches('/').to_string())
}

/// Name prefix of a fetch's temporary folder, made next to its destination.
pub const FETCH_TEMP_PREFIX: &str = ".lilypad-fetch-";
/// The file in a fetch's temporary folder that the fetch holds locked while it runs.
const FETCH_LOCK: &str = ".lock";
/// A leftover younger than this is never removed: a fetch may have made its folder and not
/// yet locked it.
pub const LEFTOVER_MIN_AGE: Duration = Duration::from_secs(60);

/// A fetch's temporary folder, locked while the fetch runs, removed when dropped.
struct Scratch {
    // fields drop in order: the folder is removed while the lock is still held
    dir: tempfile::TempDir,
    _lock: fs::File,
}

/// Checks `dest` and makes the temporary folder (with a blockstore) next to it.
fn prepare(dest: &Path) -> Result<(Arc<Scratch>, DiskBlockstore)> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StoreError::DestinationExists {
                    path: dest.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => {
            return Err(StoreError::DestinationExists {
                path: dest.to_path_buf(),
            })
        }
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| StoreError::io(&parent, e))?;
    let dir = tempfile::Builder::new()
        .prefix(FETCH_TEMP_PREFIX)
        .tempdir_in(&parent)
        .map_err(|e| StoreError::io(&parent, e))?;
    let lock_path = dir.path().join(FETCH_LOCK);
    let lock = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock_path)
        .map_err(|e| StoreError::io(&lock_path, e))?;
    lock.try_lock().map_err(|e| StoreError::io(&lock_path, e.into()))?;
    let store = DiskBlockstore::open(dir.path().join("blocks"))?;
    Ok((Arc::new(Scratch { dir, _lock: lock }), store))
}

/// Removes what fetches into `dir` that did not end left there (a process killed mid-fetch
/// leaves its `.lilypad-fetch-*` folder): every such folder not locked by a fetch still
/// running, in this process or another sharing the folder, and at least
/// [`LEFTOVER_MIN_AGE`] old. Returns how many it removed; nothing when `dir` does not exist.
/// Safe to call while other fetches into `dir` run.
pub fn remove_fetch_leftovers(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(FETCH_TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= LEFTOVER_MIN_AGE);
        if !old {
            continue;
        }
        if !meta.is_dir() {
            remove_leftover(&path, fs::remove_file(&path), &mut removed)?;
            continue;
        }
        // A running fetch holds its folder's lock; hold it too while removing, so no fetch
        // can be in it. No lock file: the fetch was killed before it took the lock.
        let lock_path = path.join(FETCH_LOCK);
        let _held = match fs::OpenOptions::new().write(true).open(&lock_path) {
            Ok(lock) => match lock.try_lock() {
                Ok(()) => Some(lock),
                Err(fs::TryLockError::WouldBlock) => continue,
                Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(&lock_path, e)),
        };
        remove_leftover(&path, fs::remove_dir_all(&path), &mut removed)?;
    }
    Ok(removed)
}

fn remove_leftover(path: &Path, done: std::io::Result<()>, removed: &mut usize) -> Result<()> {
    match done {
        Ok(()) => {
            *removed += 1;
            Ok(())
        }
        // another process removed it first
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn network(url: &str) -> impl FnOnce(reqwest::Error) -> StoreError + '_ {
    move |source| StoreError::Network {
        url: url.to_string(),
        source,
    }
}

/// An unsuccessful response as [`StoreError::Http`], with the start of its body.
async fn http_error(url: &str, resp: reqwest::Response) -> StoreError {
    let status = resp.status().as_u16();
    let mut message = String::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        message.push_str(&String::from_utf8_lossy(&chunk));
        if message.len() > 512 {
            break;
        }
    }
    let message: String = message.trim().chars().take(512).collect();
    StoreError::Http {
        url: url.to_string(),
        status,
        message,
    }
}

/// Streams `?format=car` into `store`, keeping only the blocks reachable from `cid` (each
/// verified). `Ok(false)` when the gateway does not serve CARs for this request (the caller
/// then fetches blocks one by one). A transfer that breaks off midway keeps the blocks received
/// so far.
async fn download_car(
    client: &reqwest::Client,
    base: &str,
    cid: &Cid,
    store: &DiskBlockstore,
    scratch: &Arc<Scratch>,
    budget: &Arc<Budget>,
) -> Result<bool> {
    let url = format!("{base}/ipfs/{cid}?format=car&dag-scope=all");
    let mut resp = client
        .get(&url)
        .header(
            ACCEPT,
            "application/vnd.ipld.car; version=1; order=dfs; dups=n",
        )
        .send()
        .await
        .map_err(network(&url))?;
    let status = resp.status().as_u16();
    if matches!(status, 400 | 406 | 415 | 501) {
        debug!(%url, status, "gateway does not serve CARs; falling back to raw blocks");
        return Ok(false);
    }
    if !resp.status().is_success() {
        return Err(http_error(&url, resp).await);
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/vnd.ipld.car") {
        debug!(%url, content_type, "gateway answered without a CAR; falling back to raw blocks");
        return Ok(false);
    }

    // Decoding, hashing and writing run on the blocking pool, fed chunk by chunk.
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let sink = store.clone();
    let root = *cid;
    let budget_c = budget.clone();
    let scratch = scratch.clone();
    let consumer = tokio::task::spawn_blocking(move || -> Result<(Vec<Cid>, u64, u64)> {
        let _writing = scratch;
        let mut decoder = CarDecoder::default();
        let mut keep = Reachable::new(&[root]);
        while let Some(chunk) = rx.blocking_recv() {
            decoder.push(&chunk);
            while let Some((cid, block)) = decoder.next_block()? {
                budget_c.received(&cid, block.len())?;
                budget_c.check_deadline()?;
                keep.offer(&cid, block, &sink)?;
            }
        }
        let roots = decoder.finish()?;
        let (kept, dropped) = keep.finish();
        Ok((roots, kept, dropped))
    });
    let mut network_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(chunk).await.is_err() {
                    break; // the consumer stopped on an error: report that one
                }
            }
            Ok(None) => break,
            Err(e) => {
                network_error = Some(StoreError::Network {
                    url: url.clone(),
                    source: e,
                });
                break;
            }
        }
    }
    drop(tx);
    let consumed = match consumer.await {
        Ok(r) => r,
        Err(join) => Err(StoreError::Unsupported {
            subject: url.clone(),
            what: format!("CAR decoding task failed: {join}"),
        }),
    };
    // A verification failure or a limit found before the connection broke is the more telling
    // error.
    let (roots, kept, dropped) = match (consumed, network_error) {
        (
            Err(
                e @ (StoreError::Verification { .. }
                | StoreError::UnsupportedCid { .. }
                | StoreError::LimitExceeded { .. }
                | StoreError::DeadlineExceeded { .. }),
            ),
            _,
        ) => return Err(e),
        // The transfer broke off (or the gateway aborted it, e.g. missing a block): keep what
        // arrived, the rest is fetched block by block (and fails there if it really is gone).
        (_, Some(net)) => {
            warn!(%url, error = %net, "CAR transfer broke off; continuing block by block");
            return Ok(true);
        }
        (r, None) => r?,
    };
    if !roots.contains(cid) {
        warn!(%url, ?roots, "CAR roots do not include the requested CID");
    }
    if dropped > 0 {
        warn!(%url, dropped, "CAR carried blocks outside the requested DAG; they were not kept");
    }
    debug!(%url, kept, "CAR received");
    Ok(true)
}

/// Downloads one block with `?format=raw` and verifies it.
async fn fetch_block(
    client: &reqwest::Client,
    base: &str,
    cid: &Cid,
    budget: &Budget,
) -> Result<Vec<u8>> {
    let url = format!("{base}/ipfs/{cid}?format=raw");
    let mut resp = client
        .get(&url)
        .header(ACCEPT, "application/vnd.ipld.raw")
        .send()
        .await
        .map_err(network(&url))?;
    if !resp.status().is_success() {
        return Err(http_error(&url, resp).await);
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(network(&url))? {
        if data.len() + chunk.len() > MAX_BLOCK_SIZE {
            return Err(StoreError::Verification {
                cid: *cid,
                reason: format!("gateway sent more than {MAX_BLOCK_SIZE} bytes for one block"),
            });
        }
        data.extend_from_slice(&chunk);
    }
    budget.received(cid, data.len())?;
    verify_block(cid, &data)?;
    Ok(data)
}

/// Blocks of the DAG under `root` that are not in `store` yet (their subtrees are unknown until
/// they arrive, so this is called again after fetching them).
fn find_missing(store: &DiskBlockstore, root: &Cid) -> Result<Vec<Cid>> {
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        if cid.codec() == CODEC_RAW {
            if !store.has(&cid)? {
                missing.push(cid);
            }
            continue;
        }
        match store.get(&cid) {
            Ok(block) => stack.extend(dag::links_of(&cid, &block)?.into_iter().rev()),
            Err(StoreError::NotFound { .. }) => missing.push(cid),
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Unsupported {
            subject: "fetch".into(),
            what: format!("blocking task failed: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_gateways() {
        assert!(is_gateway_url("http://127.0.0.1:8090"));
        assert!(is_gateway_url("https://provider.example/"));
        assert!(!is_gateway_url("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"));
        assert!(!is_gateway_url("ftp://provider.example"));
    }

    #[test]
    fn gateway_urls() {
        assert_eq!(
            gateway_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            gateway_base("https://gw.example/x").unwrap(),
            "https://gw.example/x"
        );
        assert!(matches!(
            gateway_base("ftp://x"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert!(matches!(
            gateway_base("not a url"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    /// Sets the modification time of `path` (a file or folder) an hour back.
    fn age(path: &Path) {
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        fs::File::open(path).unwrap().set_modified(hour_ago).unwrap();
    }

    #[test]
    fn leftovers_of_fetches_that_died_are_removed_and_running_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        // a fetch still running: its folder locked (an hour old: a long fetch)
        let (running, _) = prepare(&dest).unwrap();
        age(running.dir.path());
        // a fetch killed midway: its lock file there, nobody holding it, blocks inside
        let killed = dir.path().join(format!("{FETCH_TEMP_PREFIX}killed"));
        fs::create_dir_all(killed.join("blocks/ab")).unwrap();
        fs::write(killed.join("blocks/ab/.tmp-1"), b"half a block").unwrap();
        fs::write(killed.join(FETCH_LOCK), b"").unwrap();
        age(&killed);
        // one killed before it took its lock, and a stray file of the same name
        let unlocked = dir.path().join(format!("{FETCH_TEMP_PREFIX}early"));
        fs::create_dir(&unlocked).unwrap();
        age(&unlocked);
        let stray = dir.path().join(format!("{FETCH_TEMP_PREFIX}file"));
        fs::write(&stray, b"x").unwrap();
        age(&stray);
        // a fetch that has just made its folder (not locked yet), and what is not a fetch's
        let young = dir.path().join(format!("{FETCH_TEMP_PREFIX}young"));
        fs::create_dir(&young).unwrap();
        let other = dir.path().join("kept");
        fs::create_dir(&other).unwrap();
        age(&other);

        assert_eq!(remove_fetch_leftovers(dir.path()).unwrap(), 3);
        assert!(!killed.exists() && !unlocked.exists() && !stray.exists());
        assert!(running.dir.path().join(FETCH_LOCK).exists(), "a running fetch's folder is kept");
        assert!(young.exists(), "a folder younger than {LEFTOVER_MIN_AGE:?} is kept");
        assert!(other.exists(), "only fetches' folders are touched");
        assert_eq!(remove_fetch_leftovers(dir.path()).unwrap(), 0);
        let running_path = running.dir.path().to_path_buf();
        drop(running);
        assert!(!running_path.exists(), "a fetch's folder goes with it");
        assert_eq!(remove_fetch_leftovers(&dir.path().join("absent")).unwrap(), 0);
    }

    #[test]
    fn destination_must_be_absent_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        prepare(&dest).unwrap();
        fs::create_dir(&dest).unwrap();
        prepare(&dest).unwrap();
        fs::write(dest.join("x"), b"x").unwrap();
        assert!(matches!(
            prepare(&dest),
            Err(StoreError::DestinationExists { .. })
        ));
    }
}
