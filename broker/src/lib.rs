//! Courier's MQTT edge over rumqttd's router.
//!
//! rumqttd 0.20 routes (subscriptions, sessions, retained messages, shared subscriptions), but
//! has no topic ACL, no CONNACK refusal codes and no handshake timeouts. So this crate owns the
//! network edge and drives the router only through its public link API:
//!
//! ```text
//! socket ─ listener (TCP | WebSocket /mqtt, own task per socket, handshake timeout)
//!        ─ connection: CONNECT (timeout) → Authenticator → Registry (takeover)
//!            → LinkBuilder (router thread) → CONNACK
//!            → relay loop: client packets ─ ACL ─▶ LinkTx ─▶ router thread
//!                          client ◀─ codec ◀─ LinkRx ◀─ router thread
//!        ─ SystemLink: presence events (connect/disconnect) on `u/{u}/d/{d}/presence`
//! ```
//!
//! The router runs on its own OS thread (`Router::spawn`); everything else is tokio tasks.

pub mod acl;
pub mod auth;
pub mod codec;
mod connection;
mod listener;
pub mod registry;
mod system;
mod transport;

pub use acl::Identity;
pub use auth::{AuthFuture, Authenticator, Refusal};
pub use registry::Kick;

use registry::Registry;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::{Notification, Router, RouterConfig, SegmentConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use system::SystemLink;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Largest MQTT packet accepted (bigger ones close the connection; 0x95 on MQTT 5).
    pub max_packet_size: usize,
    /// Time allowed for the WebSocket handshake, and then again for CONNECT and its auth.
    pub connect_timeout: Duration,
    /// Most simultaneous client connections.
    pub max_connections: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
        }
    }
}

type LinkFactory =
    Arc<dyn Fn(&str, bool) -> Result<(LinkTx, LinkRx, Notification), Box<LinkError>> + Send + Sync>;

struct Shared {
    config: BrokerConfig,
    auth: Arc<dyn Authenticator>,
    make_link: LinkFactory,
    registry: Arc<Registry>,
    system: SystemLink,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot link into the router: {0}")]
    Link(#[from] Box<LinkError>),
}

/// A running broker: the router thread plus whatever listeners [`Broker::serve`] was given.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// Starts the router. Connections are served once listeners are handed to [`Broker::serve`];
    /// every connection ends when `shutdown` is cancelled.
    pub fn start(
        config: BrokerConfig,
        auth: Arc<dyn Authenticator>,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let router_tx = Router::new(0, router_config(&config)).spawn();
        let make_link: LinkFactory = Arc::new(move |client_id: &str, clean: bool| {
            LinkBuilder::new(client_id, router_tx.clone())
                .clean_session(clean)
                // Publishing to a topic nobody subscribes to must not disconnect the publisher.
                .dynamic_filters(true)
                .build()
                .map_err(Box::new)
        });
        let registry = Arc::new(Registry::default());
        let system = SystemLink::start(&make_link, registry.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                connections: Arc::new(Semaphore::new(config.max_connections)),
                config,
                auth,
                make_link,
                registry,
                system,
                shutdown,
            }),
        })
    }

    /// Serves MQTT over TCP on `listener` until shutdown.
    pub async fn serve_tcp(&self, listener: TcpListener) {
        listener::accept_loop(listener, listener::Kind::Tcp, self.shared.clone()).await
    }

    /// Serves MQTT over WebSocket (path `/mqtt`) on `listener` until shutdown.
    pub async fn serve_ws(&self, listener: TcpListener) {
        listener::accept_loop(listener, listener::Kind::WebSocket, self.shared.clone()).await
    }

    /// Closes the connection of a device (e.g. after revocation). Returns whether it was connected.
    pub fn kick(&self, client_id: &str, why: Kick) -> bool {
        self.shared.registry.kick(client_id, why)
    }

    pub fn is_connected(&self, client_id: &str) -> bool {
        self.shared.registry.is_connected(client_id)
    }

    /// Live MQTT connections (devices and services).
    pub fn connection_count(&self) -> usize {
        self.shared.registry.count()
    }
}

/// rumqttd keeps every filter's messages in in-memory segments (one log per filter, kept for
/// the life of the process) and silently drops the oldest segment when full. Courier never
/// relies on that store for durability — the backend's log is the truth and clients fill gaps
/// with `sync` — so per-device filters get two 32 KiB segments (≤ 64 KiB plus one message per
/// topic), while the backend's request and presence filters get room for bursts.
fn router_config(config: &BrokerConfig) -> RouterConfig {
    let big = SegmentConfig {
        max_segment_size: 16 << 20,
        max_segment_count: 4,
    };
    let mut custom = HashMap::new();
    for filter in [
        protocol::topic::REQUEST_FILTER,
        protocol::topic::PRESENCE_FILTER,
    ] {
        custom.insert(filter.to_owned(), big.clone());
        custom.insert(format!("$share/courier/{filter}"), big.clone());
    }
    RouterConfig {
        max_connections: config.max_connections + 16,
        max_outgoing_packet_count: 200,
        max_segment_size: 32 * 1024,
        max_segment_count: 2,
        custom_segment: Some(custom),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}
