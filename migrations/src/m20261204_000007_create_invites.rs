//! Invite codes, for servers that take sign-ups only by invitation (`--signup invite`). An
//! operator makes them with `courier invite create`; each is good for a number of sign-ups
//! until it expires. Only a hash of the code is kept.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Invites {
    Table,
    CodeHash,
    UsesLeft,
    ExpiresAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Invites::Table)
                    .if_not_exists()
                    .col(string(Invites::CodeHash).primary_key())
                    .col(big_integer(Invites::UsesLeft))
                    .col(big_integer(Invites::ExpiresAt))
                    .col(big_integer(Invites::CreatedAt))
                    .to_owned(),
            )
            .await
    }
}
