//! Media processing: durable jobs (one per blob that needs derivatives) and, on the blob, what
//! processing found and made.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Status,
    Width,
    Height,
    DurationMs,
    ThumbKey,
    PreviewKey,
    PosterKey,
    Failure,
}

#[derive(DeriveIden)]
enum MediaJobs {
    Table,
    Sha256,
    Class,
    State,
    Attempts,
    RunAfter,
    LockedUntil,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for col in [
            string_len(Blobs::Status, 16).default("none").to_owned(),
            integer_null(Blobs::Width),
            integer_null(Blobs::Height),
            big_integer_null(Blobs::DurationMs),
            string_len_null(Blobs::ThumbKey, 256),
            string_len_null(Blobs::PreviewKey, 256),
            string_len_null(Blobs::PosterKey, 256),
            text_null(Blobs::Failure),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Blobs::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(MediaJobs::Table)
                    .col(string_len(MediaJobs::Sha256, 64).primary_key())
                    .col(string_len(MediaJobs::Class, 16))
                    .col(string_len(MediaJobs::State, 16))
                    .col(integer(MediaJobs::Attempts).default(0))
                    .col(big_integer(MediaJobs::RunAfter))
                    .col(big_integer_null(MediaJobs::LockedUntil))
                    .col(text_null(MediaJobs::LastError))
                    .col(big_integer(MediaJobs::CreatedAt))
                    .col(big_integer(MediaJobs::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("media_jobs_due")
                    .table(MediaJobs::Table)
                    .col(MediaJobs::State)
                    .col(MediaJobs::RunAfter)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
