//! Users, devices, conversations, members, messages and the per-user update log.
//!
//! Counters that must be gapless live on their owner row and are bumped inside the writing
//! transaction: `conversations.last_seq` (message order) and `users.last_useq` (update log).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    LastUseq,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    UserId,
    Name,
    Platform,
    TokenHash,
    Cursor,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    Kind,
    Title,
    DirectKey,
    CreatedBy,
    LastSeq,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    ConvId,
    UserId,
    Role,
    DeliveredSeq,
    ReadSeq,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ConvId,
    Seq,
    SenderId,
    DeviceId,
    Cmid,
    Kind,
    Content,
    ReplyTo,
    ForwardOf,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Updates {
    Table,
    UserId,
    Useq,
    Kind,
    ConvId,
    Seq,
    MsgId,
    Payload,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(string_len(Users::Id, 64).primary_key())
                    .col(string_len_uniq(Users::Username, 64))
                    .col(string(Users::PasswordHash))
                    .col(big_integer(Users::LastUseq).default(0))
                    .col(big_integer(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(string_len(Devices::Id, 64).primary_key())
                    .col(string_len(Devices::UserId, 64))
                    .col(string_len(Devices::Name, 128))
                    .col(string_len(Devices::Platform, 32))
                    .col(string_len_uniq(Devices::TokenHash, 64))
                    .col(big_integer(Devices::Cursor).default(0))
                    .col(big_integer(Devices::CreatedAt))
                    .col(big_integer_null(Devices::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Devices::Table, Devices::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("devices_by_user")
                    .table(Devices::Table)
                    .col(Devices::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .col(string_len(Conversations::Id, 64).primary_key())
                    .col(string_len(Conversations::Kind, 16))
                    .col(string_len_null(Conversations::Title, 256))
                    .col(string_len_null(Conversations::DirectKey, 160).unique_key())
                    .col(string_len(Conversations::CreatedBy, 64))
                    .col(big_integer(Conversations::LastSeq).default(0))
                    .col(big_integer(Conversations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Members::Table)
                    .col(string_len(Members::ConvId, 64))
                    .col(string_len(Members::UserId, 64))
                    .col(string_len(Members::Role, 16))
                    .col(big_integer(Members::DeliveredSeq).default(0))
                    .col(big_integer(Members::ReadSeq).default(0))
                    .col(big_integer(Members::JoinedAt))
                    .primary_key(Index::create().col(Members::ConvId).col(Members::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Members::Table, Members::ConvId)
                            .to(Conversations::Table, Conversations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("members_by_user")
                    .table(Members::Table)
                    .col(Members::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(string_len(Messages::Id, 64).primary_key())
                    .col(string_len(Messages::ConvId, 64))
                    .col(big_integer(Messages::Seq))
                    .col(string_len(Messages::SenderId, 64))
                    .col(string_len(Messages::DeviceId, 64))
                    .col(string_len(Messages::Cmid, 64))
                    .col(string_len(Messages::Kind, 16))
                    .col(text(Messages::Content))
                    .col(string_len_null(Messages::ReplyTo, 64))
                    .col(string_len_null(Messages::ForwardOf, 64))
                    .col(big_integer(Messages::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("messages_by_conv_seq")
                    .table(Messages::Table)
                    .col(Messages::ConvId)
                    .col(Messages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("messages_by_device_cmid")
                    .table(Messages::Table)
                    .col(Messages::DeviceId)
                    .col(Messages::Cmid)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Updates::Table)
                    .col(string_len(Updates::UserId, 64))
                    .col(big_integer(Updates::Useq))
                    .col(string_len(Updates::Kind, 16))
                    .col(string_len_null(Updates::ConvId, 64))
                    .col(big_integer_null(Updates::Seq))
                    .col(string_len_null(Updates::MsgId, 64))
                    .col(text_null(Updates::Payload))
                    .col(big_integer(Updates::CreatedAt))
                    .primary_key(Index::create().col(Updates::UserId).col(Updates::Useq))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
