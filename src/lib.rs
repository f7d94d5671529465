//! The `courier` binary's library half: settings, telemetry and the all-in-one server, so
//! tests can boot exactly what `courier serve` runs (on port 0, with a fresh database).

pub mod app;
pub mod cli;
pub mod settings;
pub mod telemetry;
pub mod worker;

pub use app::{Addrs, App};
pub use settings::Settings;
