//! Each member's own settings for a conversation: muted (until when), pinned, archived,
//! marked unread. A change reaches the member's devices as a `settings` update.

use super::conversations::settings_of;
use super::group::lock_conversation;
use super::log::{append, Entry, Outgoing};
use super::Store;
use crate::entity::members;
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::http::{Conversation, SettingsPatch, MAX_PINNED};
use protocol::{ConvId, ErrorCode, UpdateBody, UserId};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

impl Store {
    /// Applies `patch` to `user`'s settings for `conv`; returns the conversation as they now
    /// see it and, when anything changed, the `settings` update for their devices.
    pub async fn change_conv_settings(
        &self,
        user: &UserId,
        conv: &ConvId,
        patch: SettingsPatch,
    ) -> Result<(Conversation, Option<Outgoing>)> {
        if let Some(Some(t)) = patch.muted_until {
            if t != -1 && t <= 0 {
                return Err(Error::client(
                    ErrorCode::BadRequest,
                    "`muted_until` is a time in ms, -1 for always, or null",
                ));
            }
        }
        let now = now_ms();
        let txn = self.db.begin().await?;
        let c = lock_conversation(&txn, conv).await?;
        let mut q = members::Entity::find_by_id((conv.to_string(), user.to_string()));
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            q = q.lock(LockType::NoKeyUpdate);
        }
        let mut me = q.one(&txn).await?.ok_or_else(|| {
            Error::client(
                ErrorCode::NotMember,
                "you are not a member of that conversation",
            )
        })?;
        let before = settings_of(&me, c.last_seq, now);
        // What no longer holds is cleared first: an archive a new message ended, a mute
        // that ran out. An archive that holds counts from now: messages that came while the
        // conversation was muted do not take it out once it is unmuted.
        me.archived_seq = before.archived.then_some(c.last_seq);
        me.muted_until = before.muted_until;
        if let Some(m) = patch.muted_until {
            me.muted_until = m;
        }
        if let Some(pin) = patch.pinned {
            if pin && me.pinned_at.is_none() {
                // The user's pins take turns, so two at once cannot both pass the count.
                super::take_turns_as(&txn, user.as_str()).await?;
                let pinned = members::Entity::find()
                    .filter(members::Column::UserId.eq(user.as_str()))
                    .filter(members::Column::PinnedAt.is_not_null())
                    .count(&txn)
                    .await?;
                if pinned as usize >= MAX_PINNED {
                    return Err(Error::client(
                        ErrorCode::BadRequest,
                        format!("at most {MAX_PINNED} conversations can be pinned"),
                    ));
                }
                me.pinned_at = Some(now);
            } else if !pin {
                me.pinned_at = None;
            }
        }
        if let Some(archive) = patch.archived {
            me.archived_seq = archive.then_some(c.last_seq);
        }
        if let Some(unread) = patch.marked_unread {
            me.marked_unread = unread;
        }
        let after = settings_of(&me, c.last_seq, now);
        members::Entity::update_many()
            .col_expr(members::Column::MutedUntil, me.muted_until.into())
            .col_expr(members::Column::PinnedAt, me.pinned_at.into())
            .col_expr(members::Column::ArchivedSeq, me.archived_seq.into())
            .col_expr(members::Column::MarkedUnread, me.marked_unread.into())
            .filter(members::Column::ConvId.eq(conv.as_str()))
            .filter(members::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let out = if after != before {
            let entry = Entry {
                ts: now,
                body: UpdateBody::Settings {
                    conv: conv.clone(),
                    settings: after,
                },
            };
            let landed = append(&txn, std::slice::from_ref(user), &entry).await?;
            Some(Outgoing::new(&entry, landed))
        } else {
            None
        };
        txn.commit().await?;
        Ok((self.conversation(conv, user).await?, out))
    }
}

/// What a push notice about one conversation says, as the user's settings have it.
pub struct NoticeState {
    /// Unread messages there.
    pub unread: i64,
    /// Unread messages across the user's conversations that are not muted.
    pub badge: i64,
    pub muted: bool,
    /// An unread message there mentions the user.
    pub mentioned: bool,
}

impl Store {
    /// `user`'s unread counts and settings for a notice about `conv` (None: not a member).
    pub async fn notice_state(&self, user: &UserId, conv: &ConvId) -> Result<Option<NoticeState>> {
        let mine = members::Entity::find()
            .filter(members::Column::UserId.eq(user.as_str()))
            .all(&self.read)
            .await?;
        let Some(here) = mine.iter().find(|m| m.conv_id == conv.as_str()) else {
            return Ok(None);
        };
        let now = now_ms();
        let muted = |m: &members::Model| m.muted_until.is_some_and(|t| t == -1 || t > now);
        let watermarks: Vec<(String, i64)> = mine
            .iter()
            .filter(|m| !muted(m) || m.conv_id == conv.as_str())
            .map(|m| (m.conv_id.clone(), m.read_seq))
            .collect();
        let counts = self.unread_counts(user, &watermarks).await?;
        let unread = counts.get(conv.as_str()).copied().unwrap_or(0);
        let badge = mine
            .iter()
            .filter(|m| !muted(m))
            .filter_map(|m| counts.get(&m.conv_id))
            .sum();
        Ok(Some(NoticeState {
            unread,
            badge,
            muted: muted(here),
            mentioned: here.mentioned_seq > here.read_seq,
        }))
    }
}
