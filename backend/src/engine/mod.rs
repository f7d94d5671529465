//! The delivery engine: the backend's MQTT subscriber.
//!
//! ```text
//! broker ─▶ rumqttc event loop (this task) ─▶ shard by device (N tasks, in order per device)
//!        ─▶ op handler (ops/*.rs) ─▶ store (one transaction; sends group-committed by the
//!           batcher tasks) ─▶ answer on rsp
//!        ─▶ publisher: the committed updates on `in` of every recipient device
//! ```
//!
//! Requests of one device are handled strictly in arrival order (their shard is a queue);
//! different devices run concurrently. The ordering that matters for correctness (seq, useq)
//! is decided by the database, so any number of backends can share the request stream.

mod batcher;
mod ops;
pub mod presence;

use crate::publisher::Publisher;
use crate::store::Store;
use bytes::Bytes;
use protocol::ops::Op;
use protocol::topic::{DeviceTopic, Stream, PRESENCE_FILTER, REQUEST_FILTER};
use protocol::{DeviceId, ErrorBody, ErrorCode, Response, UserId};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Event, EventLoop};
use serde_json::Value;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Largest request payload handled; bigger ones get `payload_too_large`.
    pub max_request_bytes: usize,
    /// Number of request queues (devices are hashed onto them).
    pub shards: usize,
    /// How long after sending the sender may edit or delete a message for everyone.
    pub edit_window: Duration,
    /// At most one presence event per user per this period.
    pub presence_every: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024,
            shards: 64,
            edit_window: Duration::from_secs(48 * 3600),
            presence_every: Duration::from_secs(2),
        }
    }
}

/// Who sent a request: taken from the topic, which the broker's ACL guarantees.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: UserId,
    pub device: DeviceId,
}

pub struct Engine {
    pub store: Store,
    pub publisher: Publisher,
    pub config: EngineConfig,
    /// True while the engine is connected and subscribed to the request stream.
    pub ready: Arc<AtomicBool>,
    sends: batcher::Batcher,
    typing: ops::typing::Throttle,
    presence: Arc<presence::Fanout>,
}

