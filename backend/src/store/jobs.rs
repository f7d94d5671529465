//! The media processing queue: durable jobs in the database, one per blob. A runner claims the
//! oldest due job with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several workers share
//! the queue; SQLite has one writer); a runner that dies leaves its lease to expire and the job
//! runs again. Results land on the blob row, and everyone who can see a file of that blob gets
//! a `media` update.

use super::conversations::member_ids;
use super::gc::doom;
use super::log::{append, Entry, Outgoing};
use super::Store;
use crate::entity::{blobs, files, media_jobs, message_files};
use crate::error::Result;
use crate::util::now_ms;
use protocol::{ConvId, FileId, UpdateBody, UserId};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// Jobs of one user that run at once, over every worker.
pub const RUNNING_PER_USER: u64 = 2;

/// How far apart a user's queued jobs are placed in line (ms): a user who queues many jobs
/// at once has the later ones behind jobs other users queue up to this much later per job.
pub const JOB_SHARE_MS: i64 = 2_000;

/// What processing made for a blob.
#[derive(Clone, Debug, Default)]
pub struct Derived {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<i64>,
    pub thumb_key: Option<String>,
    pub preview_key: Option<String>,
    pub poster_key: Option<String>,
    pub avatar_key: Option<String>,
}

/// A claimed job with what the runner needs of its blob.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub sha256: String,
    pub class: String,
    /// The type sniffed at upload: it decides the one demuxer the file is read with.
    pub mime: String,
    pub attempts: i32,
    pub storage_key: String,
}

impl Store {
    /// Update-log entries kept, and media jobs queued or running (for `/metrics`).
    pub async fn queue_depths(&self) -> Result<(u64, u64)> {
        use sea_orm::PaginatorTrait;
        let log = crate::entity::updates::Entity::find()
            .count(&self.read)
            .await?;
        let jobs = media_jobs::Entity::find()
            .filter(media_jobs::Column::State.is_in(["queued", "running"]))
            .count(&self.read)
            .await?;
        Ok((log, jobs))
    }

