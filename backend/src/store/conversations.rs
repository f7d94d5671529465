//! Conversations and membership: create (direct is one per pair), list with unread counts,
//! add/remove members (group admins), history pages.

use super::blocks::refuse_blocked;
use super::changes::decorate;
use super::log::{append, message_from_row, Appended, Entry, Outgoing};
use super::{group, rows, Store};
use crate::entity::{conversations, hidden_messages, members, messages, users};
use crate::error::{is_unique_violation, Error, Result};
use crate::util::{new_id, now_ms};
use protocol::http::{
    ConvKind, ConvSettings, Conversation, GroupAdds, MemberReceipt, Presence, Role, PRESENCE_LIMIT,
};
use protocol::update::{MemberAction, SystemEvent};
use protocol::{ConvId, ErrorBody, ErrorCode, Message, UpdateBody, UserId};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement, TransactionTrait,
};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

pub const MAX_GROUP_MEMBERS: usize = 1000;
/// Most conversations one page of the list holds.
pub const MAX_LIST_PAGE: u64 = 100;

/// Where a page of the conversation list ends: `{pinned}.{activity}.{conv}`, opaque to
/// clients.
struct ListCursor {
    pinned: i32,
    activity: i64,
    conv: String,
}

impl ListCursor {
    fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::client(
                ErrorCode::BadRequest,
                "`before` is not a cursor from a list",
            )
        };
        let mut parts = s.splitn(3, '.');
        let (Some(p), Some(a), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let conv = ConvId::parse(c).ok_or_else(bad)?;
        Ok(Self {
            pinned: p
                .parse()
                .ok()
                .filter(|p| *p == 0 || *p == 1)
                .ok_or_else(bad)?,
            activity: a.parse().map_err(|_| bad())?,
            conv: conv.to_string(),
        })
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.pinned, self.activity, self.conv)
    }
}
pub const MAX_HISTORY_PAGE: u64 = 200;
/// The newest messages of a conversation kept in the history cache (see `Store::history`).
const CACHED_PAGE: u64 = 50;
/// The cache's name for that page.
const TOP_PAGE: &str = "top";

fn kind_str(kind: ConvKind) -> &'static str {
    match kind {
        ConvKind::Direct => "direct",
        ConvKind::Group => "group",
    }
}

/// The caller's membership row, or `not_member`.
pub async fn membership<C: ConnectionTrait>(
    db: &C,
    conv: &ConvId,
    user: &UserId,
) -> Result<members::Model> {
    members::Entity::find_by_id((conv.to_string(), user.to_string()))
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::client(
                ErrorCode::NotMember,
                "you are not a member of that conversation",
            )
        })
}

fn others(all: &[UserId], me: &UserId) -> Vec<UserId> {
    all.iter()
        .filter(|u| *u != me)
        .take(PRESENCE_LIMIT)
        .cloned()
        .collect()
}

/// When `conv` has members but no admin, makes the one who joined first (then by id) its
/// admin and returns them.
async fn promote_if_leaderless<C: ConnectionTrait>(
    db: &C,
    conv: &ConvId,
) -> Result<Option<UserId>> {
    let all = members::Entity::find()
        .filter(members::Column::ConvId.eq(conv.as_str()))
        .order_by_asc(members::Column::JoinedAt)
        .order_by_asc(members::Column::UserId)
        .all(db)
        .await?;
    if all.iter().any(|m| m.role == "admin") {
        return Ok(None);
    }
    let Some(heir) = all.into_iter().next() else {
        return Ok(None);
    };
    members::Entity::update_many()
        .col_expr(members::Column::Role, "admin".into())
        .filter(members::Column::ConvId.eq(conv.as_str()))
        .filter(members::Column::UserId.eq(heir.user_id.as_str()))
        .exec(db)
        .await?;
    Ok(Some(UserId::from_trusted(heir.user_id)))
}

