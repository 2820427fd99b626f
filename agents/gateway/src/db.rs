//! The gateway's data: accounts, API keys, the credit ledger, jobs and their events, and the
//! chain cursor. One data layer over SQLite (a file path) and PostgreSQL (a `postgres://` URL)
//! through `sqlx::Any`, with portable SQL only (`$N` parameters, `ON CONFLICT DO NOTHING`,
//! TEXT/BIGINT columns) and numbered migrations recorded in `schema_migrations`.
//!
//! Money: amounts are token base units (`u128`) kept as decimal strings. Every change to a
//! balance is a ledger entry with a unique key (`credit:<id>`, `job:<id>:charge`,
//! `job:<id>:refund`, ...), written in the same transaction as the balance: an entry applied
//! twice (a restart replaying events) is a no-op. The balance is updated with a compare-and-swap
//! on its old value, so two writers (two processes) can never lose an update.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::Mutex;
use tracing::debug;

use crate::keys::{self, ApiKey};

/// Numbered migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "initial", include_str!("../migrations/0001_initial.sql"))];

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
    #[error("account {account:?} has {balance} credit but the job costs {needed}: add credit with `lilypad gateway credit add {account} <amount>`")]
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
    pub chain_id: Option<String>,
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
    pub account_id: &'a str,
    pub key_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub module: &'a str,
    pub inputs: &'a [String],
    pub payment: u128,
}

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

    /// Applies the migrations not applied yet; returns how many it applied.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(sql("creating schema_migrations"))?;
        let mut applied = 0;
        for (version, name, text) in MIGRATIONS {
            let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql("reading schema_migrations"))?;
            if done.is_some() {
                continue;
            }
            let fail = |source| DbError::Migration { version: *version, name, source };
            let mut tx = self.pool.begin().await.map_err(fail)?;
            for statement in split_statements(text) {
                sqlx::query(&statement).execute(&mut *tx).await.map_err(fail)?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(*version)
                .bind(*name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            debug!(version, name, "migration applied");
            applied += 1;
        }
        Ok(applied)
    }

    /// The versions applied, in order.
    pub async fn migrations(&self) -> Result<Vec<i64>, DbError> {
        let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(sql("reading schema_migrations"))?;
        rows.iter().map(|r| r.try_get::<i64, _>("version").map_err(sql("reading schema_migrations"))).collect()
    }

    // ------------------------------------------------------------------ accounts and keys

    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>, DbError> {
        let row = sqlx::query("SELECT id, name, balance, created_at FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("reading an account"))?;
        row.map(|r| account_of(&r)).transpose()
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, DbError> {
        let row = sqlx::query("SELECT id, name, balance, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("reading an account"))?;
        row.map(|r| account_of(&r)).transpose()
    }

    /// The account named `name`, created with no credit if it does not exist.
    pub async fn ensure_account(&self, name: &str) -> Result<Account, DbError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
        if !ok {
            return Err(DbError::BadAccountName(name.to_string()));
        }
        if let Some(a) = self.account_by_name(name).await? {
            return Ok(a);
        }
        let id = format!("acct_{}", keys::random_hex(8));
        sqlx::query("INSERT INTO accounts (id, name, balance, created_at) VALUES ($1, $2, '0', $3) ON CONFLICT (name) DO NOTHING")
            .bind(&id)
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(sql("creating an account"))?;
        self.account_by_name(name).await?.ok_or_else(|| DbError::NoAccount(name.to_string()))
    }

    /// A new API key for the account named `name` (created if needed). The key itself is
    /// returned once and stored only hashed.
    pub async fn create_key(&self, name: &str) -> Result<(Account, ApiKey), DbError> {
        let account = self.ensure_account(name).await?;
        let key = ApiKey::generate();
        sqlx::query("INSERT INTO api_keys (id, account_id, hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&key.id)
            .bind(&account.id)
            .bind(key.hash())
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(sql("storing an API key"))?;
        Ok((account, key))
    }

    /// Revokes a key by its id; returns whether it was live.
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool, DbError> {
        let exists = sqlx::query("SELECT id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("reading an API key"))?;
        if exists.is_none() {
            return Err(DbError::NoKey(key_id.to_string()));
        }
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(sql("revoking an API key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// What a presented key is: valid (and whose), revoked, or unknown.
    pub async fn check_key(&self, presented: &str) -> Result<KeyCheck, DbError> {
        let Some(id) = keys::key_id_of(presented) else { return Ok(KeyCheck::Unknown) };
        let row = sqlx::query("SELECT account_id, hash, revoked_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("reading an API key"))?;
        let Some(row) = row else { return Ok(KeyCheck::Unknown) };
        let hash: String = row.try_get("hash").map_err(sql("reading an API key"))?;
        if !keys::hash_matches(presented, &hash) {
            return Ok(KeyCheck::Unknown);
        }
        let revoked: Option<i64> = row.try_get("revoked_at").map_err(sql("reading an API key"))?;
        if revoked.is_some() {
            return Ok(KeyCheck::Revoked { key_id: id.to_string() });
        }
        let account_id: String = row.try_get("account_id").map_err(sql("reading an API key"))?;
        let account = self.account(&account_id).await?.ok_or_else(|| DbError::NoAccount(account_id.clone()))?;
        Ok(KeyCheck::Valid { key_id: id.to_string(), account })
    }

    // ------------------------------------------------------------------ the ledger

    /// Adds `amount` credit to the account named `name` under the ledger key `entry_key`
    /// (a fresh one when `None`). Returns the new balance, or `None` if that entry was
    /// already applied.
    pub async fn add_credit(&self, name: &str, amount: u128, entry_key: Option<&str>, note: &str) -> Result<Option<u128>, DbError> {
        let account = self.account_by_name(name).await?.ok_or_else(|| DbError::NoAccount(name.to_string()))?;
        let key = entry_key.map(str::to_string).unwrap_or_else(|| format!("credit:{}", keys::random_hex(8)));
        self.apply(&account.id, &key, "credit", amount as i128, None, note, None).await
    }

    /// Credits back `amount` for a job, once per `entry_key`.
    pub async fn refund_job(&self, job: &JobRow, entry_key: &str, amount: u128, note: &str) -> Result<Option<u128>, DbError> {
        if amount == 0 {
            return Ok(None);
        }
        self.apply(&job.account_id, entry_key, "refund", amount as i128, Some(&job.id), note, None).await
    }

    /// Records a new job in state `submitting` and charges its payment, in one transaction.
    /// With an idempotency key already used by the account, returns the existing job and
    /// `false` (nothing charged).
    pub async fn create_job(&self, new: NewJob<'_>) -> Result<(JobRow, bool), DbError> {
        if let Some(k) = new.idempotency_key {
            if let Some(existing) = self.job_by_idempotency_key(new.account_id, k).await? {
                return Ok((existing, false));
            }
        }
        let id = format!("gj_{}", keys::random_hex(10));
        let inputs = serde_json::to_string(new.inputs).unwrap_or_else(|_| "[]".into());
        let insert = JobInsert {
            id: id.clone(),
            account_id: new.account_id.to_string(),
            key_id: new.key_id.to_string(),
            idempotency_key: new.idempotency_key.map(str::to_string),
            module: new.module.to_string(),
            inputs,
            payment: new.payment,
        };
        let key = format!("job:{id}:charge");
        let note = format!("{} {}", new.module, new.inputs.join(" "));
        let payment = i128::try_from(new.payment).unwrap_or(i128::MAX);
        match self.apply(new.account_id, &key, "charge", -payment, Some(&id), &note, Some(insert)).await {
            Ok(_) => {}
            Err(DbError::Sql { .. }) if new.idempotency_key.is_some() => {
                // a concurrent request with the same idempotency key won the race
                if let Some(existing) = self.job_by_idempotency_key(new.account_id, new.idempotency_key.unwrap_or_default()).await? {
                    return Ok((existing, false));
                }
            }
            Err(e) => return Err(e),
        }
        let job = self.job(&id).await?.ok_or_else(|| DbError::Sql { what: "reading a new job", source: sqlx::Error::RowNotFound })?;
        Ok((job, true))
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        account_id: &str,
        entry_key: &str,
        kind: &str,
        delta: i128,
        job_id: Option<&str>,
        note: &str,
        job: Option<JobInsert>,
    ) -> Result<Option<u128>, DbError> {
        let _guard = self.write_lock.lock().await;
        for attempt in 0..200u64 {
            match self.try_apply(account_id, entry_key, kind, delta, job_id, note, job.as_ref()).await {
                Ok(Attempt::Applied(balance)) => return Ok(Some(balance)),
                Ok(Attempt::Duplicate) => {
                    debug!(entry_key, "ledger entry already applied");
                    return Ok(None);
                }
                // another writer changed the balance, or holds SQLite's write lock: again
                Ok(Attempt::Conflict) => {}
                Err(DbError::Sql { source, .. }) if is_busy(&source) => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(5 + attempt.min(20) * 5)).await;
        }
        Err(DbError::Sql { what: "updating a balance under heavy contention", source: sqlx::Error::PoolTimedOut })
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_apply(
        &self,
        account_id: &str,
        entry_key: &str,
        kind: &str,
        delta: i128,
        job_id: Option<&str>,
        note: &str,
        job: Option<&JobInsert>,
    ) -> Result<Attempt, DbError> {
        let mut tx = self.pool.begin().await.map_err(sql("starting a transaction"))?;
        let row = sqlx::query("SELECT name, balance FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql("reading a balance"))?
            .ok_or_else(|| DbError::NoAccount(account_id.to_string()))?;
        let name: String = row.try_get("name").map_err(sql("reading a balance"))?;
        let old_text: String = row.try_get("balance").map_err(sql("reading a balance"))?;
        let old = parse_amount(&old_text)?;
        let new = if delta < 0 {
            let needed = delta.unsigned_abs();
            old.checked_sub(needed).ok_or(DbError::InsufficientCredit { account: name, balance: old, needed })?
        } else {
            old.saturating_add(delta as u128)
        };
        let now = now_ms();
        if let Some(j) = job {
            sqlx::query(
                "INSERT INTO jobs (id, account_id, key_id, idempotency_key, module, inputs, payment, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'submitting', $8, $8)",
            )
            .bind(&j.id)
            .bind(&j.account_id)
            .bind(&j.key_id)
            .bind(j.idempotency_key.clone())
            .bind(&j.module)
            .bind(&j.inputs)
            .bind(j.payment.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql("recording a job"))?;
            sqlx::query("INSERT INTO job_events (event_key, job_id, state, detail, block, created_at) VALUES ($1, $2, 'submitting', $3, NULL, $4)")
                .bind(format!("{}:accepted", j.id))
                .bind(&j.id)
                .bind(format!("accepted; {} charged", j.payment))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(sql("recording a job event"))?;
        }
        let inserted = sqlx::query(
            "INSERT INTO ledger (entry_key, account_id, kind, amount, balance_after, job_id, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (entry_key) DO NOTHING",
        )
        .bind(entry_key)
        .bind(account_id)
        .bind(kind)
        .bind(delta.to_string())
        .bind(new.to_string())
        .bind(job_id.map(str::to_string))
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sql("writing the ledger"))?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(sql("rolling back"))?;
            return Ok(Attempt::Duplicate);
        }
        let swapped = sqlx::query("UPDATE accounts SET balance = $1 WHERE id = $2 AND balance = $3")
            .bind(new.to_string())
            .bind(account_id)
            .bind(&old_text)
            .execute(&mut *tx)
            .await
            .map_err(sql("updating a balance"))?;
        if swapped.rows_affected() != 1 {
            tx.rollback().await.map_err(sql("rolling back"))?;
            return Ok(Attempt::Conflict);
        }
        tx.commit().await.map_err(sql("committing a balance change"))?;
        Ok(Attempt::Applied(new))
    }

    /// The account's ledger, newest first.
    pub async fn ledger(&self, account_id: &str, limit: i64) -> Result<Vec<LedgerEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT entry_key, kind, amount, balance_after, job_id, note, created_at FROM ledger \
             WHERE account_id = $1 ORDER BY created_at DESC, entry_key DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(sql("reading the ledger"))?;
        rows.iter()
            .map(|r| {
                let g = |e| DbError::Sql { what: "reading the ledger", source: e };
                let amount: String = r.try_get("amount").map_err(g)?;
                let after: String = r.try_get("balance_after").map_err(g)?;
                Ok(LedgerEntry {
                    key: r.try_get("entry_key").map_err(g)?,
                    kind: r.try_get("kind").map_err(g)?,
                    amount: amount.parse().map_err(|_| DbError::CorruptAmount(amount.clone()))?,
                    balance_after: parse_amount(&after)?,
                    job_id: r.try_get("job_id").map_err(g)?,
                    note: r.try_get("note").map_err(g)?,
                    created_at: r.try_get("created_at").map_err(g)?,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ jobs

    const JOB_COLUMNS: &'static str = "id, account_id, key_id, idempotency_key, module, inputs, payment, state, tx_nonce, chain_id, data_id, outputs_at, error, created_at, updated_at";

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE id = $1", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    pub async fn job_by_chain_id(&self, chain_id: &str) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE chain_id = $1", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(chain_id).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    async fn job_by_idempotency_key(&self, account_id: &str, key: &str) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE account_id = $1 AND idempotency_key = $2", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(account_id).bind(key).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    /// Jobs in `state`, oldest first.
    pub async fn jobs_in_state(&self, state: &str) -> Result<Vec<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE state = $1 ORDER BY created_at", Self::JOB_COLUMNS);
        let rows = sqlx::query(&q).bind(state).fetch_all(&self.pool).await.map_err(sql("reading jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// Jobs with a result whose outputs are not fetched yet.
    pub async fn jobs_missing_outputs(&self) -> Result<Vec<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE data_id IS NOT NULL AND outputs_at IS NULL ORDER BY created_at", Self::JOB_COLUMNS);
        let rows = sqlx::query(&q).fetch_all(&self.pool).await.map_err(sql("reading jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// The account's jobs, newest first.
    pub async fn jobs_of(&self, account_id: &str, limit: i64) -> Result<Vec<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE account_id = $1 ORDER BY created_at DESC LIMIT $2", Self::JOB_COLUMNS);
        let rows = sqlx::query(&q).bind(account_id).bind(limit).fetch_all(&self.pool).await.map_err(sql("reading jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// Remembers which transaction nonce the job's `runJob` goes out with (before sending).
    pub async fn set_tx_nonce(&self, job_id: &str, nonce: Option<u64>) -> Result<(), DbError> {
        sqlx::query("UPDATE jobs SET tx_nonce = $1, updated_at = $2 WHERE id = $3")
            .bind(nonce.map(|n| n as i64))
            .bind(now_ms())
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(sql("recording a transaction nonce"))?;
        Ok(())
    }

    /// Links a submitting job to its on-chain id; returns whether this call did it.
    pub async fn link_chain_id(&self, job_id: &str, chain_id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE jobs SET chain_id = $1, state = 'open', updated_at = $2 WHERE id = $3 AND chain_id IS NULL AND state = 'submitting'")
            .bind(chain_id)
            .bind(now_ms())
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(sql("linking a job to its chain id"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The submitting job whose `runJob` went out with `nonce`, if any.
    pub async fn submitting_job_with_nonce(&self, nonce: u64) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE tx_nonce = $1 AND state = 'submitting' AND chain_id IS NULL", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(nonce as i64).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    /// Moves a job to `state` (never out of a final state).
    pub async fn set_state(&self, job_id: &str, state: &str, data_id: Option<&str>, error: Option<&str>) -> Result<bool, DbError> {
        let finals = FINAL_STATES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        let q = format!(
            "UPDATE jobs SET state = $1, data_id = COALESCE($2, data_id), error = COALESCE($3, error), updated_at = $4 \
             WHERE id = $5 AND state NOT IN ({finals})"
        );
        let done = sqlx::query(&q)
            .bind(state)
            .bind(data_id.map(str::to_string))
            .bind(error.map(str::to_string))
            .bind(now_ms())
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(sql("updating a job's state"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_outputs_fetched(&self, job_id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE jobs SET outputs_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(sql("recording fetched outputs"))?;
        Ok(())
    }

    /// Records a job event once per `event_key`; returns whether it was new.
    pub async fn add_job_event(&self, event_key: &str, job_id: &str, state: &str, detail: &str, block: Option<u64>) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO job_events (event_key, job_id, state, detail, block, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (event_key) DO NOTHING",
        )
        .bind(event_key)
        .bind(job_id)
        .bind(state)
        .bind(detail)
        .bind(block.map(|b| b as i64))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(sql("recording a job event"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn job_events(&self, job_id: &str) -> Result<Vec<JobEvent>, DbError> {
        let rows = sqlx::query("SELECT state, detail, block, created_at FROM job_events WHERE job_id = $1 ORDER BY created_at, event_key")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await
            .map_err(sql("reading job events"))?;
        rows.iter()
            .map(|r| {
                let g = |e| DbError::Sql { what: "reading job events", source: e };
                Ok(JobEvent {
                    state: r.try_get("state").map_err(g)?,
                    detail: r.try_get("detail").map_err(g)?,
                    block: r.try_get("block").map_err(g)?,
                    created_at: r.try_get("created_at").map_err(g)?,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ the chain cursor

    /// The last block whose events were applied, for `name`.
    pub async fn cursor(&self, name: &str) -> Result<Option<u64>, DbError> {
        let row = sqlx::query("SELECT block FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("reading the chain cursor"))?;
        Ok(row.map(|r| r.try_get::<i64, _>("block").unwrap_or(0).max(0) as u64))
    }

    pub async fn set_cursor(&self, name: &str, block: u64) -> Result<(), DbError> {
        sqlx::query("INSERT INTO cursors (name, block) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET block = excluded.block")
            .bind(name)
            .bind(block as i64)
            .execute(&self.pool)
            .await
            .map_err(sql("saving the chain cursor"))?;
        Ok(())
    }
}

enum Attempt {
    Applied(u128),
    Duplicate,
    Conflict,
}

/// SQLite's "database is locked / busy" (another connection holds the write lock; with WAL a
/// read transaction that wants to write may get it at once instead of waiting).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
            primary == 5 || primary == 6 || d.message().contains("database is locked")
        }
        _ => false,
    }
}

struct JobInsert {
    id: String,
    account_id: String,
    key_id: String,
    idempotency_key: Option<String>,
    module: String,
    inputs: String,
    payment: u128,
}

fn account_of(r: &AnyRow) -> Result<Account, DbError> {
    let g = |e| DbError::Sql { what: "reading an account", source: e };
    let balance: String = r.try_get("balance").map_err(g)?;
    Ok(Account {
        id: r.try_get("id").map_err(g)?,
        name: r.try_get("name").map_err(g)?,
        balance: parse_amount(&balance)?,
        created_at: r.try_get("created_at").map_err(g)?,
    })
}

fn job_of(r: &AnyRow) -> Result<JobRow, DbError> {
    let g = |e| DbError::Sql { what: "reading a job", source: e };
    let payment: String = r.try_get("payment").map_err(g)?;
    let inputs: String = r.try_get("inputs").map_err(g)?;
    Ok(JobRow {
        id: r.try_get("id").map_err(g)?,
        account_id: r.try_get("account_id").map_err(g)?,
        key_id: r.try_get("key_id").map_err(g)?,
        idempotency_key: r.try_get("idempotency_key").map_err(g)?,
        module: r.try_get("module").map_err(g)?,
        inputs: serde_json::from_str(&inputs).unwrap_or_default(),
        payment: parse_amount(&payment)?,
        state: r.try_get("state").map_err(g)?,
        tx_nonce: r.try_get("tx_nonce").map_err(g)?,
        chain_id: r.try_get("chain_id").map_err(g)?,
        data_id: r.try_get("data_id").map_err(g)?,
        outputs_at: r.try_get("outputs_at").map_err(g)?,
        error: r.try_get("error").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        updated_at: r.try_get("updated_at").map_err(g)?,
    })
}

/// Splits a migration into statements (no `;` inside string literals in our migrations);
/// drops `--` comments.
fn split_statements(text: &str) -> Vec<String> {
    let stripped: String = text
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    stripped.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
