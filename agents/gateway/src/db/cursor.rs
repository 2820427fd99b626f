//! The chain cursor: the last block whose market events are applied, per watcher.

use sqlx::Row;

use super::{sql, Db, DbError};

impl Db {
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
