//! The chat traffic the fault tests run: devices that send numbered messages (resending
//! unanswered ones with the same cmid, as an app's outbox does), take their update stream in
//! ordered mode, acknowledge as they go, and remember every message they got — the app's
//! local database, which survives the device's own disconnects.

use courier_client::protocol::http::Session;
use courier_client::protocol::ops::SendResult;
use courier_client::protocol::{ConvId, MsgId, UpdateBody};
use courier_client::{text_req, Client, ClientOptions, Event};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Acknowledge after this many new updates.
const ACK_EVERY: i64 = 25;

pub struct Dev {
    pub name: String,
    session: Session,
    ws: bool,
    client: Option<Client>,
    events: UnboundedReceiver<Event>,
    pub convs: Vec<ConvId>,
    /// Highest useq the server confirmed for this device's `ack`.
    acked: Arc<AtomicI64>,
    last_acked_sent: i64,
    /// Highest useq handed over by the ordered stream.
    position: i64,
    /// Every message received, deduplicated by id, and per conversation the seqs in the order
    /// they were first seen.
    pub seen: HashSet<MsgId>,
    pub order: HashMap<ConvId, Vec<i64>>,
    /// Message updates handed over again (after a reconnect from an older cursor).
    pub repeats: u64,
    /// Answered sends by index, and the indexes still unanswered.
    pub acks: BTreeMap<usize, SendResult>,
    pub unanswered: BTreeSet<usize>,
    /// Sends attempted again with the same cmid.
    pub resends: u64,
    pub reconnects: u64,
}

fn options(session: &Session, ws: bool, after: i64) -> ClientOptions {
    let mut o = if ws {
        ClientOptions::ws(session).v5()
    } else {
        ClientOptions::tcp(session)
    };
    // Phones keep a persistent MQTT session, laptops start clean: both must converge.
    o.clean_session = ws;
    o.request_timeout = Duration::from_secs(3);
    o.keep_alive = Duration::from_secs(5);
    o.ordered_from(after)
}

/// Connects, retrying while the server is down.
async fn connect(session: &Session, ws: bool, after: i64) -> (Client, UnboundedReceiver<Event>) {
    let started = Instant::now();
    loop {
        match Client::connect(options(session, ws, after)).await {
            Ok(c) => return c,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                tracing::debug!(error = %e, "connect failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot connect {}: {e}", session.device),
        }
    }
}

impl Dev {
    pub async fn new(name: &str, session: Session, ws: bool, convs: Vec<ConvId>) -> Self {
        let (client, events) = connect(&session, ws, 0).await;
        Self {
            name: name.into(),
            session,
            ws,
            client: Some(client),
            events,
            convs,
            acked: Arc::new(AtomicI64::new(0)),
            last_acked_sent: 0,
            position: 0,
            seen: HashSet::new(),
            order: HashMap::new(),
            repeats: 0,
            acks: BTreeMap::new(),
            unanswered: BTreeSet::new(),
            resends: 0,
            reconnects: 0,
        }
    }

    fn cmid(&self, i: usize) -> String {
        format!("{}-{i}", self.name)
    }

    /// Takes whatever the stream delivered so far; acknowledges every [`ACK_EVERY`].
    pub fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            let Event::Update(u) = ev else { continue };
            self.position = self.position.max(u.useq);
            if let UpdateBody::Message { msg } = u.body {
                if msg.content.kind() == "system" {
                    // The group's `created` line is the server's, not the workload's.
                } else if self.seen.insert(msg.id.clone()) {
                    self.order.entry(msg.conv).or_default().push(msg.seq);
                } else {
                    self.repeats += 1;
                }
            }
        }
        if self.position - self.last_acked_sent >= ACK_EVERY {
            self.last_acked_sent = self.position;
            let (client, acked, useq) = (self.client().clone(), self.acked.clone(), self.position);
            tokio::spawn(async move {
                if let Ok(n) = client.ack(useq).await {
                    acked.fetch_max(n, Ordering::Relaxed);
                }
            });
        }
    }

    /// Sends message `i` (or sends it again); true once answered.
    pub async fn send(&mut self, i: usize) -> bool {
        let conv = &self.convs[i % self.convs.len()];
        let req = text_req(conv, &self.cmid(i), &format!("{} says {i}", self.name));
        let answer = self.client().send(&req).await;
        self.drain();
        match answer {
            Ok(ack) => {
                assert_eq!(ack.cmid, req.cmid);
                self.unanswered.remove(&i);
                if let Some(before) = self.acks.insert(i, ack.clone()) {
                    assert_eq!(before.msg, ack.msg, "a resend created a second message");
                }
                true
            }
            Err(e) => {
                tracing::debug!(device = %self.name, error = %e, "send unanswered; will resend");
                self.unanswered.insert(i);
                false
            }
        }
    }

    /// Drops the connection without a DISCONNECT and without acknowledging what arrived since
    /// the last ack, then comes back from the server-side cursor: the updates after it come
    /// again and are deduplicated by message id.
    pub async fn drop_connection(&mut self) {
        // Dropping the SDK client closes its socket without a DISCONNECT.
        self.client = None;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let from = self.acked.load(Ordering::Relaxed);
        let (client, events) = connect(&self.session, self.ws, from).await;
        self.client = Some(client);
        self.events = events;
        self.position = from;
        self.last_acked_sent = from;
        self.reconnects += 1;
    }

    /// Sends `count` messages; every `disconnect_every` (if set) drops the connection midway.
    pub async fn run(
        mut self,
        count: usize,
        disconnect_every: Option<usize>,
        answered: Arc<AtomicU64>,
    ) -> Self {
        for i in 0..count {
            if disconnect_every.is_some_and(|n| i % n == n / 2) {
                self.drop_connection().await;
            }
            if self.send(i).await {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
        self
    }

    /// Sends every unanswered message again (same cmid) until all are answered.
    pub async fn resend_unanswered(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while let Some(&i) = self.unanswered.iter().next() {
            assert!(
                Instant::now() < deadline,
                "{}: {} sends still unanswered",
                self.name,
                self.unanswered.len()
            );
            self.resends += 1;
            if !self.send(i).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Waits until this device holds every message of `expected` (message ids per
    /// conversation) for its conversations.
    pub async fn settle(&mut self, expected: &HashMap<ConvId, Vec<MsgId>>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.drain();
            let missing: usize = self
                .convs
                .iter()
                .flat_map(|c| expected.get(c).into_iter().flatten())
                .filter(|m| !self.seen.contains(*m))
                .count();
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {missing} acknowledged messages never arrived",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("connected")
    }

    /// The token of some device that is a member of `conv`.
    pub fn token_for<'a>(&self, conv: &ConvId, all: &'a [Dev]) -> &'a str {
        all.iter()
            .find(|d| d.convs.contains(conv))
            .expect("a member device")
            .token()
    }

    pub fn token(&self) -> &str {
        &self.session.token
    }
}
