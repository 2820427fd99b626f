//! Requests on `/ipfs/{cid}[/{path}]`, answered as the IPFS Trustless Gateway specification
//! asks (<https://specs.ipfs.tech/http-gateways/trustless-gateway/>, "reliable", 2026-03-05),
//! plus deserialized UnixFS (file bytes, a JSON folder listing) when no verifiable format is
//! asked for, as a path gateway may.
//!
//! Every response body is an async stream reading one block at a time (a short
//! `spawn_blocking` per block), so a client that stops reading holds no thread.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cid::Cid;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::blockstore::{BlockSource, DiskBlockstore};
use crate::dag::{self, Kind, Node};
use crate::error::{Result, StoreError};
use crate::hamt;
use crate::hash::{canonical, parse_cid, CODEC_DAG_PB};
use crate::pb;

pub(crate) const CAR_TYPE: &str = "application/vnd.ipld.car";
pub(crate) const RAW_TYPE: &str = "application/vnd.ipld.raw";
/// What every CAR here is: spec, "CAR format signaling in Response": "The Trustless Gateway
/// MUST always respond with a Content-Type header that includes information about all
/// supported and known parameters".
const CAR_CONTENT_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
/// Multihash code of the identity hash (the block is the digest itself).
const IDENTITY: u64 = 0x00;

/// `dag-scope` (spec, "dag-scope (request query parameter)"): which blocks of the DAG at the
/// end of the path a CAR carries, after the blocks needed to verify the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only the block at the end of the path.
    Block,
    /// Enough to read a whole file or enumerate a folder (its HAMT shards, not its entries).
    Entity,
    /// The whole DAG (the default).
    All,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Block => "block",
            Scope::Entity => "entity",
            Scope::All => "all",
        }
    }
}

/// The response format negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// File bytes or a JSON listing (not verifiable: a convenience of this gateway).
    Deserialized,
    /// `application/vnd.ipld.raw`: the single block.
    Raw,
    /// `application/vnd.ipld.car; version=1; order=dfs; dups=n`.
    Car(Scope),
}

/// A refused request: status and a message for the body.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refusal {
    (status, msg.into())
}

/// Chooses the format from `?format=` (which wins over `Accept`, spec "format (request query
/// parameter)"), then `Accept` (highest `q` among the types served), then deserialized.
/// Returns whether the format came from the query.
pub(crate) fn negotiate(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> std::result::Result<(Format, bool), Refusal> {
    if query.contains_key("entity-bytes") {
        return Err(refuse(
            StatusCode::NOT_IMPLEMENTED,
            "entity-bytes is not implemented here; ask for the whole entity (dag-scope=entity)",
        ));
    }
    let scope = match query.get("dag-scope").map(String::as_str) {
        None | Some("all") => Scope::All,
        Some("entity") => Scope::Entity,
        Some("block") => Scope::Block,
        Some(other) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("invalid dag-scope {other:?}: use block, entity or all"),
            ))
        }
    };
    if let Some(f) = query.get("format") {
        return match f.as_str() {
            "raw" => Ok((Format::Raw, true)),
            "car" => {
                check_car_params(
                    query.get("car-version").map(String::as_str),
                    query.get("car-order").map(String::as_str),
                    query.get("car-dups").map(String::as_str),
                )?;
                Ok((Format::Car(scope), true))
            }
            "tar" | "dag-json" | "dag-cbor" | "json" | "cbor" | "ipns-record" => Err(refuse(
                StatusCode::NOT_ACCEPTABLE,
                format!("format={f} is not served here: use format=raw or format=car"),
            )),
            other => Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other:?}: use format=raw or format=car, or none"),
            )),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if accept.is_empty() {
        return Ok((Format::Deserialized, false));
    }
    let mut best: Option<(f32, Format)> = None;
    let mut car_problem = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let (mut version, mut order, mut dups) = (None, None, None);
        for param in parts {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse().unwrap_or(0.0),
                "version" => version = Some(v.to_string()),
                "order" => order = Some(v.to_string()),
                "dups" => dups = Some(v.to_string()),
                _ => {}
            }
        }
        if q <= 0.0 {
            continue;
        }
        let format = match media.as_str() {
            RAW_TYPE => Format::Raw,
            CAR_TYPE => {
                // Query parameters take precedence (spec, "car-version (request query
                // parameter)" and the two after it).
                let v = query.get("car-version").cloned().or(version);
                let o = query.get("car-order").cloned().or(order);
                let d = query.get("car-dups").cloned().or(dups);
                if let Err(e) = check_car_params(v.as_deref(), o.as_deref(), d.as_deref()) {
                    car_problem = Some(e);
                    continue;
                }
                Format::Car(scope)
            }
            "*/*"
            | "application/*"
            | "application/octet-stream"
            | "application/json"
            | "text/*"
            | "text/html"
            | "text/plain" => Format::Deserialized,
            _ => continue,
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    match (best, car_problem) {
        (Some((_, format)), _) => Ok((format, false)),
        (None, Some(problem)) => Err(problem),
        (None, None) => Err(refuse(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "none of the types in Accept ({accept}) is served here: ask for {RAW_TYPE} or \
                 {CAR_TYPE}; version=1"
            ),
        )),
    }
}

