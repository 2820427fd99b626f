//! Client for the parts of Kubo's RPC API (`/api/v0/...`) used to publish and pin content.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::error::{Result, StoreError};
use crate::hash::{hex, parse_cid, verify_block};
use crate::importer::CHUNK_SIZE;

/// Options sent with `add` so that Kubo builds the same DAG as [`crate::add_path`], whatever the
/// node's `Import.*` configuration says.
const ADD_OPTIONS: &str = "cid-version=1&raw-leaves=true&chunker=size-262144&hash=sha2-256\
                           &wrap-with-directory=false&pin=true&progress=false";

/// A Kubo RPC API endpoint, e.g. `http://127.0.0.1:5001`.
///
/// Every call is a `POST`, as Kubo requires. Transport failures (refused, reset, DNS, timeout)
/// are [`StoreError::Network`] (retryable); errors Kubo reports are [`StoreError::KuboApi`]
/// (fatal unless the status is 502/503/504, e.g. from a proxy in front of it).
#[derive(Debug, Clone)]
pub struct KuboClient {
    base: String,
    http: reqwest::Client,
}

/// One line of `add`'s output.
#[derive(serde::Deserialize)]
struct AddEntry {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Hash")]
    hash: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

/// Kubo's error body.
#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(rename = "Message")]
    message: String,
}

impl KuboClient {
    /// A client for the API at `api_url` (`http[s]://host:port`, with or without `/api/v0`).
    pub fn new(api_url: &str) -> Result<Self> {
        let url = reqwest::Url::parse(api_url).map_err(|e| StoreError::InvalidUrl {
            url: api_url.into(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StoreError::InvalidUrl {
                url: api_url.into(),
                reason: "scheme must be http or https".into(),
            });
        }
        let base = api_url
            .trim_end_matches('/')
            .trim_end_matches("/api/v0")
            .to_string();
        let http = reqwest::Client::builder()
            .user_agent(concat!("lilypad-store/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| StoreError::Network {
                url: base.clone(),
                source,
            })?;
        Ok(KuboClient { base, http })
    }

    fn url(&self, command: &str, query: &str) -> String {
        if query.is_empty() {
            format!("{}/api/v0/{command}", self.base)
        } else {
            format!("{}/api/v0/{command}?{query}", self.base)
        }
    }

    async fn post(
        &self,
        url: &str,
        body: Option<(reqwest::Body, String)>,
    ) -> Result<reqwest::Response> {
        let mut req = self.http.post(url);
        if let Some((body, content_type)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let resp = req.send().await.map_err(|source| StoreError::Network {
            url: url.to_string(),
            source,
        })?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(api_error(url, resp).await)
        }
    }

    async fn body(url: &str, resp: reqwest::Response) -> Result<Bytes> {
        resp.bytes().await.map_err(|source| StoreError::Network {
            url: url.to_string(),
            source,
        })
    }

    /// The node's version (`/api/v0/version`), e.g. `"0.36.0"`. A cheap reachability check.
    pub async fn version(&self) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Version {
            #[serde(rename = "Version")]
            version: String,
        }
        let url = self.url("version", "");
        let resp = self.post(&url, None).await?;
        let body = Self::body(&url, resp).await?;
        let v: Version = serde_json::from_slice(&body).map_err(|e| StoreError::KuboApi {
            url: url.clone(),
            status: 200,
            message: format!("unexpected version response: {e}"),
        })?;
        Ok(v.version)
    }

    /// Adds the file or folder at `path` (`/api/v0/add`) with the options that give the same CID
    /// as [`crate::add_path`] (CIDv1, raw leaves, 256 KiB chunks, sha2-256, no wrapping folder),
    /// pins it, and returns the root CID Kubo reports.
    ///
    /// The request is one `multipart/form-data` body streamed from disk: the top folder as an
    /// `application/x-directory` part, then each entry (depth-first, sorted by name) with its
    /// path relative to the folder's parent as the URL-escaped part filename, like Kubo's own
    /// CLI sends them. Symlinks are refused as by the importer.
    pub async fn add_path(&self, path: &Path) -> Result<Cid> {
        let top = path.to_path_buf();
        let entries = tokio::task::spawn_blocking(move || collect_entries(&top))
            .await
            .map_err(|e| StoreError::Unsupported {
                subject: path.display().to_string(),
                what: format!("listing task failed: {e}"),
            })??;
        let top_name = entries.first().map(|e| e.rel.clone()).unwrap_or_default();
        let is_dir = entries.first().is_some_and(|e| e.is_dir);

        let boundary = boundary(path);
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        let producer = tokio::spawn(write_multipart(entries, boundary.clone(), tx));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let body = reqwest::Body::wrap_stream(stream);

        let query = if is_dir {
            format!("{ADD_OPTIONS}&recursive=true")
        } else {
            ADD_OPTIONS.to_string()
        };
        let url = self.url("add", &query);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let sent = self.post(&url, Some((body, content_type))).await;
        // A file that could not be read explains a failed request better than the request does.
        match producer.await {
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(StoreError::Unsupported {
                    subject: path.display().to_string(),
                    what: format!("upload task failed: {e}"),
                })
            }
            Ok(Ok(())) => {}
        }
        let resp = sent?;
        let body = Self::body(&url, resp).await?;

