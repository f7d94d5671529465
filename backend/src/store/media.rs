//! Uploaded files and their blobs: recording an upload (the blob once per content, a file row
//! per upload) and deciding who may see a file — its uploader, and members of a conversation
//! holding a message that carries it. Anyone else is told it does not exist.

use super::conversations::membership;
use super::gc::{usage_in, Usage};
use super::jobs::JOB_SHARE_MS;
use super::Store;
use crate::entity::{blobs, files, media_jobs, message_files};
use crate::error::{is_foreign_key_violation, Error, Result};
use crate::util::{new_id, now_ms};
use media_worker::{Detected, MediaClass};
use protocol::http::MediaFile;
use protocol::{ConvId, ErrorCode, FileId, UserId};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};

/// A finished upload, hashed and typed.
pub struct NewFile {
    pub sha256: String,
    pub size: u64,
    pub detected: Detected,
    pub name: Option<String>,
}

/// What [`Store::add_file`] did.
pub enum Added {
    /// The file is recorded; `queued` if a processing job was queued for a new blob, and
    /// `kept` if the blob is the one whose bytes were just stored (else they are not needed).
    File {
        file: Box<MediaFile>,
        queued: bool,
        kept: bool,
    },
    /// No blob of this content exists (any more): store the bytes and call again with their
    /// key.
    NeedsBytes,
}

/// The id of the blob that `owner`'s uploads of content `sha256` share: `<sha256>.<owner>`.
/// Bytes are shared only between one user's uploads, so nothing about an upload (its answer,
/// its processing, its timing) can tell whether someone else stored the same bytes.
pub fn blob_id(sha256: &str, owner: &UserId) -> String {
    format!("{sha256}.{owner}")
}

/// The content's SHA-256 in a blob id (the whole id, for blobs stored before ids named
/// their owner).
pub fn content_sha(blob_id: &str) -> &str {
    blob_id.split('.').next().unwrap_or(blob_id)
}

pub fn media_file(f: &files::Model, b: &blobs::Model) -> MediaFile {
    MediaFile {
        id: FileId::from_trusted(f.id.clone()),
        mime: f.mime.clone(),
        class: f.class.clone(),
        size: f.size as u64,
        sha256: content_sha(&f.sha256).to_owned(),
        name: f.name.clone(),
        created_at: f.created_at,
        status: b.status.clone(),
        width: b.width.map(|w| w as u32),
        height: b.height.map(|h| h as u32),
        duration_ms: b.duration_ms,
        thumb: b.thumb_key.is_some(),
        preview: b.preview_key.is_some(),
        poster: b.poster_key.is_some(),
        failure: b.failure.clone(),
    }
}

/// A new job's place in line for `owner`: now, or a job's share after their last job still
/// in line, whichever is later.
async fn fair_place<C: ConnectionTrait>(db: &C, owner: &UserId, now: i64) -> Result<i64> {
    let last: Option<i64> = media_jobs::Entity::find()
        .select_only()
        .column_as(media_jobs::Column::FairAt.max(), "last")
        .filter(media_jobs::Column::OwnerId.eq(owner.as_str()))
        .filter(media_jobs::Column::State.is_in(["queued", "running"]))
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten();
    Ok(last.map_or(now, |l| (l + JOB_SHARE_MS).max(now)))
}

/// Whether Courier processes this class (images, videos, audio; not documents).
fn processed(class: MediaClass) -> bool {
    class != MediaClass::Document
}