/// CARs here are version 1, in DFS order, without duplicates (spec, "CAR format signaling in
/// Response": "A Gateway MAY choose to implement only some parameters and return HTTP 400 Bad
/// Request or 406 Not Acceptable when a client requested a response with unsupported content
/// type variant").
fn check_car_params(
    version: Option<&str>,
    order: Option<&str>,
    dups: Option<&str>,
) -> std::result::Result<(), Refusal> {
    if !matches!(version, None | Some("1")) {
        return Err(refuse(
            StatusCode::NOT_ACCEPTABLE,
            "only CARv1 is served (version=1)",
        ));
    }
    if !matches!(order, None | Some("") | Some("dfs") | Some("unk")) {
        return Err(refuse(
            StatusCode::NOT_ACCEPTABLE,
            "CAR block order: only order=dfs (or unk) is served",
        ));
    }
    if !matches!(dups, None | Some("") | Some("n")) {
        return Err(refuse(
            StatusCode::NOT_ACCEPTABLE,
            "CAR duplicates: only dups=n is served",
        ));
    }
    Ok(())
}

/// Reads blocks from the store; identity CIDs are their own block (spec, "Dedicated Probe
/// Paths": `bafkqaaa`).
#[derive(Clone)]
pub(crate) struct Blocks(pub DiskBlockstore);

impl BlockSource for Blocks {
    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        if cid.hash().code() == IDENTITY {
            return Ok(cid.hash().digest().to_vec());
        }
        self.0.get(cid)
    }
}

impl Blocks {
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(cid.hash().code() == IDENTITY || self.0.has(cid)?)
    }
}

/// One request, as parsed by the route.
pub(crate) struct Request {
    pub cid: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub uri: Uri,
}