        let mut root = None;
        let mut last = None;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry: AddEntry =
                serde_json::from_slice(line).map_err(|e| StoreError::KuboApi {
                    url: url.clone(),
                    status: 200,
                    message: format!("unexpected add output line: {e}"),
                })?;
            if entry.kind.as_deref() == Some("error") {
                return Err(StoreError::KuboApi {
                    url,
                    status: 200,
                    message: entry.message.unwrap_or_default(),
                });
            }
            if let Some(hash) = entry.hash {
                if entry.name == top_name {
                    root = Some(hash.clone());
                }
                last = Some(hash);
            }
        }
        let hash = root.or(last).ok_or_else(|| StoreError::KuboApi {
            url: url.clone(),
            status: 200,
            message: "add returned no CID".into(),
        })?;
        let cid = parse_cid(&hash)?;
        info!(path = %path.display(), %cid, "added to Kubo");
        Ok(cid)
    }

    /// Imports the CARv1 file at `car` (`/api/v0/dag/import`, roots pinned) and returns the
    /// roots the node reports. Kubo and `lilypad devnet`'s IPFS node both answer it: this is
    /// how `lilypad module publish` hands a module folder and its image archive to the network.
    pub async fn dag_import(&self, car: &Path) -> Result<Vec<Cid>> {
        let file = tokio::fs::File::open(car).await.map_err(|e| StoreError::io(car.to_path_buf(), e))?;
        let boundary = boundary(car);
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"import.car\"\r\nContent-Type: application/vnd.ipld.car\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let body_stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(head)) })
            .chain(tokio_util::io::ReaderStream::new(file))
            .chain(futures_util::stream::once(async move { Ok(Bytes::from(tail)) }));
        let url = self.url("dag/import", "pin-roots=true");
        let resp = self
            .post(&url, Some((reqwest::Body::wrap_stream(body_stream), format!("multipart/form-data; boundary={boundary}"))))
            .await?;
        let body = Self::body(&url, resp).await?;
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(rename = "Root")]
            root: Option<RootLine>,
        }
        #[derive(serde::Deserialize)]
        struct RootLine {
            #[serde(rename = "Cid")]
            cid: CidLink,
            #[serde(rename = "PinErrorMsg", default)]
            pin_error: String,
        }
        #[derive(serde::Deserialize)]
        struct CidLink {
            #[serde(rename = "/")]
            cid: String,
        }
        let mut roots = Vec::new();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: Line = serde_json::from_slice(line).map_err(|e| StoreError::KuboApi {
                url: url.clone(),
                status: 200,
                message: format!("unexpected dag/import output line: {e}"),
            })?;
            if let Some(root) = line.root {
                if !root.pin_error.is_empty() {
                    return Err(StoreError::KuboApi { url, status: 200, message: format!("pinning {}: {}", root.cid.cid, root.pin_error) });
                }
                roots.push(parse_cid(&root.cid.cid)?);
            }
        }
        info!(car = %car.display(), roots = roots.len(), "imported into IPFS");
        Ok(roots)
    }

    /// Pins `cid` recursively (`/api/v0/pin/add`).
    pub async fn pin_add(&self, cid: &Cid) -> Result<()> {
        let url = self.url("pin/add", &format!("arg={cid}&recursive=true"));
        let resp = self.post(&url, None).await?;
        Self::body(&url, resp).await?;
        debug!(%cid, "pinned");
        Ok(())
    }

    /// The content of the file `cid` (`/api/v0/cat`), held in memory. Kubo checks blocks as it
    /// reads them; for verified downloads of large outputs use [`crate::fetch`].
    pub async fn cat(&self, cid: &Cid) -> Result<Bytes> {
        let url = self.url("cat", &format!("arg={cid}"));
        let resp = self.post(&url, None).await?;
        Self::body(&url, resp).await
    }

    /// The raw bytes of block `cid` (`/api/v0/block/get`), verified against the CID.
    pub async fn block_get(&self, cid: &Cid) -> Result<Bytes> {
        let url = self.url("block/get", &format!("arg={cid}"));
        let resp = self.post(&url, None).await?;
        let data = Self::body(&url, resp).await?;
        verify_block(cid, &data)?;
        Ok(data)
    }
}

/// Turns an unsuccessful response into [`StoreError::KuboApi`] with Kubo's message.
async fn api_error(url: &str, resp: reqwest::Response) -> StoreError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let message = match serde_json::from_slice::<ApiError>(&body) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(512)])
            .trim()
            .to_string(),
    };
    StoreError::KuboApi {
        url: url.to_string(),
        status,
        message,
    }
}

/// A part of the `add` upload.
struct UploadEntry {
    /// Path relative to the top entry's parent, '/'-separated, e.g. `out/sub/a.txt`.
    rel: String,
    abs: PathBuf,
    is_dir: bool,
}

