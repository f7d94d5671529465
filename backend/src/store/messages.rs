//! `send`: one transaction (shared by a batch of sends, see `send_batch`) takes the next conversation seq, stores the message, moves the
//! sender's own watermarks and appends the message to every member's log.

use super::conversations::membership;
use super::log::{append_many, message_from_row, Entry, Outgoing};
use super::{locks_rows_in_order, Store};
use crate::entity::{blobs, conversations, files, members, message_files, messages};
use crate::error::{Error, Result};
use crate::util::{new_id, now_ms};
use protocol::ops::{SendReq, SendResult};
use protocol::update::Content;
use protocol::{ConvId, DeviceId, ErrorCode, Message, MsgId, UpdateBody, UserId};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One `send` request, validated.
pub struct SendJob {
    pub user: UserId,
    pub device: DeviceId,
    pub req: SendReq,
    pub content: Content,
}

pub enum Sent {
    /// Stored now; deliver `out`, then `also` (a receipt when sending moved the sender's
    /// read watermark past other members' messages).
    New {
        ack: SendResult,
        out: Outgoing,
        also: Vec<Outgoing>,
    },
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
        if same_conv.is_none() && row.deleted_at.is_some() {
            return Err(Error::client(
                ErrorCode::NotFound,
                format!("message {id} was deleted"),
            ));
        }
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

    /// A media message's content with each attachment checked — the file exists, the sender
    /// uploaded it or can see it in one of their conversations (a forward), and its class
    /// fits the kind — and described (type, size, name).
    async fn attach<C: ConnectionTrait>(
        db: &C,
        user: &UserId,
        content: &Content,
        files_by_id: &HashMap<String, files::Model>,
        blobs_by_sha: &HashMap<String, blobs::Model>,
    ) -> Result<Content> {
        let mut content = content.clone();
        let class = content.required_class();
        let kind = content.kind();
        for a in content.attachments_mut() {
            let not_found = || Error::client(ErrorCode::NotFound, format!("no file {}", a.file));
            let f = files_by_id.get(a.file.as_str()).ok_or_else(not_found)?;
            if f.owner_id != user.as_str() && !super::media::shared_with(db, user, &f.id).await? {
                return Err(not_found());
            }
            if class.is_some_and(|c| c != f.class) {
                return Err(Error::client(
                    ErrorCode::InvalidMessage,
                    format!(
                        "a {kind} message cannot carry a {} file ({})",
                        f.class, f.mime
                    ),
                ));
            }
            a.mime = f.mime.clone();
            a.size = f.size as u64;
            a.name = f.name.clone();
            if let Some(b) = blobs_by_sha.get(&f.sha256) {
                a.status = Some(b.status.clone());
                a.width = b.width.map(|w| w as u32);
                a.height = b.height.map(|h| h as u32);
                a.duration_ms = b.duration_ms;
            }
        }
        Ok(content)
    }

    /// Stores a batch of sends in one transaction — one commit (one fsync) for all of them —
    /// while each job still succeeds or fails on its own (a savepoint each). The outer error
    /// means the commit itself failed and nothing of the batch was stored.
    pub async fn send_batch_ref(&self, jobs: &[SendJob]) -> Result<Vec<Result<Sent>>> {
        let txn = self.db.begin().await?;
        let results = Self::send_set(&txn, jobs).await?;
        txn.commit().await?;
        let mut convs: Vec<&ConvId> = results
            .iter()
            .filter_map(|r| match r {
                Ok(Sent::New { ack, .. }) => Some(&ack.conv),
                _ => None,
            })
            .collect();
        convs.sort_unstable();
        convs.dedup();
        for conv in convs {
            self.shared.conversation_changed(conv).await;
        }
        Ok(results)
    }

