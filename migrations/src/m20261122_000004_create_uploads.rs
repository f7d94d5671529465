//! Resumable uploads (tus): one row per upload in progress. The bytes so far are in the spool
//! file named after the upload; its length is the upload's offset.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    Id,
    OwnerId,
    Length,
    Name,
    FileId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Uploads::Table)
                    .col(string_len(Uploads::Id, 64).primary_key())
                    .col(string_len(Uploads::OwnerId, 64))
                    .col(big_integer(Uploads::Length))
                    .col(string_len_null(Uploads::Name, 255))
                    .col(string_len_null(Uploads::FileId, 64))
                    .col(big_integer(Uploads::CreatedAt))
                    .to_owned(),
            )
            .await
    }
}
