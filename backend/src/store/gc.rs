//! Storage collection and quotas. A file no message carries is deleted once it is older than
//! the upload expiry; a blob no file points at goes with its processing job, and its object
//! keys (the bytes, the derivatives) are *doomed*: written to `doomed_objects` in the same
//! transaction, deleted from the object store afterwards, and only then forgotten, so a crash
//! at any point leaves a key to delete rather than an object nobody knows about.
//!
//! Racing a send (PostgreSQL): a send share-locks the files its message carries for its whole
//! batch; collection takes the files it will delete with `FOR UPDATE SKIP LOCKED` and checks
//! `message_files` again in a later statement, which sees every send committed before the
//! lock. A send that comes after waits for the collection to commit and then finds no file
//! (`not_found`). Racing an upload of the same bytes: the blob's row is deleted only while no
//! file points at it (its foreign key refuses otherwise), and each stored copy has an object
//! key of its own, so a new blob never shares the doomed bytes. SQLite runs one transaction
//! at a time.

use super::Store;
use crate::entity::{blobs, doomed_objects, files, media_jobs};
use crate::error::{is_foreign_key_violation, Result};
use crate::util::now_ms;
use protocol::UserId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, Statement, TransactionTrait,
};

/// What one user has stored: bytes and files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Their files' sizes, plus the declared lengths of their unfinished uploads.
    pub bytes: u64,
    /// Their files and unfinished uploads.
    pub files: u64,
}

impl Usage {
    /// Whether one more file of `bytes` fits within `quota` on top of this.
    pub fn fits(&self, quota: &Usage, bytes: u64) -> bool {
        self.files < quota.files && self.bytes.saturating_add(bytes) <= quota.bytes
    }

    /// The `quota_exceeded` refusal for a user who has this, under `quota`.
    pub fn refusal(&self, quota: &Usage) -> crate::error::Error {
        let message = format!(
            "over your storage quota ({} bytes in {} files; quota {} bytes, {} files): \
             files no message carries are removed after a day, deleted messages free theirs",
            self.bytes, self.files, quota.bytes, quota.files
        );
        protocol::ErrorBody::new(protocol::ErrorCode::QuotaExceeded, message)
            .with_details(serde_json::json!({
                "used_bytes": self.bytes,
                "used_files": self.files,
                "quota_bytes": quota.bytes,
                "quota_files": quota.files,
            }))
            .into()
    }
}

/// What `owner` has stored, leaving out the reservation of their resumable upload `except`
/// (the one being completed, whose file is about to count instead).
pub(super) async fn usage_in<C: ConnectionTrait>(
    db: &C,
    owner: &UserId,
    except: Option<&str>,
) -> Result<Usage> {
    const SQL: &str = "SELECT \
        CAST((SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = $1) \
           + (SELECT COALESCE(SUM(length), 0) FROM uploads \
              WHERE owner_id = $1 AND file_id IS NULL AND id <> $2) AS BIGINT), \
        (SELECT COUNT(*) FROM files WHERE owner_id = $1) \
           + (SELECT COUNT(*) FROM uploads \
              WHERE owner_id = $1 AND file_id IS NULL AND id <> $2)";
    let values = [owner.as_str().into(), except.unwrap_or("").into()];
    let row = db
        .query_one_raw(statement(db, SQL, values))
        .await?
        .ok_or_else(|| crate::error::Error::Internal("no usage row".into()))?;
    let bytes: i64 = row.try_get_by_index(0)?;
    let files: i64 = row.try_get_by_index(1)?;
    Ok(Usage {
        bytes: bytes.max(0) as u64,
        files: files.max(0) as u64,
    })
}

