//! SeaORM entities, one per table created by the migrations crate.

pub mod blobs;
pub mod blocks;
pub mod conversations;
pub mod devices;
pub mod doomed_objects;
pub mod files;
pub mod hidden_messages;
pub mod invites;
pub mod media_jobs;
pub mod members;
pub mod message_files;
pub mod message_search;
pub mod messages;
pub mod reactions;
pub mod reports;
pub mod updates;
pub mod upload_parts;
pub mod uploads;
pub mod users;
