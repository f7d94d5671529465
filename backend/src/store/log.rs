//! The per-user update log: appending (inside a writer's transaction) and reading pages.

use super::changes::decorate;
use super::{rows, Store};
use crate::entity::{messages, updates, users};
use crate::error::{Error, Result};
use protocol::update::DeleteScope;
use protocol::{ErrorBody, ErrorCode, Message, Update, UpdateBody, UserId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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
    /// For a new message: its conversation and sender (who may be notified by push).
    pub message: Option<(protocol::ConvId, UserId)>,
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
        let message = match &entry.body {
            UpdateBody::Message { msg } => Some((msg.conv.clone(), msg.sender.clone())),
            _ => None,
        };
        Self { json, to, message }
    }

    /// The update as `user` sees it on `in`.
    pub fn for_user(&self, useq: i64) -> String {
        format!("{{\"useq\":{useq},{}", &self.json[1..])
    }
}

/// Appends `entry` to each user's log (see [`append_many`]).
pub async fn append<C: ConnectionTrait>(
    db: &C,
    users_to: &[UserId],
    entry: &Entry,
) -> Result<Vec<Appended>> {
    let mut all = append_many(db, std::iter::once((entry, users_to))).await?;
    Ok(all.pop().unwrap_or_default())
}

/// Appends each entry to its users' logs, in order: one statement moves every user's counter
/// by the number of entries they get, then one inserts the entries, which take consecutive
/// useqs from it. Both keep one text whatever their number of rows (see `rows`). Returns, per
/// entry, where it landed.
pub async fn append_many<'a, C: ConnectionTrait>(
    db: &C,
    entries: impl Iterator<Item = (&'a Entry, &'a [UserId])>,
) -> Result<Vec<Vec<Appended>>> {
    #[derive(Serialize)]
    struct Bump<'a> {
        u: &'a str,
        n: i64,
    }
    /// One row of `updates`.
    #[derive(Serialize)]
    struct Row<'a> {
        u: &'a str,
        q: i64,
        k: &'static str,
        c: Option<&'a str>,
        s: Option<i64>,
        m: Option<&'a str>,
        p: Option<&'a str>,
        t: i64,
    }
    const LOCK: &str = "SELECT users.id FROM users \
        WHERE users.id IN (SELECT j.value->>'u' FROM {rows}) ORDER BY users.id FOR NO KEY UPDATE";
    const BUMP: &str =
        "UPDATE users SET last_useq = users.last_useq + CAST(j.value->>'n' AS BIGINT) \
        FROM {rows} WHERE users.id = j.value->>'u' RETURNING users.id, users.last_useq";
    const INSERT: &str = "INSERT INTO updates \
        (user_id, useq, kind, conv_id, seq, msg_id, payload, created_at) \
        SELECT j.value->>'u', CAST(j.value->>'q' AS BIGINT), j.value->>'k', j.value->>'c', \
        CAST(j.value->>'s' AS BIGINT), j.value->>'m', j.value->>'p', \
        CAST(j.value->>'t' AS BIGINT) FROM {rows}";

    let entries: Vec<(&Entry, Vec<&UserId>, Columns)> = entries
        .map(|(e, to)| {
            let mut to: Vec<&UserId> = to.iter().collect();
            to.sort();
            to.dedup();
            (e, to, columns(e))
        })
        .collect();
    let mut counts: BTreeMap<&UserId, i64> = BTreeMap::new();
    for (_, to, _) in &entries {
        for u in to {
            *counts.entry(u).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Ok(entries.iter().map(|_| Vec::new()).collect());
    }
    // `counts` is a BTreeMap: its keys are in order, the lock order.
    let bumps: Vec<Bump> = counts
        .iter()
        .map(|(u, n)| Bump {
            u: u.as_str(),
            n: *n,
        })
        .collect();
    if super::locks_rows_in_order(db) {
        db.query_all_raw(rows::over(db, LOCK, &bumps)).await?;
    }
    let bumped = db.query_all_raw(rows::over(db, BUMP, &bumps)).await?;
    if bumped.len() != counts.len() {
        return Err(Error::Internal("a recipient user vanished".into()));
    }
    let mut next: HashMap<String, i64> = HashMap::with_capacity(bumped.len());
    for row in bumped {
        let id: String = row.try_get_by_index(0)?;
        let last: i64 = row.try_get_by_index(1)?;
        let n = counts[&UserId::from_trusted(id.clone())];
        next.insert(id, last - n + 1);
    }
    let mut log_rows = Vec::new();
    let mut landed = Vec::with_capacity(entries.len());
    for (entry, to, (kind, conv, seq, msg_id, payload)) in &entries {
        let mut here = Vec::with_capacity(to.len());
        for user in to {
            let slot = next.get_mut(user.as_str()).expect("bumped above");
            let useq = *slot;
            *slot += 1;
            log_rows.push(Row {
                u: user.as_str(),
                q: useq,
                k: kind,
                c: conv.as_deref(),
                s: *seq,
                m: msg_id.as_deref(),
                p: payload.as_deref(),
                t: entry.ts,
            });
            here.push(Appended {
                user: (*user).clone(),
                useq,
            });
        }
        landed.push(here);
    }
    db.execute_raw(rows::over(db, INSERT, &log_rows)).await?;
    Ok(landed)
}

