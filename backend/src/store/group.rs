//! Running a group: its title and picture, its members' roles, and the `system` lines that
//! record every such change (and every membership change) in the conversation itself, each
//! with its own seq, in history and on `in`, so every member reads what happened and by whom.

use super::conversations::{member_ids, membership};
use super::log::{append, Entry, Outgoing};
use super::messages::{bump_seqs, insert_messages};
use super::profiles::{avatar_image, avatar_key};
use super::{locks_rows_in_order, Store};
use crate::entity::{conversations, members};
use crate::error::{Error, Result};
use crate::util::{new_id, now_ms};
use protocol::http::{Conversation, ConversationChange, Role};
use protocol::update::{Content, MemberAction, SystemEvent};
use protocol::{ConvId, DeviceId, ErrorCode, Message, MsgId, UpdateBody, UserId};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use std::collections::BTreeMap;

/// Longest group title, in characters.
pub const MAX_TITLE: usize = 256;

/// The device system lines name as theirs.
const SYSTEM_DEVICE: &str = "system";

/// A system line's content.
pub(super) fn line(event: SystemEvent, users: Vec<UserId>) -> Content {
    Content::System {
        event,
        users,
        title: None,
        role: None,
    }
}

/// Writes a system line into `conv`, made by `by`, inside the caller's transaction: it takes
/// the conversation's next seq and reaches `to`'s logs as a message. Nobody is pushed a
/// notice for it, and it does not count as unread.
pub(super) async fn system_line<C: ConnectionTrait>(
    db: &C,
    conv: &ConvId,
    by: &UserId,
    content: Content,
    to: &[UserId],
) -> Result<(Message, Outgoing)> {
    let ts = now_ms();
    let seq = bump_seqs(db, &BTreeMap::from([(conv.as_str(), 1)]), ts).await?[conv.as_str()];
    let id = new_id('m');
    let msg = Message {
        id: MsgId::from_trusted(id.clone()),
        conv: conv.clone(),
        seq,
        sender: by.clone(),
        device: DeviceId::from_trusted(SYSTEM_DEVICE.into()),
        ts,
        cmid: id,
        content,
        reply_to: None,
        forward_of: None,
        edited_at: None,
        deleted: None,
        hidden: false,
        sender_deleted: false,
        reactions: Vec::new(),
    };
    insert_messages(db, std::iter::once(&msg)).await?;
    // Whoever made the change has seen it: if they were caught up, they stay so (else their
    // next message would report it read as if it were someone else's).
    members::Entity::update_many()
        .col_expr(members::Column::ReadSeq, Expr::value(seq))
        .col_expr(members::Column::DeliveredSeq, Expr::value(seq))
        .filter(members::Column::ConvId.eq(conv.as_str()))
        .filter(members::Column::UserId.eq(by.as_str()))
        .filter(members::Column::ReadSeq.eq(seq - 1))
        .filter(members::Column::DeliveredSeq.lte(seq))
        .exec(db)
        .await?;
    let entry = Entry {
        ts,
        body: UpdateBody::Message { msg: msg.clone() },
    };
    let mut out = Outgoing::new(&entry, append(db, to, &entry).await?);
    out.message = None;
    Ok((msg, out))
}

/// Takes `conv`'s row first (PostgreSQL), as every writer does before members' rows: changes
/// to one group then take turns, and cannot deadlock with sends.
pub(super) async fn lock_conversation<C: ConnectionTrait>(
    db: &C,
    conv: &ConvId,
) -> Result<conversations::Model> {
    let mut q = conversations::Entity::find_by_id(conv.as_str());
    if locks_rows_in_order(db) {
        q = q.lock(LockType::NoKeyUpdate);
    }
    q.one(db)
        .await?
        .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such conversation"))
}

/// `conv` (locked) if it is a group `user` is an admin of: `not_member`, `bad_request` for a
/// direct conversation, `forbidden` for a member who is not an admin.
pub(super) async fn admin_of_group<C: ConnectionTrait>(
    db: &C,
    conv: &ConvId,
    user: &UserId,
) -> Result<conversations::Model> {
    let row = lock_conversation(db, conv).await?;
    let me = membership(db, conv, user).await?;
    if row.kind != "group" {
        return Err(Error::client(
            ErrorCode::BadRequest,
            "direct conversations have fixed members and no settings of their own",
        ));
    }
    if me.role != "admin" {
        return Err(Error::client(
            ErrorCode::Forbidden,
            "only group admins can change the group or its members",
        ));
    }
    Ok(row)
}

/// Where a group's picture is served: a new address for every new picture.
pub(super) fn group_avatar_url(c: &conversations::Model) -> Option<String> {
    match (&c.avatar_file, c.avatar_at) {
        (Some(_), Some(at)) => Some(format!("/v1/conversations/{}/avatar?v={at}", c.id)),
        _ => None,
    }
}

/// A title as stored: trimmed, 1..=[`MAX_TITLE`] characters, no control characters.
pub(super) fn title(raw: &str) -> Result<String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > MAX_TITLE || t.chars().any(char::is_control) {
        return Err(Error::client(
            ErrorCode::BadRequest,
            format!("a title is 1–{MAX_TITLE} characters, without control characters"),
        ));
    }
    Ok(t.to_owned())
}

