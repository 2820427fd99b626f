//! The store's HTTP server under its former name: thin aliases of [`crate::outputs_server`]
//! kept so that callers written against them keep compiling. New code uses
//! [`crate::outputs_server::serve_trustless`] / [`crate::outputs_server::serve_with_import`]
//! with explicit [`ServerLimits`].

use std::net::SocketAddr;

use tokio::task::JoinHandle;

use crate::blockstore::DiskBlockstore;
use crate::error::Result;
use crate::http::ServerLimits;
pub use crate::outputs_server::router;

/// [`crate::outputs_server::router_with_import`].
pub fn router_writable(store: DiskBlockstore, max_bytes: usize) -> axum::Router {
    crate::outputs_server::router_with_import(store, max_bytes)
}

/// [`crate::outputs_server::serve_trustless`] with [`ServerLimits::default`]; returns the bound
/// address and the accept loop's task.
pub async fn serve(
    store: DiskBlockstore,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let server =
        crate::outputs_server::serve_trustless(store, addr, &ServerLimits::default()).await?;
    Ok((server.addr, server.task))
}

/// [`crate::outputs_server::serve_with_import`] with [`ServerLimits::default`].
pub async fn serve_writable(
    store: DiskBlockstore,
    addr: SocketAddr,
    max_bytes: usize,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let server =
        crate::outputs_server::serve_with_import(store, addr, max_bytes, &ServerLimits::default())
            .await?;
    Ok((server.addr, server.task))
}
