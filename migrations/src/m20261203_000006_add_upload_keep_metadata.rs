//! Resumable uploads remember whether the uploader asked to keep the file's metadata
//! (`keep_metadata` in tus's `Upload-Metadata`): without it, image originals are stored
//! stripped of EXIF, XMP, IPTC and comments once the upload completes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    KeepMetadata,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Uploads::Table)
                    .add_column(boolean(Uploads::KeepMetadata).default(false))
                    .to_owned(),
            )
            .await
    }
}
