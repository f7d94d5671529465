//! Where what devices send goes. Requests (`req/{op}`) and presence have one consumer, the
//! engine: in `--role all` the engine in this process, reached through [`Upstream`] (a bounded
//! queue: while it is full the device's socket is not read); otherwise the backends connected
//! with the service identity, which subscribe `$share/{group}/u/+/d/+/req/+` (each request to
//! one member of each group, chosen by device so a device's requests stay in order) and
//! `u/+/d/+/presence` (every subscriber gets every event).
//!
//! Nothing here matches topics against filters: a service subscription names one of the two
//! feeds, and a request names its device.

use crate::hub::Peer;
use crate::outbox::Msg;
use crate::Shared;
use bytes::Bytes;
use protocol::topic::{DeviceTopic, Stream};
use protocol::topic::{PRESENCE_FILTER, REQUEST_FILTER};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tracing::debug;

/// A request or presence event from a device, as the engine gets it.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub user: String,
    pub device: String,
    pub kind: Kind,
    /// The topic as the device wrote it (`u/{user}/d/{device}/req/{op}` or `…/presence`).
    pub topic: Bytes,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Request(String),
    Presence,
}

/// The engine in this process. `submit` resolves once the message is queued; it waits while
/// the queue is full, and the connection that called it reads nothing meanwhile.
pub trait Upstream: Send + Sync + 'static {
    fn submit(&self, msg: Inbound) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    Requests,
    Presence,
}

impl Feed {
    /// The feed a service's filter names: `[$share/{group}/]u/+/d/+/req/+` or `…/presence`.
    pub fn parse(filter: &str) -> Option<(Feed, Option<&str>)> {
        let (group, rest) = match filter.strip_prefix("$share/") {
            Some(shared) => {
                let (group, rest) = shared.split_once('/')?;
                if group.is_empty() || group.contains(['+', '#']) {
                    return None;
                }
                (Some(group), rest)
            }
            None => (None, filter),
        };
        let feed = match rest {
            REQUEST_FILTER => Feed::Requests,
            PRESENCE_FILTER => Feed::Presence,
            _ => return None,
        };
        Some((feed, group))
    }
}

struct Sub {
    peer: Arc<Peer>,
    feed: Feed,
    group: Option<Box<str>>,
}

/// Service subscriptions to the two feeds.
#[derive(Default)]
pub struct Services {
    subs: RwLock<Vec<Sub>>,
    hasher: RandomState,
}