    /// Leases the due job first in line for `lease`, if any, skipping users who have
    /// [`RUNNING_PER_USER`] jobs running: one user's uploads cannot take every worker, and
    /// queue behind other users' by [`JOB_SHARE_MS`] each.
    pub async fn claim_job(&self, lease: Duration) -> Result<Option<Claimed>> {
        let _turn = self.background_turn().await;
        let now = now_ms();
        let txn = self.db.begin().await?;
        let postgres = txn.get_database_backend() == DbBackend::Postgres;
        // Bound values; sea-query numbers PostgreSQL's placeholders, not SQLite's.
        let (at, cap) = if postgres { ("$1", "$2") } else { ("?", "?") };
        let busy_owner = Expr::cust_with_values(
            format!(
                "(SELECT COUNT(*) FROM media_jobs r WHERE r.owner_id = media_jobs.owner_id \
                 AND r.state = 'running' AND r.locked_until >= {at}) < {cap}"
            ),
            [now, RUNNING_PER_USER as i64],
        );
        let mut q = media_jobs::Entity::find()
            .filter(media_jobs::Column::State.is_in(["queued", "running"]))
            .filter(media_jobs::Column::RunAfter.lte(now))
            .filter(
                Condition::any()
                    .add(media_jobs::Column::LockedUntil.is_null())
                    .add(media_jobs::Column::LockedUntil.lt(now)),
            )
            .filter(busy_owner)
            .order_by_asc(media_jobs::Column::FairAt)
            .limit(1);
        if postgres {
            q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let Some(job) = q.one(&txn).await? else {
            return Ok(None);
        };
        media_jobs::Entity::update_many()
            .col_expr(media_jobs::Column::State, Expr::value("running"))
            .col_expr(
                media_jobs::Column::LockedUntil,
                Expr::value(now + lease.as_millis() as i64),
            )
            .col_expr(media_jobs::Column::Attempts, Expr::value(job.attempts + 1))
            .col_expr(media_jobs::Column::UpdatedAt, Expr::value(now))
            .filter(media_jobs::Column::Sha256.eq(job.sha256.as_str()))
            .exec(&txn)
            .await?;
        let blob = blobs::Entity::find_by_id(job.sha256.as_str())
            .one(&txn)
            .await?;
        txn.commit().await?;
        let Some(blob) = blob else {
            return Ok(None);
        };
        Ok(Some(Claimed {
            sha256: job.sha256,
            class: job.class,
            mime: blob.mime,
            attempts: job.attempts + 1,
            storage_key: blob.storage_key,
        }))
    }

    /// The job made `derived`: the blob is ready. Returns the `media` updates to publish.
    /// If the blob was collected while the job ran, what it made is doomed instead.
    pub async fn job_done(&self, job: &Claimed, derived: &Derived) -> Result<Vec<Outgoing>> {
        let _turn = self.background_turn().await;
        let sha256 = job.sha256.as_str();
        let txn = self.db.begin().await?;
        let updated = blobs::Entity::update_many()
            .col_expr(blobs::Column::Status, Expr::value("ready"))
            .col_expr(
                blobs::Column::Width,
                Expr::value(derived.width.map(|w| w as i32)),
            )
            .col_expr(
                blobs::Column::Height,
                Expr::value(derived.height.map(|h| h as i32)),
            )
            .col_expr(blobs::Column::DurationMs, Expr::value(derived.duration_ms))
            .col_expr(
                blobs::Column::ThumbKey,
                Expr::value(derived.thumb_key.clone()),
            )
            .col_expr(
                blobs::Column::PreviewKey,
                Expr::value(derived.preview_key.clone()),
            )
            .col_expr(
                blobs::Column::PosterKey,
                Expr::value(derived.poster_key.clone()),
            )
            .col_expr(
                blobs::Column::AvatarKey,
                Expr::value(derived.avatar_key.clone()),
            )
            .filter(blobs::Column::Sha256.eq(sha256))
            .filter(blobs::Column::StorageKey.eq(job.storage_key.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            // The job's blob is gone (a new blob of the same bytes has a job of its own).
            let made = [
                &derived.thumb_key,
                &derived.preview_key,
                &derived.poster_key,
                &derived.avatar_key,
            ];
            doom(&txn, made.into_iter().flatten().cloned()).await?;
            txn.commit().await?;
            return Ok(vec![]);
        }
        self.end_job(&txn, sha256, "done", None).await?;
        let out = announce(&txn, sha256, "ready", derived).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// The job failed. A `permanent` failure (the file itself is bad) fails the blob with
    /// `why` for everyone to read; so does running out of attempts (no `retry_in`), but then
    /// the blob says only `processing failed`, since `why` is the server's trouble (it stays in
    /// the job's `last_error`). Otherwise the job runs again after `retry_in`.
    pub async fn job_failed(
        &self,
        sha256: &str,
        why: &str,
        permanent: bool,
        retry_in: Option<Duration>,
    ) -> Result<Vec<Outgoing>> {
        let _turn = self.background_turn().await;
        let txn = self.db.begin().await?;
        let out = match (permanent, retry_in) {
            (false, Some(wait)) => {
                let now = now_ms();
                media_jobs::Entity::update_many()
                    .col_expr(media_jobs::Column::State, Expr::value("queued"))
                    .col_expr(media_jobs::Column::LockedUntil, Expr::value(None::<i64>))
                    .col_expr(
                        media_jobs::Column::RunAfter,
                        Expr::value(now + wait.as_millis() as i64),
                    )
                    .col_expr(media_jobs::Column::LastError, Expr::value(why))
                    .col_expr(media_jobs::Column::UpdatedAt, Expr::value(now))
                    .filter(media_jobs::Column::Sha256.eq(sha256))
                    .exec(&txn)
                    .await?;
                vec![]
            }
            _ => {
                let shown = if permanent { why } else { "processing failed" };
                blobs::Entity::update_many()
                    .col_expr(blobs::Column::Status, Expr::value("failed"))
                    .col_expr(blobs::Column::Failure, Expr::value(shown))
                    .filter(blobs::Column::Sha256.eq(sha256))
                    .exec(&txn)
                    .await?;
                self.end_job(&txn, sha256, "failed", Some(why)).await?;
                announce(&txn, sha256, "failed", &Derived::default()).await?
            }
        };
        txn.commit().await?;
        Ok(out)
    }

    async fn end_job<C: ConnectionTrait>(
        &self,
        db: &C,
        sha256: &str,
        state: &str,
        why: Option<&str>,
    ) -> Result<()> {
        media_jobs::Entity::update_many()
            .col_expr(media_jobs::Column::State, Expr::value(state))
            .col_expr(media_jobs::Column::LockedUntil, Expr::value(None::<i64>))
            .col_expr(media_jobs::Column::LastError, Expr::value(why))
            .col_expr(media_jobs::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(media_jobs::Column::Sha256.eq(sha256))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Jobs not finished yet (queued or running), for readiness and metrics.
    pub async fn pending_jobs(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(media_jobs::Entity::find()
            .filter(media_jobs::Column::State.is_in(["queued", "running"]))
            .count(&self.read)
            .await?)
    }
}

/// One `media` update per file of the blob, to its uploader and the members of every
/// conversation holding a message with it.
async fn announce<C: ConnectionTrait>(
    db: &C,
    sha256: &str,
    status: &str,
    d: &Derived,
) -> Result<Vec<Outgoing>> {
    let mut out = Vec::new();
    let files = files::Entity::find()
        .filter(files::Column::Sha256.eq(sha256))
        .all(db)
        .await?;
    for f in files {
        let mut to: BTreeSet<UserId> = BTreeSet::new();
        to.insert(UserId::from_trusted(f.owner_id.clone()));
        let convs: BTreeSet<String> = message_files::Entity::find()
            .filter(message_files::Column::FileId.eq(f.id.as_str()))
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.conv_id)
            .collect();
        for c in convs {
            to.extend(member_ids(db, &ConvId::from_trusted(c)).await?);
        }
        let to: Vec<UserId> = to.into_iter().collect();
        let entry = Entry {
            ts: now_ms(),
            body: UpdateBody::Media {
                file: FileId::from_trusted(f.id),
                status: status.to_owned(),
                width: d.width,
                height: d.height,
                duration_ms: d.duration_ms,
                thumb: d.thumb_key.is_some(),
                preview: d.preview_key.is_some(),
                poster: d.poster_key.is_some(),
            },
        };
        let landed = append(db, &to, &entry).await?;
        out.push(Outgoing::new(&entry, landed));
    }
    Ok(out)
}
