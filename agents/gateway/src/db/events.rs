//! Job events: each recorded state change of a job, once per event key.

use sqlx::Row;

use super::{now_ms, sql, Db, DbError, JobEvent};

impl Db {
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
}
