//! Courier's schema, one migration per step (`mYYYYMMDD_NNNNNN_verb_noun.rs`). The server runs
//! pending migrations at start; `courier migrate` (or this crate's binary) runs them alone.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_core_tables;
mod m20261122_000002_add_message_changes_presence_retention;
mod m20261122_000003_create_media_tables;
mod m20261122_000004_create_uploads;
mod m20261122_000005_create_media_jobs;
mod m20261203_000006_add_upload_keep_metadata;
mod m20261204_000007_create_invites;
mod m20261204_000008_add_user_group_adds;
mod m20261204_000009_create_doomed_objects;
mod m20261204_000010_add_media_job_owner;
mod m20261204_000011_widen_blob_ids;
mod m20261204_000012_add_device_used_at;
mod m20261205_000013_create_blocks;
mod m20261205_000014_create_reports_and_suspension;
mod m20261205_000015_add_profiles;
mod m20261205_000016_add_account_deletion;
mod m20261205_000017_index_uploads_by_owner;
mod m20261206_000018_add_conversation_settings;
mod m20261206_000019_create_message_search;
mod m20261207_000020_add_shared_upload_state;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_core_tables::Migration),
            Box::new(m20261122_000002_add_message_changes_presence_retention::Migration),
            Box::new(m20261122_000003_create_media_tables::Migration),
            Box::new(m20261122_000004_create_uploads::Migration),
            Box::new(m20261122_000005_create_media_jobs::Migration),
            Box::new(m20261203_000006_add_upload_keep_metadata::Migration),
            Box::new(m20261204_000007_create_invites::Migration),
            Box::new(m20261204_000008_add_user_group_adds::Migration),
            Box::new(m20261204_000009_create_doomed_objects::Migration),
            Box::new(m20261204_000010_add_media_job_owner::Migration),
            Box::new(m20261204_000011_widen_blob_ids::Migration),
            Box::new(m20261204_000012_add_device_used_at::Migration),
            Box::new(m20261205_000013_create_blocks::Migration),
            Box::new(m20261205_000014_create_reports_and_suspension::Migration),
            Box::new(m20261205_000015_add_profiles::Migration),
            Box::new(m20261205_000016_add_account_deletion::Migration),
            Box::new(m20261205_000017_index_uploads_by_owner::Migration),
            Box::new(m20261206_000018_add_conversation_settings::Migration),
            Box::new(m20261206_000019_create_message_search::Migration),
            Box::new(m20261207_000020_add_shared_upload_state::Migration),
        ]
    }
}
