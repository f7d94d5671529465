//! Table `uploads`. Resumable (tus) uploads; `file_id` is set once the upload completed. The
//! bytes received so far are in the object store, one object per `upload_parts` row.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: String,
    pub length: i64,
    pub name: Option<String>,
    pub file_id: Option<String>,
    pub created_at: i64,
    /// The uploader asked to store the file as uploaded, metadata included.
    pub keep_metadata: bool,
    /// Bytes received and stored (the tus offset).
    pub received: i64,
    /// A PATCH holds the upload until then (Unix ms), by `lock_owner`'s token.
    pub locked_until: Option<i64>,
    pub lock_owner: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
