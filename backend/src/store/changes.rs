//! `edit`, `delete` and `react`: changes to a stored message. Each is one transaction that
//! changes the message (or the caller's view of it) and appends one update to the logs of
//! everyone who sees the change. Messages keep their row and `seq` whatever happens to them, so
//! a conversation's seq stays gapless; a deleted message is a tombstone.
//!
//! Repeats are harmless: an edit to the same text, a second delete, or a reaction the user
//! already has answers like the first time and appends nothing.

use super::blocks::block_side;
use super::conversations::{member_ids, membership};
use super::log::{append, Entry, Outgoing};
use super::{search, Store};
use crate::entity::{hidden_messages, message_files, messages, reactions, users};
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::ops::{check_text, DeleteResult, EditResult, ReactResult};
use protocol::update::{Content, DeleteScope, ReactionSummary};
use protocol::{ConvId, ErrorCode, Message, MsgId, UpdateBody, UserId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Most distinct emoji one user may put on one message.
pub const MAX_REACTIONS_PER_USER: u64 = 20;

/// What a change returns: the answer, and the update to publish if anything changed.
pub type Changed<T> = (T, Option<Outgoing>);

/// The message, if `user` is a member of its conversation; `not_found` otherwise (a
/// non-member learns nothing about other conversations' messages).
pub(super) async fn visible<C: ConnectionTrait>(
    db: &C,
    user: &UserId,
    id: &MsgId,
) -> Result<messages::Model> {
    let not_found = || Error::client(ErrorCode::NotFound, format!("no message {id}"));
    let row = messages::Entity::find_by_id(id.as_str())
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    membership(db, &ConvId::from_trusted(row.conv_id.clone()), user)
        .await
        .map_err(|_| not_found())?;
    Ok(row)
}

fn not_deleted(row: &messages::Model) -> Result<()> {
    match row.deleted_at {
        Some(_) => Err(Error::client(
            ErrorCode::NotFound,
            format!("message {} was deleted", row.id),
        )),
        None => Ok(()),
    }
}

/// System lines record what happened to the group: they stay as they are.
fn not_system(row: &messages::Model, what: &str) -> Result<()> {
    match row.kind.as_str() {
        "system" => Err(Error::client(
            ErrorCode::InvalidMessage,
            format!("system messages cannot be {what}"),
        )),
        _ => Ok(()),
    }
}

/// Only the sender, and only within `window` of sending.
fn own_and_recent(
    row: &messages::Model,
    user: &UserId,
    window: Duration,
    what: &str,
) -> Result<()> {
    if row.sender_id != user.as_str() {
        return Err(Error::client(
            ErrorCode::Forbidden,
            format!("only the sender can {what} a message"),
        ));
    }
    if now_ms() - row.created_at > window.as_millis() as i64 {
        return Err(Error::client(
            ErrorCode::TooLate,
            format!(
                "messages can be {what}ed for {} s after sending",
                window.as_secs()
            ),
        ));
    }
    Ok(())
}

/// Appends `body` to the logs of `conv`'s members, but those who hid `msg` (deleted it for
/// themself, or blocked its sender): a hidden message gets no more updates (an edit would
/// show them its new text).
/// `body` to the members of `conv` but those who hid `msg` and those in `also_not`.
async fn to_members<C: ConnectionTrait>(
    db: &C,
    conv: &ConvId,
    msg: &MsgId,
    body: UpdateBody,
    also_not: &HashSet<String>,
) -> Result<Outgoing> {
    let hid: HashSet<String> = hidden_messages::Entity::find()
        .select_only()
        .column(hidden_messages::Column::UserId)
        .filter(hidden_messages::Column::MsgId.eq(msg.as_str()))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let mut to = member_ids(db, conv).await?;
    to.retain(|u| !hid.contains(u.as_str()) && !also_not.contains(u.as_str()));
    let entry = Entry { ts: now_ms(), body };
    let landed = append(db, &to, &entry).await?;
    Ok(Outgoing::new(&entry, landed))
}

impl Store {
    /// Replaces the text of the caller's own text message.
    pub async fn edit(
        &self,
        user: &UserId,
        id: &MsgId,
        text: &str,
        window: Duration,
    ) -> Result<Changed<EditResult>> {
        check_text(text)?;
        let txn = self.db.begin().await?;
        let row = visible(&txn, user, id).await?;
        not_deleted(&row)?;
        if row.kind != "text" {
            return Err(Error::client(
                ErrorCode::InvalidMessage,
                "only text messages can be edited",
            ));
        }
        own_and_recent(&row, user, window, "edit")?;
        let conv = ConvId::from_trusted(row.conv_id.clone());
        // The mentions stay as they were.
        let mentions = match serde_json::from_str(&row.content) {
            Ok(Content::Text { mentions, .. }) => mentions,
            _ => Vec::new(),
        };
        let content = Content::Text {
            text: text.into(),
            mentions,
        };
        let json = serde_json::to_string(&content).expect("content serialises");
        if json == row.content {
            let at = row.edited_at.unwrap_or(row.created_at);
            return Ok((result_edit(&row, conv, at), None));
        }
        let now = now_ms();
        let changed = messages::Entity::update_many()
            .col_expr(messages::Column::Content, Expr::value(json))
            .col_expr(messages::Column::EditedAt, Expr::value(now))
            .filter(messages::Column::Id.eq(id.as_str()))
            .filter(messages::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        if changed.rows_affected == 0 {
            return Err(Error::client(
                ErrorCode::NotFound,
                "the message was deleted",
            ));
        }
        search::reindex(&txn, &row.conv_id, id.as_str(), text).await?;
        let out = to_members(
            &txn,
            &conv,
            id,
            UpdateBody::Edit {
                conv: conv.clone(),
                msg: id.clone(),
                seq: row.seq,
                text: text.into(),
                edited_at: now,
                by: user.clone(),
            },
            &HashSet::new(),
        )
        .await?;
        txn.commit().await?;
        self.shared.conversation_changed(&conv).await;
        Ok((result_edit(&row, conv, now), Some(out)))
    }

    /// Deletes a message for the caller only (any member), or for everyone (the sender,
    /// within the window: the content is erased and its reactions dropped).
    pub async fn delete(
        &self,
        user: &UserId,
        id: &MsgId,
        scope: DeleteScope,
        window: Duration,
    ) -> Result<Changed<DeleteResult>> {
        let txn = self.db.begin().await?;
        let row = visible(&txn, user, id).await?;
        let conv = ConvId::from_trusted(row.conv_id.clone());
        let result = DeleteResult {
            msg: id.clone(),
            conv: conv.clone(),
            seq: row.seq,
            scope,
        };
        let body = UpdateBody::Delete {
            conv: conv.clone(),
            msg: id.clone(),
            seq: row.seq,
            scope,
            by: user.clone(),
        };
        let out = match scope {
            DeleteScope::Me => {
                let inserted = hidden_messages::Entity::insert(hidden_messages::ActiveModel {
                    user_id: Set(user.to_string()),
                    msg_id: Set(id.to_string()),
                    conv_id: Set(row.conv_id.clone()),
                    created_at: Set(now_ms()),
                    blocked: Set(false),
                })
                .on_conflict(
                    OnConflict::columns([
                        hidden_messages::Column::UserId,
                        hidden_messages::Column::MsgId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
                if inserted == 0 {
                    return Ok((result, None));
                }
                let entry = Entry { ts: now_ms(), body };
                let landed = append(&txn, std::slice::from_ref(user), &entry).await?;
                Outgoing::new(&entry, landed)
            }
            DeleteScope::Everyone => {
                if row.deleted_at.is_some() {
                    return Ok((result, None));
                }
                not_system(&row, "deleted for everyone")?;
                own_and_recent(&row, user, window, "delete")?;
                let tombstone =
                    serde_json::to_string(&Content::Deleted {}).expect("content serialises");
                let changed = messages::Entity::update_many()
                    .col_expr(messages::Column::Content, Expr::value(tombstone))
                    .col_expr(messages::Column::DeletedAt, Expr::value(now_ms()))
                    .filter(messages::Column::Id.eq(id.as_str()))
                    .filter(messages::Column::DeletedAt.is_null())
                    .exec(&txn)
                    .await?;
                if changed.rows_affected == 0 {
                    return Ok((result, None));
                }
                search::unindex(&txn, id.as_str()).await?;
                reactions::Entity::delete_many()
                    .filter(reactions::Column::MsgId.eq(id.as_str()))
                    .exec(&txn)
                    .await?;
                // The files it carried are no longer shared through it: members who kept their
                // ids cannot download them now, nor hear of them in `media` updates.
                message_files::Entity::delete_many()
                    .filter(message_files::Column::MsgId.eq(id.as_str()))
                    .exec(&txn)
                    .await?;
                to_members(&txn, &conv, id, body, &HashSet::new()).await?
            }
        };
        txn.commit().await?;
        if result.scope == DeleteScope::Everyone {
            self.shared.conversation_changed(&result.conv).await;
        }
        Ok((result, Some(out)))
    }

    /// Adds (`on`) or removes the caller's reaction `emoji` on a message.
    pub async fn react(
        &self,
        user: &UserId,
        id: &MsgId,
        emoji: &str,
        on: bool,
    ) -> Result<Changed<ReactResult>> {
        let txn = self.db.begin().await?;
        let row = visible(&txn, user, id).await?;
        not_deleted(&row)?;
        not_system(&row, "reacted to")?;
        let conv = ConvId::from_trusted(row.conv_id.clone());
        let result = ReactResult {
            msg: id.clone(),
            conv: conv.clone(),
            seq: row.seq,
            emoji: emoji.into(),
            on,
        };
        let mine = reactions::Entity::find()
            .filter(reactions::Column::MsgId.eq(id.as_str()))
            .filter(reactions::Column::UserId.eq(user.as_str()))
            .all(&txn)
            .await?;
        let has = mine.iter().any(|r| r.emoji == emoji);
        if has == on {
            return Ok((result, None));
        }
        if on {
            if mine.len() as u64 >= MAX_REACTIONS_PER_USER {
                return Err(Error::client(
                    ErrorCode::BadRequest,
                    format!("at most {MAX_REACTIONS_PER_USER} reactions per user on a message"),
                ));
            }
            reactions::Entity::insert(reactions::ActiveModel {
                msg_id: Set(id.to_string()),
                user_id: Set(user.to_string()),
                emoji: Set(emoji.into()),
                conv_id: Set(row.conv_id.clone()),
                created_at: Set(now_ms()),
            })
            .exec_without_returning(&txn)
            .await?;
        } else {
            reactions::Entity::delete_by_id((id.to_string(), user.to_string(), emoji.to_owned()))
                .exec(&txn)
                .await?;
        }
        // Those who blocked the reacting user do not see their reactions.
        let blockers = block_side(&txn, user.as_str(), false).await?;
        let out = to_members(
            &txn,
            &conv,
            id,
            UpdateBody::Reaction {
                conv: conv.clone(),
                msg: id.clone(),
                seq: row.seq,
                user: user.clone(),
                emoji: emoji.into(),
                on,
            },
            &blockers,
        )
        .await?;
        txn.commit().await?;
        Ok((result, Some(out)))
    }
}

fn result_edit(row: &messages::Model, conv: ConvId, edited_at: i64) -> EditResult {
    EditResult {
        msg: MsgId::from_trusted(row.id.clone()),
        conv,
        seq: row.seq,
        edited_at,
    }
}

/// A message as a member who deleted it for themself sees it: a tombstone; `blocked` when
/// they blocked its sender instead (then it is `hidden`).
pub fn hide(m: &mut Message, blocked: bool) {
    m.content = Content::Deleted {};
    m.deleted = Some(DeleteScope::Me);
    m.hidden = blocked;
    m.reply_to = None;
    m.forward_of = None;
    m.edited_at = None;
    m.reactions = Vec::new();
}

/// Shows messages as `viewer` sees them now: their reactions attached (but those of users the
/// viewer blocked), the ones the viewer deleted for themself (or hid by blocking their sender)
/// as tombstones, and senders whose accounts were deleted marked so.
pub async fn decorate<C: ConnectionTrait>(
    db: &C,
    viewer: &UserId,
    msgs: &mut [Message],
) -> Result<()> {
    if msgs.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    // Each hidden message, and whether it was hidden by blocking its sender.
    let hidden: HashMap<String, bool> = hidden_messages::Entity::find()
        .filter(hidden_messages::Column::UserId.eq(viewer.as_str()))
        .filter(hidden_messages::Column::MsgId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|h| (h.msg_id, h.blocked))
        .collect();
    // Senders whose accounts were deleted since.
    let senders: HashSet<&str> = msgs.iter().map(|m| m.sender.as_str()).collect();
    let gone: HashSet<String> = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .filter(users::Column::Id.is_in(senders))
        .filter(users::Column::DeletedAt.is_not_null())
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let mut by_msg: HashMap<String, BTreeMap<String, Vec<UserId>>> = HashMap::new();
    let rows = reactions::Entity::find()
        .filter(reactions::Column::MsgId.is_in(ids.iter().copied()))
        .order_by_asc(reactions::Column::CreatedAt)
        .all(db)
        .await?;
    // Reactions of users the viewer blocked are left out, as their messages are.
    let blocked = match rows.is_empty() {
        true => HashSet::new(),
        false => block_side(db, viewer.as_str(), true).await?,
    };
    for r in rows.into_iter().filter(|r| !blocked.contains(&r.user_id)) {
        by_msg
            .entry(r.msg_id)
            .or_default()
            .entry(r.emoji)
            .or_default()
            .push(UserId::from_trusted(r.user_id));
    }
    for m in msgs {
        m.sender_deleted = gone.contains(m.sender.as_str());
        if let Some(&blocked) = hidden.get(m.id.as_str()) {
            hide(m, blocked);
            continue;
        }
        if let Some(r) = by_msg.remove(m.id.as_str()) {
            m.reactions = r
                .into_iter()
                .map(|(emoji, users)| ReactionSummary { emoji, users })
                .collect();
        }
    }
    Ok(())
}
