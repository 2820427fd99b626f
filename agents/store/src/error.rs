//! The crate's error type.

use std::path::PathBuf;

use cid::Cid;

/// Result alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the content store.
///
/// Each variant names the CID, path or URL it is about. [`StoreError::is_retryable`] separates
/// transient failures (network, a server's 5xx, a deadline) from fatal ones (bad data, failed verification,
/// unsupported input), which retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A local file system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The block is not in the blockstore.
    #[error("block {cid} not found")]
    NotFound {
        /// The missing block.
        cid: Cid,
    },

    /// A block's bytes do not hash to its CID. Fatal: the data is corrupt or forged.
    #[error("verification failed for block {cid}: {reason}")]
    Verification {
        /// The CID the bytes were supposed to have.
        cid: Cid,
        /// What did not match.
        reason: String,
    },

    /// A path inside a DAG names an entry that does not exist (or goes through a file).
    #[error("{cid} has no entry named {name:?}")]
    NoSuchEntry {
        /// The folder (or file) the path was looked up in.
        cid: Cid,
        /// The missing entry name.
        name: String,
    },

    /// A block verified against its CID but is not valid dag-pb / UnixFS.
    #[error("malformed block {cid}: {reason}")]
    Malformed {
        /// The block concerned.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },

    /// A string or byte sequence that should be a CID is not one.
    #[error("invalid CID {input:?}: {reason}")]
    InvalidCid {
        /// The offending input (as text, or hex for bytes).
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The CID is valid but uses a codec or hash function this crate does not handle.
    #[error("unsupported CID {cid}: {reason}")]
    UnsupportedCid {
        /// The CID concerned.
        cid: Cid,
        /// What is not supported.
        reason: String,
    },

    /// Input this crate refuses or cannot represent, e.g. a directory large enough that Kubo
    /// would shard it (HAMT), a socket or device file, a UnixFS symlink node.
    #[error("unsupported: {what} ({subject})")]
    Unsupported {
        /// The path or CID concerned.
        subject: String,
        /// What is not supported.
        what: String,
    },

    /// Content goes over a limit its reader set (bytes, files, blocks, depth, entries), or says
    /// it would (a declared file size). Fatal: the same content hits the same limit again.
    #[error("limit exceeded by {cid}: {what}")]
    LimitExceeded {
        /// The block (root or node) where the limit was hit.
        cid: Cid,
        /// Which limit, and by how much.
        what: String,
    },

    /// An operation did not finish before the deadline its caller set. Retryable: a slow
    /// server may be faster next time (callers decide whether to try again).
    #[error("{what} did not finish within {seconds} s")]
    DeadlineExceeded {
        /// What was being done (e.g. "fetching <cid> from <url>").
        what: String,
        /// The deadline, in seconds.
        seconds: u64,
    },

    /// A symbolic link was found while importing. Symlinks are never published: they could
    /// point outside the folder being published.
    #[error("refusing to import symlink {}", path.display())]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },

    /// A file or folder name that cannot be stored in UnixFS (not UTF-8).
    #[error("name of {} is not valid UTF-8", path.display())]
    InvalidName {
        /// The file or folder.
        path: PathBuf,
    },

    /// A directory in a fetched DAG has an entry name that would escape the destination or is
    /// otherwise unsafe ("", ".", "..", containing '/' or NUL), or appears twice.
    #[error("unsafe entry name {name:?} in directory {cid}")]
    UnsafeName {
        /// The directory block.
        cid: Cid,
        /// The entry name as found.
        name: String,
    },

    /// A CAR stream is malformed or truncated.
    #[error("invalid CAR: {reason}")]
    Car {
        /// What is wrong.
        reason: String,
    },

    /// The destination of a fetch already exists and is not an empty folder.
    #[error("destination {} already exists and is not an empty folder", path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },

    /// The gateway could not listen on the address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A URL given to the crate is invalid.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The server could not be reached or the transfer broke off (connection refused, reset,
    /// timeout, DNS). Retryable.
    #[error("network error talking to {url}: {source}")]
    Network {
        /// The request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// A gateway answered with an unsuccessful HTTP status.
    #[error("HTTP {status} from {url}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The response body (shortened), or a description.
        message: String,
    },

    /// The Kubo RPC API answered with an error.
    #[error("Kubo API error from {url} (HTTP {status}): {message}")]
    KuboApi {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Kubo's error message.
        message: String,
    },
}

impl StoreError {
    /// True when the same operation may succeed if tried again later: network failures, and
    /// server-side HTTP statuses (408, 429, 5xx; for Kubo only 502, 503 and 504, since Kubo
    /// reports its own command errors with 500). Everything else (corrupt or forged data,
    /// malformed input, unsupported content, local I/O errors) is fatal.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Network { .. } | StoreError::DeadlineExceeded { .. } => true,
            StoreError::Http { status, .. } => {
                matches!(*status, 408 | 429) || (500..=599).contains(status)
            }
            StoreError::KuboApi { status, .. } => matches!(*status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(cid: &Cid, reason: impl Into<String>) -> Self {
        StoreError::Malformed {
            cid: *cid,
            reason: reason.into(),
        }
    }

    pub(crate) fn car(reason: impl Into<String>) -> Self {
        StoreError::Car {
            reason: reason.into(),
        }
    }
}
