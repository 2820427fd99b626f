//! Jobs: looked up by id, on-chain number, state or idempotency key, and moved through their
//! states. Lookups the chain side makes are within one deployment (see the module above).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, parse_amount, sql, Db, DbError, JobRow, FINAL_STATES};

impl Db {
    const JOB_COLUMNS: &'static str = "id, account_id, key_id, idempotency_key, module, inputs, payment, state, tx_nonce, deployment, onchain_id, provider, data_id, outputs_at, error, created_at, updated_at";

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE id = $1", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    /// The job of `deployment` whose on-chain number is `chain_id`.
    pub async fn job_by_chain_id(&self, deployment: &str, chain_id: &str) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE deployment = $1 AND onchain_id = $2", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(deployment).bind(chain_id).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    pub(super) async fn job_by_idempotency_key(&self, account_id: &str, key: &str) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE account_id = $1 AND idempotency_key = $2", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(account_id).bind(key).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
        row.map(|r| job_of(&r)).transpose()
    }

    /// Jobs of `deployment` in `state`, oldest first.
    pub async fn jobs_in_state(&self, deployment: &str, state: &str) -> Result<Vec<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE deployment = $1 AND state = $2 ORDER BY created_at", Self::JOB_COLUMNS);
        let rows = sqlx::query(&q).bind(deployment).bind(state).fetch_all(&self.pool).await.map_err(sql("reading jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// Jobs of `deployment` with a result whose outputs are not fetched yet.
    pub async fn jobs_missing_outputs(&self, deployment: &str) -> Result<Vec<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE deployment = $1 AND data_id IS NOT NULL AND outputs_at IS NULL ORDER BY created_at", Self::JOB_COLUMNS);
        let rows = sqlx::query(&q).bind(deployment).fetch_all(&self.pool).await.map_err(sql("reading jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// The account's jobs on `deployment`, newest first.
    pub async fn jobs_of(&self, account_id: &str, deployment: &str, limit: i64) -> Result<Vec<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE account_id = $1 AND deployment = $2 ORDER BY created_at DESC LIMIT $3", Self::JOB_COLUMNS);
        let rows = sqlx::query(&q).bind(account_id).bind(deployment).bind(limit).fetch_all(&self.pool).await.map_err(sql("reading jobs"))?;
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
        let done = sqlx::query("UPDATE jobs SET onchain_id = $1, state = 'open', updated_at = $2 WHERE id = $3 AND onchain_id IS NULL AND state = 'submitting'")
            .bind(chain_id)
            .bind(now_ms())
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(sql("linking a job to its chain id"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The submitting job of `deployment` whose `runJob` went out with `nonce`, if any.
    pub async fn submitting_job_with_nonce(&self, deployment: &str, nonce: u64) -> Result<Option<JobRow>, DbError> {
        let q = format!("SELECT {} FROM jobs WHERE deployment = $1 AND tx_nonce = $2 AND state = 'submitting' AND onchain_id IS NULL", Self::JOB_COLUMNS);
        let row = sqlx::query(&q).bind(deployment).bind(nonce as i64).fetch_optional(&self.pool).await.map_err(sql("reading a job"))?;
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

    /// Jobs recorded before jobs were keyed by deployment (no deployment) are given
    /// `deployment` when `cursor` (that deployment's chain cursor) is the only one of the
    /// market watcher's cursors (named `<cursor_base>@...`) in the database: the database has
    /// followed that deployment and no other since cursors were keyed. Otherwise they stay
    /// without one: shown by id, never listed, followed or settled. Returns how many were
    /// adopted.
    pub async fn adopt_unkeyed_jobs(&self, deployment: &str, cursor_base: &str, cursor: &str) -> Result<u64, DbError> {
        let rows = sqlx::query("SELECT name FROM cursors").fetch_all(&self.pool).await.map_err(sql("reading the chain cursors"))?;
        let names: Vec<String> = rows.iter().filter_map(|r| r.try_get::<String, _>("name").ok()).collect();
        let watchers: Vec<&String> = names.iter().filter(|n| n.as_str() == cursor_base || n.starts_with(&format!("{cursor_base}@"))).collect();
        if watchers.len() != 1 || watchers[0] != cursor {
            return Ok(0);
        }
        let done = sqlx::query("UPDATE jobs SET deployment = $1 WHERE deployment IS NULL")
            .bind(deployment)
            .execute(&self.pool)
            .await
            .map_err(sql("adopting jobs recorded before deployments were kept"))?;
        Ok(done.rows_affected())
    }

    /// How many jobs have no deployment (recorded before jobs were keyed, not adopted).
    pub async fn unkeyed_jobs(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE deployment IS NULL").fetch_one(&self.pool).await.map_err(sql("counting jobs"))?;
        row.try_get::<i64, _>("n").map_err(sql("counting jobs"))
    }

    /// Records the provider job `job_id` is matched with (`0x...`), or none (given back).
    pub async fn set_provider(&self, job_id: &str, provider: Option<&str>) -> Result<(), DbError> {
        sqlx::query("UPDATE jobs SET provider = $1, updated_at = $2 WHERE id = $3")
            .bind(provider.map(str::to_string))
            .bind(now_ms())
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(sql("recording a job's provider"))?;
        Ok(())
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
        deployment: r.try_get("deployment").map_err(g)?,
        chain_id: r.try_get("onchain_id").map_err(g)?,
        provider: r.try_get("provider").map_err(g)?,
        data_id: r.try_get("data_id").map_err(g)?,
        outputs_at: r.try_get("outputs_at").map_err(g)?,
        error: r.try_get("error").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        updated_at: r.try_get("updated_at").map_err(g)?,
    })
}