impl Services {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Sub>> {
        self.subs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Sub>> {
        self.subs.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes `peer` to the feed `filter` names; false if it names none.
    pub fn subscribe(&self, peer: &Arc<Peer>, filter: &str) -> bool {
        let Some((feed, group)) = Feed::parse(filter) else {
            return false;
        };
        let mut subs = self.write();
        let same =
            |s: &Sub| Arc::ptr_eq(&s.peer, peer) && s.feed == feed && s.group.as_deref() == group;
        if !subs.iter().any(same) {
            subs.push(Sub {
                peer: peer.clone(),
                feed,
                group: group.map(Into::into),
            });
        }
        true
    }

    /// Returns whether there was such a subscription.
    pub fn unsubscribe(&self, peer: &Arc<Peer>, filter: &str) -> bool {
        let Some((feed, group)) = Feed::parse(filter) else {
            return false;
        };
        let mut subs = self.write();
        let before = subs.len();
        subs.retain(|s| {
            !(Arc::ptr_eq(&s.peer, peer) && s.feed == feed && s.group.as_deref() == group)
        });
        subs.len() != before
    }

    pub fn remove(&self, peer: &Arc<Peer>) {
        self.write().retain(|s| !Arc::ptr_eq(&s.peer, peer));
    }

    /// Who gets a message of `feed` from `device`: every plain subscriber, and one member of
    /// each shared group (by device; closing members are skipped).
    fn targets(&self, feed: Feed, device: &str) -> Vec<(Option<Box<str>>, Arc<Peer>)> {
        let subs = self.read();
        let mut out: Vec<(Option<Box<str>>, Arc<Peer>)> = subs
            .iter()
            .filter(|s| s.feed == feed && s.group.is_none() && s.peer.outbox.closed().is_none())
            .map(|s| (None, s.peer.clone()))
            .collect();
        let mut groups: Vec<&str> = subs
            .iter()
            .filter(|s| s.feed == feed)
            .filter_map(|s| s.group.as_deref())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for g in groups {
            if let Some(peer) = Self::pick(&subs, &self.hasher, feed, g, device) {
                out.push((Some(g.into()), peer));
            }
        }
        out
    }

    /// The member of `group` that takes `device`'s messages.
    fn pick(
        subs: &[Sub],
        hasher: &RandomState,
        feed: Feed,
        group: &str,
        device: &str,
    ) -> Option<Arc<Peer>> {
        let members: Vec<&Sub> = subs
            .iter()
            .filter(|s| s.feed == feed && s.group.as_deref() == Some(group))
            .filter(|s| s.peer.outbox.closed().is_none())
            .collect();
        let i = hasher.hash_one(device) as usize % members.len().max(1);
        members.get(i).map(|s| s.peer.clone())
    }

    /// Hands `msg` to the feed's subscribers, waiting for room in their outboxes. A group
    /// member that closes meanwhile is replaced by another. Returns how many took it.
    pub async fn dispatch(&self, feed: Feed, device: &str, msg: Msg) -> usize {
        let mut taken = 0;
        for (group, mut peer) in self.targets(feed, device) {
            // Bounded: each retry follows a member closing.
            for _ in 0..16 {
                if peer.outbox.push_wait(msg.clone()).await.is_ok() {
                    taken += 1;
                    break;
                }
                let Some(g) = &group else { break };
                match Self::pick(&self.read(), &self.hasher, feed, g, device) {
                    Some(next) => peer = next,
                    None => break,
                }
            }
        }
        taken
    }
}

impl Shared {
    /// Hands a request or presence event to the engine: the one in this process, else the
    /// backends subscribed to its feed. Presence also goes to every presence subscriber.
    pub(crate) async fn to_engine(&self, msg: Inbound) {
        let feed = match msg.kind {
            Kind::Request(_) => Feed::Requests,
            Kind::Presence => Feed::Presence,
        };
        let local = self.local.get();
        if feed == Feed::Presence || local.is_none() {
            let out = Msg {
                topic: msg.topic.clone(),
                payload: msg.payload.clone(),
                qos: 1,
            };
            let taken = self.services.dispatch(feed, &msg.device, out).await;
            if taken == 0 && local.is_none() && feed == Feed::Requests {
                debug!(device = %msg.device, "no backend subscribed: request dropped");
            }
        }
        if let Some(local) = local {
            local.submit(msg).await;
        }
    }

    /// A broker-made presence event for a device that connected or left.
    pub(crate) async fn presence(&self, user: &str, device: &str, online: bool) {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let payload = format!(r#"{{"online":{online},"ts":{ts},"source":"broker"}}"#);
        let msg = Inbound {
            user: user.to_owned(),
            device: device.to_owned(),
            kind: Kind::Presence,
            topic: Bytes::from(format!("u/{user}/d/{device}/presence")),
            payload: Bytes::from(payload),
        };
        self.to_engine(msg).await
    }

    /// A request a departed backend never acknowledged, to the backends that remain.
    pub(crate) async fn redispatch(&self, msg: Msg) -> usize {
        let device = std::str::from_utf8(&msg.topic)
            .ok()
            .and_then(|t| DeviceTopic::parse(t).ok())
            .filter(|t| matches!(t.stream, Stream::Req(_)));
        match device {
            Some(t) => {
                self.services
                    .dispatch(Feed::Requests, t.device.as_str(), msg)
                    .await
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_from_filters() {
        assert_eq!(
            Feed::parse("$share/courier/u/+/d/+/req/+"),
            Some((Feed::Requests, Some("courier")))
        );
        assert_eq!(
            Feed::parse("u/+/d/+/presence"),
            Some((Feed::Presence, None))
        );
        for f in [
            "#",
            "u/+/d/+/in",
            "$share//u/+/d/+/req/+",
            "$share/g",
            "u/+/d/+/req/#",
        ] {
            assert_eq!(Feed::parse(f), None, "{f}");
        }
    }
}
