//! Uploads: files and folders an account put on the gateway by HTTP, each charged once (its
//! row and its ledger entry `upload:<id>:charge` in one transaction) and kept until it expires.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::ledger::{Entry, Insert, UploadInsert};
use super::{parse_amount, sql, Db, DbError};
use crate::keys;

/// An upload as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRow {
    /// `up_<hex>`.
    pub id: String,
    pub account_id: String,
    pub key_id: String,
    /// Its root CID (CIDv1, as `ipfs add --cid-version=1` prints it).
    pub cid: String,
    /// `file` or `folder`.
    pub kind: String,
    /// Bytes of the request body that carried it (what was charged for).
    pub bytes: i64,
    /// What was charged, token base units.
    pub price: u128,
    /// `stored`, `failed` (refunded) or `expired` (its blocks removed).
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An upload to record and charge for.
pub struct NewUpload<'a> {
    pub account_id: &'a str,
    pub key_id: &'a str,
    pub cid: &'a str,
    pub kind: &'a str,
    pub bytes: u64,
    pub price: u128,
    /// Unix milliseconds after which it may be removed.
    pub expires_at: i64,
}

const UPLOAD_COLUMNS: &str = "id, account_id, key_id, cid, kind, bytes, price, state, created_at, expires_at";

impl Db {
    /// Records an upload in state `stored` and charges its price, in one transaction: with too
    /// little credit ([`DbError::InsufficientCredit`]) neither is written.
    pub async fn create_upload(&self, new: NewUpload<'_>) -> Result<UploadRow, DbError> {
        let id = format!("up_{}", keys::random_hex(10));
        let key = format!("upload:{id}:charge");
        let note = format!("upload {} ({} bytes, {})", new.cid, new.bytes, new.kind);
        let insert = UploadInsert {
            id: id.clone(),
            account_id: new.account_id.to_string(),
            key_id: new.key_id.to_string(),
            cid: new.cid.to_string(),
            kind: new.kind.to_string(),
            bytes: i64::try_from(new.bytes).unwrap_or(i64::MAX),
            price: new.price,
            expires_at: new.expires_at,
        };
        let delta = -i128::try_from(new.price).unwrap_or(i128::MAX);
        let entry = Entry { account_id: new.account_id, entry_key: &key, kind: "charge", delta, job_id: None, note: &note };
        self.apply(&entry, Some(Insert::Upload(insert))).await?;
        self.upload(&id).await?.ok_or(DbError::Sql { what: "reading a new upload", source: sqlx::Error::RowNotFound })
    }

    /// The upload `id`.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, DbError> {
        let q = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1");
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await.map_err(sql("reading an upload"))?;
        row.map(|r| upload_of(&r)).transpose()
    }

    /// The account's uploads, newest first.
    pub async fn uploads_of(&self, account_id: &str, limit: i64) -> Result<Vec<UploadRow>, DbError> {
        let q = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2");
        let rows = sqlx::query(&q).bind(account_id).bind(limit).fetch_all(&self.pool).await.map_err(sql("reading uploads"))?;
        rows.iter().map(upload_of).collect()
    }

    /// Ids of the uploads whose content is still kept (stored, not expired at `now`).
    pub async fn kept_upload_ids(&self, now: i64) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE state = 'stored' AND expires_at > $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(sql("reading uploads"))?;
        rows.iter().map(|r| r.try_get::<String, _>("id").map_err(sql("reading uploads"))).collect()
    }

    /// Stored uploads past their expiry at `now`: their content is removed. (A failed upload's
    /// content never reached the gateway's blockstore.)
    pub async fn uploads_to_remove(&self, now: i64) -> Result<Vec<UploadRow>, DbError> {
        let q = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'stored' AND expires_at <= $1 ORDER BY expires_at");
        let rows = sqlx::query(&q).bind(now).fetch_all(&self.pool).await.map_err(sql("reading uploads"))?;
        rows.iter().map(upload_of).collect()
    }

    /// Moves upload `id` from `from` to `to`; returns whether it did.
    pub async fn set_upload_state(&self, id: &str, from: &str, to: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE uploads SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&self.pool)
            .await
            .map_err(sql("updating an upload"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a stored upload failed and credits its price back (`upload:<id>:refund`, once).
    pub async fn fail_upload(&self, upload: &UploadRow, reason: &str) -> Result<(), DbError> {
        self.set_upload_state(&upload.id, "stored", "failed").await?;
        if upload.price > 0 {
            let key = format!("upload:{}:refund", upload.id);
            let note = format!("refund of upload {}: {reason}", upload.cid);
            let delta = i128::try_from(upload.price).unwrap_or(i128::MAX);
            let entry = Entry { account_id: &upload.account_id, entry_key: &key, kind: "refund", delta, job_id: None, note: &note };
            self.apply(&entry, None).await?;
        }
        Ok(())
    }
}

fn upload_of(r: &AnyRow) -> Result<UploadRow, DbError> {
    let g = |e| DbError::Sql { what: "reading an upload", source: e };
    let price: String = r.try_get("price").map_err(g)?;
    Ok(UploadRow {
        id: r.try_get("id").map_err(g)?,
        account_id: r.try_get("account_id").map_err(g)?,
        key_id: r.try_get("key_id").map_err(g)?,
        cid: r.try_get("cid").map_err(g)?,
        kind: r.try_get("kind").map_err(g)?,
        bytes: r.try_get("bytes").map_err(g)?,
        price: parse_amount(&price)?,
        state: r.try_get("state").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        expires_at: r.try_get("expires_at").map_err(g)?,
    })
}
