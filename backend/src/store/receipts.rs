//! `ack` and `read`: device cursors and the per-member watermarks they move.
//!
//! A device's `ack` of useq N says it holds every update up to N. The messages among the
//! newly acknowledged updates move the user's `delivered_seq` in their conversations (✓✓ for
//! the senders). `read` moves `read_seq` (and `delivered_seq` with it). A watermark that moved
//! becomes one `receipt` update for the other members — and, for reads, for the reader's own
//! devices — however many messages it covers.

use super::conversations::{member_ids, members_of, membership, settings_of};
use super::log::{append, append_many, Entry, Outgoing};
use super::{rows, Store};
use crate::entity::{conversations, members};
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::{ConvId, DeviceId, ErrorCode, UpdateBody, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One device's `ack` of its log up to `useq` (see [`Store::ack_set`]).
pub struct Ack {
    pub user: UserId,
    pub device: DeviceId,
    pub useq: i64,
}

/// An ack's answer: the device's cursor, and the receipts to deliver.
pub type Acked = (i64, Vec<Outgoing>);

impl Store {
    /// Moves the device cursor to `useq` (never backwards), in a transaction of its own.
    pub async fn ack(&self, user: &UserId, device: &DeviceId, useq: i64) -> Result<Acked> {
        let ack = Ack {
            user: user.clone(),
            device: device.clone(),
            useq,
        };
        let txn = self.db.begin().await?;
        let mut answers = Self::ack_set(&txn, &[&ack]).await?;
        txn.commit().await?;
        answers.pop().expect("one answer per ack")
    }

    /// Several devices' acks inside the caller's transaction (a group commit), as a handful
    /// of set statements whatever their number; each gets its own answer, and a client error
    /// is found before anything is written. A device named twice acknowledges in turn.
    pub async fn ack_set<C: ConnectionTrait>(db: &C, acks: &[&Ack]) -> Result<Vec<Result<Acked>>> {
        let mut answers = Vec::with_capacity(acks.len());
        let mut rest = acks;
        while !rest.is_empty() {
            let mut devices = HashSet::new();
            let round = rest
                .iter()
                .take_while(|a| devices.insert(a.device.as_str()))
                .count();
            answers.extend(Self::ack_round(db, &rest[..round]).await?);
            rest = &rest[round..];
        }
        Ok(answers)
    }

    /// Acks of distinct devices.
    async fn ack_round<C: ConnectionTrait>(db: &C, acks: &[&Ack]) -> Result<Vec<Result<Acked>>> {
        #[derive(Serialize)]
        struct Key<'a> {
            d: &'a str,
            u: &'a str,
        }
        /// A cursor that moves from `from` to `to`.
        #[derive(Serialize)]
        struct Move<'a> {
            d: &'a str,
            u: &'a str,
            from: i64,
            to: i64,
        }
        #[derive(Serialize)]
        struct Delivered<'a> {
            c: &'a str,
            u: &'a str,
            seq: i64,
        }
        // Where each log ends and each device's cursor is (NULL: no such user or device).
        const STATE: &str = "SELECT j.value->>'d', users.last_useq, devices.cursor FROM {rows} \
            LEFT JOIN users ON users.id = j.value->>'u' \
            LEFT JOIN devices ON devices.id = j.value->>'d' AND devices.user_id = j.value->>'u'";
        const CURSORS: &str = "UPDATE devices SET cursor = CAST(j.value->>'to' AS BIGINT) \
            FROM {rows} WHERE devices.id = j.value->>'d' \
            AND devices.cursor < CAST(j.value->>'to' AS BIGINT)";
        // The highest message seq per conversation among each device's newly acknowledged
        // updates. PostgreSQL, told nothing of how few rows there are or how narrow each range
        // is, would hash a scan of the whole log; LATERAL has it look each range up in the
        // index (SQLite does so for the plain join, and knows no LATERAL).
        const NEWLY: &str = "SELECT j.value->>'d', updates.conv_id, MAX(updates.seq) FROM {rows} \
            JOIN updates ON updates.user_id = j.value->>'u' \
            AND updates.useq > CAST(j.value->>'from' AS BIGINT) \
            AND updates.useq <= CAST(j.value->>'to' AS BIGINT) \
            WHERE updates.kind = 'message' GROUP BY j.value->>'d', updates.conv_id";
        const NEWLY_LATERAL: &str = "SELECT j.value->>'d', n.conv_id, n.seq FROM {rows} \
            CROSS JOIN LATERAL (SELECT updates.conv_id, MAX(updates.seq) AS seq FROM updates \
            WHERE updates.user_id = j.value->>'u' \
            AND updates.useq > CAST(j.value->>'from' AS BIGINT) \
            AND updates.useq <= CAST(j.value->>'to' AS BIGINT) \
            AND updates.kind = 'message' GROUP BY updates.conv_id) AS n";
        const MEMBERS: &str = "SELECT members.conv_id, members.user_id, members.delivered_seq, \
            members.read_seq FROM {rows} \
            JOIN members ON members.conv_id = j.value->>'c' AND members.user_id = j.value->>'u' \
            ORDER BY members.conv_id, members.user_id";
        const DELIVER: &str = "UPDATE members SET delivered_seq = CAST(j.value->>'seq' AS BIGINT) \
            FROM {rows} WHERE members.conv_id = j.value->>'c' AND members.user_id = j.value->>'u'";

        let keys: Vec<Key> = acks
            .iter()
            .map(|a| Key {
                d: a.device.as_str(),
                u: a.user.as_str(),
            })
            .collect();
        let mut state: HashMap<String, (Option<i64>, Option<i64>)> = HashMap::new();
        for row in db.query_all_raw(rows::over(db, STATE, &keys)).await? {
            state.insert(
                row.try_get_by_index(0)?,
                (row.try_get_by_index(1)?, row.try_get_by_index(2)?),
            );
        }
        let mut answers: Vec<Result<Acked>> = Vec::with_capacity(acks.len());
        let mut moves: Vec<Move> = Vec::new();
        for a in acks {
            let (head, cursor) = state
                .get(a.device.as_str())
                .copied()
                .unwrap_or((None, None));
            let answer = match (head, cursor) {
                _ if a.useq < 0 => Err(Error::client(ErrorCode::BadRequest, "`useq` must be >= 0")),
                (None, _) => Err(Error::client(ErrorCode::NotFound, "unknown user")),
                (Some(head), _) if a.useq > head => Err(Error::client(
                    ErrorCode::AckAhead,
                    format!("useq {} is past the head of your log ({head})", a.useq),
                )),
                (_, None) => Err(Error::client(ErrorCode::NotFound, "unknown device")),
                (_, Some(cursor)) if a.useq <= cursor => Ok((cursor, Vec::new())),
                (_, Some(cursor)) => {
                    moves.push(Move {
                        d: a.device.as_str(),
                        u: a.user.as_str(),
                        from: cursor,
                        to: a.useq,
                    });
                    Ok((a.useq, Vec::new()))
                }
            };
            answers.push(answer);
        }
        if moves.is_empty() {
            return Ok(answers);
        }
        // The lock order every writer keeps (see `store`): devices, then member rows in
        // conversation order, then the users' logs.
        moves.sort_unstable_by(|a, b| a.d.cmp(b.d));
        db.execute_raw(rows::over(db, CURSORS, &moves)).await?;

        // (conversation, user) → the highest seq now delivered there, and by which device.
        let mut delivered: BTreeMap<(String, String), (i64, String)> = BTreeMap::new();
        let user_of: HashMap<&str, &str> = moves.iter().map(|m| (m.d, m.u)).collect();
        let newly = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => NEWLY_LATERAL,
            _ => NEWLY,
        };
        for row in db.query_all_raw(rows::over(db, newly, &moves)).await? {
            let device: String = row.try_get_by_index(0)?;
            let conv: Option<String> = row.try_get_by_index(1)?;
            let seq: Option<i64> = row.try_get_by_index(2)?;
            let (Some(conv), Some(seq)) = (conv, seq) else {
                continue;
            };
            let user = user_of.get(device.as_str()).copied().unwrap_or_default();
            let top = delivered
                .entry((conv, user.to_owned()))
                .or_insert((seq, device.clone()));
            if seq > top.0 {
                *top = (seq, device);
            }
        }
        if delivered.is_empty() {
            return Ok(answers);
        }
        let wanted: Vec<Delivered> = delivered
            .iter()
            .map(|((c, u), (seq, _))| Delivered { c, u, seq: *seq })
            .collect();
        let members = format!("{MEMBERS}{}", rows::lock_clause(db, "members"));
        // The watermarks that move (a member may have left since: nothing moves there).
        let mut moved: Vec<Delivered> = Vec::new();
        let mut receipts: Vec<(Entry, String)> = Vec::new();
        for row in db.query_all_raw(rows::over(db, &members, &wanted)).await? {
            let conv: String = row.try_get_by_index(0)?;
            let user: String = row.try_get_by_index(1)?;
            let was: i64 = row.try_get_by_index(2)?;
            let read: i64 = row.try_get_by_index(3)?;
            let Some(((c, u), (seq, device))) = delivered.get_key_value(&(conv, user)) else {
                continue;
            };
            let now = was.max(*seq).max(read);
            if now == was {
                continue;
            }
            let entry = Entry {
                ts: now_ms(),
                body: UpdateBody::Receipt {
                    conv: ConvId::from_trusted(c.clone()),
                    user: UserId::from_trusted(u.clone()),
                    delivered_seq: now,
                    read_seq: read,
                },
            };
            receipts.push((entry, device.clone()));
            moved.push(Delivered { c, u, seq: now });
        }
        if moved.is_empty() {
            return Ok(answers);
        }
        db.execute_raw(rows::over(db, DELIVER, &moved)).await?;

        // Each receipt goes to the conversation's other members.
        let members_of = members_of(db, moved.iter().map(|m| m.c)).await?;
        let to: Vec<Vec<UserId>> = moved
            .iter()
            .map(|m| {
                members_of
                    .get(m.c)
                    .map(|ms| ms.iter().filter(|u| u.as_str() != m.u).cloned().collect())
                    .unwrap_or_default()
            })
            .collect();
        let appended = append_many(
            db,
            receipts
                .iter()
                .zip(&to)
                .map(|((entry, _), to)| (entry, to.as_slice())),
        )
        .await?;
        let index: HashMap<&str, usize> = acks
            .iter()
            .enumerate()
            .map(|(i, a)| (a.device.as_str(), i))
            .collect();
        for ((entry, device), appended) in receipts.iter().zip(appended) {
            if let Some(Ok((_, out))) = index.get(device.as_str()).map(|&i| &mut answers[i]) {
                out.push(Outgoing::new(entry, appended));
            }
        }
        Ok(answers)
    }

    /// The user has read `conv` up to `seq` (clamped to the newest message), in a transaction
    /// of its own.
    pub async fn read(
        &self,
        user: &UserId,
        conv: &ConvId,
        seq: i64,
    ) -> Result<(i64, Option<Outgoing>)> {
        let txn = self.db.begin().await?;
        let read = Self::read_in(&txn, user, conv, seq).await?;
        txn.commit().await?;
        Ok(read)
    }

    /// [`Store::read`] inside the caller's transaction (a group commit). A client error is
    /// found before anything is written.
    pub async fn read_in<C: ConnectionTrait>(
        txn: &C,
        user: &UserId,
        conv: &ConvId,
        seq: i64,
    ) -> Result<(i64, Option<Outgoing>)> {
        if seq < 0 {
            return Err(Error::client(ErrorCode::BadRequest, "`seq` must be >= 0"));
        }
        let me = membership(txn, conv, user).await?;
        let last = conversations::Entity::find_by_id(conv.as_str())
            .one(txn)
            .await?
            .map(|c| c.last_seq)
            .unwrap_or(0);
        let seq = seq.min(last);
        // Reading clears a conversation marked unread: the reader's devices hear it from the
        // receipt, or, when the watermark does not move, from a `settings` update.
        if me.marked_unread {
            members::Entity::update_many()
                .col_expr(members::Column::MarkedUnread, Expr::value(false))
                .filter(members::Column::ConvId.eq(conv.as_str()))
                .filter(members::Column::UserId.eq(user.as_str()))
                .exec(txn)
                .await?;
        }
        if seq <= me.read_seq {
            if !me.marked_unread {
                return Ok((me.read_seq, None));
            }
            let mut me = me;
            me.marked_unread = false;
            let entry = Entry {
                ts: now_ms(),
                body: UpdateBody::Settings {
                    conv: conv.clone(),
                    settings: settings_of(&me, last, now_ms()),
                },
            };
            let landed = append(txn, std::slice::from_ref(user), &entry).await?;
            return Ok((me.read_seq, Some(Outgoing::new(&entry, landed))));
        }
        let out = match Self::move_watermarks(txn, conv, user, seq, Some(seq)).await? {
            Some((entry, to)) => Some(Outgoing::new(&entry, append(txn, &to, &entry).await?)),
            None => None,
        };
        Ok((seq, out))
    }

    /// Raises the member's `delivered_seq` to `delivered` (and `read_seq` to `read`, which
    /// implies delivery). If anything moved, returns the receipt and whose logs get it: the
    /// other members' (and the reader's own for reads, so their other devices sync). The
    /// caller appends it, after every member row it moves.
    async fn move_watermarks<C: ConnectionTrait>(
        db: &C,
        conv: &ConvId,
        user: &UserId,
        delivered: i64,
        read: Option<i64>,
    ) -> Result<Option<(Entry, Vec<UserId>)>> {
        let Some(me) = members::Entity::find_by_id((conv.to_string(), user.to_string()))
            .one(db)
            .await?
        else {
            // Left the conversation since: nothing to acknowledge there.
            return Ok(None);
        };
        let new_delivered = me.delivered_seq.max(delivered);
        let new_read = me.read_seq.max(read.unwrap_or(0));
        let new_delivered = new_delivered.max(new_read);
        if new_delivered == me.delivered_seq && new_read == me.read_seq {
            return Ok(None);
        }
        members::Entity::update_many()
            .col_expr(members::Column::DeliveredSeq, Expr::value(new_delivered))
            .col_expr(members::Column::ReadSeq, Expr::value(new_read))
            .filter(members::Column::ConvId.eq(conv.as_str()))
            .filter(members::Column::UserId.eq(user.as_str()))
            .exec(db)
            .await?;
        let read_moved = new_read != me.read_seq;
        let to: Vec<UserId> = member_ids(db, conv)
            .await?
            .into_iter()
            .filter(|u| read_moved || u != user)
            .collect();
        let entry = Entry {
            ts: now_ms(),
            body: UpdateBody::Receipt {
                conv: conv.clone(),
                user: user.clone(),
                delivered_seq: new_delivered,
                read_seq: new_read,
            },
        };
        Ok(Some((entry, to)))
    }
}
