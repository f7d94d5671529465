//! Everything the backend sends to devices goes out here, through the edge (`edge/`):
//! log updates on `in` (QoS 1) to every active device of each recipient, answers on `rsp`
//! (QoS 1), ephemeral events on `eph` (QoS 0).
//!
//! Publishing happens after the commit and is best effort: a device that misses a publish
//! (offline, broker restart) gets the update from its log on `sync`.
//!
//! Devices that are not connected get nothing pushed: their queue is their log, read with
//! `sync` when they come back, so the broker never holds traffic for devices that are away.
//! The in-process edge knows who is connected; through an external broker the backend
//! publishes to every active device and lets the broker drop what nobody subscribed to.
//! A user with no connected device gets a push notice for new messages ([`Pusher`]); without
//! a broker in this process, "no connected device" is what the shared presence says.

use crate::directory::Directory;
use crate::edge::{Edge, Out};
use crate::push::Pusher;
use crate::store::log::Outgoing;
use crate::store::Store;
use bytes::Bytes;
use protocol::{DeviceId, UserId};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct Publisher {
    edge: Arc<dyn Edge>,
    directory: Arc<Directory>,
    store: Store,
    /// Whether the edge knows who is connected (it is in this process).
    knows_connections: bool,
    pusher: Option<Arc<Pusher>>,
}

impl Publisher {
    pub fn new(edge: Arc<dyn Edge>, store: Store) -> Self {
        let probe = DeviceId::from_trusted(String::new());
        Self {
            knows_connections: edge.connected(&probe).is_some(),
            edge,
            directory: Arc::new(Directory::new(store.clone())),
            store,
            pusher: None,
        }
    }

    /// Notify users who are away about new messages through `pusher`.
    pub fn with_push(mut self, pusher: Arc<Pusher>) -> Self {
        self.pusher = Some(pusher);
        self
    }

    /// False only when the edge says the device has no connection.
    pub fn may_be_connected(&self, device: &DeviceId) -> bool {
        self.edge.connected(device).unwrap_or(true)
    }

    /// The device cache deliveries use; log-in and revocation invalidate it.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Closes a revoked device's connection.
    pub fn kick(&self, device: &DeviceId) {
        self.edge.kick(device)
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
        if let (false, Some(p), Some((conv, sender))) =
            (self.knows_connections, &self.pusher, &out.message)
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
            let payload = Bytes::from(out.for_user(a.useq));
            for d in devs {
                self.edge.send(&a.user, d, Out::In, payload.clone());
            }
        }
    }

    /// An answer (a serialised [`protocol::Response`]) on the device's `rsp`.
    pub fn respond(&self, user: &UserId, device: &DeviceId, payload: Bytes) {
        self.edge.send(user, device, Out::Rsp, payload);
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
        let payload = Bytes::from(serde_json::to_vec(event).expect("event serialises"));
        for (user, device) in devices.iter().filter(|(_, d)| self.may_be_connected(d)) {
            self.edge.send(user, device, Out::Eph, payload.clone());
        }
    }
}
