//! Deleting an account (`DELETE /v1/me`, `courier admin delete-user`). The user row stays, so
//! the account's messages keep their sender, shown as a deleted account (`sender_deleted`, a
//! profile with no name or avatar); everything else of the account's goes:
//!
//! - everyone who shared a conversation with it gets a `profile` update saying `deleted`;
//! - it leaves its groups, as by leaving (admin rights pass on, members get `member`);
//! - every device is revoked (tokens refused at once; connections closed by every server
//!   process, see `crate::revocations`);
//! - its direct conversations stay for the other side, who can read them but not write into
//!   them: the deleted account blocks each partner (a block only the partner's sends meet);
//! - its name, avatar and password go; its username stays taken for a grace period
//!   ([`Store::free_deleted_usernames`]), so nobody can pose as it to its contacts at once;
//! - its uploads that no message carries go now, the others with the last message carrying
//!   them (storage collection).

use super::gc::UNSENT;
use super::log::{append, Entry, Outgoing};
use super::Store;
use crate::entity::{blocks, conversations, devices, files, members, users};
use crate::error::{Error, Result};
use crate::util::now_ms;
use protocol::http::Profile;
use protocol::{ConvId, DeviceId, ErrorCode, UpdateBody, UserId};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait};
use std::time::Duration;

/// What deleting an account did, for the caller to act on.
pub struct Deleted {
    pub user: UserId,
    /// Revoked: close their connections.
    pub devices: Vec<DeviceId>,
    /// The groups' `member` updates and the contacts' `profile` update: deliver them.
    pub out: Vec<Outgoing>,
}

impl Store {
    /// Deletes `user`'s account if `password` is its password (`forbidden` otherwise).
    pub async fn delete_account(&self, user: &UserId, password: &str) -> Result<Deleted> {
        self.check_password(user, password).await?;
        self.delete_user(user).await
    }

    /// Deletes the account named `username` (an operator's doing: no password).
    pub async fn delete_account_named(&self, username: &str) -> Result<Deleted> {
        let found = users::Entity::find()
            .filter(users::Column::Username.eq(username.to_lowercase()))
            .filter(users::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?;
        let Some(u) = found else {
            return Err(Error::client(
                ErrorCode::NotFound,
                format!("no user {username}"),
            ));
        };
        self.delete_user(&UserId::from_trusted(u.id)).await
    }

    async fn delete_user(&self, user: &UserId) -> Result<Deleted> {
        // Everyone who shares a conversation with it now hears it is gone (a `profile` update
        // saying `deleted`), so their apps stop showing its name at once; blocked or not.
        let contacts = self.sharing_with(user).await?;
        let mine = Query::select()
            .column(members::Column::ConvId)
            .from(members::Entity)
            .and_where(members::Column::UserId.eq(user.as_str()))
            .to_owned();
        let convs: Vec<(String, String)> = conversations::Entity::find()
            .select_only()
            .columns([conversations::Column::Id, conversations::Column::Kind])
            .filter(conversations::Column::Id.in_subquery(mine))
            .into_tuple()
            .all(&self.db)
            .await?;
        // Each group left as by leaving it, in its own transaction.
        let mut out = Vec::new();
        let mut direct = Vec::new();
        for (conv, kind) in convs {
            let conv = ConvId::from_trusted(conv);
            if kind == "group" {
                out.extend(self.remove_member(&conv, user, user).await?);
            } else {
                direct.push(conv);
            }
        }
        let partners: Vec<String> = members::Entity::find()
            .select_only()
            .column(members::Column::UserId)
            .filter(members::Column::ConvId.is_in(direct.iter().map(ConvId::as_str)))
            .filter(members::Column::UserId.ne(user.as_str()))
            .into_tuple()
            .all(&self.db)
            .await?;
        let now = now_ms();
        let txn = self.db.begin().await?;
        users::Entity::update_many()
            .col_expr(users::Column::DeletedAt, Expr::value(now))
            .col_expr(users::Column::PasswordHash, Expr::value(""))
            .col_expr(
                users::Column::DisplayName,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                users::Column::AvatarFile,
                Expr::value(Option::<String>::None),
            )
            .col_expr(users::Column::AvatarAt, Expr::value(Option::<i64>::None))
            .filter(users::Column::Id.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let revoked: Vec<String> = devices::Entity::find()
            .select_only()
            .column(devices::Column::Id)
            .filter(devices::Column::UserId.eq(user.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .into_tuple()
            .all(&txn)
            .await?;
        devices::Entity::update_many()
            .col_expr(devices::Column::RevokedAt, Expr::value(now))
            .col_expr(
                devices::Column::PushToken,
                Expr::value(Option::<String>::None),
            )
            .filter(devices::Column::UserId.eq(user.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if !partners.is_empty() {
            let rows = partners.iter().map(|p| blocks::ActiveModel {
                blocker_id: Set(user.to_string()),
                blocked_id: Set(p.clone()),
                created_at: Set(now),
            });
            blocks::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([blocks::Column::BlockerId, blocks::Column::BlockedId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        files::Entity::delete_many()
            .filter(files::Column::OwnerId.eq(user.as_str()))
            .filter(Expr::cust(UNSENT.replace("f.id", "files.id")))
            .exec(&txn)
            .await?;
        let gone = Entry {
            ts: now,
            body: UpdateBody::Profile {
                profile: Profile::deleted(user.clone()),
            },
        };
        out.push(Outgoing::new(&gone, append(&txn, &contacts, &gone).await?));
        txn.commit().await?;
        self.tokens.forget_user(user);
        tracing::info!(%user, devices = revoked.len(), "account deleted");
        Ok(Deleted {
            user: user.clone(),
            devices: revoked.into_iter().map(DeviceId::from_trusted).collect(),
            out,
        })
    }

    /// Frees the usernames of accounts deleted longer than `grace` ago (they become `~` and
    /// the id, which no sign-up can take); returns how many.
    pub async fn free_deleted_usernames(&self, grace: Duration) -> Result<u64> {
        let before = now_ms() - grace.as_millis() as i64;
        let freed = users::Entity::update_many()
            .col_expr(users::Column::Username, Expr::cust("'~' || id"))
            .filter(users::Column::DeletedAt.lt(before))
            .filter(users::Column::Username.not_like("~%"))
            .exec(&self.db)
            .await?;
        Ok(freed.rows_affected)
    }
}
