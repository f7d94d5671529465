//! The per-user update log: appending (inside a writer's transaction) and reading pages.

use super::Store;
use crate::entity::{messages, updates, users};
use crate::error::{Error, Result};
use protocol::{ErrorCode, Message, Update, UpdateBody, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;

/// One update body to append to several users' logs; only `useq` differs between them.
pub struct Entry {
    pub ts: i64,
    pub body: UpdateBody,
}

/// Where an [`Entry`] landed.
#[derive(Clone, Debug)]
pub struct Appended {
    pub user: UserId,
    pub useq: i64,
}

/// An entry ready to publish: its JSON without `useq`, shared by every recipient.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// `{"ts":…,"type":…,…}`; [`Outgoing::for_user`] splices in the recipient's `useq`.
    pub json: String,
    pub to: Vec<Appended>,
}

impl Outgoing {
    pub fn new(entry: &Entry, to: Vec<Appended>) -> Self {
        #[derive(serde::Serialize)]
        struct NoUseq<'a> {
            ts: i64,
            #[serde(flatten)]
            body: &'a UpdateBody,
        }
        let json = serde_json::to_string(&NoUseq {
            ts: entry.ts,
            body: &entry.body,
        })
        .expect("update serialises");
        Self { json, to }
    }

    /// The update as `user` sees it on `in`.
    pub fn for_user(&self, useq: i64) -> String {
        format!("{{\"useq\":{useq},{}", &self.json[1..])
    }
}

/// Bumps each user's `last_useq` and stores the entry for each.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    users_to: &[UserId],
    entry: &Entry,
) -> Result<Vec<Appended>> {
    let mut sorted: Vec<&UserId> = users_to.iter().collect();
    sorted.sort();
    sorted.dedup();
    let (kind, conv, seq, msg_id, payload) = match &entry.body {
        UpdateBody::Message { msg } => (
            "message",
            Some(msg.conv.to_string()),
            Some(msg.seq),
            Some(msg.id.to_string()),
            None,
        ),
        UpdateBody::Receipt { conv, .. } => (
            "receipt",
            Some(conv.to_string()),
            None,
            None,
            Some(serde_json::to_string(&entry.body).expect("serialises")),
        ),
        UpdateBody::Member { conv, .. } => (
            "member",
            Some(conv.to_string()),
            None,
            None,
            Some(serde_json::to_string(&entry.body).expect("serialises")),
        ),
    };
    // One statement bumps every recipient's counter by one and returns the new heads.
    let bumped = users::Entity::update_many()
        .col_expr(
            users::Column::LastUseq,
            Expr::col(users::Column::LastUseq).add(1),
        )
        .filter(users::Column::Id.is_in(sorted.iter().map(|u| u.as_str())))
        .exec_with_returning(db)
        .await?;
    if bumped.len() != sorted.len() {
        return Err(Error::Internal("a recipient user vanished".into()));
    }
    let mut appended = Vec::with_capacity(sorted.len());
    let mut rows = Vec::with_capacity(sorted.len());
    for user in bumped {
        let useq = user.last_useq;
        rows.push(updates::ActiveModel {
            user_id: Set(user.id.clone()),
            useq: Set(useq),
            kind: Set(kind.to_owned()),
            conv_id: Set(conv.clone()),
            seq: Set(seq),
            msg_id: Set(msg_id.clone()),
            payload: Set(payload.clone()),
            created_at: Set(entry.ts),
        });
        appended.push(Appended {
            user: UserId::from_trusted(user.id),
            useq,
        });
    }
    if !rows.is_empty() {
        updates::Entity::insert_many(rows).exec(db).await?;
    }
    Ok(appended)
}

pub fn message_from_row(row: messages::Model) -> Result<Message> {
    let content = serde_json::from_str(&row.content)
        .map_err(|e| Error::Internal(format!("message {} content: {e}", row.id)))?;
    Ok(Message {
        id: protocol::MsgId::from_trusted(row.id),
        conv: protocol::ConvId::from_trusted(row.conv_id),
        seq: row.seq,
        sender: UserId::from_trusted(row.sender_id),
        device: protocol::DeviceId::from_trusted(row.device_id),
        ts: row.created_at,
        cmid: row.cmid,
        content,
        reply_to: row.reply_to.map(protocol::MsgId::from_trusted),
        forward_of: row.forward_of.map(protocol::MsgId::from_trusted),
    })
}

/// A page of the log.
pub struct Page {
    pub updates: Vec<Update>,
    pub more: bool,
    pub head: i64,
}

impl Store {
    pub async fn head(&self, user: &UserId) -> Result<i64> {
        let row = users::Entity::find_by_id(user.as_str())
            .one(&self.db)
            .await?;
        row.map(|u| u.last_useq)
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "unknown user"))
    }

    /// Updates after `after`, oldest first, at most `limit`. The head is read first and the
    /// page stops there, so `more == false` means the device is up to date as of `head`.
    pub async fn read_log(&self, user: &UserId, after: i64, limit: u32) -> Result<Page> {
        if after < 0 {
            return Err(Error::client(ErrorCode::BadRequest, "`after` must be >= 0"));
        }
        let head = self.head(user).await?;
        let rows = updates::Entity::find()
            .filter(updates::Column::UserId.eq(user.as_str()))
            .filter(updates::Column::Useq.gt(after))
            .filter(updates::Column::Useq.lte(head))
            .order_by_asc(updates::Column::Useq)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?;
        let msg_ids: Vec<String> = rows.iter().filter_map(|r| r.msg_id.clone()).collect();
        let mut msgs: HashMap<String, messages::Model> = if msg_ids.is_empty() {
            HashMap::new()
        } else {
            messages::Entity::find()
                .filter(messages::Column::Id.is_in(msg_ids))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect()
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let body = match (&row.msg_id, &row.payload) {
                (Some(id), _) => {
                    let m = msgs
                        .remove(id)
                        .ok_or_else(|| Error::Internal(format!("message {id} missing")))?;
                    UpdateBody::Message {
                        msg: message_from_row(m)?,
                    }
                }
                (None, Some(payload)) => serde_json::from_str(payload)
                    .map_err(|e| Error::Internal(format!("update payload: {e}")))?,
                (None, None) => return Err(Error::Internal("empty update".into())),
            };
            out.push(Update {
                useq: row.useq,
                ts: row.created_at,
                body,
            });
        }
        let last = out.last().map(|u| u.useq).unwrap_or(Ord::min(after, head));
        Ok(Page {
            more: last < head,
            updates: out,
            head,
        })
    }
}