type Columns = (
    &'static str,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// How an entry is stored: messages by reference (so `sync` shows a message as it is now,
/// edited or deleted), every other update as its JSON.
fn columns(entry: &Entry) -> Columns {
    let json = || Some(serde_json::to_string(&entry.body).expect("serialises"));
    let kind = entry.body.kind();
    match &entry.body {
        UpdateBody::Message { msg } => (
            kind,
            Some(msg.conv.to_string()),
            Some(msg.seq),
            Some(msg.id.to_string()),
            None,
        ),
        UpdateBody::Receipt { conv, .. }
        | UpdateBody::Member { conv, .. }
        | UpdateBody::Settings { conv, .. } => (kind, Some(conv.to_string()), None, None, json()),
        UpdateBody::Media { .. } | UpdateBody::Profile { .. } => (kind, None, None, None, json()),
        UpdateBody::Edit { conv, msg, seq, .. }
        | UpdateBody::Delete { conv, msg, seq, .. }
        | UpdateBody::Reaction { conv, msg, seq, .. } => (
            kind,
            Some(conv.to_string()),
            Some(*seq),
            Some(msg.to_string()),
            json(),
        ),
    }
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
        edited_at: row.edited_at,
        deleted: row.deleted_at.map(|_| DeleteScope::Everyone),
        hidden: false,
        sender_deleted: false,
        reactions: Vec::new(),
    })
}

/// A page of the log.
pub struct Page {
    pub updates: Vec<Update>,
    pub more: bool,
    pub head: i64,
}

impl Store {
    /// The user's log head and floor (trimmed up to and including the floor).
    pub async fn log_bounds(&self, user: &UserId) -> Result<(i64, i64)> {
        let row = users::Entity::find_by_id(user.as_str())
            .one(&self.read)
            .await?;
        row.map(|u| (u.last_useq, u.log_floor))
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "unknown user"))
    }

    /// Updates after `after`, oldest first, at most `limit`. The head is read first and the
    /// page stops there, so `more == false` means the device is up to date as of `head`.
    /// Asking for trimmed updates (`after` below the floor) is `cursor_expired`.
    pub async fn read_log(&self, user: &UserId, after: i64, limit: u32) -> Result<Page> {
        if after < 0 {
            return Err(Error::client(ErrorCode::BadRequest, "`after` must be >= 0"));
        }
        let (head, floor) = self.log_bounds(user).await?;
        if after < floor {
            return Err(Error::Client(
                ErrorBody::new(
                    ErrorCode::CursorExpired,
                    format!(
                        "updates up to {floor} were trimmed; reload conversations and history, \
                         then sync after {floor}"
                    ),
                )
                .with_details(serde_json::json!({ "floor": floor })),
            ));
        }
        let rows = updates::Entity::find()
            .filter(updates::Column::UserId.eq(user.as_str()))
            .filter(updates::Column::Useq.gt(after))
            .filter(updates::Column::Useq.lte(head))
            .order_by_asc(updates::Column::Useq)
            .limit(u64::from(limit))
            .all(&self.read)
            .await?;
        let msg_ids: Vec<String> = rows
            .iter()
            .filter(|r| r.kind == "message")
            .filter_map(|r| r.msg_id.clone())
            .collect();
        let mut msgs: HashMap<String, messages::Model> = if msg_ids.is_empty() {
            HashMap::new()
        } else {
            messages::Entity::find()
                .filter(messages::Column::Id.is_in(msg_ids))
                .all(&self.read)
                .await?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect()
        };
        // The page's messages as the user sees them now (edited, deleted, reacted to).
        let mut shown = Vec::new();
        for row in rows.iter().filter(|r| r.kind == "message") {
            let id = row.msg_id.as_deref().unwrap_or_default();
            let m = msgs
                .remove(id)
                .ok_or_else(|| Error::Internal(format!("message {id} missing")))?;
            shown.push(message_from_row(m)?);
        }
        decorate(&self.read, user, &mut shown).await?;
        let mut shown = shown.into_iter();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let body = match (row.kind.as_str(), &row.payload) {
                ("message", _) => UpdateBody::Message {
                    msg: shown.next().expect("one per message row"),
                },
                (_, Some(payload)) => serde_json::from_str(payload)
                    .map_err(|e| Error::Internal(format!("update payload: {e}")))?,
                _ => return Err(Error::Internal("empty update".into())),
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
