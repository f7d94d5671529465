//! HTTP bearer tokens checked in the last second, by hash: a flood of requests with one token
//! costs the database one lookup a second instead of one per request (on SQLite, whose one
//! connection every send also waits for, that is what kept refused floods from being cheap).
//! MQTT connects always ask the database.
//!
//! Revocations in this process forget the user's entries at once; another backend's entries
//! live at most [`TTL`], so over HTTP a token revoked through one backend works for up to a
//! second more on another.

use super::accounts::DeviceAuth;
use protocol::UserId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a checked token is taken on trust.
pub const TTL: Duration = Duration::from_secs(1);
/// Most tokens kept; past it, the expired ones go, and if none has, all.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (DeviceAuth, Instant)>>,
}

impl TokenCache {
    /// The device a token (by hash) belonged to within the last [`TTL`].
    pub fn get(&self, hash: &str) -> Option<DeviceAuth> {
        let entries = self.entries.lock().unwrap();
        let (auth, at) = entries.get(hash)?;
        (at.elapsed() < TTL).then(|| auth.clone())
    }

    pub fn put(&self, hash: String, auth: DeviceAuth) {
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < TTL);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(hash, (auth, Instant::now()));
    }

    /// Forgets every token of `user`'s (a device of theirs was revoked).
    pub fn forget_user(&self, user: &UserId) {
        self.entries
            .lock()
            .unwrap()
            .retain(|_, (auth, _)| auth.user != *user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::DeviceId;

    fn auth(user: &str, device: &str) -> DeviceAuth {
        DeviceAuth {
            user: UserId::from_trusted(user.to_owned()),
            device: DeviceId::from_trusted(device.to_owned()),
        }
    }

    #[test]
    fn entries_live_a_second_and_a_users_go_together() {
        let cache = TokenCache::default();
        cache.put("h1".into(), auth("ua", "d1"));
        cache.put("h2".into(), auth("ua", "d2"));
        cache.put("h3".into(), auth("ub", "d3"));
        assert_eq!(cache.get("h1").unwrap().device.as_str(), "d1");
        cache.forget_user(&UserId::from_trusted("ua".to_owned()));
        assert!(cache.get("h1").is_none() && cache.get("h2").is_none());
        assert!(cache.get("h3").is_some());
        cache.entries.lock().unwrap().get_mut("h3").unwrap().1 -= TTL;
        assert!(cache.get("h3").is_none(), "expired");
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = TokenCache::default();
        for n in 0..3 * CAPACITY {
            cache.put(format!("h{n}"), auth("ua", &format!("d{n}")));
            assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
        }
        // The newest is always kept.
        assert!(cache.get(&format!("h{}", 3 * CAPACITY - 1)).is_some());
    }
}
