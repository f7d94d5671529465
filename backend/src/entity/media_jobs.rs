//! Table `media_jobs`. Durable processing jobs, one per blob that needs derivatives.
//! `state`: `queued`, `running` (leased until `locked_until`), `done` or `failed`. Jobs are
//! claimed by `fair_at`, at most [`crate::store::jobs::RUNNING_PER_USER`] of a user's at once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    pub class: String,
    pub state: String,
    pub attempts: i32,
    pub run_after: i64,
    pub locked_until: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Who uploaded the bytes (the first uploader), for fair shares.
    pub owner_id: String,
    /// The job's place in line (Unix ms): its owner's previous job's plus a job's share.
    pub fair_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