    /// The batch as a handful of set statements, whatever its size: look up duplicates and
    /// members once, bump each conversation's seq once by its count, insert all messages, move
    /// the senders' watermarks, bump each recipient's useq once by its count, insert all log
    /// entries. Client errors are found by the reads, before anything is written.
    async fn send_set<C: ConnectionTrait>(db: &C, jobs: &[SendJob]) -> Result<Vec<Result<Sent>>> {
        // Already stored (device, cmid) pairs.
        let mut stored: HashMap<(String, String), SendResult> = HashMap::new();
        let mut any = Condition::any();
        for j in jobs {
            any = any.add(
                Condition::all()
                    .add(messages::Column::DeviceId.eq(j.device.as_str()))
                    .add(messages::Column::Cmid.eq(j.req.cmid.as_str())),
            );
        }
        for m in messages::Entity::find().filter(any).all(db).await? {
            let m = message_from_row(m)?;
            stored.insert((m.device.to_string(), m.cmid.clone()), ack_of(&m));
        }
        // Members of every conversation in the batch, sorted by user id.
        let convs: BTreeSet<&str> = jobs.iter().map(|j| j.req.conv.as_str()).collect();
        let mut members_of: HashMap<String, Vec<UserId>> = HashMap::new();
        let rows = members::Entity::find()
            .filter(members::Column::ConvId.is_in(convs.iter().copied()))
            .order_by_asc(members::Column::UserId)
            .all(db)
            .await?;
        for m in rows {
            members_of
                .entry(m.conv_id)
                .or_default()
                .push(UserId::from_trusted(m.user_id));
        }

        // Files the batch's media messages carry.
        let file_ids: BTreeSet<&str> = jobs
            .iter()
            .flat_map(|j| j.content.attachments().iter().map(|a| a.file.as_str()))
            .collect();
        let files_by_id: HashMap<String, files::Model> = if file_ids.is_empty() {
            HashMap::new()
        } else {
            files::Entity::find()
                .filter(files::Column::Id.is_in(file_ids.iter().copied()))
                .all(db)
                .await?
                .into_iter()
                .map(|f| (f.id.clone(), f))
                .collect()
        };
        // Their blobs' processing state. On PostgreSQL the rows are share-locked, so a job
        // finishing now either commits first (and is seen here) or waits for this batch (and
        // then finds its messages when it announces the result).
        let blobs_by_sha: HashMap<String, blobs::Model> = if files_by_id.is_empty() {
            HashMap::new()
        } else {
            let mut q = blobs::Entity::find().filter(
                blobs::Column::Sha256.is_in(files_by_id.values().map(|f| f.sha256.as_str())),
            );
            if db.get_database_backend() == sea_orm::DbBackend::Postgres {
                q = q.lock_shared();
            }
            q.all(db)
                .await?
                .into_iter()
                .map(|b| (b.sha256.clone(), b))
                .collect()
        };
        let mut contents: HashMap<usize, Content> = HashMap::new();

        // Decide each job: an error, a duplicate (of the past or of an earlier job here), or new.
        let mut plans = Vec::with_capacity(jobs.len());
        let mut first_here: HashMap<(&str, &str), usize> = HashMap::new();
        let mut new_per_conv: BTreeMap<&str, i64> = BTreeMap::new();
        for (i, j) in jobs.iter().enumerate() {
            let key = (j.device.to_string(), j.req.cmid.clone());
            if let Some(ack) = stored.get(&key) {
                plans.push(Plan::Done(Ok(Sent::Duplicate(ack.clone()))));
                continue;
            }
            if let Some(&first) = first_here.get(&(j.device.as_str(), j.req.cmid.as_str())) {
                plans.push(Plan::SameAs(first));
                continue;
            }
            let is_member = members_of
                .get(j.req.conv.as_str())
                .is_some_and(|ms| ms.contains(&j.user));
            if !is_member {
                plans.push(Plan::Done(Err(Error::client(
                    ErrorCode::NotMember,
                    "you are not a member of that conversation",
                ))));
                continue;
            }
            let refs = async {
                if let Some(r) = &j.req.reply_to {
                    Self::check_reference(db, &j.user, r, Some(&j.req.conv)).await?;
                }
                if let Some(f) = &j.req.forward_of {
                    Self::check_reference(db, &j.user, f, None).await?;
                }
                Ok::<_, Error>(())
            };
            if let Err(e) = refs.await {
                plans.push(Plan::Done(Err(e)));
                continue;
            }
            if !j.content.attachments().is_empty() {
                match Self::attach(db, &j.user, &j.content, &files_by_id, &blobs_by_sha).await {
                    Ok(c) => {
                        contents.insert(i, c);
                    }
                    Err(e) => {
                        plans.push(Plan::Done(Err(e)));
                        continue;
                    }
                }
            }
            first_here.insert((j.device.as_str(), j.req.cmid.as_str()), i);
            *new_per_conv.entry(j.req.conv.as_str()).or_default() += 1;
            plans.push(Plan::New);
        }

        // Seqs: one statement moves each conversation's counter by its number of new messages.
        let mut next_seq: HashMap<String, i64> = HashMap::new();
        if !new_per_conv.is_empty() {
            let mut by = CaseStatement::new();
            for (conv, count) in &new_per_conv {
                by = by.case(conversations::Column::Id.eq(*conv), Expr::val(*count));
            }
            let by: Expr = by.finally(Expr::val(0)).into();
            if locks_rows_in_order(db) {
                let mut ids: Vec<&str> = new_per_conv.keys().copied().collect();
                ids.sort_unstable();
                conversations::Entity::find()
                    .select_only()
                    .column(conversations::Column::Id)
                    .filter(conversations::Column::Id.is_in(ids))
                    .order_by_asc(conversations::Column::Id)
                    .lock(LockType::NoKeyUpdate)
                    .into_tuple::<String>()
                    .all(db)
                    .await?;
            }
            let bumped = conversations::Entity::update_many()
                .col_expr(
                    conversations::Column::LastSeq,
                    Expr::col(conversations::Column::LastSeq).add(by),
                )
                .filter(conversations::Column::Id.is_in(new_per_conv.keys().copied()))
                .exec_with_returning(db)
                .await?;
            if bumped.len() != new_per_conv.len() {
                return Err(Error::Internal("a conversation vanished".into()));
            }
            for c in bumped {
                let count = new_per_conv[c.id.as_str()];
                next_seq.insert(c.id, c.last_seq - count + 1);
            }
        }

        // The messages, in job order.
        let ts = now_ms();
        let mut new_msgs: Vec<(usize, Message)> = Vec::new();
        for (i, (j, plan)) in jobs.iter().zip(&plans).enumerate() {
            if !matches!(plan, Plan::New) {
                continue;
            }
            let seq = next_seq.get_mut(j.req.conv.as_str()).expect("counted");
            new_msgs.push((
                i,
                Message {
                    id: MsgId::from_trusted(new_id('m')),
                    conv: j.req.conv.clone(),
                    seq: *seq,
                    sender: j.user.clone(),
                    device: j.device.clone(),
                    ts,
                    cmid: j.req.cmid.clone(),
                    content: contents.remove(&i).unwrap_or_else(|| j.content.clone()),
                    reply_to: j.req.reply_to.clone(),
                    forward_of: j.req.forward_of.clone(),
                    edited_at: None,
                    deleted: None,
                    reactions: Vec::new(),
                },
            ));
            *seq += 1;
        }
        if new_msgs.is_empty() {
            return Ok(resolve(plans, HashMap::new()));
        }
        messages::Entity::insert_many(new_msgs.iter().map(|(_, m)| messages::ActiveModel {
            id: Set(m.id.to_string()),
            conv_id: Set(m.conv.to_string()),
            seq: Set(m.seq),
            sender_id: Set(m.sender.to_string()),
            device_id: Set(m.device.to_string()),
            cmid: Set(m.cmid.clone()),
            kind: Set(m.content.kind().to_owned()),
            content: Set(serde_json::to_string(&m.content).expect("content serialises")),
            reply_to: Set(m.reply_to.as_ref().map(ToString::to_string)),
            forward_of: Set(m.forward_of.as_ref().map(ToString::to_string)),
            created_at: Set(ts),
            edited_at: Set(None),
            deleted_at: Set(None),
        }))
        .exec(db)
        .await?;

        // Members of these conversations may now download the files.
        let carried: Vec<message_files::ActiveModel> = new_msgs
            .iter()
            .flat_map(|(_, m)| {
                m.content
                    .attachments()
                    .iter()
                    .map(|a| message_files::ActiveModel {
                        msg_id: Set(m.id.to_string()),
                        file_id: Set(a.file.to_string()),
                        conv_id: Set(m.conv.to_string()),
                    })
            })
            .collect();
        if !carried.is_empty() {
            message_files::Entity::insert_many(carried).exec(db).await?;
        }

        // The senders have seen (so delivered and read) their own messages, and what came
        // before them: (first, last) seq of each sender's new messages per conversation.
        let mut sender_top: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for (_, m) in &new_msgs {
            let span = sender_top
                .entry((m.conv.to_string(), m.sender.to_string()))
                .or_insert((m.seq, m.seq));
            span.0 = Ord::min(span.0, m.seq);
            span.1 = Ord::max(span.1, m.seq);
        }
        let mut case = CaseStatement::new();
        let mut which = Condition::any();
        for ((conv, user), (_, top)) in &sender_top {
            let here = Condition::all()
                .add(members::Column::ConvId.eq(conv.as_str()))
                .add(members::Column::UserId.eq(user.as_str()));
            case = case.case(here.clone(), Expr::val(*top));
            which = which.add(here);
        }
        let case: Expr = case.finally(Expr::col(members::Column::ReadSeq)).into();
        let mut before = members::Entity::find()
            .select_only()
            .column(members::Column::ConvId)
            .column(members::Column::UserId)
            .column(members::Column::ReadSeq)
            .filter(which.clone())
            .order_by_asc(members::Column::ConvId)
            .order_by_asc(members::Column::UserId);
        if locks_rows_in_order(db) {
            before = before.lock(LockType::NoKeyUpdate);
        }
        let read_before: HashMap<(String, String), i64> = before
            .into_tuple::<(String, String, i64)>()
            .all(db)
            .await?
            .into_iter()
            .map(|(c, u, r)| ((c, u), r))
            .collect();
        members::Entity::update_many()
            .col_expr(members::Column::ReadSeq, case.clone())
            .col_expr(members::Column::DeliveredSeq, case)
            .filter(which)
            .exec(db)
            .await?;

        // Every member's log gets each message: one counter bump per user, by their count.
        let entries: Vec<(usize, Entry, &[UserId])> = new_msgs
            .into_iter()
            .map(|(i, msg)| {
                let to = members_of
                    .get(msg.conv.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                (
                    i,
                    Entry {
                        ts,
                        body: UpdateBody::Message { msg },
                    },
                    to,
                )
            })
            .collect();
        // Sending marks the conversation read up to the message. When that passed messages
        // of others the sender had not marked read, the others hear it as a receipt (blue
        // ticks), after the messages in their logs; it rides with the sender's last one.
        let mut receipts: Vec<(MsgId, Entry, Vec<UserId>)> = Vec::new();
        for ((conv, user), (first, top)) in &sender_top {
            let read = read_before
                .get(&(conv.clone(), user.clone()))
                .copied()
                .unwrap_or(0);
            if read >= first - 1 {
                continue;
            }
            let Some(last) = entries.iter().find_map(|(_, e, _)| match &e.body {
                UpdateBody::Message { msg } if msg.conv.as_str() == conv && msg.seq == *top => {
                    Some(msg.id.clone())
                }
                _ => None,
            }) else {
                continue;
            };
            let sender = UserId::from_trusted(user.clone());
            let others: Vec<UserId> = members_of
                .get(conv.as_str())
                .map(|ms| ms.iter().filter(|m| **m != sender).cloned().collect())
                .unwrap_or_default();
            let entry = Entry {
                ts,
                body: UpdateBody::Receipt {
                    conv: ConvId::from_trusted(conv.clone()),
                    user: sender,
                    delivered_seq: *top,
                    read_seq: *top,
                },
            };
            receipts.push((last, entry, others));
        }
        let appended = append_many(
            db,
            entries
                .iter()
                .map(|(_, e, to)| (e, *to))
                .chain(receipts.iter().map(|(_, e, to)| (e, to.as_slice()))),
        )
        .await?;
        let mut appended = appended.into_iter();
        let mut outs: HashMap<usize, Sent> = HashMap::new();
        let mut by_msg: HashMap<MsgId, usize> = HashMap::new();
        for ((i, entry, _), to) in entries.into_iter().zip(appended.by_ref()) {
            let UpdateBody::Message { msg } = &entry.body else {
                unreachable!()
            };
            by_msg.insert(msg.id.clone(), i);
            outs.insert(
                i,
                Sent::New {
                    ack: ack_of(msg),
                    out: Outgoing::new(&entry, to),
                    also: Vec::new(),
                },
            );
        }
        for ((last, entry, _), to) in receipts.into_iter().zip(appended) {
            if let Some(Sent::New { also, .. }) = outs.get_mut(&by_msg[&last]) {
                also.push(Outgoing::new(&entry, to));
            }
        }
        Ok(resolve(plans, outs))
    }
}

/// What a batch does with one job.
enum Plan {
    /// Answered without writing: an error, or a duplicate of a stored message.
    Done(Result<Sent>),
    /// Repeats the (device, cmid) of an earlier job in the same batch.
    SameAs(usize),
    New,
}

/// Turns the plan of each job into its answer; a repeat within the batch gets the ack of the
/// job it repeats.
fn resolve(plans: Vec<Plan>, mut outs: HashMap<usize, Sent>) -> Vec<Result<Sent>> {
    let acks: HashMap<usize, SendResult> = outs
        .iter()
        .map(|(i, s)| match s {
            Sent::New { ack, .. } | Sent::Duplicate(ack) => (*i, ack.clone()),
        })
        .collect();
    plans
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Plan::Done(r) => r,
            Plan::SameAs(first) => Ok(Sent::Duplicate(acks[&first].clone())),
            Plan::New => Ok(outs.remove(&i).expect("new job stored")),
        })
        .collect()
}
