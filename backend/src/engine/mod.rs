//! The delivery engine: requests in, answers and updates out.
//!
//! ```text
//! edge ─▶ lanes (one per device with work, in order; lanes.rs) ─▶ op handler (ops/*.rs)
//!      ─▶ store (one transaction; sends group-committed by the batcher tasks)
//!      ─▶ answer on the device's rsp, then the committed updates on every recipient's `in`
//!         (publisher ─▶ edge)
//! ```
//!
//! Requests of one device are handled strictly in arrival order; different devices run
//! concurrently. The ordering that matters for correctness (seq, useq) is decided by the
//! database, so any number of backends can share the request stream.

mod batcher;
pub mod lanes;
mod ops;
pub mod presence;

use crate::publisher::Publisher;
use crate::shared::Limit;
use crate::store::batch::Write;
use crate::store::Store;
use broker::{Inbound, Kind};
use protocol::ops::Op;
use protocol::{DeviceId, ErrorBody, ErrorCode, Response, UserId};
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Largest request payload handled; bigger ones get `payload_too_large`.
    pub max_request_bytes: usize,
    /// How long after sending the sender may edit or delete a message for everyone.
    pub edit_window: Duration,
    /// At most one presence event per user per this period.
    pub presence_every: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024,
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
    writes: batcher::Batcher,
    typing: ops::typing::Throttle,
    presence: Arc<presence::Fanout>,
}

impl Engine {
    /// Must be called inside the tokio runtime: it starts the send batchers.
    pub fn new(store: Store, publisher: Publisher, config: EngineConfig) -> Arc<Self> {
        Arc::new(Self {
            writes: batcher::Batcher::start(store.clone()),
            store,
            publisher,
            ready: Arc::new(AtomicBool::new(false)),
            typing: Default::default(),
            presence: presence::Fanout::new(config.presence_every),
            config,
        })
    }

    /// Handles consecutive messages of one device, in order. Each request is started (checked,
    /// and a write queued for its batch) in arrival order, then each is finished (committed,
    /// answered, delivered) in the same order: a run of sends shares one group commit.
    pub async fn handle_run(&self, msgs: Vec<Inbound>) {
        let run = self.begin_run(msgs).await;
        self.end_run(run).await;
    }

    /// Whether a run of `msg`'s kind may begin while the device's previous run still waits
    /// for its commit: a batched write, where one writer commits the batches in the order
    /// their writes were queued (so the device's writes still take effect in order, and
    /// [`Engine::end_run`] answers them in order).
    pub fn pipelines(&self, msg: &Inbound) -> bool {
        let Kind::Request(op) = &msg.kind else {
            return false;
        };
        self.writes.is_single() && Op::parse(op).is_some_and(|op| self.batched(op))
    }