/// A member's own settings as they stand at `now`, in a conversation whose last seq is
/// `last_seq`: a mute that ran out is none, and an archived conversation with a newer
/// message is archived no more unless it is muted.
pub(super) fn settings_of(m: &members::Model, last_seq: i64, now: i64) -> ConvSettings {
    let muted_until = m.muted_until.filter(|t| *t == -1 || *t > now);
    ConvSettings {
        muted_until,
        pinned: m.pinned_at.is_some(),
        archived: m
            .archived_seq
            .is_some_and(|at| last_seq <= at || muted_until.is_some()),
        marked_unread: m.marked_unread,
    }
}

pub async fn member_ids<C: ConnectionTrait>(db: &C, conv: &ConvId) -> Result<Vec<UserId>> {
    Ok(members::Entity::find()
        .filter(members::Column::ConvId.eq(conv.as_str()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| UserId::from_trusted(m.user_id))
        .collect())
}

/// The members of each of `convs` (repeats are fine), sorted by user id, in one statement.
pub(super) async fn members_of<'a, C: ConnectionTrait>(
    db: &C,
    convs: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Vec<UserId>>> {
    #[derive(Serialize)]
    struct Key<'a> {
        c: &'a str,
    }
    const SQL: &str = "SELECT members.conv_id, members.user_id \
        FROM {rows} JOIN members ON members.conv_id = j.value->>'c' ORDER BY members.user_id";
    let convs: BTreeSet<&str> = convs.into_iter().collect();
    let keys: Vec<Key> = convs.into_iter().map(|c| Key { c }).collect();
    let mut members_of: HashMap<String, Vec<UserId>> = HashMap::new();
    for row in db.query_all_raw(rows::over(db, SQL, &keys)).await? {
        members_of
            .entry(row.try_get_by_index(0)?)
            .or_default()
            .push(UserId::from_trusted(row.try_get_by_index(1)?));
    }
    Ok(members_of)
}

/// Refuses, with `not_found`, users that do not exist, with `blocked` users who blocked `by`
/// or whom `by` blocked, and, with `consent_required`
/// (`details.users`), users whose `group_adds` setting does not let `by` add them:
/// `nobody`, or `contacts` without a direct conversation with `by` that they started or
/// wrote in (a conversation `by` opened and only `by` wrote in is no relationship).
async fn check_may_add<C: ConnectionTrait>(db: &C, by: &UserId, users_in: &[UserId]) -> Result<()> {
    let targets: BTreeSet<&str> = users_in
        .iter()
        .map(UserId::as_str)
        .filter(|u| *u != by.as_str())
        .collect();
    let found = users::Entity::find()
        .select_only()
        .columns([users::Column::Id, users::Column::GroupAdds])
        .filter(users::Column::Id.is_in(targets.iter().copied()))
        .filter(users::Column::DeletedAt.is_null())
        .into_tuple::<(String, String)>()
        .all(db)
        .await?;
    if found.len() != targets.len() {
        return Err(Error::client(ErrorCode::NotFound, "unknown member user id"));
    }
    let ids: Vec<UserId> = found
        .iter()
        .map(|(u, _)| UserId::from_trusted(u.clone()))
        .collect();
    refuse_blocked(db, by, &ids).await?;
    let mut refused = Vec::new();
    let mut ask = Vec::new();
    for (user, setting) in found {
        match GroupAdds::parse(&setting) {
            GroupAdds::Everyone => {}
            GroupAdds::Nobody => refused.push(user),
            GroupAdds::Contacts => ask.push(user),
        }
    }
    if !ask.is_empty() {
        let contacts = contacts_among(db, by, &ask).await?;
        refused.extend(ask.into_iter().filter(|u| !contacts.contains(u)));
    }
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort();
    Err(ErrorBody::new(
        ErrorCode::ConsentRequired,
        "these users accept group adds only from their contacts, or from nobody",
    )
    .with_details(serde_json::json!({ "users": refused }))
    .into())
}

