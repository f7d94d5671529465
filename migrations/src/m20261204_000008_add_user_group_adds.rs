//! Users say who may add them to groups (`everyone`, `contacts` or `nobody`); existing and new
//! accounts start at `contacts`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    GroupAdds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(string(Users::GroupAdds).default("contacts"))
                    .to_owned(),
            )
            .await
    }
}
