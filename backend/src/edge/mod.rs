//! The engine's view of the device edge: one interface, two adapters.
//!
//! ```text
//! --role all      device ─▶ broker connection ─▶ Lanes (bounded, per device) ─▶ engine
//!                 engine ─▶ Edge::send ─▶ broker Hub ─▶ that device's outbox      (local.rs)
//! --role backend  device ─▶ any MQTT broker ─▶ rumqttc ─▶ Lanes ─▶ engine
//!                 engine ─▶ Edge::send ─▶ rumqttc PUBLISH ─▶ broker ─▶ device     (mqtt.rs)
//! ```
//!
//! Inside one process nothing is encoded as MQTT between the connection and the engine.

pub mod auth;
pub mod local;
pub mod mqtt;

pub use broker::Out;
use bytes::Bytes;
use protocol::{DeviceId, UserId};

/// Where the engine's output goes. Sending never waits: an update a device misses is in its
/// log for `sync`.
pub trait Edge: Send + Sync + 'static {
    /// Publishes `payload` on `stream` of one device (`in`/`rsp` at QoS 1, `eph` at QoS 0).
    fn send(&self, user: &UserId, device: &DeviceId, stream: Out, payload: Bytes);

    /// Whether `device` has a live connection; `None` when this edge cannot tell (an
    /// external broker), and then everything is published and the broker drops the rest.
    fn connected(&self, device: &DeviceId) -> Option<bool>;

    /// Closes a revoked device's connection.
    fn kick(&self, device: &DeviceId);
}
