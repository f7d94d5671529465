//! Edits, deletes and reactions; presence and last seen; push tokens; log trimming.
//!
//! - `messages.edited_at`, `messages.deleted_at`: a message deleted for everyone keeps its row
//!   (so `seq` stays gapless) with its content erased.
//! - `hidden_messages`: messages a user deleted for themself.
//! - `reactions`: one row per (message, user, emoji).
//! - `devices.online`, `devices.last_seen_at`: from the broker's connect/disconnect events;
//!   `devices.push_provider`, `devices.push_token`: where to notify a device that is away.
//! - `users.log_floor`: the user's log was trimmed up to and including this useq.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    EditedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum HiddenMessages {
    Table,
    UserId,
    MsgId,
    ConvId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Reactions {
    Table,
    MsgId,
    UserId,
    Emoji,
    ConvId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Online,
    LastSeenAt,
    PushProvider,
    PushToken,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    LogFloor,
}

#[derive(DeriveIden)]
enum Updates {
    Table,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for col in [
            big_integer_null(Messages::EditedAt),
            big_integer_null(Messages::DeletedAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [
            boolean(Devices::Online).default(false).to_owned(),
            big_integer_null(Devices::LastSeenAt),
            string_len_null(Devices::PushProvider, 16),
            string_len_null(Devices::PushToken, 512),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Devices::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(big_integer(Users::LogFloor).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HiddenMessages::Table)
                    .col(string_len(HiddenMessages::UserId, 64))
                    .col(string_len(HiddenMessages::MsgId, 64))
                    .col(string_len(HiddenMessages::ConvId, 64))
                    .col(big_integer(HiddenMessages::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(HiddenMessages::UserId)
                            .col(HiddenMessages::MsgId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Reactions::Table)
                    .col(string_len(Reactions::MsgId, 64))
                    .col(string_len(Reactions::UserId, 64))
                    .col(string_len(Reactions::Emoji, 32))
                    .col(string_len(Reactions::ConvId, 64))
                    .col(big_integer(Reactions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Reactions::MsgId)
                            .col(Reactions::UserId)
                            .col(Reactions::Emoji),
                    )
                    .to_owned(),
            )
            .await?;
        // The trimmer looks for old entries.
        manager
            .create_index(
                Index::create()
                    .name("updates_by_created_at")
                    .table(Updates::Table)
                    .col(Updates::CreatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
