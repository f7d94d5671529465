//! The broker's own link into the router, used to publish what the broker itself observes:
//! device connects and disconnects, on the device's `presence` topic as
//! `{"online":true|false,"ts":…,"source":"broker"}` (QoS 1), so the backend learns presence
//! over plain MQTT exactly as it would from an external broker's events.

use crate::codec::make_publish;
use crate::LinkFactory;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::Packet;
use rumqttd::Notification;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

pub struct SystemLink {
    tx: Mutex<LinkTx>,
    pkid: AtomicU16,
}

pub const SYSTEM_CLIENT_ID: &str = "courier-broker-system";

impl SystemLink {
    pub fn start(make_link: &LinkFactory) -> Result<Self, Box<rumqttd::local::LinkError>> {
        let (tx, rx, _connack) = make_link(SYSTEM_CLIENT_ID, true)?;
        tokio::spawn(drain(rx));
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

/// Reads (and drops) the router's acks for the system link so it never stalls.
async fn drain(mut rx: LinkRx) {
    loop {
        match rx.next().await {
            Ok(Some(Notification::Unschedule)) => {
                if rx.wake().await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
