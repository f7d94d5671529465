//! Courier's backend: storage, the delivery engine and the HTTP API.
//!
//! ```text
//! device ─MQTT─▶ broker ─MQTT (rumqttc, service identity)─▶ engine ─▶ store (SeaORM)
//!                                                   engine ─▶ publisher ─MQTT─▶ broker ─▶ devices
//! app ─HTTP─▶ http (axum) ─▶ store; membership changes ─▶ publisher
//! ```
//!
//! The backend reaches the broker as an ordinary MQTT 5 client, so the same code runs against
//! Courier's embedded broker or an external one. All state that must survive is in the database.

pub mod cpu;
pub mod db;
pub mod directory;
pub mod edge;
pub mod engine;
pub mod entity;
pub mod error;
pub mod gc;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod publisher;
pub mod push;
pub mod revocations;
pub mod shared;
pub mod store;
pub mod util;

pub use engine::{Engine, EngineConfig};
pub use error::Error;
pub use store::Store;

use rumqttc::v5::{AsyncClient, EventLoop, MqttOptions};
use std::time::Duration;

/// MQTT options for the backend's own connection to the broker at `host:port`.
pub fn mqtt_options(host: &str, port: u16, service_secret: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(format!("courier-backend-{}", util::new_id('b')), host, port);
    opts.set_credentials(edge::auth::SERVICE_USERNAME, service_secret)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        // Trusted link: large enough for any device packet the broker lets through.
        .set_max_packet_size(Some(16 << 20))
        .set_request_channel_capacity(100_000)
        .set_outgoing_inflight_upper_limit(1000)
        .set_network_options(no_delay());
    opts
}

/// Small MQTT packets must leave at once: with Nagle's algorithm on, an answer waits for the
/// peer's delayed ACK (~40 ms per hop).
fn no_delay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// The backend's MQTT client and the event loop the engine must poll.
pub fn mqtt_client(opts: MqttOptions) -> (AsyncClient, EventLoop) {
    AsyncClient::new(opts, 100_000)
}

/// Keeps a publish-only connection up until `shutdown` (a media worker has nothing to
/// subscribe to); rumqttc reconnects on the next poll after an error.
pub async fn keep_connected(
    mut eventloop: EventLoop,
    broker: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use rumqttc::v5::{mqttbytes::v5::Packet, Event};
    let mut connected = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                tracing::info!(%broker, "connected to the broker");
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    tracing::warn!(%broker, error = %e, "lost the broker; reconnecting");
                }
                connected = false;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
