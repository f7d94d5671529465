//! Table `members`. Membership with each member's receipt watermarks.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conv_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// `admin` or `member`.
    pub role: String,
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub joined_at: i64,
    /// Muted until (Unix ms), `-1` for always.
    pub muted_until: Option<i64>,
    /// When the member pinned the conversation.
    pub pinned_at: Option<i64>,
    /// Archived when the conversation's last seq was this; a newer message un-archives it
    /// unless it is muted.
    pub archived_seq: Option<i64>,
    pub marked_unread: bool,
    /// The newest seq that mentions the member (by id or `@all`).
    pub mentioned_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
