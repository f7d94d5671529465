//! Profiles: the display name and avatar users show each other. A change is a `profile`
//! update in the logs of everyone who shares a conversation with the user (blocked either way
//! aside) and of the user themself. The avatar is one of the user's uploaded images; its
//! image job made the square `avatar.webp` served at `GET /v1/users/{id}/avatar`, to the user
//! and to whoever shares a conversation with them.

use super::log::{append, Entry, Outgoing};
use super::Store;
use crate::entity::{blobs, files, members, users};
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::http::{Profile, ProfileChange, MAX_DISPLAY_NAME};
use protocol::{ErrorCode, FileId, UpdateBody, UserId};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use std::collections::HashMap;

/// Where `u`'s avatar is served: a new address for every new avatar.
fn avatar_url(u: &users::Model) -> Option<String> {
    match (&u.avatar_file, u.avatar_at) {
        (Some(_), Some(at)) => Some(format!("/v1/users/{}/avatar?v={at}", u.id)),
        _ => None,
    }
}

pub fn profile_of(u: &users::Model) -> Profile {
    let user = UserId::from_trusted(u.id.clone());
    if u.deleted_at.is_some() {
        return Profile::deleted(user);
    }
    Profile {
        user,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        avatar: avatar_url(u),
        deleted: false,
    }
}