impl Store {
    /// Records an upload as a file of `owner`'s pointing at the blob of its content. With
    /// `stored`, the object key its bytes were just written to, a new blob is made if there
    /// is none (with a processing job if it needs derivatives, in the same transaction).
    /// Without, the file joins the existing blob, or the answer is [`Added::NeedsBytes`];
    /// so too when the blob is collected while this runs.
    ///
    /// The file must fit `quota` with what the owner stores already (checked here, where the
    /// owner's uploads take turns, so uploads at once cannot overshoot it together);
    /// `completing` is the resumable upload this file completes, whose reservation it replaces.
    pub async fn add_file(
        &self,
        owner: &UserId,
        new: &NewFile,
        stored: Option<&str>,
        (quota, completing): (&Usage, Option<&str>),
    ) -> Result<Added> {
        let _turn = self.background_turn().await;
        let now = now_ms();
        let class = new.detected.class;
        let blob_id = blob_id(&new.sha256, owner);
        let txn = self.db.begin().await?;
        // The owner's uploads take turns, so each job sees the last one's place in line (and
        // the user's row is locked before the blob's is written).
        super::take_turns_as(&txn, owner.as_str()).await?;
        let used = usage_in(&txn, owner, completing).await?;
        if !used.fits(quota, new.size) {
            return Err(used.refusal(quota));
        }
        let mut queued = false;
        match stored {
            Some(key) => {
                let blob = blobs::Model {
                    sha256: blob_id.clone(),
                    size: new.size as i64,
                    mime: new.detected.mime.to_owned(),
                    class: class.as_str().to_owned(),
                    storage_key: key.to_owned(),
                    created_at: now,
                    status: if processed(class) { "pending" } else { "none" }.to_owned(),
                    width: None,
                    height: None,
                    duration_ms: None,
                    thumb_key: None,
                    preview_key: None,
                    poster_key: None,
                    avatar_key: None,
                    failure: None,
                };
                let inserted = blobs::Entity::insert(blobs::ActiveModel::from(blob))
                    .on_conflict(
                        OnConflict::column(blobs::Column::Sha256)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await?;
                queued = inserted == 1 && processed(class);
            }
            None => {
                let exists = blobs::Entity::find_by_id(blob_id.as_str())
                    .one(&txn)
                    .await?
                    .is_some();
                if !exists {
                    return Ok(Added::NeedsBytes);
                }
            }
        }
        if queued {
            let fair_at = fair_place(&txn, owner, now).await?;
            media_jobs::Entity::insert(media_jobs::ActiveModel {
                owner_id: Set(owner.to_string()),
                fair_at: Set(fair_at),
                sha256: Set(blob_id.clone()),
                class: Set(class.as_str().to_owned()),
                state: Set("queued".to_owned()),
                attempts: Set(0),
                run_after: Set(now),
                locked_until: Set(None),
                last_error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        let file = files::Model {
            id: new_id('f'),
            owner_id: owner.to_string(),
            sha256: blob_id,
            name: new.name.clone(),
            mime: new.detected.mime.to_owned(),
            class: class.as_str().to_owned(),
            size: new.size as i64,
            created_at: now,
        };
        // The blob may be collected between the check above and this insert (PostgreSQL):
        // its foreign key then refuses the file.
        match files::Entity::insert(files::ActiveModel::from(file.clone()))
            .exec_without_returning(&txn)
            .await
        {
            Err(e) if is_foreign_key_violation(&e) => return Ok(Added::NeedsBytes),
            other => other?,
        };
        let blob = blobs::Entity::find_by_id(file.sha256.as_str())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::Internal("blob vanished".into()))?;
        txn.commit().await?;
        Ok(Added::File {
            kept: stored == Some(blob.storage_key.as_str()),
            file: Box::new(media_file(&file, &blob)),
            queued,
        })
    }

    /// The file and its blob, if `user` may see it; `not_found` otherwise.
    pub async fn file_for(&self, user: &UserId, id: &str) -> Result<(files::Model, blobs::Model)> {
        let not_found = || Error::client(ErrorCode::NotFound, "no such file");
        let file = files::Entity::find_by_id(id)
            .one(&self.read)
            .await?
            .ok_or_else(not_found)?;
        if file.owner_id != user.as_str() && !shared_with(&self.read, user, id).await? {
            return Err(not_found());
        }
        let blob = blobs::Entity::find_by_id(file.sha256.as_str())
            .one(&self.read)
            .await?
            .ok_or_else(|| Error::Internal(format!("file {id} has no blob")))?;
        Ok((file, blob))
    }
}

/// Whether a message carrying file `id` is in a conversation `user` is a member of.
pub async fn shared_with<C: ConnectionTrait>(db: &C, user: &UserId, id: &str) -> Result<bool> {
    let convs = message_files::Entity::find()
        .filter(message_files::Column::FileId.eq(id))
        .all(db)
        .await?;
    let mut seen = std::collections::HashSet::new();
    for c in convs {
        if seen.insert(c.conv_id.clone())
            && membership(db, &ConvId::from_trusted(c.conv_id), user)
                .await
                .is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}
