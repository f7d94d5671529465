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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
