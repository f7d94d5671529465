//! Storage collection: `doomed_objects` lists object-store keys nothing references any more
//! (a collected blob's bytes and derivatives, a finished job's output for a blob collected
//! meanwhile); they are written in the transaction that drops the reference and deleted
//! from the store afterwards, so a crash in between leaves nothing behind. Files are found by
//! owner, for quotas.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DoomedObjects {
    Table,
    Key,
    Since,
}

#[derive(DeriveIden)]
enum Files {
    Table,
    OwnerId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DoomedObjects::Table)
                    .if_not_exists()
                    .col(string(DoomedObjects::Key).primary_key())
                    .col(big_integer(DoomedObjects::Since))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("files_by_owner")
                    .table(Files::Table)
                    .col(Files::OwnerId)
                    .to_owned(),
            )
            .await
    }
}
