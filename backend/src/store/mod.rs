//! Storage operations, each one transaction over the SeaORM entities. The engine and the HTTP
//! API call these; nothing else touches the database.
//!
//! Gapless counters: `conversations.last_seq` and `users.last_useq` are bumped with
//! `UPDATE … SET n = n + 1 … RETURNING n` inside the writing transaction. The row lock that
//! takes (PostgreSQL) or the single writer (SQLite) orders concurrent writers, and a rolled-back
//! transaction takes its number with it, so readers never see a hole. Two PostgreSQL writers
//! that lock the same rows in different orders could deadlock (and PostgreSQL takes its
//! `deadlock_timeout`, 1 s, to notice): so the writers lock the rows a multi-row UPDATE will
//! touch first, in key order ([`locks_rows_in_order`]), always conversations before members
//! before users. The lock is `FOR NO KEY UPDATE`, what the UPDATE itself takes: it does not
//! block the foreign-key checks (`KEY SHARE`) of other writers' inserts. Should one still be aborted, the send batcher retries its batch (nothing of
//! an aborted transaction was acknowledged).

pub mod accounts;
pub mod batch;
pub mod blocks;
pub mod changes;
pub mod conversations;
pub mod deletion;
pub mod gc;
pub mod group;
pub mod invites;
pub mod jobs;
pub mod log;
pub mod media;
pub mod messages;
pub mod moderation;
mod passwords;
pub mod presence;
pub mod profiles;
pub mod receipts;
mod rows;
pub mod search;
pub mod settings;
pub mod token_cache;
pub mod trim;
pub mod uploads;

use crate::shared::{Limits, Shared};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Where every write goes, and reads that must see a transaction's own writes.
    pub db: DatabaseConnection,
    /// Reads that need no transaction: on SQLite, read-only connections of their own (WAL lets
    /// them read while the one writer writes, so a flood of history reads does not queue sends
    /// behind it); on PostgreSQL, the same pool as `db`.
    pub read: DatabaseConnection,
    /// Presence, rate limits and the history cache (Redis or memory).
    pub shared: Shared,
    /// A device token unused for longer stops working.
    pub token_idle_ttl: std::time::Duration,
    /// Tokens checked in the last second.
    pub tokens: std::sync::Arc<token_cache::TokenCache>,
    /// See [`Store::background_turn`].
    background: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// A store whose shared state is this process's own (presence and cache then come from
    /// the database); see [`Store::with_shared`].
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            read: db.clone(),
            db,
            shared: Shared::memory(Limits::default(), false),
            token_idle_ttl: std::time::Duration::from_secs(90 * 24 * 3600),
            tokens: Default::default(),
            background: Default::default(),
        }
    }

    pub fn with_token_idle_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.token_idle_ttl = ttl;
        self
    }

    /// On SQLite, writes other than users' messages and presence (stored uploads, media jobs,
    /// storage collection) take turns among themselves before they queue for the one writer:
    /// a send batch then waits behind at most one of them, not behind a burst of uploads all
    /// committing at once. PostgreSQL has writers enough, and nothing waits.
    pub(crate) async fn background_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => Some(self.background.lock().await),
            _ => None,
        }
    }

    /// Reads go to `read` (see [`crate::db::connect_reader`]).
    pub fn with_reader(mut self, read: DatabaseConnection) -> Self {
        self.read = read;
        self
    }

    pub fn with_shared(mut self, shared: Shared) -> Self {
        self.shared = shared;
        self
    }
}

/// Whether row locks must be taken in key order before a multi-row UPDATE: PostgreSQL locks
/// such rows in scan order, which differs between transactions; SQLite has one writer at a time.
pub(crate) fn locks_rows_in_order<C: ConnectionTrait>(db: &C) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Makes the transactions of one user that call this take turns (PostgreSQL: they lock the
/// user's row; SQLite has one writer at a time), so what each reads of the user's other rows
/// before it writes — their devices, their jobs in line — is not read by two at once.
pub(crate) async fn take_turns_as<C: ConnectionTrait>(
    txn: &C,
    user: &str,
) -> crate::error::Result<()> {
    if locks_rows_in_order(txn) {
        use sea_orm::{EntityTrait, QuerySelect};
        crate::entity::users::Entity::find_by_id(user)
            .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
            .one(txn)
            .await?;
    }
    Ok(())
}
