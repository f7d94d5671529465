//! The MQTT side of the SDK: requests with ids matched to answers on `rsp`, and the device's
//! update and ephemeral streams as [`Event`]s.

use crate::mqtt::{self, Handle, Incoming};
use crate::ordered;
use crate::ClientError;
use protocol::http::Session;
use protocol::ops::{
    AckResult, DeleteResult, EditResult, Ephemeral, ReactResult, ReadResult, SendReq, SendResult,
    SyncResult,
};
use protocol::update::DeleteScope;
use protocol::{ConvId, DeviceId, MsgId, Response, Update, UserId};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// The MQTT version the client speaks.
pub enum MqttVersion {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    V5,
}

#[derive(Clone, Debug)]
/// How the client reaches the broker.
pub enum Transport {
    /// MQTT over TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port (1883 by default).
        port: u16,
    },
    /// MQTT over TLS.
    Tls {
        /// Host name the certificate is checked against.
        host: String,
        /// Port (8883 by default).
        port: u16,
    },
    /// `ws://host:port/mqtt`, or `wss://` for WebSocket over TLS.
    Ws {
        /// The WebSocket URL.
        url: String,
    },
}

impl Transport {
    fn host_port(addr: &str, default: u16) -> (String, u16) {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
        (
            host.trim_matches(['[', ']']).to_owned(),
            port.parse().unwrap_or(default),
        )
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        match self {
            Transport::Tcp { .. } => false,
            Transport::Tls { .. } => true,
            Transport::Ws { url } => url.starts_with("wss://"),
        }
    }
}

/// TLS for [`Transport::Tls`] and `wss://`: the roots a server's certificate must chain to.
/// The default trusts the Mozilla root set (webpki-roots); [`tls_with_root_ca`] trusts a
/// private CA instead.
pub fn default_tls() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    tls_with_roots(roots)
}

/// TLS that trusts only the CA certificates in `pem` (a private or test CA).
pub fn tls_with_root_ca(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientError::Tls(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls("no CA certificate in the PEM".into()));
    }
    Ok(tls_with_roots(roots))
}

