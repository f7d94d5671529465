//! Deleted accounts (`DELETE /v1/me`, `courier admin delete-user`): the row stays, so the
//! account's messages keep their sender (shown as a deleted account), with `deleted_at` set;
//! its username is freed after a grace period. Devices revoked lately are found by time: every
//! server process closes their connections (`backend::revocations`), so a revocation made by
//! another process (the command line, another backend) closes them too.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(big_integer_null(Users::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_deleted")
                    .table(Users::Table)
                    .col(Users::DeletedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_revoked")
                    .table(Devices::Table)
                    .col(Devices::RevokedAt)
                    .to_owned(),
            )
            .await
    }
}
