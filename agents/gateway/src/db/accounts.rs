//! Accounts and their API keys.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, parse_amount, sql, Account, Db, DbError, KeyCheck};
use crate::keys::{self, ApiKey};

impl Db {
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