/// Records `keys` as objects to delete.
pub(super) async fn doom<C: ConnectionTrait>(
    db: &C,
    keys: impl IntoIterator<Item = String>,
) -> Result<()> {
    let since = now_ms();
    let rows: Vec<doomed_objects::ActiveModel> = keys
        .into_iter()
        .map(|key| doomed_objects::ActiveModel {
            key: Set(key),
            since: Set(since),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    doomed_objects::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(doomed_objects::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// `sql` with one parameter per value, numbered `$1…` (both databases take that form).
fn statement<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Statement {
    Statement::from_sql_and_values(db.get_database_backend(), sql, values)
}

/// A file (`f`) neither in a message nor anyone's avatar.
pub(super) const UNSENT: &str =
    "NOT EXISTS (SELECT 1 FROM message_files m WHERE m.file_id = f.id) \
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_file = f.id)";

impl Store {
    /// What `owner` has stored, for quotas.
    pub async fn usage(&self, owner: &UserId) -> Result<Usage> {
        usage_in(&self.read, owner, None).await
    }

    /// Deletes up to `limit` files that no message carries and that were uploaded before
    /// `cutoff` (Unix ms); returns how many went.
    pub async fn collect_unsent_files(&self, cutoff: i64, limit: u64) -> Result<u64> {
        let _turn = self.background_turn().await;
        let txn = self.db.begin().await?;
        let lock = match txn.get_database_backend() {
            DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        let pick = format!(
            "SELECT f.id FROM files f WHERE f.created_at < $1 AND {UNSENT} \
             ORDER BY f.created_at LIMIT $2{lock}"
        );
        let ids: Vec<String> = txn
            .query_all_raw(statement(
                &txn,
                &pick,
                [cutoff.into(), (limit as i64).into()],
            ))
            .await?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        // A new statement: it sees every send that committed before the rows were locked.
        let gone = files::Entity::delete_many()
            .filter(files::Column::Id.is_in(ids))
            .filter(sea_orm::sea_query::Expr::cust(
                UNSENT.replace("f.id", "files.id"),
            ))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(gone)
    }

    /// Deletes up to `limit` blobs no file points at, with their jobs, dooming their objects;
    /// returns how many went.
    pub async fn collect_blobs(&self, limit: u64) -> Result<u64> {
        let _turn = self.background_turn().await;
        const SQL: &str = "SELECT b.sha256 FROM blobs b \
            WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256) LIMIT $1";
        let shas: Vec<String> = self
            .db
            .query_all_raw(statement(&self.db, SQL, [(limit as i64).into()]))
            .await?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        let mut gone = 0;
        // One transaction each: a blob a new file took meanwhile fails alone.
        for sha in shas {
            match self.collect_blob(&sha).await {
                Ok(true) => gone += 1,
                Ok(false) => {}
                Err(crate::error::Error::Db(e)) if is_foreign_key_violation(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }

    async fn collect_blob(&self, sha: &str) -> Result<bool> {
        let txn = self.db.begin().await?;
        let Some(blob) = blobs::Entity::find_by_id(sha).one(&txn).await? else {
            return Ok(false);
        };
        media_jobs::Entity::delete_by_id(sha).exec(&txn).await?;
        let deleted = blobs::Entity::delete_many()
            .filter(blobs::Column::Sha256.eq(sha))
            .filter(blobs::Column::StorageKey.eq(blob.storage_key.as_str()))
            .filter(sea_orm::sea_query::Expr::cust(
                "NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = blobs.sha256)",
            ))
            .exec(&txn)
            .await?
            .rows_affected;
        if deleted == 0 {
            return Ok(false);
        }
        let keys = [
            Some(blob.storage_key),
            blob.thumb_key,
            blob.preview_key,
            blob.poster_key,
            blob.avatar_key,
        ];
        doom(&txn, keys.into_iter().flatten()).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Up to `limit` doomed object keys, oldest first.
    pub async fn doomed(&self, limit: u64) -> Result<Vec<String>> {
        Ok(doomed_objects::Entity::find()
            .select_only()
            .column(doomed_objects::Column::Key)
            .order_by_asc(doomed_objects::Column::Since)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Forgets doomed keys whose objects are deleted.
    pub async fn forget_doomed(&self, keys: &[String]) -> Result<()> {
        doomed_objects::Entity::delete_many()
            .filter(doomed_objects::Column::Key.is_in(keys.iter().map(String::as_str)))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Bytes held by blobs, and doomed objects not deleted yet (for `/metrics`).
    pub async fn stored(&self) -> Result<(u64, u64)> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), \
            (SELECT COUNT(*) FROM doomed_objects) FROM blobs";
        let row = self
            .db
            .query_one_raw(statement(&self.read, SQL, []))
            .await?
            .ok_or_else(|| crate::error::Error::Internal("no storage row".into()))?;
        let bytes: i64 = row.try_get_by_index(0)?;
        let doomed: i64 = row.try_get_by_index(1)?;
        Ok((bytes.max(0) as u64, doomed.max(0) as u64))
    }
}
