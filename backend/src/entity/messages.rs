//! Table `messages`. Messages; `(conv_id, seq)` and `(device_id, cmid)` are unique.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub conv_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub device_id: String,
    pub cmid: String,
    pub kind: String,
    /// The kind-specific fields as JSON (`{"text":…}`, `{"location":{…}}`, …).
    #[sea_orm(column_type = "Text")]
    pub content: String,
    pub reply_to: Option<String>,
    pub forward_of: Option<String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    /// Deleted for everyone: `content` is erased, the row keeps its seq.
    pub deleted_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
