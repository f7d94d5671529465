//! `send`: inside a batch's transaction (see `store::batch`), takes the next conversation seq,
//! stores the message, moves the sender's own watermarks and appends the message to every
//! member's log.

use super::blocks::blocks_touching;
use super::changes::hide;
use super::conversations::{members_of, membership};
use super::log::{append_many, Entry, Outgoing};
use super::{locks_rows_in_order, rows, search, Store};
use crate::entity::{blobs, conversations, files, hidden_messages, message_files, messages, users};
use crate::error::{Error, Result};
use crate::util::{new_id, now_ms};
use protocol::ops::{SendReq, SendResult, MENTION_ALL};
use protocol::update::Content;
use protocol::{ConvId, DeviceId, ErrorCode, Message, MsgId, UpdateBody, UserId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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

    /// The batch as a handful of set statements, each with one text whatever the batch's size
    /// (see `rows`): look up duplicates and members once, decide each job, bump each
    /// conversation's seq once by its count, insert all messages, move the senders'
    /// watermarks, then append every message to its members' logs. Client errors are found by
    /// the reads, before anything is written.
    pub(super) async fn send_set<C: ConnectionTrait>(
        db: &C,
        jobs: &[&SendJob],
    ) -> Result<Vec<Result<Sent>>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let stored = stored_acks(db, jobs).await?;
        let convs: BTreeSet<&str> = jobs.iter().map(|j| j.req.conv.as_str()).collect();
        let members_of = members_of(db, convs.iter().copied()).await?;
        let blocks = Blocks::of_senders(db, jobs, &convs).await?;

        // Files the batch's media messages carry.
        let file_ids: BTreeSet<&str> = jobs
            .iter()
            .flat_map(|j| j.content.attachments().iter().map(|a| a.file.as_str()))
            .collect();
        // On PostgreSQL share-locked for the batch, so storage collection cannot delete a
        // file between this read and the batch's commit (see `store::gc`).
        let files_by_id: HashMap<String, files::Model> = if file_ids.is_empty() {
            HashMap::new()
        } else {
            let mut q =
                files::Entity::find().filter(files::Column::Id.is_in(file_ids.iter().copied()));
            if db.get_database_backend() == sea_orm::DbBackend::Postgres {
                q = q.lock_shared();
            }
            q.all(db)
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
            if let Some(ack) = stored.get(&(j.device.to_string(), j.req.cmid.clone())) {
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
            if let Some(refused) = blocks.refuses(&j.user, &j.req.conv, &members_of) {
                plans.push(Plan::Done(Err(refused)));
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
            if let Err(e) = check_mentions(db, j, &members_of).await {
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

        let ts = now_ms();
        let mut next_seq = bump_seqs(db, &new_per_conv, ts).await?;

        // The messages, in job order.
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
                    hidden: false,
                    sender_deleted: false,
                    reactions: Vec::new(),
                },
            ));
            *seq += 1;
        }
        if new_msgs.is_empty() {
            return Ok(resolve(plans, HashMap::new()));
        }
        insert_messages(db, new_msgs.iter().map(|(_, m)| m)).await?;
        search::index(db, new_msgs.iter().map(|(_, m)| m)).await?;

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
        mark_mentioned(db, &new_msgs, &members_of, &blocks, &sender_top).await?;
        let read_before = senders_seen(db, &sender_top).await?;

        // Every member's log gets each message: one counter bump per user, by their count.
        // Members who blocked its sender get it hidden instead (a tombstone with its seq,
        // marked `hidden`, and a `hidden_messages` row so every later read shows it so).
        let mut hidden: Vec<(usize, Entry, Vec<UserId>)> = Vec::new();
        let entries: Vec<(usize, Entry, Cow<[UserId]>)> = new_msgs
            .into_iter()
            .map(|(i, msg)| {
                let members = members_of
                    .get(msg.conv.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let hiders = blocks.blockers_of(&msg.sender, members);
                let to = if hiders.is_empty() {
                    Cow::Borrowed(members)
                } else {
                    let mut copy = msg.clone();
                    hide(&mut copy, true);
                    let entry = Entry {
                        ts,
                        body: UpdateBody::Message { msg: copy },
                    };
                    let rest = members.iter().filter(|m| !hiders.contains(m)).cloned();
                    let rest = Cow::Owned(rest.collect());
                    hidden.push((i, entry, hiders));
                    rest
                };
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
        if !hidden.is_empty() {
            let rows = hidden.iter().flat_map(|(_, e, hiders)| {
                let UpdateBody::Message { msg } = &e.body else {
                    unreachable!()
                };
                hiders.iter().map(|u| hidden_messages::ActiveModel {
                    user_id: Set(u.to_string()),
                    msg_id: Set(msg.id.to_string()),
                    conv_id: Set(msg.conv.to_string()),
                    created_at: Set(ts),
                    blocked: Set(true),
                })
            });
            hidden_messages::Entity::insert_many(rows).exec(db).await?;
        }
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
                .map(|(_, e, to)| (e, to.as_ref()))
                .chain(receipts.iter().map(|(_, e, to)| (e, to.as_slice())))
                .chain(hidden.iter().map(|(_, e, to)| (e, to.as_slice()))),
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
        for ((last, entry, _), to) in receipts.into_iter().zip(appended.by_ref()) {
            if let Some(Sent::New { also, .. }) = outs.get_mut(&by_msg[&last]) {
                also.push(Outgoing::new(&entry, to));
            }
        }
        for ((i, entry, _), to) in hidden.into_iter().zip(appended) {
            if let Some(Sent::New { also, .. }) = outs.get_mut(&i) {
                // Nothing to notify anyone of.
                let mut out = Outgoing::new(&entry, to);
                out.message = None;
                also.push(out);
            }
        }
        Ok(resolve(plans, outs))
    }
}

/// Refuses mentions of non-members (`invalid_message`) and `@all` from anyone but a group's
/// admin (`forbidden`).
async fn check_mentions<C: ConnectionTrait>(
    db: &C,
    job: &SendJob,
    members_of: &HashMap<String, Vec<UserId>>,
) -> Result<()> {
    let Content::Text { mentions, .. } = &job.content else {
        return Ok(());
    };
    let members = members_of
        .get(job.req.conv.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for m in mentions {
        if m == MENTION_ALL {
            if membership(db, &job.req.conv, &job.user).await?.role != "admin" {
                return Err(Error::client(
                    ErrorCode::Forbidden,
                    "only group admins can mention @all",
                ));
            }
        } else if !members.iter().any(|u| u.as_str() == m) {
            return Err(Error::client(
                ErrorCode::InvalidMessage,
                "`mentions` names someone who is not a member of the conversation",
            ));
        }
    }
    Ok(())
}

/// Records, for each member a new message mentions (by id, or all but the sender for
/// `@all`), that it does, unless they blocked the sender: their listing shows `mentioned`
/// until they read past it. One statement for the batch. On PostgreSQL the member rows it
/// moves are locked in key order together with the senders' (`senders_seen` moves those
/// next), so that two batches cannot each hold a row the other waits for.
async fn mark_mentioned<C: ConnectionTrait>(
    db: &C,
    msgs: &[(usize, Message)],
    members_of: &HashMap<String, Vec<UserId>>,
    blocks: &Blocks,
    senders: &BTreeMap<(String, String), (i64, i64)>,
) -> Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        c: &'a str,
        u: &'a str,
        s: i64,
    }
    const SQL: &str = "UPDATE members SET mentioned_seq = CAST(j.value->>'s' AS BIGINT) \
        FROM {rows} WHERE members.conv_id = j.value->>'c' AND members.user_id = j.value->>'u' \
        AND members.mentioned_seq < CAST(j.value->>'s' AS BIGINT)";
    let mut rows: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (_, m) in msgs {
        let Content::Text { mentions, .. } = &m.content else {
            continue;
        };
        if mentions.is_empty() {
            continue;
        }
        let members = members_of
            .get(m.conv.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let all = mentions.iter().any(|x| x == MENTION_ALL);
        let hiders = blocks.blockers_of(&m.sender, members);
        for u in members {
            let named = all || mentions.iter().any(|x| x == u.as_str());
            if named && *u != m.sender && !hiders.contains(u) {
                let top = rows.entry((m.conv.as_str(), u.as_str())).or_default();
                *top = (*top).max(m.seq);
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    if locks_rows_in_order(db) {
        let keys: BTreeSet<(&str, &str)> = rows
            .keys()
            .copied()
            .chain(senders.keys().map(|(c, u)| (c.as_str(), u.as_str())))
            .collect();
        let keys: Vec<Row> = keys.into_iter().map(|(c, u)| Row { c, u, s: 0 }).collect();
        let lock = format!(
            "SELECT members.conv_id FROM {{rows}} JOIN members ON members.conv_id = j.value->>'c' \
             AND members.user_id = j.value->>'u' ORDER BY members.conv_id, members.user_id{}",
            rows::lock_clause(db, "members")
        );
        db.query_all_raw(rows::over(db, &lock, &keys)).await?;
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|((c, u), s)| Row { c, u, s })
        .collect();
    db.execute_raw(rows::over(db, SQL, &rows)).await?;
    Ok(())
}

/// `(device, cmid)` of the batch's sends that were stored before, with their original acks.
async fn stored_acks<C: ConnectionTrait>(
    db: &C,
    jobs: &[&SendJob],
) -> Result<HashMap<(String, String), SendResult>> {
    #[derive(Serialize)]
    struct Key<'a> {
        d: &'a str,
        c: &'a str,
    }
    const SQL: &str = "SELECT m.device_id, m.cmid, m.id, m.conv_id, m.seq, m.created_at \
        FROM {rows} JOIN messages AS m ON m.device_id = j.value->>'d' AND m.cmid = j.value->>'c'";
    // PostgreSQL, told nothing of how few rows the JSON holds (and with statistics from when
    // the table was small), hashes a scan of every message: ~4 ms a batch at 50 pairs after
    // 10 000 messages, growing with the table. A LATERAL subquery with a LIMIT (the key is
    // unique) cannot be flattened into that join, so each key is one index lookup (~0.5 ms).
    const SQL_LATERAL: &str = "SELECT m.device_id, m.cmid, m.id, m.conv_id, m.seq, m.created_at \
        FROM {rows} CROSS JOIN LATERAL (SELECT * FROM messages \
        WHERE messages.device_id = j.value->>'d' AND messages.cmid = j.value->>'c' LIMIT 1) AS m";
    let keys: Vec<Key> = jobs
        .iter()
        .map(|j| Key {
            d: j.device.as_str(),
            c: j.req.cmid.as_str(),
        })
        .collect();
    let mut stored = HashMap::new();
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => SQL_LATERAL,
        _ => SQL,
    };
    for row in db.query_all_raw(rows::over(db, sql, &keys)).await? {
        let device: String = row.try_get_by_index(0)?;
        let cmid: String = row.try_get_by_index(1)?;
        let ack = SendResult {
            msg: MsgId::from_trusted(row.try_get_by_index(2)?),
            conv: ConvId::from_trusted(row.try_get_by_index(3)?),
            seq: row.try_get_by_index(4)?,
            ts: row.try_get_by_index(5)?,
            cmid: cmid.clone(),
        };
        stored.insert((device, cmid), ack);
    }
    Ok(stored)
}

/// Moves each conversation's seq counter by its number of new messages, and its last
/// activity to `ts`, in one statement; returns the first seq each conversation's messages take.
pub(super) async fn bump_seqs<C: ConnectionTrait>(
    db: &C,
    new_per_conv: &BTreeMap<&str, i64>,
    ts: i64,
) -> Result<HashMap<String, i64>> {
    #[derive(Serialize)]
    struct Bump<'a> {
        c: &'a str,
        n: i64,
        t: i64,
    }
    const LOCK: &str = "SELECT conversations.id FROM conversations \
        WHERE conversations.id IN (SELECT j.value->>'c' FROM {rows}) \
        ORDER BY conversations.id FOR NO KEY UPDATE";
    const BUMP: &str = "UPDATE conversations \
        SET last_seq = conversations.last_seq + CAST(j.value->>'n' AS BIGINT), \
        last_at = CAST(j.value->>'t' AS BIGINT) \
        FROM {rows} WHERE conversations.id = j.value->>'c' \
        RETURNING conversations.id, conversations.last_seq";
    if new_per_conv.is_empty() {
        return Ok(HashMap::new());
    }
    let bumps: Vec<Bump> = new_per_conv
        .iter()
        .map(|(c, n)| Bump { c, n: *n, t: ts })
        .collect();
    if locks_rows_in_order(db) {
        db.query_all_raw(rows::over(db, LOCK, &bumps)).await?;
    }
    let bumped = db.query_all_raw(rows::over(db, BUMP, &bumps)).await?;
    if bumped.len() != new_per_conv.len() {
        return Err(Error::Internal("a conversation vanished".into()));
    }
    let mut next_seq = HashMap::with_capacity(bumped.len());
    for row in bumped {
        let id: String = row.try_get_by_index(0)?;
        let last: i64 = row.try_get_by_index(1)?;
        let count = new_per_conv[id.as_str()];
        next_seq.insert(id, last - count + 1);
    }
    Ok(next_seq)
}

/// Inserts the messages, in one statement.
pub(super) async fn insert_messages<'a, C: ConnectionTrait>(
    db: &C,
    msgs: impl Iterator<Item = &'a Message>,
) -> Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        conv: &'a str,
        seq: i64,
        sender: &'a str,
        device: &'a str,
        cmid: &'a str,
        kind: &'a str,
        content: String,
        reply_to: Option<&'a str>,
        forward_of: Option<&'a str>,
        ts: i64,
    }
    const SQL: &str = "INSERT INTO messages \
        (id, conv_id, seq, sender_id, device_id, cmid, kind, content, reply_to, forward_of, created_at) \
        SELECT j.value->>'id', j.value->>'conv', CAST(j.value->>'seq' AS BIGINT), \
        j.value->>'sender', j.value->>'device', j.value->>'cmid', j.value->>'kind', \
        j.value->>'content', j.value->>'reply_to', j.value->>'forward_of', \
        CAST(j.value->>'ts' AS BIGINT) FROM {rows}";
    let rows: Vec<Row> = msgs
        .map(|m| Row {
            id: m.id.as_str(),
            conv: m.conv.as_str(),
            seq: m.seq,
            sender: m.sender.as_str(),
            device: m.device.as_str(),
            cmid: &m.cmid,
            kind: m.content.kind(),
            content: serde_json::to_string(&m.content).expect("content serialises"),
            reply_to: m.reply_to.as_ref().map(MsgId::as_str),
            forward_of: m.forward_of.as_ref().map(MsgId::as_str),
            ts: m.ts,
        })
        .collect();
    db.execute_raw(rows::over(db, SQL, &rows)).await?;
    Ok(())
}