/// A display name as stored: trimmed, 1–[`MAX_DISPLAY_NAME`] characters, no control or
/// format characters (which could reorder or hide what apps show around it).
fn display_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    let count = name.chars().count();
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if count == 0 || count > MAX_DISPLAY_NAME || name.chars().any(hostile) {
        return Err(Error::client(
            ErrorCode::BadRequest,
            format!(
                "display_name must be 1–{MAX_DISPLAY_NAME} characters, without control or \
                 direction characters"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// The file `file` if it can be an avatar (a user's or a group's): an image `user` uploaded
/// whose processing is done. Share-locked on PostgreSQL: storage collection cannot take the
/// file between this check and the commit (it keeps files that are an avatar).
pub(super) async fn avatar_image<C: ConnectionTrait>(
    txn: &C,
    user: &UserId,
    file: &FileId,
) -> Result<files::Model> {
    let mut q =
        files::Entity::find_by_id(file.as_str()).filter(files::Column::OwnerId.eq(user.as_str()));
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_shared();
    }
    let not_found = || Error::client(ErrorCode::NotFound, format!("no file {file} of yours"));
    let f = q.one(txn).await?.ok_or_else(not_found)?;
    let blob = blobs::Entity::find_by_id(f.sha256.as_str())
        .one(txn)
        .await?
        .ok_or_else(not_found)?;
    if f.class != "image" || blob.status == "failed" {
        return Err(Error::client(
            ErrorCode::UnsupportedMedia,
            "an avatar is an image Courier could read",
        ));
    }
    if blob.status != "ready" {
        return Err(Error::client(
            ErrorCode::BadRequest,
            "the image is still being processed: set it once its status is ready",
        ));
    }
    Ok(f)
}

/// The stored square of an avatar image file: its `avatar.webp`, or, for images processed
/// before avatars existed, its thumbnail.
pub(super) async fn avatar_key<C: ConnectionTrait>(db: &C, file: &str) -> Result<Option<String>> {
    let Some(f) = files::Entity::find_by_id(file).one(db).await? else {
        return Ok(None);
    };
    let blob = blobs::Entity::find_by_id(f.sha256).one(db).await?;
    Ok(blob.and_then(|b| b.avatar_key.or(b.thumb_key)))
}

impl Store {
    pub async fn profile(&self, user: &UserId) -> Result<Profile> {
        let u = users::Entity::find_by_id(user.as_str())
            .one(&self.read)
            .await?
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such user"))?;
        Ok(profile_of(&u))
    }

    /// Users by (case-insensitive) name or by id, by username; unknown ones are left out, and
    /// so are deleted accounts asked for by name (their ids still say "deleted").
    pub async fn profiles_named(&self, names: &[String], ids: &[String]) -> Result<Vec<Profile>> {
        let names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let rows = users::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(
                        sea_orm::Condition::all()
                            .add(users::Column::Username.is_in(names))
                            .add(users::Column::DeletedAt.is_null()),
                    )
                    .add(users::Column::Id.is_in(ids.iter().map(String::as_str))),
            )
            .all(&self.read)
            .await?;
        let mut out: Vec<Profile> = rows.iter().map(profile_of).collect();
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// The profiles of `ids`, by id.
    pub async fn profiles(&self, ids: &[UserId]) -> Result<HashMap<String, Profile>> {
        let mut out = HashMap::with_capacity(ids.len());
        // Chunks keep the statement's bound values well inside SQLite's limit.
        for chunk in ids.chunks(400) {
            let rows = users::Entity::find()
                .filter(users::Column::Id.is_in(chunk.iter().map(UserId::as_str)))
                .all(&self.read)
                .await?;
            for u in &rows {
                out.insert(u.id.clone(), profile_of(u));
            }
        }
        Ok(out)
    }

    /// Applies `change` to `user`'s profile. An avatar must be an image file the user
    /// uploaded whose processing is done. Returns the profile and, when it changed, the
    /// `profile` update for the user's contacts and devices.
    pub async fn change_profile(
        &self,
        user: &UserId,
        change: ProfileChange,
    ) -> Result<(Profile, Option<Outgoing>)> {
        let name = match &change.display_name {
            Some(Some(raw)) => Some(Some(display_name(raw)?)),
            Some(None) => Some(None),
            None => None,
        };
        // Read before the transaction: on SQLite it holds the one connection.
        let mut to = self.contacts(user).await?;
        to.push(user.clone());
        let txn = self.db.begin().await?;
        let mut row = users::Entity::find_by_id(user.as_str())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such user"))?;
        let before = profile_of(&row);
        if let Some(name) = name {
            row.display_name = name;
        }
        match &change.avatar {
            Some(Some(file)) if row.avatar_file.as_deref() != Some(file.as_str()) => {
                let f = avatar_image(&txn, user, file).await?;
                row.avatar_file = Some(f.id);
                // Strictly newer, so that the address changes even within a millisecond.
                row.avatar_at = Some(now_ms().max(row.avatar_at.unwrap_or(0) + 1));
            }
            Some(None) => {
                row.avatar_file = None;
                row.avatar_at = None;
            }
            _ => {}
        }
        let after = profile_of(&row);
        if after == before {
            return Ok((after, None));
        }
        users::Entity::update_many()
            .col_expr(users::Column::DisplayName, row.display_name.clone().into())
            .col_expr(users::Column::AvatarFile, row.avatar_file.clone().into())
            .col_expr(users::Column::AvatarAt, row.avatar_at.into())
            .filter(users::Column::Id.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let entry = Entry {
            ts: now_ms(),
            body: UpdateBody::Profile {
                profile: after.clone(),
            },
        };
        let landed = append(&txn, &to, &entry).await?;
        txn.commit().await?;
        Ok((after, Some(Outgoing::new(&entry, landed))))
    }

    /// The object key of `user`'s avatar, if `viewer` may see it (themself, or someone who
    /// shares a conversation with them) and there is one.
    pub async fn avatar_of(&self, viewer: &UserId, user: &UserId) -> Result<Option<String>> {
        if viewer != user {
            let theirs = Query::select()
                .column(members::Column::ConvId)
                .from(members::Entity)
                .and_where(members::Column::UserId.eq(user.as_str()))
                .to_owned();
            let shared = members::Entity::find()
                .select_only()
                .column(members::Column::ConvId)
                .filter(members::Column::UserId.eq(viewer.as_str()))
                .filter(members::Column::ConvId.in_subquery(theirs))
                .into_tuple::<String>()
                .one(&self.read)
                .await?;
            if shared.is_none() {
                return Ok(None);
            }
        }
        let Some(u) = users::Entity::find_by_id(user.as_str())
            .one(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let Some(file) = u.avatar_file else {
            return Ok(None);
        };
        avatar_key(&self.read, &file).await
    }
}
