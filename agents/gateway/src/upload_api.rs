//! The upload endpoints: `POST /api/v1/uploads` (a file, or a folder as a tar archive, charged
//! per MiB), `GET /api/v1/uploads` (the account's), and `GET /ipfs/<cid>[/<path>]`, the
//! trustless gateway over the uploads' blockstore. See [`crate::uploads`] for the steps.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::api::{authenticate, limit_param, Shared};
use crate::db::{now_ms, DbError, NewUpload, UploadRow};
use crate::problem::{Kind, Problem};
use crate::uploads::{UploadError, UploadKind};

fn upload_json(u: &UploadRow) -> Value {
    json!({
        "id": u.id,
        "cid": u.cid,
        "kind": u.kind,
        "bytes": u.bytes,
        "price": u.price.to_string(),
        "state": u.state,
        "createdAt": u.created_at,
        "expiresAt": u.expires_at,
        "url": format!("/ipfs/{}", u.cid),
    })
}

fn too_large(limit: u64) -> Problem {
    Problem::new(Kind::PayloadTooLarge, format!("uploads may have at most {limit} bytes ({} MiB): split the data or ask the gateway's operator", limit >> 20))
        .with("limit", limit)
}

fn short_of_credit(e: DbError, bytes: u64) -> Problem {
    match e {
        DbError::InsufficientCredit { account, balance, needed } => Problem::new(
            Kind::InsufficientCredit,
            format!("account {account:?} has {balance} credit and this upload of {bytes} bytes costs {needed}: ask the gateway's operator to add credit; nothing was stored"),
        )
        .with("balance", balance.to_string())
        .with("needed", needed.to_string()),
        other => Problem::internal(other),
    }
}

/// `POST /api/v1/uploads`.
pub(crate) async fn create_upload(State(state): Shared, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    let (key_id, account) = authenticate(&state, &headers).await?;
    let uploads = &state.uploads;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let kind = match essence.as_str() {
        "application/octet-stream" => UploadKind::File,
        "application/x-tar" | "application/tar" => UploadKind::Folder,
        _ => {
            return Err(Problem::new(
                Kind::UnsupportedUploadType,
                format!(
                    "Content-Type {:?}: send a file as application/octet-stream, or a folder as application/x-tar (`tar -C <folder> -cf - .`)",
                    if content_type.is_empty() { "(none)" } else { content_type }
                ),
            ))
        }
    };
    // refused before reading when the client says how much it sends
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > uploads.options.max_bytes {
            return Err(too_large(uploads.options.max_bytes));
        }
        let price = uploads.price_of(n);
        if price > account.balance {
            let e = DbError::InsufficientCredit { account: account.name.clone(), balance: account.balance, needed: price };
            return Err(short_of_credit(e, n));
        }
    }
    let staged = uploads.stage(kind, body.into_data_stream()).await.map_err(|e| match e {
        UploadError::TooLarge { limit } => too_large(limit),
        e @ (UploadError::BadArchive(_) | UploadError::Import(_)) => Problem::new(
            Kind::BadUpload,
            format!("{e}: send a file as application/octet-stream, or a folder as an uncompressed tar of regular files and folders"),
        ),
        UploadError::Body(reason) => Problem::new(Kind::InvalidBody, format!("the upload was cut short: {reason}; nothing was charged")),
        other => Problem::internal(other),
    })?;
    let (cid, bytes) = (staged.cid.to_string(), staged.bytes);
    let now = now_ms();
    let retention = i64::try_from(uploads.options.retention.as_millis()).unwrap_or(i64::MAX);
    let new = NewUpload {
        account_id: &account.id,
        key_id: &key_id,
        cid: &cid,
        kind: kind.as_str(),
        bytes,
        price: uploads.price_of(bytes),
        expires_at: now.saturating_add(retention),
    };
    let upload = state.db.create_upload(new).await.map_err(|e| short_of_credit(e, bytes))?;
    if let Err(e) = uploads.publish(&upload.id, staged).await {
        tracing::warn!(upload = %upload.id, cid = %cid, error = %e, "upload failed after its charge; refunding");
        state.db.fail_upload(&upload, &e.to_string()).await.map_err(Problem::internal)?;
        return Err(match e {
            UploadError::Ipfs { .. } => Problem::new(
                Kind::IpfsUnavailable,
                format!("the gateway's IPFS node did not take {cid}; the charge was refunded: try again shortly"),
            )
            .with("cid", cid),
            other => Problem::internal(other),
        });
    }
    tracing::info!(upload = %upload.id, %cid, bytes, price = %upload.price, "upload stored");
    let mut response = (StatusCode::CREATED, Json(upload_json(&upload))).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!("/ipfs/{cid}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /api/v1/uploads`: the account's uploads, newest first.
pub(crate) async fn list_uploads(State(state): Shared, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, Problem> {
    let (_, account) = authenticate(&state, &headers).await?;
    let limit = limit_param(&q, 50, 500)?;
    let uploads = state.db.uploads_of(&account.id, limit).await.map_err(Problem::internal)?;
    Ok(Json(json!({"uploads": uploads.iter().map(upload_json).collect::<Vec<_>>()})))
}

/// `GET /ipfs/<cid>[/<path>]`: the store's trustless gateway over the uploads' blocks (no key:
/// content is addressed by its hash, as on any IPFS gateway).
pub(crate) async fn ipfs(State(state): Shared, mut request: Request) -> Response {
    // routed again by the store's router: without this router's path parameters (axum would
    // add the inner ones to them, and its handlers take exactly one or two)
    request.extensions_mut().clear();
    match state.ipfs.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
