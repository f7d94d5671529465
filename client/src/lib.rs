//! Courier's Rust client SDK, over rumqttc (MQTT 3.1.1 or 5, TCP or WebSocket).
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_client::ClientError> {
//! use courier_client::{Api, Client, ClientOptions};
//! let api = Api::new("http://127.0.0.1:8080");
//! let session = api.log_in("alice", "secret-password", "phone", "ios").await?;
//! let (client, mut events) = Client::connect(ClientOptions::tcp(&session)).await?;
//! let bob = courier_client::protocol::UserId::parse("ubob").expect("a user id");
//! let conv = api.create_direct(&session.token, &bob).await?;
//! client.send_text(&conv.id, "hi").await?;
//! while let Some(event) = events.recv().await { /* updates, typing… */ }
//! # Ok(()) }
//! ```
//!
//! The client keeps its session alive: after a lost connection it reconnects with backoff and
//! jitter and re-subscribes. Updates arrive as [`Event::Update`] and the app acknowledges them
//! with [`Client::ack`]. With [`ClientOptions::ordered_from`] the client hands over every update
//! after a given useq exactly once and in order, syncing by itself after reconnects and gaps;
//! without it, pushes come as they arrive and [`Client::sync`] is the app's to call.
//!
//! TLS: [`ClientOptions::tls`] (MQTT over TLS) and `wss://` URLs with [`ClientOptions::ws`],
//! trusting the Mozilla roots or, with [`ClientOptions::with_tls`] and [`tls_with_root_ca`], a
//! CA of your own.
//!
//! Examples, one per flow (`cargo run -p courier-client --example NAME -- …`): `send`,
//! `receive_in_order`, `upload_photo`, `reconnect`.

#![deny(missing_docs)]

mod api;
mod client;
mod mqtt;
mod ordered;

pub use api::Api;
pub use client::{
    default_tls, text_req, tls_with_root_ca, Client, ClientOptions, Event, MqttVersion, Transport,
};
pub use protocol;

use protocol::ErrorBody;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request, with one of its error codes (docs/protocol.md).
    #[error("server refused: {} ({})", .0.code, .0.message)]
    Server(ErrorBody),
    /// No answer within [`ClientOptions::request_timeout`]; the request may still have been
    /// carried out (a send retried with the same `cmid` is stored once).
    #[error("no answer within the request timeout")]
    Timeout,
    /// The MQTT connection failed or is gone.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// The broker refused the connection (a revoked or wrong token).
    #[error("connection refused: {0}")]
    Refused(String),
    /// An HTTP call failed before the server answered.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server's answer did not have the expected shape.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// TLS settings that cannot be used (a bad CA file).
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<protocol::ErrorCode> {
        match self {
            Self::Server(b) => Some(b.code),
            _ => None,
        }
    }
}
