//! Table `blobs`. Stored bytes by SHA-256: one row (and one object) per distinct content.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    pub size: i64,
    pub mime: String,
    pub class: String,
    /// Where the object store keeps the bytes.
    pub storage_key: String,
    pub created_at: i64,
    /// `none` (nothing to make), `pending`, `ready` or `failed`.
    pub status: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_ms: Option<i64>,
    pub thumb_key: Option<String>,
    pub preview_key: Option<String>,
    pub poster_key: Option<String>,
    /// The square avatar an image makes (images processed before profiles have none).
    pub avatar_key: Option<String>,
    /// Why processing failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub failure: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