/// The senders have seen (so delivered and read) their own new messages and what came
/// before them: moves each sender's watermarks to `top` in one statement. `sender_top` is
/// (first, top) seq of each (conversation, sender)'s new messages. Returns each sender's
/// read watermark from before.
async fn senders_seen<C: ConnectionTrait>(
    db: &C,
    sender_top: &BTreeMap<(String, String), (i64, i64)>,
) -> Result<HashMap<(String, String), i64>> {
    #[derive(Serialize)]
    struct Seen<'a> {
        c: &'a str,
        u: &'a str,
        top: i64,
    }
    const BEFORE: &str = "SELECT members.conv_id, members.user_id, members.read_seq \
        FROM {rows} JOIN members \
        ON members.conv_id = j.value->>'c' AND members.user_id = j.value->>'u' \
        ORDER BY members.conv_id, members.user_id";
    const MOVE: &str = "UPDATE members SET read_seq = CAST(j.value->>'top' AS BIGINT), \
        delivered_seq = CAST(j.value->>'top' AS BIGINT) \
        FROM {rows} WHERE members.conv_id = j.value->>'c' AND members.user_id = j.value->>'u'";
    let seen: Vec<Seen> = sender_top
        .iter()
        .map(|((c, u), (_, top))| Seen { c, u, top: *top })
        .collect();
    let before = format!("{BEFORE}{}", rows::lock_clause(db, "members"));
    let mut read_before = HashMap::with_capacity(seen.len());
    for row in db.query_all_raw(rows::over(db, &before, &seen)).await? {
        read_before.insert(
            (row.try_get_by_index(0)?, row.try_get_by_index(1)?),
            row.try_get_by_index(2)?,
        );
    }
    db.execute_raw(rows::over(db, MOVE, &seen)).await?;
    Ok(read_before)
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

