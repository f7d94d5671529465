//! The MQTT-client adapter (`--role backend`, and the media worker): the engine reaches a
//! broker in another process — Courier's own `--role broker`, or Mosquitto, EMQX, VerneMQ —
//! as an MQTT 5 client with the service identity. Requests come from the shared subscription
//! `$share/courier/u/+/d/+/req/+` (the broker spreads them over the backends) and presence from
//! `u/+/d/+/presence`; answers and updates are PUBLISHes to device topics.

use super::{Edge, Out};
use crate::engine::lanes::Lanes;
use crate::engine::{Engine, DRAIN_TIMEOUT, QUIET};
use broker::{Inbound, Kind};
use bytes::Bytes;
use protocol::topic::{DeviceTopic, Stream, KICK_PREFIX, PRESENCE_FILTER, REQUEST_FILTER};
use protocol::{DeviceId, UserId};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Publishing side: a broker in another process.
pub struct MqttEdge {
    pub client: AsyncClient,
}

impl Edge for MqttEdge {
    fn send(&self, user: &UserId, device: &DeviceId, stream: Out, payload: Bytes) {
        crate::metrics::published(stream.name());
        let topic = format!("u/{user}/d/{device}/{}", stream.name());
        let qos = match stream.qos() {
            0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        if let Err(e) = self.client.try_publish(topic, qos, false, payload) {
            tracing::warn!(error = %e, "MQTT publish failed; the device reads it on sync");
        }
    }

    /// An external broker's connections are not known here.
    fn connected(&self, _device: &DeviceId) -> Option<bool> {
        None
    }

    /// Asks Courier's broker (`--role broker`) to close the connection; another broker
    /// ignores the request (its ACL hook refuses the device from then on).
    fn kick(&self, device: &DeviceId) {
        let topic = format!("{KICK_PREFIX}{device}");
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, Vec::new())
        {
            tracing::warn!(error = %e, %device, "kick request not sent");
        }
    }
}

/// The request or presence event a PUBLISH from the broker carries.
fn inbound(topic: &[u8], payload: Bytes) -> Option<Inbound> {
    let parsed = DeviceTopic::parse(std::str::from_utf8(topic).ok()?).ok()?;
    let kind = match parsed.stream {
        Stream::Req(op) => Kind::Request(op),
        Stream::Presence => Kind::Presence,
        _ => return None,
    };
    Some(Inbound {
        user: parsed.user.into_string(),
        device: parsed.device.into_string(),
        kind,
        topic: Bytes::copy_from_slice(topic),
        payload,
    })
}

/// Polls the MQTT connection until shutdown, (re)subscribing on every CONNACK and feeding
/// requests to the engine's lanes. rumqttc reconnects on the next poll after an error.
///
/// On shutdown it drains: it unsubscribes from the shared request stream (the broker then
/// gives new requests to the other backends), keeps handling whatever still arrives (a broker
/// may deliver messages it had queued for this backend even after confirming the unsubscribe)
/// until every request taken is answered and nothing came for [`QUIET`], then disconnects —
/// all within [`DRAIN_TIMEOUT`]. A request cut off by the deadline is never answered unless it
/// was committed, and its device resends it by cmid.
pub async fn run(
    engine: Arc<Engine>,
    client: AsyncClient,
    mut eventloop: EventLoop,
    shutdown: CancellationToken,
) {
    let lanes = Lanes::new(engine.clone());
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!("backend connected to the broker");
                let client = client.clone();
                tokio::spawn(async move {
                    let filters = [
                        format!("$share/courier/{REQUEST_FILTER}"),
                        PRESENCE_FILTER.to_owned(),
                    ]
                    .map(|f| Filter::new(f, QoS::AtLeastOnce));
                    if let Err(e) = client.subscribe_many(filters).await {
                        tracing::error!(error = %e, "subscribe failed");
                    }
                });
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                if !granted {
                    tracing::error!(codes = ?ack.return_codes, "broker refused the backend's subscriptions");
                }
                engine.ready.store(granted, Ordering::Relaxed);
            }
            // A full lane (one device flooding) holds this loop: the broker then holds the
            // requests for this backend (its outbox, then TCP).
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some(msg) = inbound(&p.topic, p.payload) {
                    lanes.submit(msg).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                engine.ready.store(false, Ordering::Relaxed);
                failures += 1;
                let wait = Duration::from_millis(100 * u64::from(failures.min(50)));
                tracing::warn!(error = %e, ?wait, "broker connection lost; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    drain(&engine, client, eventloop, lanes).await;
}

async fn drain(engine: &Engine, client: AsyncClient, mut eventloop: EventLoop, lanes: Lanes) {
    engine.ready.store(false, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let _ = client
        .unsubscribe(format!("$share/courier/{REQUEST_FILTER}"))
        .await;
    let mut connected = true;
    let mut last_request = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut handled = 0u64;
    while connected {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    pending = lanes.pending(),
                    "shutdown: requests still running at the drain deadline"
                );
                break;
            }
            _ = tick.tick() => {
                if lanes.pending() == 0 && last_request.elapsed() >= QUIET {
                    break;
                }
            }
            e = eventloop.poll() => match e {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(msg) = inbound(&p.topic, p.payload) {
                        lanes.submit(msg).await;
                    }
                    last_request = tokio::time::Instant::now();
                    handled += 1;
                }
                Ok(_) => {}
                Err(_) => connected = false,
            },
        }
    }
    let _ = client.disconnect().await;
    if connected {
        let flush = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    }
    tracing::info!(late_requests = handled, "engine drained");
}
