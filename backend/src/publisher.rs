//! Everything the backend sends to devices goes out here, over its MQTT client:
//! log updates on `in` (QoS 1) to every active device of each recipient, answers on `rsp`
//! (QoS 1), ephemeral events on `eph` (QoS 0).
//!
//! Publishing happens after the commit and is best effort: a device that misses a publish
//! (offline, broker restart) gets the update from its log on `sync`.
//!
//! Devices that are not connected get nothing pushed: their queue is their log, read with
//! `sync` when they come back, so the broker never holds traffic for devices that are away.
//! With the embedded broker the backend asks it directly ([`Connections`]); without one it
//! publishes to every active device and lets the broker drop what nobody subscribed to.
//! A user with no connected device gets a push notice for new messages ([`Pusher`]); without
//! a broker in this process, "no connected device" is what the shared presence says.

use crate::directory::Directory;
use crate::push::Pusher;
use crate::store::log::Outgoing;
use crate::store::Store;
use protocol::{DeviceId, UserId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use std::collections::HashMap;
use std::sync::Arc;

/// Which devices have a live MQTT connection right now.
pub trait Connections: Send + Sync {
    fn is_connected(&self, device: &str) -> bool;
}

#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    directory: Arc<Directory>,
    store: Store,
    connections: Option<Arc<dyn Connections>>,
    pusher: Option<Arc<Pusher>>,
}

fn topic(user: &UserId, device: &DeviceId, stream: &str) -> String {
    format!("u/{user}/d/{device}/{stream}")
}

impl Publisher {
    pub fn new(
        client: AsyncClient,
        store: Store,
        connections: Option<Arc<dyn Connections>>,
    ) -> Self {
        Self {
            client,
            directory: Arc::new(Directory::new(store.clone())),
            store,
            connections,
            pusher: None,
        }
    }

    /// Notify users who are away about new messages through `pusher`.
    pub fn with_push(mut self, pusher: Arc<Pusher>) -> Self {
        self.pusher = Some(pusher);
        self
    }

    /// False only when the broker says the device has no connection.
    pub fn may_be_connected(&self, device: &DeviceId) -> bool {
        self.connections
            .as_ref()
            .is_none_or(|c| c.is_connected(device.as_str()))
    }

    /// The device cache deliveries use; log-in and revocation invalidate it.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Publishes each recipient's copy of `out` to all of their active devices.
    pub async fn deliver(&self, out: &Outgoing) {
        let users: Vec<UserId> = out.to.iter().map(|a| a.user.clone()).collect();
        let devices = match self.directory.devices(&users).await {
            Ok(d) => d,
            Err(e) => {
                // Devices will get it from their log on the next sync.
                tracing::warn!(error = %e, "device lookup failed; update left for sync");
                return;
            }
        };
        let mut by_user: HashMap<&UserId, Vec<&DeviceId>> = HashMap::new();
        for (u, d) in devices.iter().filter(|(_, d)| self.may_be_connected(d)) {
            by_user.entry(u).or_default().push(d);
        }
        if let (None, Some(p), Some((conv, sender))) =
            (&self.connections, &self.pusher, &out.message)
        {
            // The broker is elsewhere: who is away comes from the shared presence.
            let others: Vec<UserId> = users.iter().filter(|u| *u != sender).cloned().collect();
            match self.store.known_away(&others).await {
                Ok(away) => away.iter().for_each(|u| p.notify(u, conv)),
                Err(e) => tracing::warn!(error = %e, "presence lookup failed; no push notices"),
            }
        }
        for a in &out.to {
            let Some(devs) = by_user.get(&a.user) else {
                // Nobody of this user is connected: a push notice for new messages from others.
                if let (Some(p), Some((conv, sender))) = (&self.pusher, &out.message) {
                    if *sender != a.user {
                        p.notify(&a.user, conv);
                    }
                }
                continue;
            };
            let payload = out.for_user(a.useq);
            for d in devs {
                self.publish(
                    topic(&a.user, d, "in"),
                    QoS::AtLeastOnce,
                    payload.clone().into_bytes(),
                )
                .await;
            }
        }
    }

    /// An answer (a serialised [`protocol::Response`]) on the device's `rsp`.
    pub async fn respond(&self, user: &UserId, device: &DeviceId, payload: Vec<u8>) {
        self.publish(topic(user, device, "rsp"), QoS::AtLeastOnce, payload)
            .await;
    }

    /// Publishes an ephemeral event to the connected devices of `users`.
    pub async fn ephemeral_to(&self, users: &[UserId], event: &protocol::ops::Ephemeral) {
        let devices = match self.directory.devices(users).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "device lookup failed; ephemeral event dropped");
                return;
            }
        };
        let payload = serde_json::to_vec(event).expect("event serialises");
        for (user, device) in devices.iter().filter(|(_, d)| self.may_be_connected(d)) {
            self.ephemeral(user, device, payload.clone()).await;
        }
    }

    pub async fn ephemeral(&self, user: &UserId, device: &DeviceId, payload: Vec<u8>) {
        self.publish(topic(user, device, "eph"), QoS::AtMostOnce, payload)
            .await;
    }

    async fn publish(&self, topic: String, qos: QoS, payload: Vec<u8>) {
        let stream = match qos {
            QoS::AtMostOnce => "eph",
            _ if topic.ends_with("/rsp") => "rsp",
            _ => "in",
        };
        crate::metrics::published(stream);
        if let Err(e) = self.client.publish(topic, qos, false, payload).await {
            tracing::warn!(error = %e, "MQTT publish failed");
        }
    }
}

/// Without a broker in this process, a revoked device's connection is closed by asking
/// Courier's broker (`--role broker`) over MQTT; another broker ignores the request (its ACL
/// hook refuses the device from then on).
impl crate::http::Kicker for Publisher {
    fn kick(&self, device: &str) {
        let topic = format!("{}{device}", protocol::topic::KICK_PREFIX);
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, Vec::new())
        {
            tracing::warn!(error = %e, device, "kick request not sent");
        }
    }
}