    /// The first half of [`Engine::handle_run`]: checks each request in order and queues the
    /// run's writes for one batch; everything else is answered when the run ends.
    pub async fn begin_run(&self, msgs: Vec<Inbound>) -> Run {
        let mut begun = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let (Some(user), Some(device)) =
                (UserId::parse(&msg.user), DeviceId::parse(&msg.device))
            else {
                continue;
            };
            let caller = Caller { user, device };
            // The edge's ACL keeps devices on their own topics; this holds even where an
            // external broker's ACL is looser: the topic must name an active device of that user.
            if !self.is_active(&caller).await {
                tracing::debug!(user = %caller.user, device = %caller.device, "dropping a publish for no active device of that user");
                continue;
            }
            match msg.kind {
                Kind::Request(op) => {
                    let started = self.begin(&caller, &op, &msg.payload).await;
                    begun.push((caller, started));
                }
                Kind::Presence => {
                    self.presence
                        .event(
                            &self.store,
                            &self.writes,
                            &self.publisher,
                            &caller.device,
                            &msg.payload,
                        )
                        .await
                }
            }
        }
        self.queue_writes(&mut begun);
        Run(begun)
    }

    /// The second half of [`Engine::handle_run`]: answers each request of the run in order
    /// (a write once committed), then delivers its updates.
    pub async fn end_run(&self, run: Run) {
        for (caller, started) in run.0 {
            self.end(&caller, started).await;
        }
    }

    /// Queues the run's checked writes for one batch, together and in order.
    fn queue_writes(&self, begun: &mut [(Caller, Begun)]) {
        let mut jobs = Vec::new();
        let mut slots = Vec::new();
        for (_, b) in begun.iter_mut() {
            if matches!(b.state, State::Prepared(_)) {
                let State::Prepared(job) = std::mem::replace(&mut b.state, State::Unanswered)
                else {
                    unreachable!()
                };
                jobs.push(job);
                slots.push(&mut b.state);
            }
        }
        if jobs.is_empty() {
            return;
        }
        match self.writes.enqueue(jobs) {
            Ok(answers) => {
                for (slot, answer) in slots.into_iter().zip(answers) {
                    *slot = State::Committing(answer);
                }
            }
            Err(e) => {
                for slot in slots {
                    *slot = State::Ready(Err(e.body()));
                }
            }
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

    /// Parses and checks a request, then runs it — a batched write only up to its queueing
    /// for the next batch.
    async fn begin(&self, caller: &Caller, op: &str, payload: &[u8]) -> Begun {
        let arrived = std::time::Instant::now();
        let op = Op::parse(op);
        crate::metrics::request(op.map_or("unknown", Op::as_str));
        let parsed: Result<Value, _> = serde_json::from_slice(payload);
        let mut begun = Begun {
            op,
            arrived,
            id: Value::Null,
            state: State::Unanswered,
        };
        if op == Some(Op::Typing) {
            if let Ok(body) = parsed {
                if payload.len() <= self.config.max_request_bytes
                    && self.over_limit(Op::Typing, caller).await.is_ok()
                {
                    ops::typing::handle(self, caller, body).await;
                }
            }
            return begun;
        }
        let body = match parsed {
            Ok(body) => body,
            Err(e) => {
                let e = ErrorBody::new(ErrorCode::BadJson, format!("payload is not JSON: {e}"));
                begun.state = State::Ready(Err(e));
                return begun;
            }
        };
        begun.id = body.get("id").cloned().unwrap_or(Value::Null);
        let invalid = if payload.len() > self.config.max_request_bytes {
            let max = self.config.max_request_bytes;
            let why = format!("requests are limited to {max} bytes");
            Some(ErrorBody::new(ErrorCode::PayloadTooLarge, why))
        } else if !body.is_object() {
            Some(ErrorBody::new(
                ErrorCode::BadRequest,
                "a request is a JSON object",
            ))
        } else if begun.id.is_null() {
            Some(ErrorBody::new(
                ErrorCode::BadRequest,
                "a request needs an `id`",
            ))
        } else if op.is_none() {
            Some(ErrorBody::new(ErrorCode::UnknownOp, "no such op"))
        } else if let Err(e) = protocol::envelope::check_storable(&body) {
            Some(e)
        } else {
            self.over_limit(op.expect("checked above"), caller)
                .await
                .err()
                .map(|e| e.body())
        };
        begun.state = match (invalid, op) {
            (Some(e), _) => State::Ready(Err(e)),
            (None, Some(op)) if self.batched(op) => match self.prepare(op, caller, body).await {
                Ok(job) => State::Prepared(job),
                Err(e) => State::Ready(Err(e.body())),
            },
            (None, Some(op)) => {
                State::Ready(self.dispatch(op, caller, body).await.map_err(|e| e.body()))
            }
            (None, None) => unreachable!("checked above"),
        };
        begun
    }

    /// Waits for a begun request's outcome, answers it on `rsp`, then delivers its updates.
    async fn end(&self, caller: &Caller, begun: Begun) {
        let result = match begun.state {
            State::Unanswered => return,
            State::Ready(r) => r,
            State::Committing(c) => c.outcome().await.map(ops::written).map_err(|e| e.body()),
            State::Prepared(_) => unreachable!("queued by handle_run"),
        };
        let id = begun.id;
        let (payload, deliver) = match result {
            // The result is already JSON text: splice it in rather than re-encoding it.
            Ok(done) => (
                format!(r#"{{"id":{id},"ok":true,"result":{}}}"#, done.result).into_bytes(),
                done.deliver,
            ),
            Err(body) => {
                crate::metrics::error(body.code, "mqtt");
                let payload = serde_json::to_vec(&Response::err(id, body)).expect("serialises");
                (payload, Vec::new())
            }
        };
        self.publisher
            .respond(&caller.user, &caller.device, payload.into());
        for out in &deliver {
            self.publisher.deliver(out).await;
        }
        if begun.op == Some(Op::Send) && !deliver.is_empty() {
            crate::metrics::send_delivered(begun.arrived.elapsed());
        }
    }

    /// Takes one from the device's bucket for `op`; `rate_limited` when it is empty.
    async fn over_limit(&self, op: Op, caller: &Caller) -> crate::error::Result<()> {
        let limit = match op {
            Op::Send => Limit::Send,
            Op::Ack => Limit::Ack,
            Op::Read => Limit::Read,
            Op::Sync => Limit::Sync,
            Op::Edit => Limit::Edit,
            Op::Delete => Limit::Delete,
            Op::React => Limit::React,
            Op::Typing => Limit::Typing,
        };
        self.store.shared.limit(limit, caller.device.as_str()).await
    }

    /// Whether `op` goes through the write batches: sends always; acks and reads where there
    /// is one writer (see `batcher`).
    fn batched(&self, op: Op) -> bool {
        op == Op::Send || (self.writes.is_single() && matches!(op, Op::Ack | Op::Read))
    }

    /// A batched request, checked and ready to queue.
    async fn prepare(&self, op: Op, caller: &Caller, body: Value) -> crate::error::Result<Write> {
        match op {
            Op::Send => ops::send::start(caller, body),
            Op::Ack => ops::ack::write(caller, body),
            Op::Read => ops::read::write(caller, body),
            _ => unreachable!("only batched ops are prepared"),
        }
    }

    async fn dispatch(
        &self,
        op: Op,
        caller: &Caller,
        body: Value,
    ) -> crate::error::Result<ops::Done> {
        match op {
            Op::Send => unreachable!("sends are prepared, queued and answered in steps"),
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

/// A device's run of requests between [`Engine::begin_run`] and [`Engine::end_run`].
pub struct Run(Vec<(Caller, Begun)>);

/// A request between [`Engine::begin`] and [`Engine::end`].
struct Begun {
    op: Option<Op>,
    arrived: std::time::Instant,
    id: Value,
    state: State,
}

enum State {
    /// Never answered (`typing`).
    Unanswered,
    Ready(std::result::Result<ops::Done, ErrorBody>),
    /// A checked write, to be queued with the rest of its run.
    Prepared(Write),
    /// A write queued for its batch.
    Committing(batcher::Committing),
}

/// How long a shutting-down engine may take to finish the requests it holds.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A draining engine stops once it holds no request and none arrived for this long.
pub const QUIET: Duration = Duration::from_millis(500);
