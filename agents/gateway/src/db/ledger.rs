//! The credit ledger: credits, refunds and the charge that creates a job, each an entry with a
//! unique key written in the same transaction as the balance it changes.

use sqlx::Row;
use tracing::debug;

use super::{now_ms, parse_amount, sql, Db, DbError, JobRow, LedgerEntry, NewJob};
use crate::keys;

impl Db {
    /// Adds `amount` credit to the account named `name` under the ledger key `entry_key`
    /// (a fresh one when `None`). Returns the new balance, or `None` if that entry was
    /// already applied.
    pub async fn add_credit(&self, name: &str, amount: u128, entry_key: Option<&str>, note: &str) -> Result<Option<u128>, DbError> {
        let account = self.account_by_name(name).await?.ok_or_else(|| DbError::NoAccount(name.to_string()))?;
        let key = entry_key.map(str::to_string).unwrap_or_else(|| format!("credit:{}", keys::random_hex(8)));
        let entry = Entry { account_id: &account.id, entry_key: &key, kind: "credit", delta: amount as i128, job_id: None, note };
        self.apply(&entry, None).await
    }

    /// Credits back `amount` for a job, once per `entry_key`.
    pub async fn refund_job(&self, job: &JobRow, entry_key: &str, amount: u128, note: &str) -> Result<Option<u128>, DbError> {
        if amount == 0 {
            return Ok(None);
        }
        let entry = Entry { account_id: &job.account_id, entry_key, kind: "refund", delta: amount as i128, job_id: Some(&job.id), note };
        self.apply(&entry, None).await
    }

    /// Records a new job in state `submitting` and charges its payment, in one transaction.
    /// With an idempotency key already used by the account on the same deployment, returns the
    /// existing job and `false` (nothing charged). Idempotency keys are kept as
    /// `<deployment>/<key>`: the same key on another deployment is another request.
    pub async fn create_job(&self, new: NewJob<'_>) -> Result<(JobRow, bool), DbError> {
        let idempotency_key = new.idempotency_key.map(|k| format!("{}/{k}", new.deployment));
        if let Some(k) = &idempotency_key {
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
            idempotency_key: idempotency_key.clone(),
            deployment: new.deployment.to_string(),
            module: new.module.to_string(),
            inputs,
            payment: new.payment,
        };
        let key = format!("job:{id}:charge");
        let note = format!("{} {}", new.module, new.inputs.join(" "));
        let payment = i128::try_from(new.payment).unwrap_or(i128::MAX);
        let entry = Entry { account_id: new.account_id, entry_key: &key, kind: "charge", delta: -payment, job_id: Some(&id), note: &note };
        match self.apply(&entry, Some(Insert::Job(insert))).await {
            Ok(_) => {}
            Err(DbError::Sql { .. }) if idempotency_key.is_some() => {
                // a concurrent request with the same idempotency key won the race
                if let Some(existing) = self.job_by_idempotency_key(new.account_id, idempotency_key.as_deref().unwrap_or_default()).await? {
                    return Ok((existing, false));
                }
            }
            Err(e) => return Err(e),
        }
        let job = self.job(&id).await?.ok_or_else(|| DbError::Sql { what: "reading a new job", source: sqlx::Error::RowNotFound })?;
        Ok((job, true))
    }

    /// Writes `entry` (and, for a charge, the job it pays for) with the balance it changes,
    /// retrying while another writer holds the balance; `None` when the entry was applied
    /// before.
    pub(super) async fn apply(&self, entry: &Entry<'_>, job: Option<Insert>) -> Result<Option<u128>, DbError> {
        let _guard = self.write_lock.lock().await;
        for attempt in 0..200u64 {
            match self.try_apply(entry, job.as_ref()).await {
                Ok(Attempt::Applied(balance)) => return Ok(Some(balance)),
                Ok(Attempt::Duplicate) => {
                    debug!(entry_key = entry.entry_key, "ledger entry already applied");
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

    async fn try_apply(&self, entry: &Entry<'_>, insert: Option<&Insert>) -> Result<Attempt, DbError> {
        let Entry { account_id, entry_key, kind, delta, job_id, note } = *entry;
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
        if let Some(Insert::Upload(u)) = insert {
            sqlx::query(
                "INSERT INTO uploads (id, account_id, key_id, cid, kind, bytes, price, state, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'stored', $8, $9)",
            )
            .bind(&u.id)
            .bind(&u.account_id)
            .bind(&u.key_id)
            .bind(&u.cid)
            .bind(&u.kind)
            .bind(u.bytes)
            .bind(u.price.to_string())
            .bind(now)
            .bind(u.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(sql("recording an upload"))?;
        }
        if let Some(Insert::Job(j)) = insert {
            sqlx::query(
                "INSERT INTO jobs (id, account_id, key_id, idempotency_key, module, inputs, payment, state, created_at, updated_at, deployment) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'submitting', $8, $8, $9)",
            )
            .bind(&j.id)
            .bind(&j.account_id)
            .bind(&j.key_id)
            .bind(j.idempotency_key.clone())
            .bind(&j.module)
            .bind(&j.inputs)
            .bind(j.payment.to_string())
            .bind(now)
            .bind(&j.deployment)
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
}

/// One ledger entry to write: `delta` (negative for a charge) to `account_id`'s balance.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a> {
    pub(super) account_id: &'a str,
    pub(super) entry_key: &'a str,
    pub(super) kind: &'a str,
    pub(super) delta: i128,
    pub(super) job_id: Option<&'a str>,
    pub(super) note: &'a str,
}

/// The row a charge pays for, written in the charge's transaction.
pub(super) enum Insert {
    Job(JobInsert),
    Upload(UploadInsert),
}

/// An upload to record with its charge.
pub(super) struct UploadInsert {
    pub(super) id: String,
    pub(super) account_id: String,
    pub(super) key_id: String,
    pub(super) cid: String,
    pub(super) kind: String,
    pub(super) bytes: i64,
    pub(super) price: u128,
    pub(super) expires_at: i64,
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

pub(super) struct JobInsert {
    id: String,
    account_id: String,
    key_id: String,
    idempotency_key: Option<String>,
    deployment: String,
    module: String,
    inputs: String,
    payment: u128,
}
