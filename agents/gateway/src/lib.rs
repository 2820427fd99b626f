//! `lilypad gateway`: a web2 layer over the Lilypad market.
//!
//! - Accounts with API keys (random, shown once, stored as SHA-256; revocable) and prepaid
//!   credit in token base units, with a ledger of every credit, charge and refund ([`db`]).
//! - A REST API under `/api/v1` ([`api`]): `POST /jobs` validates the module and its inputs,
//!   charges the credit and sends `runJob` from the gateway's own funded key; jobs are followed
//!   through the market's events, refunded in credit when refunded on chain, and their outputs
//!   fetched (verified against their CID) and served. Errors are RFC 9457 problems
//!   ([`problem`]); keys are rate limited; the OpenAPI 3.1 document is at
//!   `/api/v1/openapi.json` ([`openapi`]).
//! - Server-Sent Events ([`streams`]): a job's changes and the market's events.
//! - Uploads ([`uploads`], [`upload_api`]): `POST /api/v1/uploads` imports a file or a folder
//!   (tar) as UnixFS, charged per MiB, kept for a retention period, served at `/ipfs/<cid>` and
//!   put on the configured IPFS node, so a job can take it as a `cid` input.
//! - Outputs fetched from the endpoints the job's provider announced on chain, then the
//!   configured gateway, with SSRF checks ([`endpoints`]).
//! - A dashboard at `/`: one static page, live from `/api/v1/events`.
//! - One data layer over SQLite and PostgreSQL.

#![forbid(unsafe_code)]

pub mod api;
pub mod compat;
pub mod db;
pub mod endpoints;
pub mod keys;
pub mod market;
pub mod openapi;
pub mod outputs;
pub mod problem;
pub mod published;
pub mod streams;
pub mod upload_api;
pub mod uploads;
/// Test support (a throwaway PostgreSQL server): only with the `testing` feature, which release
/// builds do not enable.
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::providers::Provider as _;
use lilypad_chain::tasks::{Ended, Exit};
use lilypad_chain::{ChainClient, ChainError, Supervisor};
use lilypad_module::Module;
use tracing::{info, warn};

