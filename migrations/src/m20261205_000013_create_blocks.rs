//! Blocking: who blocked whom and when (`POST /v1/blocks`). A message a blocked user sends
//! into a group they share with their blocker is hidden from the blocker with a
//! `hidden_messages` row marked `blocked`, so it shows as hidden rather than as deleted.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Blocks {
    Table,
    BlockerId,
    BlockedId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum HiddenMessages {
    Table,
    Blocked,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Blocks::Table)
                    .if_not_exists()
                    .col(string_len(Blocks::BlockerId, 64))
                    .col(string_len(Blocks::BlockedId, 64))
                    .col(big_integer(Blocks::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Blocks::BlockerId)
                            .col(Blocks::BlockedId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_blocks_blocked")
                    .table(Blocks::Table)
                    .col(Blocks::BlockedId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(HiddenMessages::Table)
                    .add_column(boolean(HiddenMessages::Blocked).default(false))
                    .to_owned(),
            )
            .await
    }
}
