//! Presence: `u/{user}/d/{device}/presence` events — the broker's own on connect and
//! disconnect (`{"online","ts","source":"broker"}`), and a device's own publishes there, its
//! Last Will included (`{"online":false}`). Each event updates the device's `online` and
//! `last_seen_at`; when the user as a whole goes online or away, an `eph` presence event goes
//! to the connected devices of everyone who shares a conversation with them.
//!
//! Throttled per user: at most one event per [`Fanout::every`]; changes inside the window are
//! folded into one event at its end, carrying the state at that moment (a flapping phone
//! costs its contacts one event per window, and none at all if it ends where it began).

use crate::engine::batcher::Batcher;
use crate::publisher::Publisher;
use crate::store::batch::{Write, Written};
use crate::store::Store;
use crate::util::now_ms;
use protocol::ops::Ephemeral;
use protocol::{DeviceId, UserId};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Deserialize)]
struct Event {
    online: bool,
    #[serde(default)]
    ts: Option<i64>,
}

#[derive(Default)]
struct Sent {
    /// The state last announced and when.
    last: Option<(bool, Instant)>,
    /// An announcement is scheduled for the end of the window.
    pending: bool,
}

pub struct Fanout {
    pub every: Duration,
    users: Mutex<HashMap<UserId, Sent>>,
}

impl Fanout {
    pub fn new(every: Duration) -> Arc<Self> {
        Arc::new(Self {
            every,
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Handles one presence publish of `device`. Where there is one writer (SQLite) the write
    /// joins the write batches, so a crowd reconnecting costs a commit per batch, not two per
    /// device, and sends do not queue behind them.
    pub async fn event(
        self: &Arc<Self>,
        store: &Store,
        writes: &Batcher,
        publisher: &Publisher,
        device: &DeviceId,
        payload: &[u8],
    ) {
        let Ok(ev) = serde_json::from_slice::<Event>(payload) else {
            tracing::debug!(%device, "ignoring a presence payload that is not {{\"online\":bool}}");
            return;
        };
        // A device's clock is not trusted to move last seen into the future.
        let now = now_ms();
        let ts = ev.ts.map_or(now, |t| t.min(now));
        let written = if writes.is_single() {
            let job = Write::Presence {
                device: device.clone(),
                online: ev.online,
                ts,
            };
            match writes.enqueue(vec![job]) {
                Ok(mut queued) => match queued.pop().expect("one job").outcome().await {
                    Ok(Written::Presence(user)) => Ok(user),
                    Ok(_) => unreachable!("a presence write is answered as one"),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        } else {
            store.set_device_presence(device, ev.online, ts).await
        };
        let user = match written {
            Ok(Some(user)) => user,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "presence not recorded");
                return;
            }
        };
        let wait = {
            let mut users = self.users.lock().expect("presence lock");
            if users.len() > 100_000 {
                let every = self.every;
                users
                    .retain(|_, s| s.pending || s.last.is_some_and(|(_, at)| at.elapsed() < every));
            }
            let sent = users.entry(user.clone()).or_default();
            if sent.pending {
                return;
            }
            match sent.last {
                Some((_, at)) if at.elapsed() < self.every => {
                    sent.pending = true;
                    Some(self.every - at.elapsed())
                }
                _ => None,
            }
        };
        match wait {
            None => self.announce(store, publisher, &user).await,
            Some(wait) => {
                let (me, store, publisher) = (self.clone(), store.clone(), publisher.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    me.announce(&store, &publisher, &user).await;
                });
            }
        }
    }

    /// Tells the user's contacts their current state, if it differs from the last one told.
    async fn announce(&self, store: &Store, publisher: &Publisher, user: &UserId) {
        let now = match store.presence(std::slice::from_ref(user)).await {
            Ok(mut p) => p.pop().expect("one user asked"),
            Err(e) => {
                tracing::warn!(error = %e, "presence lookup failed");
                self.users.lock().expect("presence lock").remove(user);
                return;
            }
        };
        {
            let mut users = self.users.lock().expect("presence lock");
            let sent = users.entry(user.clone()).or_default();
            sent.pending = false;
            if sent.last.is_some_and(|(online, _)| online == now.online) {
                return;
            }
            sent.last = Some((now.online, Instant::now()));
        }
        let contacts = match store.contacts(user).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "contacts lookup failed");
                return;
            }
        };
        let event = Ephemeral::Presence {
            user: user.clone(),
            online: now.online,
            last_seen: now.last_seen,
        };
        publisher.ephemeral_to(&contacts, &event).await;
    }
}