pub use api::Limits;
pub use db::{Db, DbError};
pub use market::{Market, MarketError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Market(#[from] MarketError),
    #[error("module folder {path}: {reason}")]
    Module { path: PathBuf, reason: String },
    #[error("uploads: {0}")]
    Uploads(#[from] uploads::UploadError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How to run the gateway.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// Module folders whose inputs the gateway checks before charging.
    pub module_dirs: Vec<PathBuf>,
    /// Where jobs' outputs are fetched from after the endpoints their provider announced on
    /// chain: an IPFS gateway (`/ipfs/<cid>` paths), a provider's outputs server or any node
    /// serving them.
    pub ipfs_gateway: Option<String>,
    /// Which announced endpoints may be fetched from ([`endpoints`]): by default only public
    /// addresses.
    pub endpoint_policy: endpoints::EndpointPolicy,
    /// Where fetched outputs are kept (`<dir>/outputs/<job>`).
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// How often half-submitted jobs and missing outputs are reconciled.
    pub reconcile_every: Duration,
    /// Uploads: size limit, price per MiB, retention, the IPFS node they are put on. Kept in
    /// `<data_dir>/uploads`.
    pub uploads: uploads::UploadOptions,
}

/// How often expired uploads are looked for.
const UPLOAD_GC_EVERY: Duration = Duration::from_secs(600);

/// How long the gateway's tasks get to stop before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running gateway: its HTTP server, event watcher and reconciler, supervised.
pub struct Gateway {
    pub addr: SocketAddr,
    pub market: Arc<Market>,
    tasks: Supervisor,
}

/// Starts the gateway: checks the chain, approves the market to take payments, catches up with
/// the market's events, settles jobs a previous run left half-submitted, then serves.
pub async fn start(client: ChainClient, db: Arc<Db>, options: Options) -> Result<Gateway, GatewayError> {
    let mut modules = Vec::new();
    for dir in &options.module_dirs {
        let m = Module::load(dir).map_err(|e| GatewayError::Module { path: dir.clone(), reason: e.to_string() })?;
        modules.push(m);
    }
    let outputs = market::OutputSources { configured: options.ipfs_gateway.clone(), policy: options.endpoint_policy };
    let market = Market::new(client.clone(), db.clone(), options.data_dir.join("outputs"), outputs)?;
    market.adopt_unkeyed_jobs().await?;
    market.ensure_allowance().await?;
    let balance = market.token_balance().await?;
    info!(gateway = %market.me, balance = %balance, "gateway account");
    let mut tasks = Supervisor::new();
    let watcher = market.clone();
    tasks.spawn_graceful("the market watcher", |stop| async move {
        watcher.watch(stop).await;
        Ok::<(), MarketError>(())
    });
    // catch up before reconciling: a JobCreated of a half-submitted job links it
    let head = client.retrying("reading the block number", || client.provider().get_block_number()).await?;
    let started = Instant::now();
    while market.watcher_block() < head {
        if started.elapsed() > Duration::from_secs(120) {
            warn!(head, at = market.watcher_block(), "still catching up with the market's events; serving anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(e) = market.reconcile_once().await {
        warn!(error = %e, "first reconciliation failed; retrying in the background");
    }
    tasks.spawn("the reconciler", market.clone().reconcile(options.reconcile_every));

    let sources = lilypad_runner::Sources {
        gateways: options.ipfs_gateway.clone().into_iter().collect(),
        cache: options.data_dir.join("cache"),
        allow_git: false,
        git_policy: None,
        fetch: true,
        input_cache_max: lilypad_runner::DEFAULT_INPUT_CACHE_MAX,
    };
    let uploads = Arc::new(uploads::Uploads::open(&options.data_dir.join("uploads"), options.uploads.clone())?);
    tasks.spawn("the uploads collector", uploads.clone().collect_forever(db.clone(), UPLOAD_GC_EVERY));
    let state = api::AppState::new(db, market.clone(), modules, options.limits.clone(), published::PublishedModules::new(sources), uploads);
    let app = api::router(state);
    // Connection caps (overall and per IP), header-read, idle and write timeouts: a flood of
    // half-open connections or readers that never read cannot use up the gateway's files. The
    // idle timeout (nothing read or written) also runs while a request is answered: a
    // non-streamed LLM answer (OpenAI's and Ollama's `stream: false`) sends nothing until its job
    // has run, for up to `compat::WAIT_LIMIT`, so the gateway's is that plus a minute (the
    // default 60 s cut such answers off mid-request).
    let limits = lilypad_store::ServerLimits { idle_timeout: compat::WAIT_LIMIT + Duration::from_secs(60), ..Default::default() };
    let server = lilypad_store::http::serve_router(app, options.listen, &limits).await.map_err(|e| match e {
        lilypad_store::StoreError::Bind { source, .. } => GatewayError::Bind { addr: options.listen, source },
        other => GatewayError::Bind { addr: options.listen, source: std::io::Error::other(other.to_string()) },
    })?;
    let addr = server.addr;
    let accept = server.task;
    // Stopped by aborting the accept loop (the listener closes): a graceful shutdown would
    // wait for the dashboards' event streams, which never end by themselves.
    tasks.spawn("the HTTP server", async move {
        let _stop = AbortOnDrop(accept.abort_handle());
        match accept.await {
            Ok(served) => served,
            Err(e) => Err(std::io::Error::other(format!("the accept loop: {e}"))),
        }
    });
    info!(%addr, "gateway listening");
    Ok(Gateway { addr, market, tasks })
}

/// Aborts a task when dropped (the supervisor's task that owns it was stopped).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Gateway {
    /// Serves until `shutdown` resolves or one of its tasks ends (the server failing, a task
    /// panicking), then stops every task and joins them. A task that ended by itself is the
    /// error returned.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let Gateway { mut tasks, .. } = self;
        let ended: Option<Exit> = tokio::select! {
            exit = tasks.next_exit() => exit,
            _ = shutdown => None,
        };
        let exits = tasks.stop(STOP_GRACE).await;
        if let Some(exit) = ended {
            return Err(std::io::Error::other(format!("the gateway stopped: {exit}")));
        }
        match exits.into_iter().find(|e| matches!(e.ended, Ended::Failed(_) | Ended::Panicked(_))) {
            Some(exit) => Err(std::io::Error::other(format!("the gateway stopped: {exit}"))),
            None => Ok(()),
        }
    }
}