/// Those of `users` who count `by` as a contact: they share a direct conversation that the
/// user started or has written in.
async fn contacts_among<C: ConnectionTrait>(
    db: &C,
    by: &UserId,
    users: &[String],
) -> Result<BTreeSet<String>> {
    #[derive(Serialize)]
    struct Pair<'a> {
        /// The direct conversation's key.
        k: String,
        /// The user asked about.
        u: &'a str,
    }
    const SQL: &str = "SELECT j.value->>'u' FROM {rows} \
        JOIN conversations c ON c.direct_key = j.value->>'k' \
        WHERE c.created_by = j.value->>'u' OR EXISTS (SELECT 1 FROM messages m \
            WHERE m.conv_id = c.id AND m.sender_id = j.value->>'u')";
    let pairs: Vec<Pair> = users
        .iter()
        .map(|u| {
            let (a, b) = if u.as_str() < by.as_str() {
                (u.as_str(), by.as_str())
            } else {
                (by.as_str(), u.as_str())
            };
            Pair {
                k: format!("{a}:{b}"),
                u,
            }
        })
        .collect();
    let mut contacts = BTreeSet::new();
    for row in db.query_all_raw(rows::over(db, SQL, &pairs)).await? {
        contacts.insert(row.try_get_by_index::<String>(0)?);
    }
    Ok(contacts)
}

