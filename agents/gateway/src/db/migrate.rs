//! Numbered migrations, applied in order, each once, recorded in `schema_migrations`.

use sqlx::Row;
use tracing::debug;

use super::{now_ms, sql, Db, DbError};

/// Numbered migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/0001_initial.sql")),
    (2, "jobs by deployment", include_str!("../../migrations/0002_jobs_by_deployment.sql")),
    (3, "job provider", include_str!("../../migrations/0003_job_provider.sql")),
    (4, "uploads", include_str!("../../migrations/0004_uploads.sql")),
];

impl Db {
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

