//! Table `conversations`. Direct and group conversations; `last_seq` is the newest message's seq.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    pub title: Option<String>,
    /// `{user_a}:{user_b}` (sorted) for direct conversations, so each pair has one.
    pub direct_key: Option<String>,
    pub created_by: String,
    pub last_seq: i64,
    pub created_at: i64,
    /// The group's picture: an image file, whose square `avatar.webp` is served.
    pub avatar_file: Option<String>,
    /// Changes with every new picture: clients cache by it.
    pub avatar_at: Option<i64>,
    /// When the newest message was sent (`created_at` while there is none).
    pub last_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
