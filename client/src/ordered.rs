//! Ordered delivery (`ClientOptions::ordered_from`): hands the app every update after a given
//! useq exactly once and in order, whatever the network did.
//!
//! Pushes on `in` may repeat (QoS 1), arrive out of order (the server publishes after commit
//! from concurrent workers) or be missing (the device was offline, the broker dropped them).
//! This task keeps the highest contiguous useq it delivered, holds early arrivals back, and
//! `sync`s from its position after every (re)connect and whenever a gap has not filled within
//! [`GAP_WAIT`]. If the server trimmed the log past its position it says so once
//! ([`Event::CursorExpired`]) and goes on from the log's new start.

use crate::client::{Client, Event};
use protocol::Update;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a gap may stay open before the client asks the server.
pub const GAP_WAIT: Duration = Duration::from_millis(300);

pub enum Input {
    Push(Box<Update>),
    Connected,
}

enum Msg {
    In(Input),
    Synced(Result<Vec<Update>, crate::ClientError>),
}

pub fn start(
    client: Client,
    after: i64,
    events: mpsc::UnboundedSender<Event>,
) -> mpsc::UnboundedSender<Input> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
    // Only a weak link to the client: the task ends with the client.
    let weak = client.downgrade();
    tokio::spawn(async move {
        let mut state = State {
            delivered: after,
            early: BTreeMap::new(),
            gap_since: None,
            syncing: false,
            events,
        };
        loop {
            let tick = tokio::time::sleep(GAP_WAIT / 3);
            let msg = tokio::select! {
                m = rx.recv() => match m { Some(i) => Msg::In(i), None => return },
                r = synced_rx.recv() => match r { Some(r) => Msg::Synced(r), None => return },
                _ = tick => {
                    if state.gap_open_too_long() {
                        Msg::In(Input::Connected)
                    } else {
                        continue;
                    }
                }
            };
            let want_sync = match msg {
                Msg::In(Input::Push(u)) => {
                    state.take(*u);
                    false
                }
                Msg::In(Input::Connected) => true,
                Msg::Synced(Ok(updates)) => {
                    state.syncing = false;
                    for u in updates {
                        state.take(u);
                    }
                    false
                }
                Msg::Synced(Err(crate::ClientError::Server(body)))
                    if body.code == protocol::ErrorCode::CursorExpired =>
                {
                    state.syncing = false;
                    let floor = body
                        .details
                        .as_ref()
                        .and_then(|d| d.get("floor"))
                        .and_then(|f| f.as_i64());
                    match floor {
                        Some(floor) if floor > state.delivered => {
                            state.delivered = floor;
                            state.early = state.early.split_off(&(floor + 1));
                            let _ = state.events.send(Event::CursorExpired { floor });
                            true
                        }
                        _ => {
                            state.gap_since = Some(Instant::now());
                            false
                        }
                    }
                }
                Msg::Synced(Err(e)) => {
                    tracing::debug!(error = %e, "catch-up sync failed; will retry");
                    state.syncing = false;
                    state.gap_since = Some(Instant::now());
                    false
                }
            };
            if state.events.is_closed() {
                return;
            }
            if want_sync && !state.syncing {
                let Some(client) = weak.upgrade() else { return };
                state.syncing = true;
                let (from, done) = (state.delivered, synced_tx.clone());
                tokio::spawn(async move {
                    let _ = done.send(client.sync_all(from).await);
                });
            }
        }
    });
    tx
}

struct State {
    delivered: i64,
    early: BTreeMap<i64, Update>,
    gap_since: Option<Instant>,
    syncing: bool,
    events: mpsc::UnboundedSender<Event>,
}

impl State {
    fn take(&mut self, u: Update) {
        if u.useq <= self.delivered {
            return;
        }
        self.early.insert(u.useq, u);
        while let Some(next) = self.early.remove(&(self.delivered + 1)) {
            self.delivered = next.useq;
            let _ = self.events.send(Event::Update(next));
        }
        self.gap_since = match (self.early.is_empty(), self.gap_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(Instant::now()),
        };
    }

    fn gap_open_too_long(&self) -> bool {
        !self.syncing && self.gap_since.is_some_and(|s| s.elapsed() >= GAP_WAIT)
    }
}
