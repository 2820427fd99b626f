//! The outputs server: a provider's (or a node's) HTTP server over a [`DiskBlockstore`],
//! speaking the IPFS Trustless Gateway specification
//! (<https://specs.ipfs.tech/http-gateways/trustless-gateway/>) so that any IPFS
//! implementation (Kubo, Helia, `lilypad run`) can fetch and verify a job's outputs by CID.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /ipfs/<cid>?format=raw` or `Accept: application/vnd.ipld.raw` | the single block (`Content-Disposition: attachment; filename="<cid>.bin"`) |
//! | `GET /ipfs/<cid>[/<path>]?format=car` or `Accept: application/vnd.ipld.car; version=1` | a CARv1 (`order=dfs; dups=n`): the blocks that verify the path, then the DAG at its end per `dag-scope` (`block`, `entity`, `all`, default `all`); header root: `<cid>` |
//! | `GET /ipfs/<cid>[/<path>]` on a file, no format asked | its bytes, `application/octet-stream` |
//! | `GET /ipfs/<cid>[/<path>]` on a folder, no format asked | JSON `{"cid": ..., "entries": [{"name", "cid", "size", "type"}]}` |
//! | `GET /ipfs/bafkqaaa?format=raw` / `?format=car` | the spec's probe: an empty block / a CAR with no blocks |
//!
//! Headers (spec, "Response Headers", and the path gateway's): `Content-Type` (CARs always
//! `application/vnd.ipld.car; version=1; order=dfs; dups=n`), `Etag` (`"<cid>.raw"`,
//! `W/"<root>.car.<scope>.dfs.n[.<path hash>]"`, `"<cid>"`, `"<cid>.json"`; `If-None-Match` gives
//! 304), `Cache-Control: public, max-age=29030400, immutable`, `X-Content-Type-Options:
//! nosniff`, `Vary: Accept`, `X-Ipfs-Path` (the path requested), `X-Ipfs-Roots` (the CID of each
//! path segment), `Content-Location` (when the format came from `Accept`).
//!
//! Statuses: 400 for a malformed CID, an unknown `format` or `dag-scope`; 404 when the root
//! block is not in the store or a path does not exist (this gateway is not recursive); 406 for
//! formats or CAR variants not served (`format=tar`, `dag-json`, CARv2, `dups=y`, an `Accept`
//! listing nothing served); 412 for `Cache-Control: only-if-cached` without the root block; 501
//! for `entity-bytes` and content this crate does not handle (codecs other than raw and dag-pb
//! when deserializing, UnixFS symlinks). `HEAD` works on every route. A CAR that meets a
//! missing block after its 200 ends with a broken transfer (spec, "Streaming and Missing Child
//! Blocks"). Blocks are served as stored: clients verify (see [`fetch_with`](crate::fetch_with)).
//!
//! Served by [`crate::http::serve_router`]: connection limits, header/idle/write timeouts,
//! bodies streamed a block at a time without holding threads.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::info;

use crate::blockstore::DiskBlockstore;
use crate::error::{Result, StoreError};
use crate::http::{serve_router, Server, ServerLimits};
use crate::trustless::{self, Request};

/// The trustless gateway routes over `store`, ready to be served or merged into a bigger
/// router.
pub fn router(store: DiskBlockstore) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(root_handler))
        .route("/ipfs/{cid}/", get(root_handler))
        .route("/ipfs/{cid}/{*path}", get(path_handler))
        .with_state(store)
}

/// [`router`] plus the two Kubo RPC calls a publisher needs, for a node that accepts content
/// (`lilypad devnet`'s IPFS node; never a provider's public outputs server):
/// `POST /api/v0/dag/import` (multipart CAR files, every block verified against its CID, only
/// blocks reachable from the CAR's roots kept, at most `max_bytes` per request) and
/// `POST /api/v0/version`.
pub fn router_with_import(store: DiskBlockstore, max_bytes: usize) -> Router {
    let writes = Router::new()
        .route(
            "/api/v0/dag/import",
            axum::routing::post(dag_import_handler),
        )
        .route("/api/v0/version", axum::routing::post(version_handler))
        .layer(axum::extract::DefaultBodyLimit::max(max_bytes))
        .with_state(store.clone());
    router(store).merge(writes)
}

/// Serves [`router`] on `addr` (port 0 picks a free port) under `limits`, in a background task.
pub async fn serve_trustless(
    store: DiskBlockstore,
    addr: SocketAddr,
    limits: &ServerLimits,
) -> Result<Server> {
    let root = store.root().display().to_string();
    let server = serve_router(router(store), addr, limits).await?;
    info!(bound = %server.addr, %root, ?limits, "outputs server (trustless gateway) listening");
    Ok(server)
}

/// Serves [`router_with_import`] on `addr` under `limits`, like [`serve_trustless`].
pub async fn serve_with_import(
    store: DiskBlockstore,
    addr: SocketAddr,
    max_bytes: usize,
    limits: &ServerLimits,
) -> Result<Server> {
    let root = store.root().display().to_string();
    let server = serve_router(router_with_import(store, max_bytes), addr, limits).await?;
    info!(bound = %server.addr, %root, "IPFS node (trustless gateway + dag/import) listening");
    Ok(server)
}

async fn root_handler(
    State(store): State<DiskBlockstore>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let req = Request {
        cid,
        path: String::new(),
        query,
        headers,
        uri,
    };
    trustless::respond(store, req).await
}

async fn path_handler(
    State(store): State<DiskBlockstore>,
    Path((cid, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let req = Request {
        cid,
        path,
        query,
        headers,
        uri,
    };
    trustless::respond(store, req).await
}

async fn version_handler() -> Response {
    let body =
        serde_json::json!({ "Version": concat!("lilypad-store-", env!("CARGO_PKG_VERSION")) });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn dag_import_handler(
    State(store): State<DiskBlockstore>,
    mut multipart: axum::extract::Multipart,
) -> Response {
    use tokio::io::AsyncWriteExt;
    let bad = |status: StatusCode, message: String| {
        let body = serde_json::json!({ "Message": message, "Code": 0, "Type": "error" });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
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
            Err(e) => {
                return bad(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("temporary file: {e}"),
                )
            }
        };
        let mut file = match tmp.reopen() {
            Ok(f) => tokio::fs::File::from_std(f),
            Err(e) => {
                return bad(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("temporary file: {e}"),
                )
            }
        };
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = file.write_all(&chunk).await {
                        return bad(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("writing the upload: {e}"),
                        );
                    }
                }
                Ok(None) => break,
                Err(e) => return bad(e.status(), format!("reading the upload: {e}")),
            }
        }
        if let Err(e) = file.flush().await {
            return bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("writing the upload: {e}"),
            );
        }
        drop(file);
        let store = store.clone();
        let imported = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(tmp.path())
                .map_err(|e| StoreError::io(tmp.path().to_path_buf(), e))?;
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
            Err(e) => {
                return bad(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("import task: {e}"),
                )
            }
        }
    }
    info!(roots = lines.lines().count(), "dag/import");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        lines,
    )
        .into_response()
}