impl Store {
    /// Renames a group and/or sets its picture (admins). Each change is a system line.
    pub async fn change_group(
        &self,
        conv: &ConvId,
        by: &UserId,
        change: ConversationChange,
    ) -> Result<(Conversation, Vec<Outgoing>)> {
        let new_title = match &change.title {
            Some(Some(raw)) => Some(Some(title(raw)?)),
            Some(None) => Some(None),
            None => None,
        };
        let txn = self.db.begin().await?;
        let row = admin_of_group(&txn, conv, by).await?;
        let everyone = member_ids(&txn, conv).await?;
        let mut outs = Vec::new();
        if let Some(t) = new_title.filter(|t| *t != row.title) {
            conversations::Entity::update_many()
                .col_expr(conversations::Column::Title, Expr::value(t.clone()))
                .filter(conversations::Column::Id.eq(conv.as_str()))
                .exec(&txn)
                .await?;
            let content = Content::System {
                event: SystemEvent::TitleChanged,
                users: Vec::new(),
                title: t,
                role: None,
            };
            outs.push(system_line(&txn, conv, by, content, &everyone).await?.1);
        }
        let avatar = match &change.avatar {
            Some(Some(file)) if row.avatar_file.as_deref() != Some(file.as_str()) => {
                let f = avatar_image(&txn, by, file).await?;
                // Strictly newer, so that the address changes even within a millisecond.
                Some((
                    Some(f.id),
                    Some(now_ms().max(row.avatar_at.unwrap_or(0) + 1)),
                ))
            }
            Some(None) if row.avatar_file.is_some() => Some((None, None)),
            _ => None,
        };
        if let Some((file, at)) = avatar {
            conversations::Entity::update_many()
                .col_expr(conversations::Column::AvatarFile, Expr::value(file))
                .col_expr(conversations::Column::AvatarAt, Expr::value(at))
                .filter(conversations::Column::Id.eq(conv.as_str()))
                .exec(&txn)
                .await?;
            let content = line(SystemEvent::AvatarChanged, Vec::new());
            outs.push(system_line(&txn, conv, by, content, &everyone).await?.1);
        }
        txn.commit().await?;
        if !outs.is_empty() {
            self.shared.conversation_changed(conv).await;
        }
        Ok((self.conversation(conv, by).await?, outs))
    }

    /// Makes a member an admin, or an admin a member (admins). A group keeps at least one
    /// admin: its only admin cannot step down until someone else is one.
    pub async fn set_role(
        &self,
        conv: &ConvId,
        by: &UserId,
        who: &UserId,
        role: Role,
    ) -> Result<(Conversation, Vec<Outgoing>)> {
        let txn = self.db.begin().await?;
        admin_of_group(&txn, conv, by).await?;
        let target = membership(&txn, conv, who)
            .await
            .map_err(|_| Error::client(ErrorCode::NotFound, "that user is not a member"))?;
        let mut outs = Vec::new();
        if target.role != role.as_str() {
            if role == Role::Member {
                let admins = members::Entity::find()
                    .filter(members::Column::ConvId.eq(conv.as_str()))
                    .filter(members::Column::Role.eq("admin"))
                    .count(&txn)
                    .await?;
                if admins <= 1 {
                    return Err(Error::client(
                        ErrorCode::BadRequest,
                        "a group keeps at least one admin: make someone else admin first",
                    ));
                }
            }
            members::Entity::update_many()
                .col_expr(members::Column::Role, Expr::value(role.as_str()))
                .filter(members::Column::ConvId.eq(conv.as_str()))
                .filter(members::Column::UserId.eq(who.as_str()))
                .exec(&txn)
                .await?;
            let everyone = member_ids(&txn, conv).await?;
            let entry = Entry {
                ts: now_ms(),
                body: UpdateBody::Member {
                    conv: conv.clone(),
                    action: match role {
                        Role::Admin => MemberAction::Promoted,
                        Role::Member => MemberAction::Demoted,
                    },
                    users: vec![who.clone()],
                    by: by.clone(),
                },
            };
            outs.push(Outgoing::new(
                &entry,
                append(&txn, &everyone, &entry).await?,
            ));
            let content = role_line(who, role);
            outs.push(system_line(&txn, conv, by, content, &everyone).await?.1);
        }
        txn.commit().await?;
        if !outs.is_empty() {
            self.shared.conversation_changed(conv).await;
        }
        Ok((self.conversation(conv, by).await?, outs))
    }

    /// The object key of `conv`'s picture, if `viewer` is a member and there is one.
    pub async fn group_avatar_of(&self, viewer: &UserId, conv: &ConvId) -> Result<Option<String>> {
        if membership(&self.read, conv, viewer).await.is_err() {
            return Ok(None);
        }
        let file = conversations::Entity::find_by_id(conv.as_str())
            .one(&self.read)
            .await?
            .and_then(|c| c.avatar_file);
        match file {
            Some(file) => avatar_key(&self.read, &file).await,
            None => Ok(None),
        }
    }
}

/// The system line of `who` now having `role`.
pub(super) fn role_line(who: &UserId, role: Role) -> Content {
    Content::System {
        event: SystemEvent::RoleChanged,
        users: vec![who.clone()],
        title: None,
        role: Some(role.as_str().to_owned()),
    }
}
