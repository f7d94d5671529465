//! Media jobs are shared fairly between users: each job remembers who uploaded the bytes
//! (`owner_id`) and its place in that user's line (`fair_at`, Unix ms: a user's jobs are
//! spaced out from the moment they queue, so one user's thousand uploads queue behind
//! another's one rather than ahead of it).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MediaJobs {
    Table,
    OwnerId,
    FairAt,
    State,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            string(MediaJobs::OwnerId).default(""),
            big_integer(MediaJobs::FairAt).default(0),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(MediaJobs::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("media_jobs_by_owner")
                    .table(MediaJobs::Table)
                    .col(MediaJobs::OwnerId)
                    .col(MediaJobs::State)
                    .to_owned(),
            )
            .await
    }
}