impl Engine {
    /// Must be called inside the tokio runtime: it starts the send batchers.
    pub fn new(store: Store, publisher: Publisher, config: EngineConfig) -> Arc<Self> {
        // SQLite has one writer; PostgreSQL can commit several batches at once.
        let batchers = match store.db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => 1,
            _ => 4,
        };
        Arc::new(Self {
            sends: batcher::Batcher::start(store.clone(), batchers),
            store,
            publisher,
            ready: Arc::new(AtomicBool::new(false)),
            typing: Default::default(),
            presence: presence::Fanout::new(config.presence_every),
            config,
        })
    }

    /// Polls the MQTT connection until shutdown, (re)subscribing on every CONNACK and feeding
    /// requests to the shards. rumqttc reconnects on the next poll after an error.
    ///
    /// On shutdown it drains: it unsubscribes from the shared request stream (the broker then
    /// gives new requests to the other backends), keeps handling whatever still arrives (a
    /// broker may deliver messages it had queued for this backend even after confirming the
    /// unsubscribe) until every request taken is answered and nothing came for [`QUIET`],
    /// then disconnects — all within [`DRAIN_TIMEOUT`]. A request cut off by the deadline is
    /// never answered unless it was committed, and its device resends it by cmid.
    pub async fn run(self: Arc<Self>, mut eventloop: EventLoop, shutdown: CancellationToken) {
        let mut workers = tokio::task::JoinSet::new();
        let pending = Arc::new(AtomicUsize::new(0));
        let shards: Vec<mpsc::UnboundedSender<(DeviceTopic, Bytes)>> =
            (0..self.config.shards.max(1))
                .map(|_| {
                    let (tx, mut rx) = mpsc::unbounded_channel::<(DeviceTopic, Bytes)>();
                    let (engine, pending) = (self.clone(), pending.clone());
                    workers.spawn(async move {
                        while let Some((topic, payload)) = rx.recv().await {
                            engine.handle(topic, payload).await;
                            pending.fetch_sub(1, Ordering::AcqRel);
                        }
                    });
                    tx
                })
                .collect();
        let router = Router { shards, pending };
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
                    let client = self.publisher.client().clone();
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
                    self.ready.store(granted, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => router.route(&p.topic, p.payload),
                Ok(_) => {}
                Err(e) => {
                    self.ready.store(false, Ordering::Relaxed);
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
        self.drain(eventloop, router, workers).await;
    }

    async fn drain(
        &self,
        mut eventloop: EventLoop,
        router: Router,
        mut workers: tokio::task::JoinSet<()>,
    ) {
        self.ready.store(false, Ordering::Relaxed);
        let client = self.publisher.client().clone();
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
                        pending = router.pending.load(Ordering::Acquire),
                        "shutdown: requests still running at the drain deadline"
                    );
                    break;
                }
                _ = tick.tick() => {
                    if router.pending.load(Ordering::Acquire) == 0 && last_request.elapsed() >= QUIET {
                        break;
                    }
                }
                e = eventloop.poll() => match e {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        router.route(&p.topic, p.payload);
                        last_request = tokio::time::Instant::now();
                        handled += 1;
                    }
                    Ok(_) => {}
                    Err(_) => connected = false,
                },
            }
        }
        drop(router);
        // The shards are idle (or out of time): let them end, then flush and leave.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while workers.join_next().await.is_some() {}
        })
        .await;
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

    async fn handle(&self, topic: DeviceTopic, payload: Bytes) {
        let caller = Caller {
            user: topic.user,
            device: topic.device,
        };
        // The broker's ACL keeps devices on their own topics; this holds even where an external
        // broker's ACL is looser: the topic must name an active device of that user.
        if !self.is_active(&caller).await {
            tracing::debug!(user = %caller.user, device = %caller.device, "dropping a publish for no active device of that user");
            return;
        }
        match topic.stream {
            Stream::Req(op) => self.request(&caller, &op, &payload).await,
            Stream::Presence => {
                self.presence
                    .event(&self.store, &self.publisher, &caller.device, &payload)
                    .await
            }
            _ => {}
        }
    }

    async fn is_active(&self, caller: &Caller) -> bool {
        // If the database cannot say, let the request through: it then fails `unavailable`.
        self.publisher
            .directory()
            .is_active(&caller.user, &caller.device)
            .await
            .unwrap_or(true)
    }

    /// Parses, dispatches and answers one request: exactly one answer, except for `typing`.
    async fn request(&self, caller: &Caller, op: &str, payload: &[u8]) {
        let arrived = std::time::Instant::now();
        let op = Op::parse(op);
        crate::metrics::request(op.map_or("unknown", Op::as_str));
        let parsed: Result<Value, _> = serde_json::from_slice(payload);
        if op == Some(Op::Typing) {
            if let Ok(body) = parsed {
                if payload.len() <= self.config.max_request_bytes {
                    ops::typing::handle(self, caller, body).await;
                }
            }
            return;
        }
        let mut deliver = Vec::new();
        let (id, result) = match parsed {
            Err(e) => (
                Value::Null,
                Err(ErrorBody::new(
                    ErrorCode::BadJson,
                    format!("payload is not JSON: {e}"),
                )),
            ),
            Ok(body) => {
                let id = body.get("id").cloned().unwrap_or(Value::Null);
                let result = if payload.len() > self.config.max_request_bytes {
                    Err(ErrorBody::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "requests are limited to {} bytes",
                            self.config.max_request_bytes
                        ),
                    ))
                } else if !body.is_object() {
                    Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        "a request is a JSON object",
                    ))
                } else if id.is_null() {
                    Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        "a request needs an `id`",
                    ))
                } else {
                    match op {
                        None => Err(ErrorBody::new(ErrorCode::UnknownOp, "no such op")),
                        Some(op) => match self.dispatch(op, caller, body).await {
                            Ok(done) => {
                                deliver = done.deliver;
                                Ok(done.result)
                            }
                            Err(e) => Err(e.body()),
                        },
                    }
                };
                (id, result)
            }
        };
        let payload = match result {
            // The result is already JSON text: splice it in rather than re-encoding it.
            Ok(json) => format!(r#"{{"id":{id},"ok":true,"result":{json}}}"#).into_bytes(),
            Err(body) => {
                crate::metrics::error(body.code, "mqtt");
                serde_json::to_vec(&Response::err(id, body)).expect("serialises")
            }
        };
        self.publisher
            .respond(&caller.user, &caller.device, payload)
            .await;
        for out in &deliver {
            self.publisher.deliver(out).await;
        }
        if op == Some(Op::Send) && !deliver.is_empty() {
            crate::metrics::send_delivered(arrived.elapsed());
        }
    }

    async fn dispatch(
        &self,
        op: Op,
        caller: &Caller,
        body: Value,
    ) -> crate::error::Result<ops::Done> {
        match op {
            Op::Send => ops::send::handle(self, caller, body).await,
            Op::Ack => ops::ack::handle(self, caller, body).await,
            Op::Read => ops::read::handle(self, caller, body).await,
            Op::Sync => ops::sync::handle(self, caller, body).await,
            Op::Edit => ops::edit::handle(self, caller, body).await,
            Op::Delete => ops::delete::handle(self, caller, body).await,
            Op::React => ops::react::handle(self, caller, body).await,
            Op::Typing => unreachable!("typing is never answered"),
        }
    }
}

/// How long a shutting-down engine may take to finish the requests it holds.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A draining engine stops once it holds no request and none arrived for this long.
pub const QUIET: Duration = Duration::from_millis(500);

/// The shards and how many requests they hold (queued or running).
struct Router {
    shards: Vec<mpsc::UnboundedSender<(DeviceTopic, Bytes)>>,
    pending: Arc<AtomicUsize>,
}

impl Router {
    /// Queues a request publish on its device's shard (requests of one device stay in order).
    fn route(&self, topic: &[u8], payload: Bytes) {
        let Ok(topic) = std::str::from_utf8(topic).map(DeviceTopic::parse) else {
            return;
        };
        let Ok(topic) = topic else {
            tracing::debug!("ignoring publish on a foreign topic");
            return;
        };
        let mut h = DefaultHasher::new();
        topic.device.hash(&mut h);
        let shard = (h.finish() % self.shards.len() as u64) as usize;
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.shards[shard].send((topic, payload)).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