/// Answers one request (any error becomes its status: 400 bad CID, 404 missing, 406
/// unacceptable format, 412 `only-if-cached` miss, 501 unsupported).
pub(crate) async fn respond(store: DiskBlockstore, req: Request) -> Response {
    let (format, from_query) = match negotiate(&req.query, &req.headers) {
        Ok(f) => f,
        Err((status, msg)) => return plain(status, msg),
    };
    debug!(cid = %req.cid, path = %req.path, ?format, "gateway request");
    match respond_inner(Blocks(store), &req, format, from_query).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn plain(status: StatusCode, msg: String) -> Response {
    let mut r = (status, format!("{msg}\n")).into_response();
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) fn error_response(e: &StoreError) -> Response {
    // Path gateway spec, "Response Status Codes": 400 for a malformed CID, 404 when the content
    // is not in this (non-recursive) gateway or a path does not exist; 501 for content this
    // gateway does not handle.
    let status = match e {
        StoreError::InvalidCid { .. } => StatusCode::BAD_REQUEST,
        StoreError::Http { status: 412, .. } => StatusCode::PRECONDITION_FAILED,
        StoreError::NotFound { .. } | StoreError::NoSuchEntry { .. } => StatusCode::NOT_FOUND,
        StoreError::Unsupported { .. } | StoreError::UnsupportedCid { .. } => {
            StatusCode::NOT_IMPLEMENTED
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
        warn!(error = %e, "gateway error");
    }
    plain(status, e.to_string())
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

/// What the blocking part of a request found.
enum Prepared {
    Raw(Vec<u8>),
    File(u64),
    Dir(String),
    Car,
}

async fn respond_inner(
    blocks: Blocks,
    req: &Request,
    format: Format,
    from_query: bool,
) -> Result<Response> {
    let root = parse_cid(&req.cid)?;
    let segments: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    // Spec, "Cache-Control: only-if-cached (request header)": 412 when the root block is not
    // immediately available.
    let only_cached = req
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|d| d.trim() == "only-if-cached"));
    let b = blocks.clone();
    let (resolved, prepared) = blocking(move || {
        if only_cached && !b.has(&root)? {
            return Err(StoreError::NotFound { cid: root });
        }
        let resolved = dag::resolve_path_traced(&b, &root, segments.iter().map(String::as_str))?;
        let target = resolved.target;
        let prepared = match format {
            Format::Raw => Prepared::Raw(b.get_block(&target)?),
            Format::Car(_) => {
                if !b.has(&target)? {
                    return Err(StoreError::NotFound { cid: target });
                }
                Prepared::Car
            }
            Format::Deserialized => {
                let node = dag::load(&b, &target)?;
                match node.kind() {
                    Kind::Directory => Prepared::Dir(listing(&b, &target, &node)?),
                    Kind::File => Prepared::File(dag::declared_file_size(&target, &node)?),
                    Kind::Other(kind) => {
                        return Err(StoreError::Unsupported {
                            subject: target.to_string(),
                            what: format!("UnixFS {kind} nodes cannot be served"),
                        })
                    }
                }
            }
        };
        Ok((resolved, prepared))
    })
    .await
    .map_err(|e| match e {
        StoreError::NotFound { .. } if only_cached => StoreError::Http {
            url: req.uri.to_string(),
            status: 412,
            message: "not cached".into(),
        },
        e => e,
    })?;
    let target = resolved.target;

    // Path gateway spec, "Etag (response header)": the CID, with a suffix per format; weak for
    // CARs, whose bytes another gateway may order differently; unique per dag-scope and path.
    let etag = match (format, &prepared) {
        (Format::Deserialized, Prepared::Dir(_)) => format!("\"{target}.json\""),
        (Format::Deserialized, _) => format!("\"{target}\""),
        (Format::Raw, _) => format!("\"{target}.raw\""),
        (Format::Car(scope), _) => {
            let mut etag = format!("W/\"{root}.car.{}.dfs.n", scope.as_str());
            if !req.path.trim_matches('/').is_empty() {
                let digest = Sha256::digest(req.path.as_bytes());
                etag.push('.');
                etag.push_str(&crate::hash::hex(&digest[..8]));
            }
            etag.push('"');
            etag
        }
    };
    if req
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let r = StatusCode::NOT_MODIFIED.into_response();
        return Ok(with_common(r, &etag, req, &resolved.roots));
    }

    let mut response = match prepared {
        Prepared::Raw(block) => {
            let mut r = ([(header::CONTENT_TYPE, RAW_TYPE)], Bytes::from(block)).into_response();
            attachment(&mut r, &format!("{target}.bin"));
            r
        }
        Prepared::Dir(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Prepared::File(size) => {
            let body = Body::from_stream(file_stream(blocks, target));
            let mut r =
                ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            r
        }
        Prepared::Car => {
            let Format::Car(scope) = format else {
                unreachable!("Prepared::Car only for CAR requests")
            };
            let header_bytes = crate::car::encode_header(std::slice::from_ref(&root));
            let body = Body::from_stream(car_stream(
                blocks,
                header_bytes,
                resolved.path_blocks.clone(),
                target,
                scope,
            ));
            let mut r = ([(header::CONTENT_TYPE, CAR_CONTENT_TYPE)], body).into_response();
            attachment(&mut r, &format!("{target}.car"));
            r
        }
    };
    // Spec, "Content-Location (response header)": when the format came from Accept, point at
    // the URL with the matching `format` parameter.
    if !from_query {
        let f = match format {
            Format::Raw => Some("raw"),
            Format::Car(_) => Some("car"),
            Format::Deserialized => None,
        };
        if let Some(f) = f {
            let mut loc = format!("{}?format={f}", req.uri.path());
            if let Format::Car(scope) = format {
                if scope != Scope::All {
                    loc.push_str(&format!("&dag-scope={}", scope.as_str()));
                }
            }
            if let Ok(v) = HeaderValue::from_str(&loc) {
                response.headers_mut().insert(header::CONTENT_LOCATION, v);
            }
        }
    }
    Ok(with_common(response, &etag, req, &resolved.roots))
}

/// Spec, "Content-Disposition (response header)": "MUST be returned and set to attachment".
fn attachment(r: &mut Response, filename: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
}

/// Headers every answer carries: Etag, immutable caching (path gateway spec, "Cache-Control
/// (response header)": "public, max-age=29030400, immutable MUST be returned for /ipfs/"),
/// nosniff, `Vary: Accept`, `X-Ipfs-Path` (the path as requested) and `X-Ipfs-Roots` (one CID
/// per path segment).
fn with_common(mut r: Response, etag: &str, req: &Request, roots: &[Cid]) -> Response {
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
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(req.uri.path()) {
        h.insert("x-ipfs-path", v);
    }
    let roots: Vec<String> = roots.iter().map(Cid::to_string).collect();
    if let Ok(v) = HeaderValue::from_str(&roots.join(",")) {
        h.insert("x-ipfs-roots", v);
    }
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

/// The JSON listing of a folder (plain or HAMT-sharded).
fn listing(blocks: &Blocks, cid: &Cid, node: &Node) -> Result<String> {
    let entries = dag::dir_entries(blocks, cid, node, u64::MAX)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        let (kind, size) = match dag::load(blocks, &e.cid) {
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

type Chunk = std::result::Result<Bytes, std::io::Error>;

fn io_error(e: StoreError) -> std::io::Error {
    warn!(error = %e, "gateway response aborted");
    std::io::Error::other(e.to_string())
}

/// Deepest file tree streamed (as [`dag`] reads).
const MAX_FILE_DEPTH: usize = 64;

/// The bytes of the file at `root`, one block at a time, with each node's declared sizes
/// checked against its children before they are read. An error ends the body with an error, so
/// the client sees a broken transfer rather than a short file.
fn file_stream(blocks: Blocks, root: Cid) -> impl Stream<Item = Chunk> + Send + 'static {
    // (cid, size the parent declares for it, depth)
    let stack: Vec<(Cid, Option<u64>, usize)> = vec![(root, None, 0)];
    futures_util::stream::try_unfold((blocks, stack), |(blocks, mut stack)| async move {
        loop {
            let Some((cid, expected, depth)) = stack.pop() else {
                return Ok(None);
            };
            if depth > MAX_FILE_DEPTH {
                return Err(io_error(StoreError::malformed(&cid, "file tree too deep")));
            }
            let b = blocks.clone();
            let node = blocking(move || dag::load(&b, &cid))
                .await
                .map_err(io_error)?;
            let declared = dag::declared_file_size(&cid, &node).map_err(io_error)?;
            if expected.is_some_and(|e| e != declared) {
                return Err(io_error(StoreError::malformed(
                    &cid,
                    format!("holds {declared} bytes but its parent says {expected:?}"),
                )));
            }
            let data = match node {
                Node::Raw(data) => data,
                Node::Pb { links, unixfs } => {
                    for (link, size) in links.iter().zip(&unixfs.blocksizes).rev() {
                        stack.push((link.cid, Some(*size), depth + 1));
                    }
                    unixfs.data.unwrap_or_default()
                }
            };
            if !data.is_empty() {
                return Ok(Some((Bytes::from(data), (blocks, stack))));
            }
        }
    })
}

/// How far below a block a CAR walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Every link.
    All,
    /// Only links to child HAMT shards (enumerating a sharded folder).
    Shards,
    /// No link.
    None,
}

/// What to follow below the target for `scope`.
fn follow_for(scope: Scope, cid: &Cid, block: &[u8]) -> Result<Follow> {
    Ok(match scope {
        Scope::All => Follow::All,
        Scope::Block => Follow::None,
        Scope::Entity if cid.codec() != CODEC_DAG_PB => Follow::None,
        Scope::Entity => match dag::decode(cid, block.to_vec())? {
            Node::Pb { unixfs, .. } => match unixfs.kind {
                pb::UNIXFS_FILE | pb::UNIXFS_RAW => Follow::All,
                pb::UNIXFS_HAMT_SHARD => Follow::Shards,
                _ => Follow::None,
            },
            Node::Raw(_) => Follow::None,
        },
    })
}

/// The CAR: header, the blocks that verify the path, then the target's DAG for `scope`, depth
/// first in link order, each block once, identity blocks left out (spec, "CAR dups": "A Gateway
/// MUST NOT include virtual blocks identified by identity CIDs").
fn car_stream(
    blocks: Blocks,
    header: Vec<u8>,
    path_blocks: Vec<Cid>,
    target: Cid,
    scope: Scope,
) -> impl Stream<Item = Chunk> + Send + 'static {
    struct Walk {
        blocks: Blocks,
        header: Option<Vec<u8>>,
        /// (cid, what to follow below it, whether it is the target)
        stack: Vec<(Cid, Follow, bool)>,
        sent: HashSet<Cid>,
    }
    let mut stack = vec![(target, Follow::None, true)];
    stack.extend(
        path_blocks
            .into_iter()
            .rev()
            .map(|c| (c, Follow::None, false)),
    );
    let walk = Walk {
        blocks,
        header: Some(header),
        stack,
        sent: HashSet::new(),
    };
    futures_util::stream::try_unfold(walk, move |mut w| async move {
        if let Some(h) = w.header.take() {
            return Ok(Some((Bytes::from(h), w)));
        }
        loop {
            let Some((cid, follow, is_target)) = w.stack.pop() else {
                return Ok(None);
            };
            if !w.sent.insert(canonical(&cid)) {
                continue;
            }
            let b = w.blocks.clone();
            let block = blocking(move || b.get_block(&cid))
                .await
                .map_err(io_error)?;
            let follow = if is_target {
                follow_for(scope, &cid, &block).map_err(io_error)?
            } else {
                follow
            };
            let children = match follow {
                Follow::None => Vec::new(),
                Follow::All => dag::links_of(&cid, &block).map_err(io_error)?,
                Follow::Shards => match dag::decode(&cid, block.clone()).map_err(io_error)? {
                    Node::Pb { links, unixfs } => {
                        hamt::child_shard_links(&cid, &links, &unixfs).map_err(io_error)?
                    }
                    Node::Raw(_) => Vec::new(),
                },
            };
            w.stack
                .extend(children.into_iter().rev().map(|c| (c, follow, false)));
            if cid.hash().code() == IDENTITY {
                continue;
            }
            let cid_bytes = cid.to_bytes();
            let mut section = Vec::with_capacity(10 + cid_bytes.len() + block.len());
            pb::put_varint(&mut section, (cid_bytes.len() + block.len()) as u64);
            section.extend_from_slice(&cid_bytes);
            section.extend_from_slice(&block);
            return Ok(Some((Bytes::from(section), w)));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn format_query_wins_over_accept() {
        let (f, from_query) = negotiate(&q(&[("format", "raw")]), &accept(CAR_TYPE)).unwrap();
        assert_eq!((f, from_query), (Format::Raw, true));
        let (f, _) = negotiate(
            &q(&[("format", "car"), ("dag-scope", "entity")]),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(f, Format::Car(Scope::Entity));
    }

    #[test]
    fn accept_types_and_parameters() {
        let none = q(&[]);
        assert_eq!(
            negotiate(&none, &HeaderMap::new()).unwrap().0,
            Format::Deserialized
        );
        assert_eq!(negotiate(&none, &accept(RAW_TYPE)).unwrap().0, Format::Raw);
        let car = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
        assert_eq!(
            negotiate(&none, &accept(car)).unwrap().0,
            Format::Car(Scope::All)
        );
        // Highest q wins; a browser's */* is deserialized.
        let both = "application/vnd.ipld.raw;q=0.5, application/vnd.ipld.car;q=0.9";
        assert_eq!(
            negotiate(&none, &accept(both)).unwrap().0,
            Format::Car(Scope::All)
        );
        assert_eq!(
            negotiate(&none, &accept("text/html,*/*;q=0.8")).unwrap().0,
            Format::Deserialized
        );
        // Variants not served: 406.
        for bad in [
            "application/vnd.ipld.car; version=2",
            "application/vnd.ipld.car; dups=y",
            "application/vnd.ipld.car; order=weird",
            "application/x-tar",
            "application/vnd.ipld.dag-json",
        ] {
            let (status, _) = negotiate(&none, &accept(bad)).unwrap_err();
            assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{bad}");
        }
        // ... unless something acceptable is listed too.
        let mixed = "application/vnd.ipld.car; dups=y, application/vnd.ipld.car;q=0.5";
        assert_eq!(
            negotiate(&none, &accept(mixed)).unwrap().0,
            Format::Car(Scope::All)
        );
    }

    #[test]
    fn bad_parameters() {
        let err = |pairs: &[(&str, &str)]| negotiate(&q(pairs), &HeaderMap::new()).unwrap_err().0;
        assert_eq!(err(&[("format", "zip")]), StatusCode::BAD_REQUEST);
        assert_eq!(err(&[("format", "tar")]), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(
            err(&[("format", "car"), ("dag-scope", "most")]),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err(&[("format", "car"), ("car-dups", "y")]),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            err(&[("format", "car"), ("car-version", "2")]),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            err(&[("format", "car"), ("entity-bytes", "0:10")]),
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
