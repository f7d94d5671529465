//! Table `reports`. Reports users file on users or messages, open until resolved.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub reporter_id: String,
    /// The reported user (a message's sender when a message is reported).
    pub user_id: String,
    pub msg_id: Option<String>,
    pub conv_id: Option<String>,
    /// `spam`, `abuse` or `other`.
    pub reason: String,
    pub note: Option<String>,
    /// The message as the reporter saw it when reporting (JSON), for message reports.
    pub snapshot: Option<String>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
