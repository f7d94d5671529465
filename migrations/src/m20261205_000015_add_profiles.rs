//! Profiles: a user's display name and avatar (`PATCH /v1/me`). The avatar is one of the
//! user's uploaded image files; its image job makes the square `avatar.webp`, whose key the
//! blob keeps (`blobs.avatar_key`; images processed before this have none). `avatar_at`
//! changes with every new avatar: clients cache by it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    DisplayName,
    AvatarFile,
    AvatarAt,
}

#[derive(DeriveIden)]
enum Blobs {
    Table,
    AvatarKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            string_len_null(Users::DisplayName, 256),
            string_len_null(Users::AvatarFile, 64),
            big_integer_null(Users::AvatarAt),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_users_avatar_file")
                    .table(Users::Table)
                    .col(Users::AvatarFile)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Blobs::Table)
                    .add_column(string_null(Blobs::AvatarKey))
                    .to_owned(),
            )
            .await
    }
}
