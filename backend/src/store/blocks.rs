//! Blocking: `user` blocks `other`. Between the two: no direct messages either way, no new
//! direct conversation and no group adds (`blocked`), no typing or presence either way. In a
//! group they share, both stay members and the blocker's devices get the blocked user's new
//! messages hidden (see `store::messages`).

use super::Store;
use crate::entity::{blocks, users};
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::http::Block;
use protocol::{ErrorCode, UserId};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use std::collections::{BTreeSet, HashSet};

/// Most users one account may have blocked at once.
pub const MAX_BLOCKS: u64 = 10_000;

/// `(blocker, blocked)` pairs where either side is one of `users`.
pub(super) async fn blocks_touching<C: ConnectionTrait>(
    db: &C,
    users: &BTreeSet<&str>,
) -> Result<Vec<(String, String)>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    Ok(blocks::Entity::find()
        .select_only()
        .columns([blocks::Column::BlockerId, blocks::Column::BlockedId])
        .filter(
            Condition::any()
                .add(blocks::Column::BlockerId.is_in(users.iter().copied()))
                .add(blocks::Column::BlockedId.is_in(users.iter().copied())),
        )
        .into_tuple()
        .all(db)
        .await?)
}

/// The users `user` blocked (`by_me`), or who blocked `user` (else).
pub(super) async fn block_side<C: ConnectionTrait>(
    db: &C,
    user: &str,
    by_me: bool,
) -> Result<HashSet<String>> {
    let (mine, theirs) = match by_me {
        true => (blocks::Column::BlockerId, blocks::Column::BlockedId),
        false => (blocks::Column::BlockedId, blocks::Column::BlockerId),
    };
    Ok(blocks::Entity::find()
        .select_only()
        .column(theirs)
        .filter(mine.eq(user))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// `blocked` when `by` and any of `others` blocked one another (either way).
pub(super) async fn refuse_blocked<C: ConnectionTrait>(
    db: &C,
    by: &UserId,
    others: &[UserId],
) -> Result<()> {
    let me = BTreeSet::from([by.as_str()]);
    let others: HashSet<&str> = others.iter().map(UserId::as_str).collect();
    let pairs = blocks_touching(db, &me).await?;
    let other_side = |(a, b): &(String, String)| {
        if a == by.as_str() {
            b.clone()
        } else {
            a.clone()
        }
    };
    if pairs
        .iter()
        .any(|p| others.contains(other_side(p).as_str()))
    {
        return Err(Error::client(
            ErrorCode::Blocked,
            "you and this user cannot message or add each other: one blocked the other",
        ));
    }
    Ok(())
}

impl Store {
    /// `user` blocks `other` (again: no change). Returns the block as listed, and whether it
    /// is new.
    pub async fn block(&self, user: &UserId, other: &UserId) -> Result<(Block, bool)> {
        if user == other {
            return Err(Error::client(
                ErrorCode::BadRequest,
                "you cannot block yourself",
            ));
        }
        let Some(target) = users::Entity::find_by_id(other.as_str())
            .one(&self.db)
            .await?
        else {
            return Err(Error::client(ErrorCode::NotFound, "no such user"));
        };
        let count = blocks::Entity::find()
            .filter(blocks::Column::BlockerId.eq(user.as_str()))
            .count(&self.db)
            .await?;
        if count >= MAX_BLOCKS {
            return Err(Error::client(
                ErrorCode::BadRequest,
                format!("at most {MAX_BLOCKS} users can be blocked at once"),
            ));
        }
        let inserted = blocks::Entity::insert(blocks::ActiveModel {
            blocker_id: Set(user.to_string()),
            blocked_id: Set(other.to_string()),
            created_at: Set(now_ms()),
        })
        .on_conflict(
            OnConflict::columns([blocks::Column::BlockerId, blocks::Column::BlockedId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        let since = blocks::Entity::find_by_id((user.to_string(), other.to_string()))
            .one(&self.db)
            .await?
            .map_or_else(now_ms, |b| b.created_at);
        let block = Block {
            user: other.clone(),
            username: target.username,
            since,
        };
        Ok((block, inserted > 0))
    }

    /// Lifts `user`'s block of `other`; whether there was one.
    pub async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let gone = blocks::Entity::delete_many()
            .filter(blocks::Column::BlockerId.eq(user.as_str()))
            .filter(blocks::Column::BlockedId.eq(other.as_str()))
            .exec(&self.db)
            .await?;
        Ok(gone.rows_affected > 0)
    }

    /// The users `user` blocked, most recent first.
    pub async fn blocks(&self, user: &UserId) -> Result<Vec<Block>> {
        let rows: Vec<(String, i64, String)> = blocks::Entity::find()
            .select_only()
            .column(blocks::Column::BlockedId)
            .column(blocks::Column::CreatedAt)
            .column(users::Column::Username)
            .join(
                sea_orm::JoinType::InnerJoin,
                blocks::Entity::belongs_to(users::Entity)
                    .from(blocks::Column::BlockedId)
                    .to(users::Column::Id)
                    .into(),
            )
            .filter(blocks::Column::BlockerId.eq(user.as_str()))
            .order_by_desc(blocks::Column::CreatedAt)
            .into_tuple()
            .all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, since, username)| Block {
                user: UserId::from_trusted(id),
                username,
                since,
            })
            .collect())
    }

    /// Everyone `user` blocked or was blocked by: they exchange no typing or presence.
    pub async fn blocked_either_way(&self, user: &UserId) -> Result<HashSet<UserId>> {
        let pairs = blocks_touching(&self.read, &BTreeSet::from([user.as_str()])).await?;
        Ok(pairs
            .into_iter()
            .map(|(a, b)| if a == user.as_str() { b } else { a })
            .map(UserId::from_trusted)
            .collect())
    }
}