/// The blocks that bear on a batch: between its senders and anyone, and which of its
/// conversations are direct (loaded only when there is a block at all).
struct Blocks {
    /// `(blocker, blocked)`.
    pairs: HashSet<(String, String)>,
    direct: HashSet<String>,
    /// Deleted accounts among the pairs' users (a deleted account blocks its direct partners).
    deleted: HashSet<String>,
}

impl Blocks {
    async fn of_senders<C: ConnectionTrait>(
        db: &C,
        jobs: &[&SendJob],
        convs: &BTreeSet<&str>,
    ) -> Result<Self> {
        let senders: BTreeSet<&str> = jobs.iter().map(|j| j.user.as_str()).collect();
        let pairs: HashSet<(String, String)> =
            blocks_touching(db, &senders).await?.into_iter().collect();
        if pairs.is_empty() {
            return Ok(Self {
                pairs,
                direct: HashSet::new(),
                deleted: HashSet::new(),
            });
        }
        let direct = conversations::Entity::find()
            .select_only()
            .column(conversations::Column::Id)
            .filter(conversations::Column::Id.is_in(convs.iter().copied()))
            .filter(conversations::Column::Kind.eq("direct"))
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let involved: BTreeSet<&str> = pairs.iter().map(|(a, _)| a.as_str()).collect();
        let deleted = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::Id.is_in(involved))
            .filter(users::Column::DeletedAt.is_not_null())
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        Ok(Self {
            pairs,
            direct,
            deleted,
        })
    }

    fn blocked(&self, blocker: &str, blocked: &str) -> bool {
        !self.pairs.is_empty()
            && self
                .pairs
                .contains(&(blocker.to_owned(), blocked.to_owned()))
    }

    /// Why `sender` may not write into direct conversation `conv`, if not: either side
    /// blocked the other (`blocked`), or the other account was deleted (`forbidden`).
    fn refuses(
        &self,
        sender: &UserId,
        conv: &ConvId,
        members_of: &HashMap<String, Vec<UserId>>,
    ) -> Option<Error> {
        if !self.direct.contains(conv.as_str()) {
            return None;
        }
        let other = members_of
            .get(conv.as_str())
            .into_iter()
            .flatten()
            .find(|m| *m != sender)?;
        if self.deleted.contains(other.as_str()) {
            return Some(Error::client(
                ErrorCode::Forbidden,
                "this account was deleted: its conversations can be read, not written to",
            ));
        }
        let either = self.blocked(other.as_str(), sender.as_str())
            || self.blocked(sender.as_str(), other.as_str());
        either.then(|| {
            Error::client(
                ErrorCode::Blocked,
                "you cannot message this user: one of you blocked the other",
            )
        })
    }

    /// Those of `members` who blocked `sender`.
    fn blockers_of(&self, sender: &UserId, members: &[UserId]) -> Vec<UserId> {
        if self.pairs.is_empty() {
            return Vec::new();
        }
        members
            .iter()
            .filter(|m| self.blocked(m.as_str(), sender.as_str()))
            .cloned()
            .collect()
    }
}
