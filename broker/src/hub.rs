//! Who is connected, by client id (a device's client id is its device id): one live
//! connection per id (a new CONNECT takes over after the old connection has gone), what each
//! device subscribed to, and the persistent sessions of devices that are away.
//!
//! Delivering to a device is a lookup here and a push into that connection's outbox.

use crate::acl::Identity;
use crate::connection::INFLIGHT_BYTES;
use crate::outbox::{Close, Msg, Outbox, Push};
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The device streams the server writes to, in subscription-bit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    In = 0,
    Rsp = 1,
    Eph = 2,
}

impl Out {
    pub const ALL: [Out; 3] = [Out::In, Out::Rsp, Out::Eph];

    pub fn name(self) -> &'static str {
        match self {
            Out::In => "in",
            Out::Rsp => "rsp",
            Out::Eph => "eph",
        }
    }

    /// `in` and `rsp` are QoS 1, `eph` QoS 0.
    pub fn qos(self) -> u8 {
        match self {
            Out::Eph => 0,
            _ => 1,
        }
    }
}

/// A device's subscriptions: bit `s` = subscribed to stream `s`; bit `3 + s` = granted QoS 1.
#[derive(Default)]
pub struct Subs(AtomicU8);

impl Subs {
    pub fn set(&self, stream: Out, qos: Option<u8>) {
        let bits = (1u8 << stream as u8) | (1u8 << (3 + stream as u8));
        let mut add = 0;
        if let Some(q) = qos {
            add = 1 << stream as u8;
            if q > 0 {
                add |= 1 << (3 + stream as u8);
            }
        }
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v & !bits | add)
            });
    }

    /// The QoS granted for `stream`, if subscribed.
    pub fn granted(&self, stream: Out) -> Option<u8> {
        let v = self.0.load(Ordering::Acquire);
        (v & (1 << stream as u8) != 0).then_some((v >> (3 + stream as u8)) & 1)
    }

    pub fn bits(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    pub fn restore(&self, bits: u8) {
        self.0.store(bits, Ordering::Release)
    }
}

/// A live connection as the rest of the edge sees it.
pub struct Peer {
    pub serial: u64,
    pub identity: Identity,
    pub outbox: Outbox,
    pub subs: Subs,
    /// A device's `in`, `rsp` and `eph` topics, built once.
    topics: Option<Box<[Bytes; 3]>>,
    /// Cancelled when the connection has finished leaving (its successor may start).
    gone: CancellationToken,
}

impl Peer {
    pub fn topic(&self, stream: Out) -> Option<&Bytes> {
        self.topics.as_ref().map(|t| &t[stream as usize])
    }
}

/// What became of a delivery to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// No connection, or not subscribed to that stream: the device reads its log on `sync`.
    NotConnected,
    /// The device's outbox was full: it is disconnected and will `sync`.
    Dropped,
}

/// What a persistent session keeps while its device is away.
pub struct Stored {
    pub subs: u8,
    /// QoS 1 publishes sent and not acknowledged: resent (DUP) when the session resumes.
    pub unacked: Vec<Msg>,
    expires: Instant,
}

const SHARDS: usize = 16;

pub struct Hub {
    shards: [Mutex<HashMap<Box<str>, Arc<Peer>>>; SHARDS],
    hasher: RandomState,
    next_serial: AtomicU64,
    sessions: Mutex<HashMap<Box<str>, Stored>>,
}

/// Held by a connection while it is registered; dropping it lets a waiting successor in.
pub struct Registration {
    pub peer: Arc<Peer>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.peer.gone.cancel();
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: RandomState::new(),
            next_serial: AtomicU64::new(1),
            sessions: Mutex::default(),
        }
    }
}

