//! The gateway's data: accounts, API keys, the credit ledger, jobs and their events, and the
//! chain cursor. One data layer over SQLite (a file path) and PostgreSQL (a `postgres://` URL)
//! through `sqlx::Any`, with portable SQL only (`$N` parameters, `ON CONFLICT DO NOTHING`,
//! TEXT/BIGINT columns) and numbered migrations recorded in `schema_migrations`.
//!
//! Jobs are keyed by the market deployment they were sent to (chain id, market, deployment
//! block hash): every lookup the chain side makes (by on-chain number, by nonce, jobs to
//! reconcile or fetch) is within one deployment, so a database reused with a new devnet never
//! mixes the two.
//!
//! Money: amounts are token base units (`u128`) kept as decimal strings. Every change to a
//! balance is a ledger entry with a unique key (`credit:<id>`, `job:<id>:charge`,
//! `job:<id>:refund`, ...), written in the same transaction as the balance: an entry applied
//! twice (a restart replaying events) is a no-op. The balance is updated with a compare-and-swap
//! on its old value, so two writers (two processes) can never lose an update.
//!
//! One file per table family: migrations (schema versions), accounts and API keys, the
//! ledger (credits, charges, refunds; a job's creation is its charge), jobs, job events, and the
//! chain cursor.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use tokio::sync::Mutex;

mod accounts;
mod cursor;
mod events;
mod jobs;
mod ledger;
mod migrate;
mod uploads;

pub use uploads::{NewUpload, UploadRow};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error while {what}: {source}")]
    Sql {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot open the database {spec:?}: {source} (give a SQLite file path or a postgres://user@host:port/db URL)")]
    Connect {
        spec: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("no account named {0:?}: create it with `lilypad gateway keys create {0}`")]
    NoAccount(String),
    #[error("no API key with id {0:?}")]
    NoKey(String),
    #[error("account {account:?} has {balance} credit but this costs {needed}: add credit with `lilypad gateway credit add {account} <amount>`")]
    InsufficientCredit { account: String, balance: u128, needed: u128 },
    #[error("corrupt amount {0:?} in the database")]
    CorruptAmount(String),
    #[error("account names are 1-64 letters, digits, '.', '-', '_' or '@': {0:?}")]
    BadAccountName(String),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn sql(what: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sql { what, source }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parse_amount(s: &str) -> Result<u128, DbError> {
    s.parse().map_err(|_| DbError::CorruptAmount(s.to_string()))
}

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An account and its balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub balance: u128,
    pub created_at: i64,
}

/// One ledger entry: a credit (positive) or a charge (negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub key: String,
    pub kind: String,
    /// Signed: charges are negative.
    pub amount: i128,
    pub balance_after: u128,
    pub job_id: Option<String>,
    pub note: String,
    pub created_at: i64,
}

/// A job the gateway submitted (or is submitting) for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    pub account_id: String,
    pub key_id: String,
    pub idempotency_key: Option<String>,
    pub module: String,
    pub inputs: Vec<String>,
    pub payment: u128,
    pub state: String,
    pub tx_nonce: Option<i64>,
    /// The market deployment the job is sent to (`ChainKey::folder_name`); `None` for a job
    /// recorded before jobs were keyed by deployment and not adopted since.
    pub deployment: Option<String>,
    /// The job's number on chain, once created there.
    pub chain_id: Option<String>,
    /// The provider the job is matched with (`0x...`, checksummed), once matched; none again
    /// when it gave the job back. Its announced endpoints are where the outputs are fetched.
    pub provider: Option<String>,
    pub data_id: Option<String>,
    pub outputs_at: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A recorded state change of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub state: String,
    pub detail: String,
    pub block: Option<i64>,
    pub created_at: i64,
}

/// What an API key is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    Valid { key_id: String, account: Account },
    Revoked { key_id: String },
    Unknown,
}

/// A job to create and charge for.
pub struct NewJob<'a> {
    /// The market deployment it goes to (`ChainKey::folder_name`).
    pub deployment: &'a str,
    pub account_id: &'a str,
    pub key_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub module: &'a str,
    pub inputs: &'a [String],
    pub payment: u128,
}

/// Every state of a job.
pub const STATES: &[&str] = &["submitting", "open", "matched", "submitted", "challenged", "settled", "cancelled", "expired", "timed_out", "upheld", "mediation_timed_out", "failed"];

/// The states in which a job is over.
pub const FINAL_STATES: &[&str] = &["settled", "cancelled", "expired", "timed_out", "upheld", "mediation_timed_out", "failed"];

pub fn is_final(state: &str) -> bool {
    FINAL_STATES.contains(&state)
}

/// The database.
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Balance transactions of this process go one at a time (SQLite allows one writer; on
    /// PostgreSQL the compare-and-swap covers other processes).
    write_lock: Mutex<()>,
}

impl Db {
    /// Opens (creating a SQLite file if needed) and migrates `spec`: a file path, a
    /// `sqlite:` URL or a `postgres://` / `postgresql://` URL.
    pub async fn connect(spec: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            (spec.to_string(), Backend::Postgres)
        } else if spec.starts_with("sqlite:") {
            (spec.to_string(), Backend::Sqlite)
        } else {
            if let Some(parent) = std::path::Path::new(spec).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| DbError::Connect { spec: spec.to_string(), source: sqlx::Error::Io(e) })?;
            }
            (format!("sqlite://{spec}?mode=rwc"), Backend::Sqlite)
        };
        let max = if backend == Backend::Sqlite { 4 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await
            .map_err(|source| DbError::Connect { spec: spec.to_string(), source })?;
        if backend == Backend::Sqlite {
            for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=10000"] {
                sqlx::query(pragma).execute(&pool).await.map_err(sql("setting up SQLite"))?;
            }
        }
        let db = Db { pool, backend, write_lock: Mutex::new(()) };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}
