//! The broker's own link into the router, used to publish what the broker itself observes:
//! device connects and disconnects, on the device's `presence` topic as
//! `{"online":true|false,"ts":…,"source":"broker"}` (QoS 1), so the backend learns presence
//! over plain MQTT exactly as it would from an external broker's events. It also listens on
//! `courier/sys/kick/+`, where a backend in another process asks for a revoked device's
//! connection to be closed.

use crate::codec::make_publish;
use crate::registry::{Kick, Registry};
use crate::LinkFactory;
use protocol::topic::KICK_PREFIX;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::Packet;
use rumqttd::Notification;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

pub struct SystemLink {
    tx: Mutex<LinkTx>,
    pkid: AtomicU16,
}

pub const SYSTEM_CLIENT_ID: &str = "courier-broker-system";

impl SystemLink {
    pub fn start(
        make_link: &LinkFactory,
        registry: Arc<Registry>,
    ) -> Result<Self, Box<rumqttd::local::LinkError>> {
        let (mut tx, rx, _connack) = make_link(SYSTEM_CLIENT_ID, true)?;
        tx.subscribe(format!("{KICK_PREFIX}+")).map_err(Box::new)?;
        tokio::spawn(drain(rx, registry));
        Ok(Self {
            tx: Mutex::new(tx),
            pkid: AtomicU16::new(1),
        })
    }

    pub async fn presence(&self, user: &str, device: &str, online: bool) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let topic = format!("u/{user}/d/{device}/presence");
        let payload = format!(r#"{{"online":{online},"ts":{ts},"source":"broker"}}"#);
        // Packet ids 1..=65535, wrapping; the router only needs them to be non-zero.
        let pkid = self.pkid.fetch_add(1, Ordering::Relaxed).max(1);
        let publish = make_publish(topic.as_bytes(), payload.as_bytes(), 1, false, pkid);
        if let Err(e) = self
            .tx
            .lock()
            .await
            .send(Packet::Publish(publish, None))
            .await
        {
            tracing::warn!(error = %e, "presence event not published");
        }
    }
}

/// Reads the router's notifications for the system link so it never stalls: kicks are
/// carried out, acks dropped.
async fn drain(mut rx: LinkRx, registry: Arc<Registry>) {
    loop {
        match rx.next().await {
            Ok(Some(Notification::Unschedule)) => {
                if rx.wake().await.is_err() {
                    return;
                }
            }
            Ok(Some(Notification::Forward(f))) => {
                let topic = String::from_utf8_lossy(&f.publish.topic);
                if let Some(device) = topic.strip_prefix(KICK_PREFIX) {
                    let was = registry.kick(device, Kick::Revoked);
                    tracing::info!(device, connected = was, "kick requested by the backend");
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
