//! HTTP path gateway over a [`DiskBlockstore`].
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /ipfs/<cid>[/<path>...]` on a file | its bytes, `application/octet-stream`, `ETag: "<cid>"` |
//! | `GET /ipfs/<cid>[/<path>...]` on a folder | JSON `{"cid": ..., "entries": [{"name", "cid", "size", "type"}]}` |
//! | `?format=car` or `Accept: application/vnd.ipld.car` | CARv1 of the DAG at the resolved CID (one root, that CID) |
//! | `?format=raw` or `Accept: application/vnd.ipld.raw` | the single block at the resolved CID |
//!
//! In listings `type` is `file`, `directory` or another UnixFS kind (`symlink`, `hamt-shard`), or
//! `unknown` when the child block is not in the store; `size` is the file size in bytes for files
//! and the cumulative size of the DAG (the link's Tsize) otherwise.
//!
//! Statuses: 400 for a malformed CID or an unknown `format`, 404 for a CID not in the store or a
//! path that does not exist, 501 for content this crate does not handle (HAMT folders, codecs
//! other than raw and dag-pb). `HEAD` works on every route. The gateway serves blocks as stored,
//! without re-hashing them: clients verify (see [`fetch`](crate::fetch)).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cid::Cid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::blockstore::DiskBlockstore;
use crate::dag::{self, Kind};
use crate::error::{Result, StoreError};
use crate::hash::parse_cid;

const CAR_TYPE: &str = "application/vnd.ipld.car";
const RAW_TYPE: &str = "application/vnd.ipld.raw";
/// Bytes buffered per message between the blocking reader and the HTTP body.
const STREAM_CHUNK: usize = 256 << 10;

/// The gateway's routes over `store`, ready to be served or merged into a bigger router.
pub fn router(store: DiskBlockstore) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(root_handler))
        .route("/ipfs/{cid}/", get(root_handler))
        .route("/ipfs/{cid}/{*path}", get(path_handler))
        .with_state(store)
}

/// [`router`] plus the two Kubo RPC calls a publisher needs, for a node that accepts content
/// (`lilypad devnet`'s IPFS node; never a provider's public outputs gateway):
/// `POST /api/v0/dag/import` (multipart CAR files, every block verified against its CID,
/// at most `max_bytes` per request) and `POST /api/v0/version`.
pub fn router_writable(store: DiskBlockstore, max_bytes: usize) -> Router {
    let writes = Router::new()
        .route("/api/v0/dag/import", axum::routing::post(dag_import_handler))
        .route("/api/v0/version", axum::routing::post(version_handler))
        .layer(axum::extract::DefaultBodyLimit::max(max_bytes))
        .with_state(store.clone());
    router(store).merge(writes)
}

/// Serves [`router_writable`] on `addr`, like [`serve`].
pub async fn serve_writable(
    store: DiskBlockstore,
    addr: SocketAddr,
    max_bytes: usize,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let root = store.root().display().to_string();
    let (bound, task) = serve_router(router_writable(store, max_bytes), addr).await?;
    info!(%bound, %root, "IPFS node (gateway + dag/import) listening");
    Ok((bound, task))
}

async fn version_handler() -> Response {
    let body = serde_json::json!({ "Version": concat!("lilypad-store-", env!("CARGO_PKG_VERSION")) });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn dag_import_handler(
    State(store): State<DiskBlockstore>,
    mut multipart: axum::extract::Multipart,
) -> Response {
    use tokio::io::AsyncWriteExt;
    let bad = |status: StatusCode, message: String| {
        let body = serde_json::json!({ "Message": message, "Code": 0, "Type": "error" });
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    };
    let mut lines = String::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return bad(e.status(), format!("reading the upload: {e}")),
        };
        let tmp = match tempfile::NamedTempFile::new_in(store.root()) {
            Ok(t) => t,
            Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("temporary file: {e}")),
        };
        let mut file = match tmp.reopen() {
            Ok(f) => tokio::fs::File::from_std(f),
            Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("temporary file: {e}")),
        };
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = file.write_all(&chunk).await {
                        return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("writing the upload: {e}"));
                    }
                }
                Ok(None) => break,
                Err(e) => return bad(e.status(), format!("reading the upload: {e}")),
            }
        }
        if let Err(e) = file.flush().await {
            return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("writing the upload: {e}"));
        }
        drop(file);
        let store = store.clone();
        let imported = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(tmp.path()).map_err(|e| StoreError::io(tmp.path().to_path_buf(), e))?;
            crate::car::import_car(std::io::BufReader::new(f), &store)
        })
        .await;
        match imported {
            Ok(Ok(roots)) => {
                for root in roots {
                    lines.push_str(&serde_json::json!({ "Root": { "Cid": { "/": root.to_string() }, "PinErrorMsg": "" } }).to_string());
                    lines.push('\n');
                }
            }
            Ok(Err(e)) => return bad(StatusCode::BAD_REQUEST, format!("importing the CAR: {e}")),
            Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("import task: {e}")),
        }
    }
    info!(roots = lines.lines().count(), "dag/import");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response()
}

/// Serves [`router`] on `addr` (port 0 picks a free port) in a background task. Returns the
/// address actually bound and the task's handle (abort it to stop the server).
pub async fn serve(
    store: DiskBlockstore,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let root = store.root().display().to_string();
    let (bound, task) = serve_router(router(store), addr).await?;
    info!(%bound, %root, "gateway listening");
    Ok((bound, task))
}

/// Binds `addr` and serves `app` in a background task.
async fn serve_router(app: Router, addr: SocketAddr) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StoreError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StoreError::Bind { addr, source })?;
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((bound, task))
}

async fn root_handler(
    State(store): State<DiskBlockstore>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    respond(store, cid, String::new(), query, headers).await
}

async fn path_handler(
    State(store): State<DiskBlockstore>,
    Path((cid, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    respond(store, cid, path, query, headers).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    UnixFs,
    Car,
    Raw,
}

fn requested_format(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> std::result::Result<Format, String> {
    if let Some(f) = query.get("format") {
        return match f.as_str() {
            "car" => Ok(Format::Car),
            "raw" => Ok(Format::Raw),
            other => Err(format!(
                "unsupported format {other:?}: use format=car or format=raw, or none"
            )),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains(CAR_TYPE) {
        Ok(Format::Car)
    } else if accept.contains(RAW_TYPE) {
        Ok(Format::Raw)
    } else {
        Ok(Format::UnixFs)
    }
}

async fn respond(
    store: DiskBlockstore,
    cid: String,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
) -> Response {
    let format = match requested_format(&query, &headers) {
        Ok(f) => f,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    debug!(%cid, %path, ?format, "gateway request");
    match respond_inner(store, &cid, &path, format, &headers).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn error_response(e: &StoreError) -> Response {
    let status = match e {
        StoreError::InvalidCid { .. } => StatusCode::BAD_REQUEST,
        StoreError::NotFound { .. } | StoreError::NoSuchEntry { .. } => StatusCode::NOT_FOUND,
        StoreError::Unsupported { .. } | StoreError::UnsupportedCid { .. } => {
            StatusCode::NOT_IMPLEMENTED
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        warn!(error = %e, "gateway error");
    }
    (status, format!("{e}\n")).into_response()
}

/// What the blocking part of a request found.
enum Prepared {
    Raw(Vec<u8>),
    File { node: dag::Node, size: Option<u64> },
    Dir(String),
    Car,
}

async fn respond_inner(
    store: DiskBlockstore,
    cid: &str,
    path: &str,
    format: Format,
    headers: &HeaderMap,
) -> Result<Response> {
    let root = parse_cid(cid)?;
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let st = store.clone();
    let (target, prepared) = blocking(move || {
        let target = dag::resolve_path(&st, &root, segments.iter().map(String::as_str))?;
        let prepared = match format {
            Format::Raw => Prepared::Raw(st.get(&target)?),
            Format::Car => {
                if !st.has(&target)? {
                    return Err(StoreError::NotFound { cid: target });
                }
                Prepared::Car
            }
            Format::UnixFs => {
                let node = dag::load(&st, &target)?;
                match node.kind() {
                    Kind::Directory => Prepared::Dir(listing(&st, &target, &node)?),
                    Kind::File => {
                        let size = node.file_size();
                        Prepared::File { node, size }
                    }
                    Kind::Other(kind) => {
                        return Err(StoreError::Unsupported {
                            subject: target.to_string(),
                            what: format!("UnixFS {kind} nodes cannot be served"),
                        })
                    }
                }
            }
        };
        Ok((target, prepared))
    })
    .await?;

    let etag = match format {
        Format::UnixFs if matches!(prepared, Prepared::Dir(_)) => format!("\"{target}.json\""),
        Format::UnixFs => format!("\"{target}\""),
        Format::Raw => format!("\"{target}.raw\""),
        Format::Car => format!("\"{target}.car\""),
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok(with_common(StatusCode::NOT_MODIFIED.into_response(), &etag));
    }

    let response = match prepared {
        Prepared::Raw(block) => {
            ([(header::CONTENT_TYPE, RAW_TYPE)], Bytes::from(block)).into_response()
        }
        Prepared::Dir(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Prepared::File { node, size } => {
            let body = stream_blocking(move |tx| {
                dag::read_file_node(
                    &store,
                    &target,
                    node,
                    &mut |chunk| send(tx, Ok(Bytes::from(chunk))),
                    &mut || Ok(()),
                )
                .map(|_| ())
            });
            let mut r =
                ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
            if let Some(size) = size {
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            }
            r
        }
        Prepared::Car => {
            let body = stream_blocking(move |tx| {
                let mut w = ChannelWriter {
                    tx,
                    buf: Vec::with_capacity(STREAM_CHUNK),
                };
                crate::car::export_from(&store, &target, &mut w).map(|_| ())
            });
            let disposition = format!("attachment; filename=\"{target}.car\"");
            let mut r = (
                [(header::CONTENT_TYPE, "application/vnd.ipld.car; version=1")],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
    };
    Ok(with_common(response, &etag))
}

fn with_common(mut r: Response, etag: &str) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=29030400, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[derive(serde::Serialize)]
struct ListingEntry<'a> {
    name: &'a str,
    cid: String,
    size: u64,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn listing(store: &DiskBlockstore, cid: &Cid, node: &dag::Node) -> Result<String> {
    let entries = dag::dir_entries(store, cid, node, u64::MAX)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        let (kind, size) = match dag::load(store, &e.cid) {
            Ok(child) => {
                let kind = child.kind();
                let size = match kind {
                    Kind::File => child.file_size().unwrap_or(0),
                    _ => e.tsize,
                };
                (kind.as_str(), size)
            }
            Err(StoreError::NotFound { .. }) => ("unknown", e.tsize),
            Err(err) => return Err(err),
        };
        out.push(ListingEntry {
            name: &e.name,
            cid: e.cid.to_string(),
            size,
            kind,
        });
    }
    let doc = serde_json::json!({ "cid": cid.to_string(), "entries": out });
    Ok(doc.to_string())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Unsupported {
            subject: "gateway".into(),
            what: format!("blocking task failed: {e}"),
        }),
    }
}

type Chunk = std::result::Result<Bytes, std::io::Error>;

fn send(tx: &mpsc::Sender<Chunk>, item: Chunk) -> Result<()> {
    tx.blocking_send(item).map_err(|_| {
        StoreError::io(
            std::path::PathBuf::from("<HTTP response>"),
            std::io::ErrorKind::BrokenPipe.into(),
        )
    })
}

/// A body fed by `produce`, run on the blocking pool. An error ends the body with an error, so
/// the client sees a broken transfer rather than a short file.
fn stream_blocking(
    produce: impl FnOnce(&mpsc::Sender<Chunk>) -> Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&tx) {
            if !matches!(&e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
            {
                warn!(error = %e, "gateway response aborted");
            }
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

/// `Write` into the response channel, in chunks of [`STREAM_CHUNK`].
struct ChannelWriter<'a> {
    tx: &'a mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter<'_> {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(STREAM_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}
