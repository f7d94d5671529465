//! Conversations people can live in: each member's own settings (muted until, pinned since,
//! archived at which seq, marked unread), where they were last mentioned, the group's picture,
//! and when each conversation was last active (its newest message; lists are ordered by it).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Members {
    Table,
    MutedUntil,
    PinnedAt,
    ArchivedSeq,
    MarkedUnread,
    MentionedSeq,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    AvatarFile,
    AvatarAt,
    LastAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            big_integer_null(Members::MutedUntil),
            big_integer_null(Members::PinnedAt),
            big_integer_null(Members::ArchivedSeq),
            boolean(Members::MarkedUnread).default(false).to_owned(),
            big_integer(Members::MentionedSeq).default(0).to_owned(),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Members::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [
            string_len_null(Conversations::AvatarFile, 64),
            big_integer_null(Conversations::AvatarAt),
            big_integer(Conversations::LastAt).default(0).to_owned(),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Conversations::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE conversations SET last_at = COALESCE((SELECT MAX(m.created_at) \
                 FROM messages m WHERE m.conv_id = conversations.id), conversations.created_at)",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_conversations_avatar_file")
                    .table(Conversations::Table)
                    .col(Conversations::AvatarFile)
                    .to_owned(),
            )
            .await
    }
}