impl Hub {
    fn shard(&self, client_id: &str) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Peer>>> {
        let i = self.hasher.hash_one(client_id) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection for `client_id`, first closing any live connection with the
    /// same id and waiting (bounded) until it has gone.
    pub async fn register(
        &self,
        client_id: &str,
        identity: Identity,
        outbox: Outbox,
    ) -> Registration {
        let topics = match &identity {
            Identity::Device { user, device } => {
                Some(Box::new(Out::ALL.map(|s| {
                    Bytes::from(format!("u/{user}/d/{device}/{}", s.name()))
                })))
            }
            Identity::Service => None,
        };
        let peer = Arc::new(Peer {
            serial: self.next_serial.fetch_add(1, Ordering::Relaxed),
            identity,
            outbox,
            subs: Subs::default(),
            topics,
            gone: CancellationToken::new(),
        });
        loop {
            let previous = {
                let mut shard = self.shard(client_id);
                match shard.get(client_id) {
                    Some(old) => old.clone(),
                    None => {
                        shard.insert(client_id.into(), peer.clone());
                        return Registration { peer };
                    }
                }
            };
            previous.outbox.close(Close::TakenOver);
            let _ = tokio::time::timeout(Duration::from_secs(5), previous.gone.cancelled()).await;
            // Gone, or stuck past the bound: either way it no longer owns the id.
            let mut shard = self.shard(client_id);
            if shard
                .get(client_id)
                .is_some_and(|p| Arc::ptr_eq(p, &previous))
            {
                shard.remove(client_id);
            }
        }
    }

    pub fn unregister(&self, client_id: &str, peer: &Arc<Peer>) {
        let mut shard = self.shard(client_id);
        if shard.get(client_id).is_some_and(|p| Arc::ptr_eq(p, peer)) {
            shard.remove(client_id);
        }
    }

    pub fn get(&self, client_id: &str) -> Option<Arc<Peer>> {
        self.shard(client_id).get(client_id).cloned()
    }

    /// Closes the connection of `client_id` if there is one; returns whether there was.
    pub fn kick(&self, client_id: &str, why: Close) -> bool {
        match self.get(client_id) {
            Some(peer) => peer.outbox.close(why),
            None => false,
        }
    }

    pub fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Queues `payload` on `stream` of `device` (of `user`), if it is connected and subscribed.
    pub fn deliver(&self, user: &str, device: &str, stream: Out, payload: Bytes) -> Delivery {
        let Some(peer) = self.get(device) else {
            return Delivery::NotConnected;
        };
        let Identity::Device { user: owner, .. } = &peer.identity else {
            return Delivery::NotConnected;
        };
        let (Some(qos), Some(topic)) = (peer.subs.granted(stream), peer.topic(stream)) else {
            return Delivery::NotConnected;
        };
        if owner != user {
            return Delivery::NotConnected;
        }
        let msg = Msg {
            topic: topic.clone(),
            payload,
            qos: qos.min(stream.qos()),
        };
        match peer.outbox.push(msg) {
            Push::Queued => Delivery::Queued,
            Push::Closed(_) => Delivery::NotConnected,
            Push::Full(_) => {
                if peer.outbox.close(Close::Slow) {
                    tracing::info!(
                        device,
                        "outbox full: disconnecting a device that stopped reading"
                    );
                }
                Delivery::Dropped
            }
        }
    }

    /// Takes the persistent session of `client_id` if it has one that has not expired.
    pub fn resume(&self, client_id: &str) -> Option<Stored> {
        let stored = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_id)?;
        (stored.expires > Instant::now()).then_some(stored)
    }

    /// Keeps a session for `expiry` after its connection ended, with its unacknowledged
    /// publishes, oldest first, up to [`INFLIGHT_BYTES`] of payload (what is left out the
    /// device finds in its log).
    pub fn keep(&self, client_id: &str, subs: u8, mut unacked: Vec<Msg>, expiry: Duration) {
        let mut bytes = 0;
        let fits = unacked
            .iter()
            .take_while(|m| {
                bytes += m.payload.len();
                bytes <= INFLIGHT_BYTES
            })
            .count();
        unacked.truncate(fits);
        let stored = Stored {
            subs,
            unacked,
            expires: Instant::now() + expiry,
        };
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.into(), stored);
    }

    /// Forgets expired sessions.
    pub fn sweep_sessions(&self) {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_bits() {
        let s = Subs::default();
        assert_eq!(s.granted(Out::In), None);
        s.set(Out::In, Some(1));
        s.set(Out::Eph, Some(0));
        assert_eq!(s.granted(Out::In), Some(1));
        assert_eq!(s.granted(Out::Eph), Some(0));
        assert_eq!(s.granted(Out::Rsp), None);
        s.set(Out::In, Some(0));
        assert_eq!(s.granted(Out::In), Some(0));
        s.set(Out::In, None);
        assert_eq!(s.granted(Out::In), None);
        assert_eq!(s.granted(Out::Eph), Some(0));
    }
}
