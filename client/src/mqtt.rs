//! One MQTT connection behind one interface, whether rumqttc speaks 3.1.1 or 5 to the broker.
//! The event-loop task turns rumqttc's events into [`Incoming`], reconnecting with exponential
//! backoff and jitter after a lost connection (rumqttc reconnects on the next poll).

use crate::client::{ClientOptions, MqttVersion, Transport};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

#[derive(Clone)]
enum Mqtt {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The client's side of the connection; once [`Handle::disconnect`] is called the event loop
/// stops instead of reconnecting.
#[derive(Clone)]
pub struct Handle {
    mqtt: Mqtt,
    closing: Arc<AtomicBool>,
}

#[derive(Debug)]
pub enum Incoming {
    Connected,
    Publish {
        topic: String,
        payload: Bytes,
    },
    /// A SUBACK: per filter, whether it was granted.
    SubAck(Vec<bool>),
    Lost(String),
    /// The broker refused CONNECT; the loop stops.
    Refused(String),
}

impl Handle {
    pub async fn publish(&self, topic: String, qos: u8, payload: Vec<u8>) -> Result<(), String> {
        match &self.mqtt {
            Mqtt::V4(c) => c
                .publish(topic, v4_qos(qos), false, payload)
                .await
                .map_err(|e| e.to_string()),
            Mqtt::V5(c) => c
                .publish(topic, v5_qos(qos), false, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn subscribe(&self, filter: String, qos: u8) -> Result<(), String> {
        match &self.mqtt {
            Mqtt::V4(c) => c
                .subscribe(filter, v4_qos(qos))
                .await
                .map_err(|e| e.to_string()),
            Mqtt::V5(c) => c
                .subscribe(filter, v5_qos(qos))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn disconnect(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let _ = match &self.mqtt {
            Mqtt::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Mqtt::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

fn v4_qos(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        _ => rumqttc::QoS::AtLeastOnce,
    }
}

fn v5_qos(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        _ => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

/// Delay before reconnect attempt `n` (1-based): 100 ms doubling up to 5 s, ±50 % jitter so a
/// crowd of clients does not reconnect in lockstep.
pub fn backoff(n: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << n.min(6)).min(5_000);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64;
    let jitter = (nanos.wrapping_mul(6364136223846793005) >> 33) % (base + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// `u/{user}/d/{device}/presence`, where a device says it is online or offline.
pub fn presence_topic(opts: &ClientOptions) -> String {
    format!("u/{}/d/{}/presence", opts.user, opts.device)
}

pub const ONLINE: &[u8] = br#"{"online":true}"#;
pub const OFFLINE: &[u8] = br#"{"online":false}"#;

/// Largest packet accepted from the server (sync pages are capped well below this).
const MAX_INCOMING: usize = 4 << 20;

/// Requests are small: send them at once instead of waiting on Nagle's algorithm.
/// rumqttc's transport for `opts`, with its TLS settings.
fn transport(opts: &ClientOptions) -> rumqttc::Transport {
    let tls = || {
        let config = opts.tls.clone().unwrap_or_else(crate::client::default_tls);
        rumqttc::TlsConfiguration::Rustls(config)
    };
    match &opts.transport {
        Transport::Tcp { .. } => rumqttc::Transport::Tcp,
        Transport::Tls { .. } => rumqttc::Transport::tls_with_config(tls()),
        Transport::Ws { url } if url.starts_with("wss://") => {
            rumqttc::Transport::wss_with_config(tls())
        }
        Transport::Ws { .. } => rumqttc::Transport::Ws,
    }
}

fn no_delay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// What one event-loop event means for the connection.
enum Step {
    Connected,
    Emit(Incoming),
    Skip,
    Lost(String),
    Refused(String),
    Done,
}

/// Polls a rumqttc event loop (3.1.1 or 5 — same shape, different types) until the client is
/// dropped, disconnects on purpose or the broker refuses us, sleeping with [`backoff`] after
/// each lost connection.
macro_rules! drive {
    ($el:ident, $tx:ident, $closing:ident, |$event:ident| $translate:expr) => {{
        let mut failures = 0;
        loop {
            let $event = $el.poll().await;
            let out = match $translate {
                Step::Connected => {
                    failures = 0;
                    Incoming::Connected
                }
                Step::Emit(i) => i,
                Step::Skip => continue,
                Step::Lost(why) => {
                    failures += 1;
                    Incoming::Lost(why)
                }
                Step::Refused(why) => {
                    let _ = $tx.send(Incoming::Refused(why));
                    return;
                }
                Step::Done => return,
            };
            let lost = matches!(out, Incoming::Lost(_));
            if $tx.send(out).is_err() || (lost && $closing.load(Ordering::Relaxed)) {
                return;
            }
            if lost {
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }};
}

pub fn start(opts: &ClientOptions) -> (Handle, mpsc::UnboundedReceiver<Incoming>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let closing = Arc::new(AtomicBool::new(false));
    let stop = closing.clone();
    let id = opts.device.to_string();
    // The broker announces the device offline if the connection dies without a DISCONNECT.
    let will = opts
        .announce_presence
        .then(|| (presence_topic(opts), OFFLINE.to_vec()));
    let (host, port) = match &opts.transport {
        Transport::Tcp { host, port } | Transport::Tls { host, port } => (host.clone(), *port),
        Transport::Ws { url } => (url.clone(), 0),
    };
    let transport = transport(opts);
    match opts.version {
        MqttVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(id.clone(), host, port);
            o.set_credentials(id, opts.token.clone())
                .set_keep_alive(opts.keep_alive)
                .set_clean_session(opts.clean_session)
                .set_max_packet_size(MAX_INCOMING, 1 << 20);
            if let Some((topic, payload)) = will {
                o.set_last_will(rumqttc::LastWill::new(
                    topic,
                    payload,
                    rumqttc::QoS::AtLeastOnce,
                    false,
                ));
            }
            o.set_transport(transport);
            let (client, mut el) = rumqttc::AsyncClient::new(o, 1024);
            el.set_network_options(no_delay());
            tokio::spawn(async move {
                drive!(el, tx, stop, |event| match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => Step::Connected,
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        Step::Emit(Incoming::Publish {
                            topic: p.topic,
                            payload: p.payload,
                        })
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) =>
                        Step::Emit(Incoming::SubAck(
                            a.return_codes
                                .iter()
                                .map(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                                .collect(),
                        )),
                    Ok(_) => Step::Skip,
                    // "Try again later" (the server is busy, or we connect too often).
                    Err(rumqttc::ConnectionError::ConnectionRefused(
                        rumqttc::ConnectReturnCode::ServiceUnavailable,
                    )) => Step::Lost("server unavailable".into()),
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) =>
                        Step::Refused(format!("{code:?}")),
                    Err(rumqttc::ConnectionError::RequestsDone) => Step::Done,
                    Err(e) => Step::Lost(e.to_string()),
                })
            });
            (
                Handle {
                    mqtt: Mqtt::V4(client),
                    closing,
                },
                rx,
            )
        }
        MqttVersion::V5 => {
            use rumqttc::v5::mqttbytes::v5::Packet;
            let mut o = rumqttc::v5::MqttOptions::new(id.clone(), host, port);
            o.set_credentials(id, opts.token.clone())
                .set_keep_alive(opts.keep_alive)
                .set_clean_start(opts.clean_session)
                .set_max_packet_size(Some(MAX_INCOMING as u32));
            if !opts.clean_session {
                o.set_session_expiry_interval(Some(7 * 24 * 3600));
            }
            if let Some((topic, payload)) = will {
                o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                    topic,
                    payload,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    None,
                ));
            }
            o.set_transport(transport);
            o.set_network_options(no_delay());
            let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 1024);
            tokio::spawn(async move {
                use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as C;
                use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
                drive!(el, tx, stop, |event| match event {
                    Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(_))) => Step::Connected,
                    Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) =>
                        Step::Emit(Incoming::Publish {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                        }),
                    Ok(rumqttc::v5::Event::Incoming(Packet::SubAck(a))) =>
                        Step::Emit(Incoming::SubAck(
                            a.return_codes
                                .iter()
                                .map(|c| matches!(c, R::Success(_)))
                                .collect(),
                        )),
                    Ok(_) => Step::Skip,
                    Err(rumqttc::v5::ConnectionError::ConnectionRefused(
                        code @ (C::ServerUnavailable | C::ServerBusy | C::ConnectionRateExceeded),
                    )) => Step::Lost(format!("{code:?}")),
                    Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
                        Step::Refused(format!("{code:?}"))
                    }
                    Err(rumqttc::v5::ConnectionError::RequestsDone) => Step::Done,
                    Err(e) => Step::Lost(e.to_string()),
                })
            });
            (
                Handle {
                    mqtt: Mqtt::V5(client),
                    closing,
                },
                rx,
            )
        }
    }
}
