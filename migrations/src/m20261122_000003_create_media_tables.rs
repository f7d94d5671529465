//! Media: content-addressed blobs, the files users upload (each upload is its own file, many
//! may share one blob), and which messages carry which files (for download access).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Sha256,
    Size,
    Mime,
    Class,
    StorageKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Files {
    Table,
    Id,
    OwnerId,
    Sha256,
    Name,
    Mime,
    Class,
    Size,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MessageFiles {
    Table,
    MsgId,
    FileId,
    ConvId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Blobs::Table)
                    .col(string_len(Blobs::Sha256, 64).primary_key())
                    .col(big_integer(Blobs::Size))
                    .col(string_len(Blobs::Mime, 128))
                    .col(string_len(Blobs::Class, 16))
                    .col(string_len(Blobs::StorageKey, 256))
                    .col(big_integer(Blobs::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Files::Table)
                    .col(string_len(Files::Id, 64).primary_key())
                    .col(string_len(Files::OwnerId, 64))
                    .col(string_len(Files::Sha256, 64))
                    .col(string_len_null(Files::Name, 255))
                    .col(string_len(Files::Mime, 128))
                    .col(string_len(Files::Class, 16))
                    .col(big_integer(Files::Size))
                    .col(big_integer(Files::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Files::Table, Files::Sha256)
                            .to(Blobs::Table, Blobs::Sha256),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("files_by_sha256")
                    .table(Files::Table)
                    .col(Files::Sha256)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MessageFiles::Table)
                    .col(string_len(MessageFiles::MsgId, 64))
                    .col(string_len(MessageFiles::FileId, 64))
                    .col(string_len(MessageFiles::ConvId, 64))
                    .primary_key(
                        Index::create()
                            .col(MessageFiles::MsgId)
                            .col(MessageFiles::FileId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("message_files_by_file")
                    .table(MessageFiles::Table)
                    .col(MessageFiles::FileId)
                    .col(MessageFiles::ConvId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
