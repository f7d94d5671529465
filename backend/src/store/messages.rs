//! `send`: one transaction (shared by a batch of sends, see `send_batch`) takes the next conversation seq, stores the message, moves the
//! sender's own watermarks and appends the message to every member's log.

use super::conversations::{member_ids, membership};
use super::log::{append, message_from_row, Entry, Outgoing};
use super::Store;
use crate::entity::{conversations, members, messages};
use crate::error::{Error, Result};
use crate::util::{new_id, now_ms};
use protocol::ops::{SendReq, SendResult};
use protocol::update::Content;
use protocol::{ConvId, DeviceId, ErrorCode, Message, MsgId, UpdateBody, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

/// One `send` request, validated.
pub struct SendJob {
    pub user: UserId,
    pub device: DeviceId,
    pub req: SendReq,
    pub content: Content,
}

pub enum Sent {
    /// Stored now; deliver `out`.
    New { ack: SendResult, out: Outgoing },
    /// The same (device, cmid) was stored before; this is its original ack.
    Duplicate(SendResult),
}

fn ack_of(m: &Message) -> SendResult {
    SendResult {
        msg: m.id.clone(),
        conv: m.conv.clone(),
        seq: m.seq,
        ts: m.ts,
        cmid: m.cmid.clone(),
    }
}

impl Store {
    async fn find_by_cmid<C: ConnectionTrait>(
        db: &C,
        device: &DeviceId,
        cmid: &str,
    ) -> Result<Option<Message>> {
        let row = messages::Entity::find()
            .filter(messages::Column::DeviceId.eq(device.as_str()))
            .filter(messages::Column::Cmid.eq(cmid))
            .one(db)
            .await?;
        row.map(message_from_row).transpose()
    }

    /// Checks that a referenced message exists and the user may see it (member of its
    /// conversation); replies must stay in the same conversation.
    async fn check_reference<C: ConnectionTrait>(
        db: &C,
        user: &UserId,
        id: &MsgId,
        same_conv: Option<&ConvId>,
    ) -> Result<()> {
        let row = messages::Entity::find_by_id(id.as_str()).one(db).await?;
        let Some(row) = row else {
            return Err(Error::client(
                ErrorCode::NotFound,
                format!("no message {id}"),
            ));
        };
        if same_conv.is_some_and(|c| c.as_str() != row.conv_id) {
            return Err(Error::client(
                ErrorCode::BadRequest,
                "`reply_to` must be in the same conversation",
            ));
        }
        let conv = ConvId::from_trusted(row.conv_id);
        membership(db, &conv, user)
            .await
            .map_err(|_| Error::client(ErrorCode::NotFound, format!("no message {id}")))?;
        Ok(())
    }

    /// Stores a batch of sends in one transaction — one commit (one fsync) for all of them —
    /// while each job still succeeds or fails on its own (a savepoint each). The outer error
    /// means the commit itself failed and nothing of the batch was stored.
    pub async fn send_batch_ref(&self, jobs: &[SendJob]) -> Result<Vec<Result<Sent>>> {
        let txn = self.db.begin().await?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            match Self::send_in(&txn, job).await {
                Ok(sent) => results.push(Ok(sent)),
                // Client errors are found by reads before the job writes anything, so the
                // batch carries on without it.
                Err(e @ Error::Client { .. }) => results.push(Err(e)),
                // Anything else (including a unique violation from a concurrent batch with the
                // same cmid) fails the batch; the batcher retries it and the retry answers the
                // duplicate with its original ack.
                Err(e) => return Err(e),
            }
        }
        txn.commit().await?;
        Ok(results)
    }

    async fn send_in<C: ConnectionTrait>(db: &C, job: &SendJob) -> Result<Sent> {
        let SendJob {
            user,
            device,
            req,
            content,
        } = job;
        if let Some(m) = Self::find_by_cmid(db, device, &req.cmid).await? {
            return Ok(Sent::Duplicate(ack_of(&m)));
        }
        let everyone = member_ids(db, &req.conv).await?;
        if !everyone.contains(user) {
            return Err(Error::client(
                ErrorCode::NotMember,
                "you are not a member of that conversation",
            ));
        }
        if let Some(r) = &req.reply_to {
            Self::check_reference(db, user, r, Some(&req.conv)).await?;
        }
        if let Some(f) = &req.forward_of {
            Self::check_reference(db, user, f, None).await?;
        }
        // The conversation row is the seq counter and the lock that orders senders.
        let bumped = conversations::Entity::update_many()
            .col_expr(
                conversations::Column::LastSeq,
                Expr::col(conversations::Column::LastSeq).add(1),
            )
            .filter(conversations::Column::Id.eq(req.conv.as_str()))
            .exec_with_returning(db)
            .await?;
        let seq = bumped
            .first()
            .map(|c| c.last_seq)
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such conversation"))?;
        let ts = now_ms();
        let msg = Message {
            id: MsgId::from_trusted(new_id('m')),
            conv: req.conv.clone(),
            seq,
            sender: user.clone(),
            device: device.clone(),
            ts,
            cmid: req.cmid.clone(),
            content: content.clone(),
            reply_to: req.reply_to.clone(),
            forward_of: req.forward_of.clone(),
        };
        messages::Entity::insert(messages::ActiveModel {
            id: Set(msg.id.to_string()),
            conv_id: Set(msg.conv.to_string()),
            seq: Set(seq),
            sender_id: Set(user.to_string()),
            device_id: Set(device.to_string()),
            cmid: Set(msg.cmid.clone()),
            kind: Set(msg.content.kind().to_owned()),
            content: Set(serde_json::to_string(&msg.content).expect("content serialises")),
            reply_to: Set(msg.reply_to.as_ref().map(ToString::to_string)),
            forward_of: Set(msg.forward_of.as_ref().map(ToString::to_string)),
            created_at: Set(ts),
        })
        .exec(db)
        .await?;
        // The sender has seen (and so delivered and read) their own message.
        members::Entity::update_many()
            .col_expr(members::Column::ReadSeq, Expr::value(seq))
            .col_expr(members::Column::DeliveredSeq, Expr::value(seq))
            .filter(members::Column::ConvId.eq(req.conv.as_str()))
            .filter(members::Column::UserId.eq(user.as_str()))
            .exec(db)
            .await?;
        let ack = ack_of(&msg);
        let entry = Entry {
            ts,
            body: UpdateBody::Message { msg },
        };
        let to = append(db, &everyone, &entry).await?;
        Ok(Sent::New {
            ack,
            out: Outgoing::new(&entry, to),
        })
    }
}
