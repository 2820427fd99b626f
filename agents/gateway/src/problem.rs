//! Errors as `application/problem+json` (RFC 9457): a stable `type` URI per kind of problem, a
//! title, and a detail that says what to do.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const BASE: &str = "https://lilypad.dev/problems/";

/// Every kind of problem the API answers with: (slug, status, title).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MissingKey,
    InvalidKey,
    RevokedKey,
    RateLimited,
    PayloadTooLarge,
    InvalidBody,
    UnsupportedMediaType,
    InvalidModuleReference,
    UnknownModule,
    BadInputs,
    InsufficientCredit,
    JobNotFound,
    OutputsNotReady,
    OutputNotFound,
    NotFound,
    MethodNotAllowed,
    ChainUnavailable,
    UnsupportedUploadType,
    BadUpload,
    IpfsUnavailable,
    Internal,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::MissingKey,
        Kind::InvalidKey,
        Kind::RevokedKey,
        Kind::RateLimited,
        Kind::PayloadTooLarge,
        Kind::InvalidBody,
        Kind::UnsupportedMediaType,
        Kind::InvalidModuleReference,
        Kind::UnknownModule,
        Kind::BadInputs,
        Kind::InsufficientCredit,
        Kind::JobNotFound,
        Kind::OutputsNotReady,
        Kind::OutputNotFound,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::ChainUnavailable,
        Kind::UnsupportedUploadType,
        Kind::BadUpload,
        Kind::IpfsUnavailable,
        Kind::Internal,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Kind::MissingKey => "missing-api-key",
            Kind::InvalidKey => "invalid-api-key",
            Kind::RevokedKey => "revoked-api-key",
            Kind::RateLimited => "rate-limited",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::InvalidBody => "invalid-body",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::InvalidModuleReference => "invalid-module-reference",
            Kind::UnknownModule => "unknown-module",
            Kind::BadInputs => "bad-inputs",
            Kind::InsufficientCredit => "insufficient-credit",
            Kind::JobNotFound => "job-not-found",
            Kind::OutputsNotReady => "outputs-not-ready",
            Kind::OutputNotFound => "output-not-found",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::ChainUnavailable => "chain-unavailable",
            Kind::UnsupportedUploadType => "unsupported-upload-type",
            Kind::BadUpload => "bad-upload",
            Kind::IpfsUnavailable => "ipfs-unavailable",
            Kind::Internal => "internal-error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Kind::MissingKey | Kind::InvalidKey | Kind::RevokedKey => StatusCode::UNAUTHORIZED,
            Kind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::InvalidBody => StatusCode::BAD_REQUEST,
            Kind::UnsupportedMediaType | Kind::UnsupportedUploadType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::BadUpload => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::IpfsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::InvalidModuleReference | Kind::UnknownModule | Kind::BadInputs => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::InsufficientCredit => StatusCode::PAYMENT_REQUIRED,
            Kind::JobNotFound | Kind::OutputNotFound | Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::OutputsNotReady => StatusCode::CONFLICT,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::ChainUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::MissingKey => "An API key is required",
            Kind::InvalidKey => "The API key is not valid",
            Kind::RevokedKey => "The API key was revoked",
            Kind::RateLimited => "Too many requests",
            Kind::PayloadTooLarge => "The request body is too large",
            Kind::InvalidBody => "The request body is not valid",
            Kind::UnsupportedMediaType => "The request body must be JSON",
            Kind::InvalidModuleReference => "The module must be given as name:version",
            Kind::UnknownModule => "No such module on this network",
            Kind::BadInputs => "The module's inputs are not valid",
            Kind::InsufficientCredit => "Not enough credit",
            Kind::JobNotFound => "No such job",
            Kind::OutputsNotReady => "The job's outputs are not available yet",
            Kind::OutputNotFound => "No such output file",
            Kind::NotFound => "No such endpoint",
            Kind::MethodNotAllowed => "Method not allowed on this endpoint",
            Kind::ChainUnavailable => "The chain cannot be reached",
            Kind::UnsupportedUploadType => "Uploads are a file (application/octet-stream) or a folder as a tar archive (application/x-tar)",
            Kind::BadUpload => "The upload could not be imported",
            Kind::IpfsUnavailable => "The IPFS node cannot take the upload",
            Kind::Internal => "Internal error",
        }
    }

    pub fn type_uri(self) -> String {
        format!("{BASE}{}", self.slug())
    }
}

/// A problem response.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip)]
    pub kind: Option<Kind>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Extension members.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            instance: None,
            kind: Some(kind),
            retry_after: None,
            extra: Default::default(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Problem {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// An error inside the gateway (its database, its files): the text is logged with a
    /// request id, and the client gets only the id. Database errors name tables and queries,
    /// and chain errors name the RPC URL, which often carries an API key.
    pub fn internal(e: impl std::fmt::Display) -> Problem {
        let id = request_id();
        tracing::error!(request_id = %id, error = %e, "internal error");
        Problem::new(Kind::Internal, format!("internal error (request {id}): try again, and tell the gateway's operator if it persists, quoting the request id"))
            .with("requestId", id)
    }

    /// The chain could not be read: logged with a request id (the error names the RPC URL,
    /// often with its API key), and a generic detail returned.
    pub fn chain_unavailable(e: impl std::fmt::Display) -> Problem {
        let id = request_id();
        tracing::warn!(request_id = %id, error = %e, "the chain cannot be reached");
        Problem::new(Kind::ChainUnavailable, format!("the chain cannot be reached now (request {id}); try again shortly"))
            .with("requestId", id)
    }
}

/// A random id that ties an error response to its log line.
fn request_id() -> String {
    let mut buf = [0u8; 8];
    // an all-zero id (no randomness available) still works as a log marker
    let _ = getrandom::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if self.kind.map(|k| k.status()) == Some(StatusCode::UNAUTHORIZED) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lilypad\""));
        }
        response
    }
}

#[cfg(test)]
mod secrecy_tests {
    use super::*;

    #[test]
    fn internal_errors_never_show_database_text_or_rpc_urls() {
        let db = "error returned from database: relation \"ledger\" does not exist (postgres://gw:hunter2@10.0.0.5/lilypad)";
        let p = Problem::internal(db);
        let body = serde_json::to_string(&p).unwrap();
        assert!(!body.contains("hunter2") && !body.contains("ledger") && !body.contains("10.0.0.5"), "{body}");
        assert!(body.contains("requestId"), "{body}");
        let rpc = "connecting to https://arb-sepolia.g.alchemy.com/v2/SECRETKEY: timed out";
        let body = serde_json::to_string(&Problem::chain_unavailable(rpc)).unwrap();
        assert!(!body.contains("SECRETKEY") && !body.contains("alchemy"), "{body}");
        assert_eq!(Problem::chain_unavailable(rpc).status, 503);
    }
}
