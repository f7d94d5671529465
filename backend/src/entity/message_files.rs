//! Table `message_files`. Which messages carry which files: members of those messages'
//! conversations may download the files.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub msg_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub file_id: String,
    pub conv_id: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
