//! `ack` and `read`: device cursors and the per-member watermarks they move.
//!
//! A device's `ack` of useq N says it holds every update up to N. The messages among the
//! newly acknowledged updates move the user's `delivered_seq` in their conversations (✓✓ for
//! the senders). `read` moves `read_seq` (and `delivered_seq` with it). A watermark that moved
//! becomes one `receipt` update for the other members — and, for reads, for the reader's own
//! devices — however many messages it covers.

use super::conversations::{member_ids, membership};
use super::log::{append, append_many, Entry, Outgoing};
use super::Store;
use crate::entity::{conversations, devices, members, updates, users};
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::{ConvId, DeviceId, ErrorCode, UpdateBody, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

impl Store {
    /// Moves the device cursor to `useq` (never backwards), in a transaction of its own.
    /// Returns the cursor and the receipts to deliver.
    pub async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        useq: i64,
    ) -> Result<(i64, Vec<Outgoing>)> {
        let txn = self.db.begin().await?;
        let acked = Self::ack_in(&txn, user, device, useq).await?;
        txn.commit().await?;
        Ok(acked)
    }

    /// [`Store::ack`] inside the caller's transaction (a group commit). A client error is
    /// found before anything is written.
    pub async fn ack_in<C: ConnectionTrait>(
        txn: &C,
        user: &UserId,
        device: &DeviceId,
        useq: i64,
    ) -> Result<(i64, Vec<Outgoing>)> {
        if useq < 0 {
            return Err(Error::client(ErrorCode::BadRequest, "`useq` must be >= 0"));
        }
        let head = users::Entity::find_by_id(user.as_str())
            .one(txn)
            .await?
            .map(|u| u.last_useq)
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "unknown user"))?;
        if useq > head {
            return Err(Error::client(
                ErrorCode::AckAhead,
                format!("useq {useq} is past the head of your log ({head})"),
            ));
        }
        let dev = devices::Entity::find_by_id(device.as_str())
            .one(txn)
            .await?
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "unknown device"))?;
        if useq <= dev.cursor {
            return Ok((dev.cursor, vec![]));
        }
        devices::Entity::update_many()
            .col_expr(devices::Column::Cursor, Expr::value(useq))
            .filter(devices::Column::Id.eq(device.as_str()))
            .filter(devices::Column::Cursor.lt(useq))
            .exec(txn)
            .await?;
        // Highest message seq per conversation among the newly acknowledged updates.
        let delivered: Vec<(Option<String>, Option<i64>)> = updates::Entity::find()
            .select_only()
            .column(updates::Column::ConvId)
            .column_as(updates::Column::Seq.max(), "seq")
            .filter(updates::Column::UserId.eq(user.as_str()))
            .filter(updates::Column::Useq.gt(dev.cursor))
            .filter(updates::Column::Useq.lte(useq))
            .filter(updates::Column::Kind.eq("message"))
            .group_by(updates::Column::ConvId)
            .into_tuple()
            .all(txn)
            .await?;
        // Every member row first (in conversation order), then the users' logs in one go: the
        // lock order every writer keeps (see `store`).
        let mut delivered: Vec<(String, i64)> = delivered
            .into_iter()
            .filter_map(|(conv, seq)| Some((conv?, seq?)))
            .collect();
        delivered.sort_unstable();
        let mut receipts = Vec::new();
        for (conv, seq) in delivered {
            let conv = ConvId::from_trusted(conv);
            if let Some(r) = Self::move_watermarks(txn, &conv, user, seq, None).await? {
                receipts.push(r);
            }
        }
        let appended = append_many(txn, receipts.iter().map(|(e, to)| (e, to.as_slice()))).await?;
        let out = receipts
            .iter()
            .zip(appended)
            .map(|((entry, _), appended)| Outgoing::new(entry, appended))
            .collect();
        Ok((useq, out))
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
        if seq <= me.read_seq {
            return Ok((me.read_seq, None));
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
