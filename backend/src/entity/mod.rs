//! SeaORM entities, one per table created by the migrations crate.

pub mod conversations;
pub mod devices;
pub mod hidden_messages;
pub mod members;
pub mod messages;
pub mod reactions;
pub mod updates;
pub mod users;
