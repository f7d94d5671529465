//! Table `devices`. A user's devices; `cursor` is the highest useq the device acknowledged.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub platform: String,
    pub token_hash: String,
    pub cursor: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Connected to the broker, as its last presence event said.
    pub online: bool,
    pub last_seen_at: Option<i64>,
    /// When its token was last used (renewed at most every [`crate::store::accounts::RENEW_EVERY`]).
    pub used_at: Option<i64>,
    pub push_provider: Option<String>,
    pub push_token: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
