//! Moderation: reports users file on users or messages (`POST /v1/reports`), each with a
//! snapshot of the message as the reporter saw it, open until an operator resolves it
//! (`courier admin reports`, `courier admin resolve`); and suspended accounts
//! (`courier admin suspend`), whose devices are refused until unsuspended.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Reports {
    Table,
    Id,
    ReporterId,
    UserId,
    MsgId,
    ConvId,
    Reason,
    Note,
    Snapshot,
    CreatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    SuspendedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reports::Table)
                    .if_not_exists()
                    .col(string_len(Reports::Id, 64).primary_key())
                    .col(string_len(Reports::ReporterId, 64))
                    .col(string_len(Reports::UserId, 64))
                    .col(string_len_null(Reports::MsgId, 64))
                    .col(string_len_null(Reports::ConvId, 64))
                    .col(string_len(Reports::Reason, 16))
                    .col(text_null(Reports::Note))
                    .col(text_null(Reports::Snapshot))
                    .col(big_integer(Reports::CreatedAt))
                    .col(big_integer_null(Reports::ResolvedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reports_open")
                    .table(Reports::Table)
                    .col(Reports::ResolvedAt)
                    .col(Reports::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(big_integer_null(Users::SuspendedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_suspended")
                    .table(Users::Table)
                    .col(Users::SuspendedAt)
                    .to_owned(),
            )
            .await
    }
}
