//! Blob ids name their owner (`<sha256>.<user>`: bytes are shared only between one user's
//! uploads), so they outgrow the 64 characters of a bare SHA-256. SQLite does not enforce
//! lengths; PostgreSQL's columns are widened.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in ["blobs", "files", "media_jobs"] {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ALTER COLUMN sha256 TYPE varchar(128)"
            ))
            .await?;
        }
        Ok(())
    }
}
