//! When each device's token was last used (HTTP requests and MQTT connects, renewed at most
//! every so often), for the idle expiry of `--token-idle-ttl`. Existing devices start unset:
//! their last use counts from their log-in or their last presence.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Devices {
    Table,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(big_integer_null(Devices::UsedAt))
                    .to_owned(),
            )
            .await
    }
}
