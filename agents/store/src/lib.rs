//! Content store for Lilypad.
//!
//! Resource providers publish job outputs with it, `lilypad run` fetches and verifies them, users
//! reach it through `lilypad ipfs add/get`. It speaks IPFS: content is addressed by CIDs that are
//! exactly those Kubo's `ipfs add -r --cid-version=1` prints, so any IPFS node or gateway can
//! serve, pin and verify the same outputs.
//!
//! * [`cid_of_path`] / [`add_path`]: UnixFS importer (hash-only, or writing blocks into a
//!   [`DiskBlockstore`]). See [`importer`] for the exact DAG layout and what is
//!   refused (symlinks, devices); large folders are HAMT-sharded as Kubo does ([`hamt`]).
//! * [`DiskBlockstore`]: blocks on disk, named by CID, written atomically.
//! * [`export_car`] / [`import_car`]: CARv1 archives, every imported block verified.
//! * [`outputs_server::serve_trustless`]: the outputs server, an IPFS trustless gateway
//!   (`/ipfs/<cid>[/<path>]` with `?format=raw|car`, `dag-scope`, the spec's headers and
//!   statuses), on [`http::serve_router`] (connection limits, header/idle/write timeouts).
//!   [`gateway`] keeps the former names as aliases.
//! * [`fetch_with`] / [`fetch`]: downloads a DAG from a gateway, verifies every block and writes
//!   the files atomically, within the caller's [`FetchLimits`] (bytes, files, blocks, depth,
//!   deadline; declared sizes checked before writing; only blocks reachable from the root kept).
//! * [`KuboClient`]: the parts of Kubo's RPC API used to publish and pin.
//!
//! Errors are one [`StoreError`] type; [`StoreError::is_retryable`] says whether trying again can
//! help. Filesystem-heavy functions are blocking; the network ones are async (tokio).

mod blockstore;
mod car;
mod dag;
mod error;
mod fetch;
pub mod hamt;
pub mod gateway;
pub mod http;
pub mod outputs_server;
mod hash;
pub mod importer;
mod kubo;
mod limits;
mod pb;
mod reachable;
mod trustless;
mod write;

pub use blockstore::DiskBlockstore;
pub use car::{export_car, import_car, MAX_BLOCK_SIZE};
pub use cid::Cid;
pub use error::{Result, StoreError};
pub use fetch::{fetch, fetch_with, fetch_with_client, is_gateway_url, remove_fetch_leftovers, FETCH_TEMP_PREFIX, LEFTOVER_MIN_AGE};
pub use http::{ServerLimits, ServerStats};
pub use limits::FetchLimits;
pub use hash::{parse_cid, CODEC_DAG_PB, CODEC_RAW};
pub use importer::{add_path, cid_of_path, CHUNK_SIZE, HAMT_FANOUT, HAMT_THRESHOLD, MAX_LINKS};
pub use kubo::KuboClient;
