//! Table `updates`. The per-user update log: gapless `useq` per user. Message entries point at the message; others carry their JSON body.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "updates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub useq: i64,
    /// `message`, `receipt` or `member`.
    pub kind: String,
    pub conv_id: Option<String>,
    pub seq: Option<i64>,
    pub msg_id: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub payload: Option<String>,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
