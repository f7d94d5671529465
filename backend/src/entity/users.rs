//! Table `users`. Accounts; `last_useq` is the head of the user's update log.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub last_useq: i64,
    /// The log was trimmed up to and including this useq.
    pub log_floor: i64,
    pub created_at: i64,
    /// Who may add this user to groups: `everyone`, `contacts` or `nobody`.
    pub group_adds: String,
    /// Set while an operator has the account suspended (`courier admin suspend`).
    pub suspended_at: Option<i64>,
    /// Shown instead of the username where set (1–64 characters).
    pub display_name: Option<String>,
    /// The uploaded image file the avatar is made from, and when it was set.
    pub avatar_file: Option<String>,
    pub avatar_at: Option<i64>,
    /// Set once the account was deleted: the row stays for its messages' sake.
    pub deleted_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