/// The top entry then everything under it, depth-first, sorted by name.
fn collect_entries(top: &Path) -> Result<Vec<UploadEntry>> {
    let name = top
        .file_name()
        .ok_or_else(|| StoreError::Unsupported {
            subject: top.display().to_string(),
            what: "path has no final component".into(),
        })?
        .to_str()
        .ok_or_else(|| StoreError::InvalidName {
            path: top.to_path_buf(),
        })?
        .to_string();
    let mut out = Vec::new();
    collect(top, name, &mut out)?;
    Ok(out)
}

fn collect(path: &Path, rel: String, out: &mut Vec<UploadEntry>) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| StoreError::io(path, e))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(StoreError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if ft.is_file() {
        out.push(UploadEntry {
            rel,
            abs: path.to_path_buf(),
            is_dir: false,
        });
        return Ok(());
    }
    if !ft.is_dir() {
        return Err(StoreError::Unsupported {
            subject: path.display().to_string(),
            what: "not a regular file or folder (socket, FIFO or device)".into(),
        });
    }
    out.push(UploadEntry {
        rel: rel.clone(),
        abs: path.to_path_buf(),
        is_dir: true,
    });
    let mut children = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| StoreError::io(path, e))? {
        let entry = entry.map_err(|e| StoreError::io(path, e))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| StoreError::InvalidName { path: entry.path() })?;
        children.push((name, entry.path()));
    }
    children.sort_unstable();
    for (name, child) in children {
        collect(&child, format!("{rel}/{name}"), out)?;
    }
    Ok(())
}

/// Go's `url.QueryEscape`, which Kubo's multipart reader undoes with `url.QueryUnescape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A multipart boundary unlikely to occur in any content.
fn boundary(path: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(path.as_os_str().as_encoded_bytes());
    format!("lilypad-{}", hex(&h.finalize()[..16]))
}

/// Streams the multipart body into `tx`, reading each file only when its turn comes.
async fn write_multipart(
    entries: Vec<UploadEntry>,
    boundary: String,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<()> {
    // Returns false when the request side has gone away (its error is reported there).
    async fn send(tx: &mpsc::Sender<std::io::Result<Bytes>>, b: Bytes) -> bool {
        tx.send(Ok(b)).await.is_ok()
    }
    for (i, entry) in entries.iter().enumerate() {
        let content_type = if entry.is_dir {
            "application/x-directory"
        } else {
            "application/octet-stream"
        };
        let head = format!(
            "{}--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" },
            query_escape(&entry.rel),
        );
        if !send(&tx, Bytes::from(head)).await {
            return Ok(());
        }
        if entry.is_dir {
            continue;
        }
        let mut file = match tokio::fs::File::open(&entry.abs).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx
                    .send(Err(std::io::Error::new(e.kind(), e.to_string())))
                    .await;
                return Err(StoreError::io(&entry.abs, e));
            }
        };
        loop {
            let mut buf = Vec::with_capacity(CHUNK_SIZE);
            let n = match (&mut file)
                .take(CHUNK_SIZE as u64)
                .read_to_end(&mut buf)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(e.kind(), e.to_string())))
                        .await;
                    return Err(StoreError::io(&entry.abs, e));
                }
            };
            if n == 0 {
                break;
            }
            if !send(&tx, Bytes::from(buf)).await {
                return Ok(());
            }
        }
    }
    let tail = if entries.is_empty() {
        format!("--{boundary}--\r\n")
    } else {
        format!("\r\n--{boundary}--\r\n")
    };
    send(&tx, Bytes::from(tail)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escape_matches_go() {
        assert_eq!(query_escape("out/a b.txt"), "out%2Fa+b.txt");
        assert_eq!(query_escape("x~y-z_.1"), "x~y-z_.1");
        assert_eq!(query_escape("é\"%"), "%C3%A9%22%25");
    }

    #[test]
    fn base_url_forms() {
        let c = KuboClient::new("http://127.0.0.1:5001/api/v0/").unwrap();
        assert_eq!(c.url("version", ""), "http://127.0.0.1:5001/api/v0/version");
        let c = KuboClient::new("http://127.0.0.1:5001").unwrap();
        assert_eq!(
            c.url("cat", "arg=x"),
            "http://127.0.0.1:5001/api/v0/cat?arg=x"
        );
        assert!(KuboClient::new("unix:///tmp/x").is_err());
        assert!(KuboClient::new("::").is_err());
    }

    #[test]
    fn entries_in_upload_order() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("out");
        fs::create_dir_all(top.join("b/c")).unwrap();
        fs::create_dir_all(top.join("a")).unwrap();
        fs::write(top.join("b/c/f"), b"1").unwrap();
        fs::write(top.join("z"), b"2").unwrap();
        let entries = collect_entries(&top).unwrap();
        let rels: Vec<_> = entries.iter().map(|e| (e.rel.as_str(), e.is_dir)).collect();
        assert_eq!(
            rels,
            [
                ("out", true),
                ("out/a", true),
                ("out/b", true),
                ("out/b/c", true),
                ("out/b/c/f", false),
                ("out/z", false)
            ]
        );
    }
}