fn tls_with_roots(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[derive(Clone, Debug)]
/// How to connect: the device's identity, the transport and the session's behaviour. Start
/// from [`ClientOptions::tcp`], [`ClientOptions::tls`] or [`ClientOptions::ws`].
pub struct ClientOptions {
    /// The user the session belongs to.
    pub user: UserId,
    /// The device: its MQTT client id and user name.
    pub device: DeviceId,
    /// The device token: its MQTT password.
    pub token: String,
    /// Where and how to connect.
    pub transport: Transport,
    /// MQTT 3.1.1 (default) or 5.
    pub version: MqttVersion,
    /// false keeps the broker session (MQTT persistent session) across reconnects.
    pub clean_session: bool,
    /// MQTT keep-alive (default 30 s).
    pub keep_alive: Duration,
    /// How long a request waits for its answer (default 15 s).
    pub request_timeout: Duration,
    /// `Some(n)`: deliver every update after useq `n` exactly once and in order, syncing on
    /// connect and on gaps (see `ordered.rs`). `None`: pushes as they arrive.
    pub ordered_from: Option<i64>,
    /// Publish `{"online":true}` on the device's `presence` topic after each connect, with
    /// `{"online":false}` as the Last Will and before a clean disconnect (what a broker without
    /// Courier's presence events, such as Mosquitto, needs for presence). Default true.
    pub announce_presence: bool,
    /// The TLS settings for [`Transport::Tls`] and `wss://` (default: [`default_tls`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientOptions {
    fn from_session(s: &Session, transport: Transport) -> Self {
        Self {
            user: s.user.clone(),
            device: s.device.clone(),
            token: s.token.clone(),
            transport,
            version: MqttVersion::V311,
            clean_session: true,
            keep_alive: Duration::from_secs(30),
            request_timeout: Duration::from_secs(15),
            ordered_from: None,
            announce_presence: true,
            tls: None,
        }
    }

    /// MQTT over TCP at the address the log-in answer gave.
    pub fn tcp(s: &Session) -> Self {
        let (host, port) = Transport::host_port(&s.mqtt.tcp, 1883);
        Self::from_session(s, Transport::Tcp { host, port })
    }

    /// MQTT over TLS at the address the log-in answer gave; `None` when the server has no TLS.
    pub fn tls(s: &Session) -> Option<Self> {
        let (host, port) = Transport::host_port(s.mqtt.tls.as_deref()?, 8883);
        Some(Self::from_session(s, Transport::Tls { host, port }))
    }

    /// Trusts `tls` (e.g. [`tls_with_root_ca`]) for TLS connections.
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// MQTT over WebSocket at the URL the log-in answer gave.
    pub fn ws(s: &Session) -> Self {
        Self::from_session(
            s,
            Transport::Ws {
                url: s.mqtt.ws.clone(),
            },
        )
    }

    /// Speak MQTT 5.
    pub fn v5(mut self) -> Self {
        self.version = MqttVersion::V5;
        self
    }

    /// Ordered, exactly-once delivery of every update after `useq` (usually the last one the
    /// app stored and acked; 0 for a new device).
    pub fn ordered_from(mut self, useq: i64) -> Self {
        self.ordered_from = Some(useq);
        self
    }
}

/// What arrives for the app.
#[derive(Clone, Debug)]
pub enum Event {
    /// (Re)connected and subscribed; a good moment to `sync` from the last acked useq.
    Connected,
    /// The connection dropped; the client is reconnecting.
    Disconnected(String),
    /// One update from the device's stream (`in`). May repeat or arrive out of order across
    /// reconnects: dedupe by `useq`.
    Update(Update),
    /// Typing and other ephemeral events (`eph`).
    Ephemeral(Ephemeral),
    /// An answer that matches no pending request (e.g. the `bad_json` answer, whose id is null).
    Unmatched(Response),
    /// A SUBACK: per filter, whether the broker granted it.
    SubAck(Vec<bool>),
    /// Ordered mode only: the server trimmed the log past this device's position (the device
    /// was away longer than the retention period). Updates up to `floor` are gone: reload the
    /// conversation list and history over HTTP. Delivery resumes after `floor`.
    CursorExpired {
        /// The oldest useq the server still holds.
        floor: i64,
    },
    /// A publish on a topic that is not this device's (never happens with Courier's ACL).
    Foreign {
        /// Where it came from.
        topic: String,
        /// What it carried.
        payload: Vec<u8>,
    },
}

type Pending = Mutex<HashMap<String, oneshot::Sender<Response>>>;

struct Inner {
    mqtt: Handle,
    user: UserId,
    device: DeviceId,
    pending: Pending,
    next_id: AtomicU64,
    /// Tells this client's message ids from an earlier client's of the same device (an app
    /// restarted): the time it started, in ns, base 36.
    instance: String,
    timeout: Duration,
    /// The presence topic when the client announces presence.
    presence: Option<String>,
}

/// A connected device: requests (send, read, edit, …) over MQTT with answers matched by id,
/// and the device's stream as [`Event`]s from [`Client::connect`]. Cheap to clone; the
/// connection lives while a clone does, or until [`Client::disconnect`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A handle that does not keep the client alive.
pub(crate) struct WeakClient(std::sync::Weak<Inner>);

impl WeakClient {
    pub fn upgrade(&self) -> Option<Client> {
        self.0.upgrade().map(|inner| Client { inner })
    }
}

/// What a device subscribes to, and at which QoS: one SUBSCRIBE (and one SUBACK) each.
const STREAMS: [(&str, u8); 3] = [("rsp", 1), ("in", 1), ("eph", 0)];
const SUBSCRIPTIONS: usize = STREAMS.len();

fn topic(user: &UserId, device: &DeviceId, stream: &str) -> String {
    format!("u/{user}/d/{device}/{stream}")
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

impl Client {
    /// Connects, subscribes to the device's `in`, `rsp` and `eph`, and returns once the broker
    /// accepted the session (or refused it).
    pub async fn connect(
        opts: ClientOptions,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Event>), ClientError> {
        let (mqtt, mut incoming) = mqtt::start(&opts);
        let presence = opts.announce_presence.then(|| mqtt::presence_topic(&opts));
        let subscribe = |mqtt: Handle, user: UserId, device: DeviceId, presence: Option<String>| async move {
            for (stream, qos) in STREAMS {
                mqtt.subscribe(topic(&user, &device, stream), qos).await?;
            }
            if let Some(t) = presence {
                mqtt.publish(t, 1, mqtt::ONLINE.to_vec()).await?;
            }
            Ok::<_, String>(())
        };
        // Wait for the first CONNACK (or refusal).
        let first = tokio::time::timeout(opts.request_timeout, async {
            loop {
                match incoming.recv().await {
                    Some(Incoming::Connected) => return Ok(()),
                    Some(Incoming::Refused(why)) => return Err(ClientError::Refused(why)),
                    Some(Incoming::Lost(why)) => return Err(ClientError::Refused(why)),
                    Some(Incoming::Publish { .. } | Incoming::SubAck(_)) => continue,
                    None => return Err(ClientError::Mqtt("event loop ended".into())),
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)?;
        if let Err(e) = first {
            mqtt.disconnect().await;
            return Err(e);
        }
        subscribe(
            mqtt.clone(),
            opts.user.clone(),
            opts.device.clone(),
            presence.clone(),
        )
        .await
        .map_err(ClientError::Mqtt)?;
        // rumqttc only queued the SUBSCRIBEs: wait for their SUBACKs, so that once `connect`
        // returns, whatever is sent to this device arrives live. Publishes that come first are
        // kept for the event task.
        let mut early = VecDeque::new();
        let subscribed = tokio::time::timeout(opts.request_timeout, async {
            let mut acks = 0;
            while acks < SUBSCRIPTIONS {
                match incoming.recv().await {
                    Some(Incoming::SubAck(granted)) if granted.iter().all(|g| *g) => acks += 1,
                    Some(Incoming::SubAck(_)) => {
                        return Err(ClientError::Refused("subscription refused".into()))
                    }
                    Some(Incoming::Refused(why) | Incoming::Lost(why)) => {
                        return Err(ClientError::Refused(why))
                    }
                    Some(other) => early.push_back(other),
                    None => return Err(ClientError::Mqtt("event loop ended".into())),
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| ClientError::Timeout)
        .and_then(|r| r);
        if let Err(e) = subscribed {
            mqtt.disconnect().await;
            return Err(e);
        }
        let inner = Arc::new(Inner {
            mqtt: mqtt.clone(),
            user: opts.user.clone(),
            device: opts.device.clone(),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            instance: instance_tag(),
            timeout: opts.request_timeout,
            presence: presence.clone(),
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let _ = events_tx.send(Event::Connected);
        let ordered = opts.ordered_from.map(|after| {
            let client = Client {
                inner: inner.clone(),
            };
            let tx = ordered::start(client, after, events_tx.clone());
            let _ = tx.send(ordered::Input::Connected);
            tx
        });
        // Only a weak link: once the app drops every `Client`, the MQTT client goes with it and
        // the connection closes.
        let weak = Arc::downgrade(&inner);
        drop(mqtt);
        let (user, device) = (opts.user.clone(), opts.device.clone());
        tokio::spawn(async move {
            let rsp_topic = topic(&user, &device, "rsp");
            let in_topic = topic(&user, &device, "in");
            let eph_topic = topic(&user, &device, "eph");
            loop {
                let msg = match early.pop_front() {
                    Some(msg) => msg,
                    None => match incoming.recv().await {
                        Some(msg) => msg,
                        None => return,
                    },
                };
                let Some(inner) = weak.upgrade() else { return };
                let event = match msg {
                    Incoming::Connected => {
                        if subscribe(
                            inner.mqtt.clone(),
                            user.clone(),
                            device.clone(),
                            presence.clone(),
                        )
                        .await
                        .is_err()
                        {
                            continue;
                        }
                        if let Some(o) = &ordered {
                            let _ = o.send(ordered::Input::Connected);
                        }
                        Event::Connected
                    }
                    Incoming::Lost(why) | Incoming::Refused(why) => Event::Disconnected(why),
                    Incoming::SubAck(granted) => Event::SubAck(granted),
                    Incoming::Publish { topic, payload } if topic == rsp_topic => {
                        let Ok(rsp) = serde_json::from_slice::<Response>(&payload) else {
                            continue;
                        };
                        let waiter = inner
                            .pending
                            .lock()
                            .expect("pending lock")
                            .remove(&id_key(&rsp.id));
                        match waiter {
                            Some(w) => {
                                let _ = w.send(rsp);
                                continue;
                            }
                            None => Event::Unmatched(rsp),
                        }
                    }
                    Incoming::Publish { topic, payload } if topic == in_topic => {
                        match serde_json::from_slice::<Update>(&payload) {
                            Ok(u) => match &ordered {
                                Some(o) => {
                                    let _ = o.send(ordered::Input::Push(Box::new(u)));
                                    continue;
                                }
                                None => Event::Update(u),
                            },
                            Err(e) => {
                                tracing::warn!(error = %e, "undecodable update");
                                continue;
                            }
                        }
                    }
                    Incoming::Publish { topic, payload } if topic == eph_topic => {
                        match serde_json::from_slice::<Ephemeral>(&payload) {
                            Ok(e) => Event::Ephemeral(e),
                            Err(_) => continue,
                        }
                    }
                    Incoming::Publish { topic, payload } => Event::Foreign {
                        topic,
                        payload: payload.to_vec(),
                    },
                };
                if events_tx.send(event).is_err() {
                    // Nobody listens for events; keep answering requests.
                    continue;
                }
            }
        });
        Ok((Self { inner }, events))
    }

    /// The user this device belongs to.
    pub fn user(&self) -> &UserId {
        &self.inner.user
    }

    pub(crate) fn downgrade(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner))
    }

    /// This device.
    pub fn device(&self) -> &DeviceId {
        &self.inner.device
    }

    /// Sends `body` (an object; its `id` is set here) to `req/{op}` and waits for the answer.
    pub async fn request(&self, op: &str, body: Value) -> Result<Value, ClientError> {
        let Value::Object(mut map) = body else {
            return Err(ClientError::Decode(
                "a request body is a JSON object".into(),
            ));
        };
        let id = Value::String(format!(
            "r{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        map.insert("id".into(), id.clone());
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .expect("pending lock")
            .insert(id_key(&id), tx);
        let payload = serde_json::to_vec(&Value::Object(map)).expect("serialises");
        let sent = self
            .inner
            .mqtt
            .publish(
                topic(&self.inner.user, &self.inner.device, &format!("req/{op}")),
                1,
                payload,
            )
            .await;
        if let Err(e) = sent {
            self.inner
                .pending
                .lock()
                .expect("pending lock")
                .remove(&id_key(&id));
            return Err(ClientError::Mqtt(e));
        }
        let rsp = match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(rsp)) => rsp,
            _ => {
                self.inner
                    .pending
                    .lock()
                    .expect("pending lock")
                    .remove(&id_key(&id));
                return Err(ClientError::Timeout);
            }
        };
        match (rsp.ok, rsp.result, rsp.error) {
            (true, Some(result), _) => Ok(result),
            (false, _, Some(error)) => Err(ClientError::Server(error)),
            _ => Err(ClientError::Decode("answer without result or error".into())),
        }
    }

    async fn typed<T: DeserializeOwned>(&self, op: &str, body: Value) -> Result<T, ClientError> {
        let v = self.request(op, body).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Sends a message; `req.cmid` makes a resend safe.
    pub async fn send(&self, req: &SendReq) -> Result<SendResult, ClientError> {
        self.typed("send", serde_json::to_value(req).expect("serialises"))
            .await
    }

    /// A text message with a fresh client message id.
    pub async fn send_text(&self, conv: &ConvId, text: &str) -> Result<SendResult, ClientError> {
        let cmid = format!(
            "{}-{}-{}",
            self.inner.device,
            self.inner.instance,
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        self.send(&text_req(conv, &cmid, text)).await
    }

    /// This device holds every update up to `useq`.
    pub async fn ack(&self, useq: i64) -> Result<i64, ClientError> {
        let r: AckResult = self.typed("ack", json!({ "useq": useq })).await?;
        Ok(r.useq)
    }

    /// The user read `conv` up to `seq`.
    pub async fn read(&self, conv: &ConvId, seq: i64) -> Result<i64, ClientError> {
        let r: ReadResult = self
            .typed("read", json!({ "conv": conv, "seq": seq }))
            .await?;
        Ok(r.read_seq)
    }

    /// One page of updates after `after`.
    pub async fn sync(&self, after: i64, limit: u32) -> Result<SyncResult, ClientError> {
        self.typed("sync", json!({ "after": after, "limit": limit }))
            .await
    }

    /// Every update after `after`, following pages until up to date.
    pub async fn sync_all(&self, mut after: i64) -> Result<Vec<Update>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.sync(after, 500).await?;
            if let Some(last) = page.updates.last() {
                after = last.useq;
            }
            all.extend(page.updates);
            if !page.more {
                return Ok(all);
            }
        }
    }

    /// Replaces the text of one of this user's messages.
    pub async fn edit(&self, msg: &MsgId, text: &str) -> Result<EditResult, ClientError> {
        self.typed("edit", json!({ "msg": msg, "text": text }))
            .await
    }

    /// Deletes a message for this user's devices, or for everyone (the sender, in time).
    pub async fn delete(
        &self,
        msg: &MsgId,
        scope: DeleteScope,
    ) -> Result<DeleteResult, ClientError> {
        self.typed("delete", json!({ "msg": msg, "for": scope }))
            .await
    }

    /// Adds (`on`) or removes this user's reaction `emoji`.
    pub async fn react(
        &self,
        msg: &MsgId,
        emoji: &str,
        on: bool,
    ) -> Result<ReactResult, ClientError> {
        self.typed("react", json!({ "msg": msg, "emoji": emoji, "on": on }))
            .await
    }

    /// Typing indicator (QoS 0, no answer).
    pub async fn typing(&self, conv: &ConvId, on: bool) -> Result<(), ClientError> {
        let payload = serde_json::to_vec(&json!({ "conv": conv, "on": on })).expect("serialises");
        self.inner
            .mqtt
            .publish(
                topic(&self.inner.user, &self.inner.device, "req/typing"),
                0,
                payload,
            )
            .await
            .map_err(ClientError::Mqtt)
    }

    /// Publishes raw bytes to any topic (for tests of what the server refuses).
    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>) -> Result<(), ClientError> {
        self.inner
            .mqtt
            .publish(topic.to_owned(), 1, payload)
            .await
            .map_err(ClientError::Mqtt)
    }

    /// Subscribes to any filter (for tests of what the server refuses).
    pub async fn subscribe_raw(&self, filter: &str) -> Result<(), ClientError> {
        self.inner
            .mqtt
            .subscribe(filter.to_owned(), 1)
            .await
            .map_err(ClientError::Mqtt)
    }

    /// Says the device is going away (presence) and disconnects for good.
    pub async fn disconnect(&self) {
        if let Some(t) = &self.inner.presence {
            let _ = self
                .inner
                .mqtt
                .publish(t.clone(), 1, mqtt::OFFLINE.to_vec())
                .await;
        }
        self.inner.mqtt.disconnect().await;
    }
}

/// A `send` request for a text message.
/// Nanoseconds since the Unix epoch in base 36 (13 characters until the 26th century).
fn instance_tag() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut out = Vec::new();
    loop {
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// A text message for `conv` with the idempotency key `cmid` (a retry with the same `cmid` is
/// stored once).
pub fn text_req(conv: &ConvId, cmid: &str, text: &str) -> SendReq {
    serde_json::from_value(json!({ "conv": conv, "cmid": cmid, "kind": "text", "text": text }))
        .expect("valid send request")
}
