//! Courier's device edge: MQTT 3.1.1 and 5 over TCP and WebSocket, routing by device id.
//!
//! Every Courier topic is point to point — a device's `in`, `rsp` and `eph` have one reader
//! (that device), its `req/*` and `presence` one consumer (the engine) — so nothing here
//! matches topics against subscription filters. rumqttd is used only as the packet codec.
//!
//! ```text
//! socket ─ listener (TCP | WebSocket /mqtt, own task per socket, handshake timeout)
//!        ─ connection: CONNECT (timeout) → Authenticator → Hub (takeover) → CONNACK
//!            client ─▶ ACL ─▶ req/presence ─▶ the engine: Upstream (in process, bounded)
//!                                                or the backends' outboxes (services)
//!            client ◀─ outbox ◀─ Hub::deliver(device) ◀─ the engine, or a backend's PUBLISH
//! ```
//!
//! One task per connection; nothing else runs per device.

pub mod acl;
pub mod auth;
pub mod codec;
mod connection;
pub mod fuzzing;
pub mod hub;
mod listener;
pub mod outbox;
pub mod pace;
pub mod tls;
mod transport;
pub use transport::Socket;
pub mod upstream;

pub use acl::Identity;
pub use auth::{AuthFuture, Authenticator, Refusal};
pub use hub::{Delivery, Out};
pub use outbox::Close;
pub use upstream::{Inbound, Kind, Upstream};

use bytes::Bytes;
use hub::Hub;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
pub use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use upstream::Services;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Largest MQTT packet accepted (bigger ones close the connection; 0x95 on MQTT 5).
    pub max_packet_size: usize,
    /// Time allowed for the WebSocket handshake, and then again for CONNECT and its auth.
    pub connect_timeout: Duration,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Publishes queued for one device before it counts as not reading and is disconnected.
    pub outbox_msgs: usize,
    /// Bytes queued for one device before the same.
    pub outbox_bytes: usize,
    /// Most unacknowledged QoS 1 publishes to one device (less if its Receive Maximum says so).
    pub max_inflight: u16,
    /// Longest a persistent session outlives its connection.
    pub max_session_expiry: Duration,
    /// How fast a device's connection is read (`None`: as fast as it sends). Services are
    /// never paced.
    pub device_pacing: Option<pace::Pacing>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            outbox_msgs: 1024,
            outbox_bytes: 4 << 20,
            max_inflight: 64,
            max_session_expiry: Duration::from_secs(24 * 3600),
            device_pacing: None,
        }
    }
}

struct Shared {
    config: BrokerConfig,
    auth: Arc<dyn Authenticator>,
    hub: Hub,
    services: Services,
    /// The engine in this process (`--role all`); without one, backends connect as services.
    local: OnceLock<Arc<dyn Upstream>>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// A running edge: whatever listeners [`Broker::serve_tcp`] and [`Broker::serve_ws`] were given.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// A broker whose requests and presence go to the backends that subscribe as the service
    /// identity, until [`Broker::attach_engine`] gives it an engine in this process. Every
    /// connection ends when `shutdown` is cancelled.
    pub fn start(
        config: BrokerConfig,
        auth: Arc<dyn Authenticator>,
        shutdown: CancellationToken,
    ) -> Self {
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            config,
            auth,
            hub: Hub::default(),
            services: Services::default(),
            local: OnceLock::new(),
            shutdown,
        });
        tokio::spawn(sweep_sessions(shared.clone()));
        Self { shared }
    }

    /// Sends every request and presence event to `engine` (this process's) from now on;
    /// call before serving. Only the first call counts.
    pub fn attach_engine(&self, engine: Arc<dyn Upstream>) {
        let _ = self.shared.local.set(engine);
    }

    /// Serves MQTT over TCP on `listener` until shutdown; with `tls`, over TLS.
    pub async fn serve_tcp(&self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        listener::accept_loop(listener, listener::Kind::Tcp, tls, self.shared.clone()).await
    }

    /// Serves MQTT over WebSocket (path `/mqtt`) on `listener` until shutdown; with `tls`,
    /// over TLS (`wss://`).
    pub async fn serve_ws(&self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        listener::accept_loop(
            listener,
            listener::Kind::WebSocket,
            tls,
            self.shared.clone(),
        )
        .await
    }

    /// Queues `payload` for `device` of `user` on `stream`, if it is connected and subscribed.
    /// Never waits: a device whose outbox is full is disconnected instead.
    pub fn deliver(&self, user: &str, device: &str, stream: Out, payload: Bytes) -> Delivery {
        self.shared.hub.deliver(user, device, stream, payload)
    }

    /// Closes the connection of a device (e.g. after revocation). Returns whether it was connected.
    pub fn kick(&self, client_id: &str, why: Close) -> bool {
        self.shared.hub.kick(client_id, why)
    }

    pub fn is_connected(&self, client_id: &str) -> bool {
        self.shared.hub.get(client_id).is_some()
    }

    /// Live MQTT connections (devices and services).
    pub fn connection_count(&self) -> usize {
        self.shared.hub.count()
    }
}

/// Forgets persistent sessions past their expiry, once a minute.
async fn sweep_sessions(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        shared.hub.sweep_sessions();
    }
}
