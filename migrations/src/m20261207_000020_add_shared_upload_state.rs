//! Resumable uploads that any backend can continue: how many bytes each upload has received
//! (`received`), the pieces they are stored in (`upload_parts`, one object in the object store
//! per piece, keyed by where it starts), and a lease that lets one PATCH at a time write to an
//! upload, whichever process it reached (`locked_until`, `lock_owner`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    Received,
    LockedUntil,
    LockOwner,
}

#[derive(DeriveIden)]
enum UploadParts {
    Table,
    UploadId,
    Start,
    Size,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            big_integer(Uploads::Received).default(0).to_owned(),
            big_integer_null(Uploads::LockedUntil),
            string_len_null(Uploads::LockOwner, 32),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Uploads::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(UploadParts::Table)
                    .col(string_len(UploadParts::UploadId, 64))
                    .col(big_integer(UploadParts::Start))
                    .col(big_integer(UploadParts::Size))
                    .primary_key(
                        Index::create()
                            .col(UploadParts::UploadId)
                            .col(UploadParts::Start),
                    )
                    .to_owned(),
            )
            .await
    }
}
