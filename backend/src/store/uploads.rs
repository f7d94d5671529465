//! Resumable uploads' shared state, so that any backend can continue an upload another one
//! started: the bytes received so far (`received`, the tus offset), the pieces they are stored
//! in (one object per PATCH, keyed by where it starts), and a lease that lets one PATCH at a
//! time write, whichever process it reached. A process that dies holding the lease holds it
//! only until the lease runs out.
//!
//! A piece's object is written first, then recorded together with the new offset, in one
//! statement guarded by the old offset and the lease: a piece whose record never made it (its
//! writer died) sits at the offset the upload still has, and the next piece written there
//! replaces it.

use super::gc::{doom, usage_in, Usage};
use super::Store;
use crate::entity::{upload_parts, uploads};
use crate::error::{Error, Result};
use crate::util::{new_id, now_ms};
use protocol::{ErrorCode, FileId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use std::time::Duration;

/// The object holding the piece of upload `id` that starts at byte `start`.
pub fn part_key(id: &str, start: u64) -> String {
    format!("uploads/{id}/{start:020}")
}

impl Store {
    /// Registers a resumable upload of `length` bytes (`keep_metadata`: store it as uploaded,
    /// not stripped).
    pub async fn create_upload(
        &self,
        owner: &UserId,
        length: u64,
        name: Option<String>,
        keep_metadata: bool,
        quota: &Usage,
    ) -> Result<uploads::Model> {
        let _turn = self.background_turn().await;
        let txn = self.db.begin().await?;
        // As for a file: the owner's uploads take turns, and the reservation must fit.
        super::take_turns_as(&txn, owner.as_str()).await?;
        let used = usage_in(&txn, owner, None).await?;
        if !used.fits(quota, length) {
            return Err(used.refusal(quota));
        }
        let row = uploads::Model {
            id: new_id('t'),
            owner_id: owner.to_string(),
            length: length as i64,
            name,
            file_id: None,
            created_at: now_ms(),
            keep_metadata,
            received: 0,
            locked_until: None,
            lock_owner: None,
        };
        uploads::Entity::insert(uploads::ActiveModel::from(row.clone()))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(row)
    }

    /// One of `owner`'s uploads; `not_found` for anyone else's.
    pub async fn upload_of(&self, owner: &UserId, id: &str) -> Result<uploads::Model> {
        uploads::Entity::find_by_id(id)
            .one(&self.read)
            .await?
            .filter(|u| u.owner_id == owner.as_str())
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such upload"))
    }

    /// Takes upload `id` for `holder` for `lease` (or renews it, when `holder` has it); false
    /// while another holder's lease runs, or once the upload is gone.
    pub async fn lock_upload(&self, id: &str, holder: &str, lease: Duration) -> Result<bool> {
        let now = now_ms();
        let _turn = self.background_turn().await;
        let taken = uploads::Entity::update_many()
            .col_expr(
                uploads::Column::LockedUntil,
                Expr::value(now + lease.as_millis() as i64),
            )
            .col_expr(uploads::Column::LockOwner, Expr::value(holder))
            .filter(uploads::Column::Id.eq(id))
            .filter(
                Condition::any()
                    .add(uploads::Column::LockedUntil.is_null())
                    .add(uploads::Column::LockedUntil.lt(now))
                    .add(uploads::Column::LockOwner.eq(holder)),
            )
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// Gives upload `id` back, if `holder` still has it.
    pub async fn unlock_upload(&self, id: &str, holder: &str) -> Result<()> {
        let _turn = self.background_turn().await;
        uploads::Entity::update_many()
            .col_expr(uploads::Column::LockedUntil, Expr::value(None::<i64>))
            .col_expr(uploads::Column::LockOwner, Expr::value(None::<String>))
            .filter(uploads::Column::Id.eq(id))
            .filter(uploads::Column::LockOwner.eq(holder))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records the piece of `size` bytes at `start` (its object already stored) and moves the
    /// offset past it; false when the offset is no longer `start` or `holder` lost the lease.
    pub async fn add_upload_part(
        &self,
        id: &str,
        holder: &str,
        start: u64,
        size: u64,
    ) -> Result<bool> {
        let _turn = self.background_turn().await;
        let txn = self.db.begin().await?;
        let moved = uploads::Entity::update_many()
            .col_expr(
                uploads::Column::Received,
                Expr::value((start + size) as i64),
            )
            .filter(uploads::Column::Id.eq(id))
            .filter(uploads::Column::Received.eq(start as i64))
            .filter(uploads::Column::LockOwner.eq(holder))
            .filter(uploads::Column::LockedUntil.gte(now_ms()))
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            return Ok(false);
        }
        upload_parts::Entity::insert(upload_parts::ActiveModel {
            upload_id: Set(id.to_owned()),
            start: Set(start as i64),
            size: Set(size as i64),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// The pieces of upload `id`, in order: (start, size).
    pub async fn upload_parts(&self, id: &str) -> Result<Vec<(u64, u64)>> {
        let rows: Vec<(i64, i64)> = upload_parts::Entity::find()
            .select_only()
            .column(upload_parts::Column::Start)
            .column(upload_parts::Column::Size)
            .filter(upload_parts::Column::UploadId.eq(id))
            .order_by_asc(upload_parts::Column::Start)
            .into_tuple()
            .all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s as u64, n as u64))
            .collect())
    }

    /// Marks upload `id` complete with `file`; its pieces are no longer needed.
    pub async fn finish_upload(&self, id: &str, file: &FileId) -> Result<()> {
        let _turn = self.background_turn().await;
        let txn = self.db.begin().await?;
        drop_parts(&txn, id).await?;
        uploads::Entity::update_many()
            .col_expr(uploads::Column::FileId, Expr::value(file.to_string()))
            .col_expr(uploads::Column::LockedUntil, Expr::value(None::<i64>))
            .col_expr(uploads::Column::LockOwner, Expr::value(None::<String>))
            .filter(uploads::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Uploads created before `cutoff` (Unix ms), at most `limit`: unfinished ones, and the
    /// records of finished ones (their files stay, while a message carries them).
    pub async fn stale_uploads(&self, cutoff: i64, limit: u64) -> Result<Vec<String>> {
        Ok(uploads::Entity::find()
            .select_only()
            .column(uploads::Column::Id)
            .filter(uploads::Column::CreatedAt.lt(cutoff))
            .order_by_asc(uploads::Column::CreatedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Drops upload `id` and its pieces (their objects are deleted by the collector).
    pub async fn delete_upload(&self, id: &str) -> Result<()> {
        let _turn = self.background_turn().await;
        let txn = self.db.begin().await?;
        drop_parts(&txn, id).await?;
        uploads::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Dooms the objects of upload `id`'s pieces and forgets them.
async fn drop_parts<C: ConnectionTrait>(db: &C, id: &str) -> Result<()> {
    let starts: Vec<i64> = upload_parts::Entity::find()
        .select_only()
        .column(upload_parts::Column::Start)
        .filter(upload_parts::Column::UploadId.eq(id))
        .into_tuple()
        .all(db)
        .await?;
    doom(db, starts.iter().map(|s| part_key(id, *s as u64))).await?;
    upload_parts::Entity::delete_many()
        .filter(upload_parts::Column::UploadId.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