impl Store {
    /// Creates a conversation; a direct one that already exists for the pair is returned as is.
    /// Returns the conversation and, when it was created, the updates to deliver: `member`,
    /// and for a group its `created` system line.
    pub async fn create_conversation(
        &self,
        creator: &UserId,
        kind: ConvKind,
        members_in: &[UserId],
        title: Option<String>,
    ) -> Result<(Conversation, Vec<Outgoing>)> {
        let mut set: BTreeSet<UserId> = members_in.iter().cloned().collect();
        set.insert(creator.clone());
        let all: Vec<UserId> = set.into_iter().collect();
        let title = title.as_deref().map(group::title).transpose()?;
        let direct_key = match kind {
            ConvKind::Direct => {
                if all.len() != 2 || title.is_some() {
                    return Err(Error::client(
                        ErrorCode::BadRequest,
                        "a direct conversation has exactly one other member and no title",
                    ));
                }
                Some(format!("{}:{}", all[0], all[1]))
            }
            ConvKind::Group => {
                if all.len() > MAX_GROUP_MEMBERS {
                    return Err(Error::client(
                        ErrorCode::BadRequest,
                        format!("a group has at most {MAX_GROUP_MEMBERS} members"),
                    ));
                }
                None
            }
        };
        match kind {
            ConvKind::Group => check_may_add(&self.db, creator, &all).await?,
            ConvKind::Direct if !self.user_exists(&all).await? => {
                return Err(Error::client(ErrorCode::NotFound, "unknown member user id"));
            }
            ConvKind::Direct => refuse_blocked(&self.db, creator, &all).await?,
        }
        if let Some(key) = &direct_key {
            if let Some(existing) = self.find_direct(key).await? {
                return Ok((self.conversation_for(&existing, creator).await?, vec![]));
            }
        }
        let id = new_id('c');
        let now = now_ms();
        let txn = self.db.begin().await?;
        let inserted = conversations::Entity::insert(conversations::ActiveModel {
            id: Set(id.clone()),
            kind: Set(kind_str(kind).to_owned()),
            title: Set(title.clone()),
            direct_key: Set(direct_key.clone()),
            created_by: Set(creator.to_string()),
            last_seq: Set(0),
            created_at: Set(now),
            avatar_file: Set(None),
            avatar_at: Set(None),
            last_at: Set(now),
        })
        .exec(&txn)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) && direct_key.is_some() => {
                // The other side created the pair at the same moment.
                drop(txn);
                let key = direct_key.expect("checked");
                let existing = self
                    .find_direct(&key)
                    .await?
                    .ok_or_else(|| Error::Internal("direct conversation vanished".into()))?;
                return Ok((self.conversation_for(&existing, creator).await?, vec![]));
            }
            other => other?,
        };
        let rows = all.iter().map(|u| {
            let admin = kind == ConvKind::Group && u == creator;
            members::ActiveModel {
                conv_id: Set(id.clone()),
                user_id: Set(u.to_string()),
                role: Set(if admin { "admin" } else { "member" }.to_owned()),
                delivered_seq: Set(0),
                read_seq: Set(0),
                joined_at: Set(now),
                ..Default::default()
            }
        });
        members::Entity::insert_many(rows).exec(&txn).await?;
        let conv = ConvId::from_trusted(id.clone());
        let entry = Entry {
            ts: now,
            body: UpdateBody::Member {
                conv: conv.clone(),
                action: MemberAction::Created,
                users: all.clone(),
                by: creator.clone(),
            },
        };
        let to = append(&txn, &all, &entry).await?;
        let mut outs = vec![Outgoing::new(&entry, to)];
        let mut last_message = None;
        if kind == ConvKind::Group {
            let content = group::line(SystemEvent::Created, all.clone());
            let (msg, out) = group::system_line(&txn, &conv, creator, content, &all).await?;
            last_message = Some(msg);
            outs.push(out);
        }
        txn.commit().await?;
        let presence = self.presence(&others(&all, creator)).await?;
        let mut profiles = self.profiles(&others(&all, creator)).await?;
        let profiles = others(&all, creator)
            .iter()
            .take(PRESENCE_LIMIT)
            .filter_map(|u| profiles.remove(u.as_str()))
            .collect();
        let admins = match kind {
            ConvKind::Group => vec![creator.clone()],
            ConvKind::Direct => vec![],
        };
        let receipts = others(&all, creator)
            .into_iter()
            .map(|user| MemberReceipt {
                user,
                delivered_seq: 0,
                read_seq: 0,
            })
            .collect();
        let summary = Conversation {
            id: conv,
            kind,
            title,
            avatar: None,
            members: all,
            admins,
            created_at: now,
            activity: last_message.as_ref().map_or(now, |m| m.ts),
            settings: ConvSettings::default(),
            mentioned: false,
            last_seq: last_message.as_ref().map_or(0, |m| m.seq),
            read_seq: 0,
            unread: 0,
            presence,
            receipts,
            profiles,
            last_message,
        };
        Ok((summary, outs))
    }

    async fn find_direct(&self, key: &str) -> Result<Option<conversations::Model>> {
        Ok(conversations::Entity::find()
            .filter(conversations::Column::DirectKey.eq(key))
            .one(&self.db)
            .await?)
    }

    async fn conversation_for(
        &self,
        conv: &conversations::Model,
        user: &UserId,
    ) -> Result<Conversation> {
        let mut list = self.summaries(vec![conv.clone()], user).await?;
        list.pop()
            .ok_or_else(|| Error::client(ErrorCode::NotMember, "not a member"))
    }

    /// A page of the user's conversations (or of their archived ones): pinned first, then
    /// the most recently active (by their newest message, or when the user joined if that
    /// is later), then by id; and the cursor of the next page. The page is found in one
    /// statement over the user's memberships, ordered by that key.
    pub async fn list_conversations(
        &self,
        user: &UserId,
        archived: bool,
        before: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<Conversation>, Option<String>)> {
        let limit = limit.clamp(1, MAX_LIST_PAGE);
        let before = before.map(ListCursor::parse).transpose()?;
        let backend = self.read.get_database_backend();
        let mut values: Vec<sea_orm::Value> = vec![
            user.as_str().into(),
            now_ms().into(),
            i32::from(archived).into(),
        ];
        let mut after = String::new();
        if let Some(c) = &before {
            values.extend([c.pinned.into(), c.activity.into(), c.conv.clone().into()]);
            after = " AND (t.p, t.activity, t.conv_id) < ($4, $5, $6)".into();
        }
        values.push(((limit + 1) as i64).into());
        let sql = format!(
            "SELECT t.conv_id, t.p, t.activity FROM (SELECT m.conv_id, \
               CASE WHEN m.pinned_at IS NULL THEN 0 ELSE 1 END AS p, \
               CASE WHEN c.last_at > m.joined_at THEN c.last_at ELSE m.joined_at END AS activity, \
               CASE WHEN m.archived_seq IS NOT NULL AND (c.last_seq <= m.archived_seq \
                 OR m.muted_until = -1 OR m.muted_until > $2) THEN 1 ELSE 0 END AS arch \
             FROM members m JOIN conversations c ON c.id = m.conv_id WHERE m.user_id = $1) t \
             WHERE t.arch = $3{after} \
             ORDER BY t.p DESC, t.activity DESC, t.conv_id DESC LIMIT ${}",
            values.len()
        );
        let sql = match backend {
            DbBackend::Postgres => sql,
            // SQLite numbers its parameters `?NNN`.
            _ => sql.replace('$', "?"),
        };
        let rows = self
            .read
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            keys.push(ListCursor {
                conv: row.try_get_by_index(0)?,
                pinned: row.try_get_by_index::<i32>(1)?,
                activity: row.try_get_by_index(2)?,
            });
        }
        let next = match keys.len() as u64 > limit {
            true => keys.get(limit as usize - 1).map(ListCursor::to_string),
            false => None,
        };
        keys.truncate(limit as usize);
        if keys.is_empty() {
            return Ok((vec![], None));
        }
        let convs = conversations::Entity::find()
            .filter(conversations::Column::Id.is_in(keys.iter().map(|k| k.conv.clone())))
            .all(&self.read)
            .await?;
        Ok((self.summaries(convs, user).await?, next))
    }

    async fn summaries(
        &self,
        convs: Vec<conversations::Model>,
        user: &UserId,
    ) -> Result<Vec<Conversation>> {
        let rows = members::Entity::find()
            .filter(members::Column::ConvId.is_in(convs.iter().map(|c| c.id.clone())))
            .order_by_asc(members::Column::UserId)
            .all(&self.read)
            .await?;
        let mut by_conv: HashMap<String, Vec<members::Model>> = HashMap::new();
        for m in rows {
            by_conv.entry(m.conv_id.clone()).or_default().push(m);
        }
        let watermarks: Vec<(String, i64)> = by_conv
            .values()
            .flatten()
            .filter(|m| m.user_id == user.as_str())
            .map(|m| (m.conv_id.clone(), m.read_seq))
            .collect();
        let unread = self.unread_counts(user, &watermarks).await?;
        // Presence of the other members (not those blocked either way), looked up once for
        // all conversations.
        let blocked = self.blocked_either_way(user).await?;
        let mut shown: BTreeSet<UserId> = BTreeSet::new();
        for ms in by_conv.values() {
            shown.extend(
                ms.iter()
                    .filter(|m| m.user_id != user.as_str())
                    .take(PRESENCE_LIMIT)
                    .map(|m| UserId::from_trusted(m.user_id.clone())),
            );
        }
        let profiles = self
            .profiles(&shown.iter().cloned().collect::<Vec<_>>())
            .await?;
        let shown: Vec<UserId> = shown.into_iter().filter(|u| !blocked.contains(u)).collect();
        let presence: HashMap<String, Presence> = self
            .presence(&shown)
            .await?
            .into_iter()
            .map(|p| (p.user.to_string(), p))
            .collect();
        let mut newest = self.newest_messages(&convs, user).await?;
        let now = now_ms();
        let mut out = Vec::with_capacity(convs.len());
        for c in convs {
            let ms = by_conv.remove(&c.id).unwrap_or_default();
            let Some(me) = ms.iter().find(|m| m.user_id == user.as_str()) else {
                continue;
            };
            let read_seq = me.read_seq;
            // Last activity: the newest message, or joining if that is later.
            let activity = c.last_at.max(me.joined_at);
            let settings = settings_of(me, c.last_seq, now);
            let mentioned = me.mentioned_seq > me.read_seq;
            let conv_presence = ms
                .iter()
                .filter(|m| m.user_id != user.as_str())
                .take(PRESENCE_LIMIT)
                .filter_map(|m| presence.get(m.user_id.as_str()).cloned())
                .collect();
            let conv_profiles = ms
                .iter()
                .filter(|m| m.user_id != user.as_str())
                .take(PRESENCE_LIMIT)
                .filter_map(|m| profiles.get(m.user_id.as_str()).cloned())
                .collect();
            let receipts = ms
                .iter()
                .filter(|m| m.user_id != user.as_str())
                .take(PRESENCE_LIMIT)
                .map(|m| MemberReceipt {
                    user: UserId::from_trusted(m.user_id.clone()),
                    delivered_seq: m.delivered_seq,
                    read_seq: m.read_seq,
                })
                .collect();
            out.push((
                (settings.pinned, activity),
                Conversation {
                    kind: if c.kind == "group" {
                        ConvKind::Group
                    } else {
                        ConvKind::Direct
                    },
                    avatar: group::group_avatar_url(&c),
                    activity,
                    settings,
                    mentioned,
                    title: c.title,
                    admins: ms
                        .iter()
                        .filter(|m| m.role == "admin")
                        .map(|m| UserId::from_trusted(m.user_id.clone()))
                        .collect(),
                    members: ms
                        .into_iter()
                        .map(|m| UserId::from_trusted(m.user_id))
                        .collect(),
                    created_at: c.created_at,
                    last_seq: c.last_seq,
                    read_seq,
                    unread: unread.get(&c.id).copied().unwrap_or(0),
                    presence: conv_presence,
                    profiles: conv_profiles,
                    receipts,
                    last_message: newest.remove(&c.id),
                    id: ConvId::from_trusted(c.id),
                },
            ));
        }
        out.sort_by(|(a, x), (b, y)| b.cmp(a).then_with(|| y.id.cmp(&x.id)));
        Ok(out.into_iter().map(|(_, c)| c).collect())
    }

    /// The newest message of each conversation, as `user` sees it, by conversation id.
    async fn newest_messages(
        &self,
        convs: &[conversations::Model],
        user: &UserId,
    ) -> Result<HashMap<String, Message>> {
        let with_messages: Vec<&conversations::Model> =
            convs.iter().filter(|c| c.last_seq > 0).collect();
        let mut msgs = Vec::new();
        // Chunks keep the statement inside SQLite's expression depth (1 000) and bound values.
        for chunk in with_messages.chunks(400) {
            let mut which = Condition::any();
            for c in chunk {
                which = which.add(
                    Condition::all()
                        .add(messages::Column::ConvId.eq(c.id.as_str()))
                        .add(messages::Column::Seq.eq(c.last_seq)),
                );
            }
            for row in messages::Entity::find()
                .filter(which)
                .all(&self.read)
                .await?
            {
                msgs.push(message_from_row(row)?);
            }
        }
        decorate(&self.read, user, &mut msgs).await?;
        Ok(msgs.into_iter().map(|m| (m.conv.to_string(), m)).collect())
    }

    /// The user's `(conv, read_seq)` in every conversation they are in.
    pub async fn read_watermarks(&self, user: &UserId) -> Result<Vec<(String, i64)>> {
        Ok(members::Entity::find()
            .select_only()
            .column(members::Column::ConvId)
            .column(members::Column::ReadSeq)
            .filter(members::Column::UserId.eq(user.as_str()))
            .into_tuple()
            .all(&self.read)
            .await?)
    }

    /// Unread messages per conversation, given the user's `(conv, read_seq)` watermarks:
    /// messages after the watermark, not the user's own, not deleted (for everyone or for
    /// the user), not system lines.
    pub async fn unread_counts(
        &self,
        user: &UserId,
        watermarks: &[(String, i64)],
    ) -> Result<HashMap<String, i64>> {
        let mut counts = HashMap::new();
        // Chunks keep the statement's bound values well inside SQLite's limit.
        for chunk in watermarks.chunks(400) {
            let mut after = Condition::any();
            for (conv, read_seq) in chunk {
                after = after.add(
                    Condition::all()
                        .add(messages::Column::ConvId.eq(conv.as_str()))
                        .add(messages::Column::Seq.gt(*read_seq)),
                );
            }
            let hidden = Query::select()
                .column(hidden_messages::Column::MsgId)
                .from(hidden_messages::Entity)
                .and_where(hidden_messages::Column::UserId.eq(user.as_str()))
                .to_owned();
            let rows: Vec<(String, i64)> = messages::Entity::find()
                .select_only()
                .column(messages::Column::ConvId)
                .column_as(messages::Column::Id.count(), "n")
                .filter(after)
                .filter(messages::Column::SenderId.ne(user.as_str()))
                .filter(messages::Column::DeletedAt.is_null())
                .filter(messages::Column::Kind.ne("system"))
                .filter(messages::Column::Id.not_in_subquery(hidden))
                .group_by(messages::Column::ConvId)
                .into_tuple()
                .all(&self.read)
                .await?;
            counts.extend(rows);
        }
        Ok(counts)
    }

    pub async fn conversation(&self, conv: &ConvId, user: &UserId) -> Result<Conversation> {
        let row = conversations::Entity::find_by_id(conv.as_str())
            .one(&self.read)
            .await?
            .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such conversation"))?;
        membership(&self.read, conv, user).await?;
        self.conversation_for(&row, user).await
    }

    /// Adds members to a group (admins only). New members see messages from their join on.
    pub async fn add_members(
        &self,
        conv: &ConvId,
        by: &UserId,
        new: &[UserId],
    ) -> Result<(Conversation, Vec<Outgoing>)> {
        if new.is_empty() {
            return Err(Error::client(ErrorCode::BadRequest, "`members` is empty"));
        }
        let txn = self.db.begin().await?;
        let row = group::admin_of_group(&txn, conv, by).await?;
        let existing = member_ids(&txn, conv).await?;
        let added: Vec<UserId> = new
            .iter()
            .filter(|u| !existing.contains(u))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        check_may_add(&txn, by, &added).await?;
        if existing.len() + added.len() > MAX_GROUP_MEMBERS {
            return Err(Error::client(
                ErrorCode::BadRequest,
                format!("a group has at most {MAX_GROUP_MEMBERS} members"),
            ));
        }
        let mut outs = Vec::new();
        if !added.is_empty() {
            let last_seq = row.last_seq;
            let now = now_ms();
            members::Entity::insert_many(added.iter().map(|u| members::ActiveModel {
                conv_id: Set(conv.to_string()),
                user_id: Set(u.to_string()),
                role: Set("member".to_owned()),
                // Joining members start caught up: earlier history is not theirs to count.
                delivered_seq: Set(last_seq),
                read_seq: Set(last_seq),
                joined_at: Set(now),
                ..Default::default()
            }))
            .exec(&txn)
            .await?;
            let entry = Entry {
                ts: now,
                body: UpdateBody::Member {
                    conv: conv.clone(),
                    action: MemberAction::Added,
                    users: added.clone(),
                    by: by.clone(),
                },
            };
            let everyone: Vec<UserId> = existing.iter().chain(&added).cloned().collect();
            let to = append(&txn, &everyone, &entry).await?;
            outs.push(Outgoing::new(&entry, to));
            let content = group::line(SystemEvent::Added, added);
            outs.push(
                group::system_line(&txn, conv, by, content, &everyone)
                    .await?
                    .1,
            );
        }
        txn.commit().await?;
        if !outs.is_empty() {
            self.shared.conversation_changed(conv).await;
        }
        Ok((self.conversation(conv, by).await?, outs))
    }

    /// Removes a member: admins remove anyone, any member may remove themself (leave). When
    /// that leaves a group with members but no admin, its longest-standing member becomes one
    /// (announced after the removal), so a group can always still be managed.
    pub async fn remove_member(
        &self,
        conv: &ConvId,
        by: &UserId,
        who: &UserId,
    ) -> Result<Vec<Outgoing>> {
        let txn = self.db.begin().await?;
        if by != who {
            group::admin_of_group(&txn, conv, by).await?;
        } else {
            let row = group::lock_conversation(&txn, conv).await?;
            membership(&txn, conv, by).await?;
            if row.kind != "group" {
                return Err(Error::client(
                    ErrorCode::BadRequest,
                    "direct conversations have fixed members",
                ));
            }
        }
        let existing = member_ids(&txn, conv).await?;
        if !existing.contains(who) {
            return Err(Error::client(
                ErrorCode::NotFound,
                "that user is not a member",
            ));
        }
        members::Entity::delete_by_id((conv.to_string(), who.to_string()))
            .exec(&txn)
            .await?;
        let now = now_ms();
        let removed = Entry {
            ts: now,
            body: UpdateBody::Member {
                conv: conv.clone(),
                action: MemberAction::Removed,
                users: vec![who.clone()],
                by: by.clone(),
            },
        };
        // The removed user hears about it too, then nothing more from this conversation.
        let mut out = vec![Outgoing::new(
            &removed,
            append(&txn, &existing, &removed).await?,
        )];
        let content = match by == who {
            true => group::line(SystemEvent::Left, vec![]),
            false => group::line(SystemEvent::Removed, vec![who.clone()]),
        };
        out.push(
            group::system_line(&txn, conv, by, content, &existing)
                .await?
                .1,
        );
        if let Some(heir) = promote_if_leaderless(&txn, conv).await? {
            let promoted = Entry {
                ts: now,
                body: UpdateBody::Member {
                    conv: conv.clone(),
                    action: MemberAction::Promoted,
                    users: vec![heir.clone()],
                    by: who.clone(),
                },
            };
            let remaining: Vec<UserId> = existing.into_iter().filter(|u| u != who).collect();
            let to: Vec<Appended> = append(&txn, &remaining, &promoted).await?;
            out.push(Outgoing::new(&promoted, to));
            let content = group::role_line(&heir, Role::Admin);
            out.push(
                group::system_line(&txn, conv, who, content, &remaining)
                    .await?
                    .1,
            );
        }
        txn.commit().await?;
        self.shared.conversation_changed(conv).await;
        Ok(out)
    }

    /// History, newest first: messages with `seq < before` (all when `before` is None).
    pub async fn history(
        &self,
        conv: &ConvId,
        user: &UserId,
        before: Option<i64>,
        limit: u64,
    ) -> Result<(Vec<Message>, Option<i64>)> {
        membership(&self.read, conv, user).await?;
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        // The newest [`CACHED_PAGE`] messages (what opening a chat shows) are cached,
        // undecorated, until the conversation's messages change: one page per conversation,
        // whatever the limits asked, which smaller pages are cut from.
        let cacheable = before.is_none() && limit <= CACHED_PAGE;
        let (hit, version) = match cacheable {
            true => self.shared.cached_page(conv, TOP_PAGE).await,
            false => (None, None),
        };
        let cached = hit.and_then(|b| serde_json::from_slice::<(Vec<Message>, bool)>(&b).ok());
        let (mut msgs, mut more) = match cached {
            Some(page) => page,
            None if cacheable => {
                let page = self.history_rows(conv, None, CACHED_PAGE).await?;
                if let Some(version) = version {
                    let bytes = serde_json::to_vec(&page).expect("messages serialise");
                    self.shared.cache_page(conv, version, TOP_PAGE, bytes).await;
                }
                page
            }
            None => self.history_rows(conv, before, limit).await?,
        };
        if msgs.len() as u64 > limit {
            msgs.truncate(limit as usize);
            more = true;
        }
        decorate(&self.read, user, &mut msgs).await?;
        let next = if more {
            msgs.last().map(|m| m.seq)
        } else {
            None
        };
        Ok((msgs, next))
    }

    /// A page of `conv`'s messages, newest first, before `before`; and whether more follow.
    async fn history_rows(
        &self,
        conv: &ConvId,
        before: Option<i64>,
        limit: u64,
    ) -> Result<(Vec<Message>, bool)> {
        let mut q = messages::Entity::find().filter(messages::Column::ConvId.eq(conv.as_str()));
        if let Some(b) = before {
            q = q.filter(messages::Column::Seq.lt(b));
        }
        let rows = q
            .order_by_desc(messages::Column::Seq)
            .limit(limit + 1)
            .all(&self.read)
            .await?;
        let more = rows.len() as u64 > limit;
        let msgs = rows
            .into_iter()
            .take(limit as usize)
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((msgs, more))
    }
}
