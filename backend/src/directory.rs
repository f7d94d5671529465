//! Which devices each user has, cached: every delivery needs it, and it changes only on
//! log-in and revocation. This process invalidates its own entries on those; entries also
//! expire after [`TTL`] so that another backend's changes are seen soon. A device missing from
//! a stale entry loses nothing — it gets its updates with `sync` — and a revoked one is already
//! disconnected and refused by the broker.

use crate::error::Result;
use crate::store::Store;
use protocol::{DeviceId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TTL: Duration = Duration::from_secs(10);
const MAX_ENTRIES: usize = 200_000;

pub struct Directory {
    store: Store,
    cache: Mutex<Cache>,
}

/// What is known of one user's devices, and since when: the start of the lookup that found
/// them, or the moment they were invalidated (`devices: None`).
struct Entry {
    since: Instant,
    devices: Option<Vec<DeviceId>>,
}

#[derive(Default)]
struct Cache(HashMap<UserId, Entry>);

impl Cache {
    /// `user`'s devices, if known and fresh.
    fn get(&self, user: &UserId, now: Instant) -> Option<&[DeviceId]> {
        let e = self.0.get(user)?;
        (now.duration_since(e.since) < TTL)
            .then_some(e.devices.as_deref())
            .flatten()
    }

    /// Records what a lookup that started at `started` found. A lookup that started before
    /// an entry's `since` is older news and does not overwrite it: a slow lookup cannot put
    /// back a device list from before a log-in that a later lookup or an invalidation saw.
    fn found(&mut self, started: Instant, fresh: HashMap<UserId, Vec<DeviceId>>) {
        if self.0.len() + fresh.len() > MAX_ENTRIES {
            self.0.retain(|_, e| started.duration_since(e.since) < TTL);
            if self.0.len() + fresh.len() > MAX_ENTRIES {
                // Still full of fresh entries: it is only a cache.
                self.0.clear();
            }
        }
        for (user, devices) in fresh {
            if self.0.get(&user).is_some_and(|e| e.since >= started) {
                continue;
            }
            let entry = Entry {
                since: started,
                devices: Some(devices),
            };
            self.0.insert(user, entry);
        }
    }

    fn invalidate(&mut self, user: &UserId, now: Instant) {
        let entry = Entry {
            since: now,
            devices: None,
        };
        self.0.insert(user.clone(), entry);
    }
}

impl Directory {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The active devices of `users`, as (user, device) pairs.
    pub async fn devices(&self, users: &[UserId]) -> Result<Vec<(UserId, DeviceId)>> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let cache = self.cache();
            let now = Instant::now();
            for u in users {
                match cache.get(u, now) {
                    Some(devs) => out.extend(devs.iter().map(|d| (u.clone(), d.clone()))),
                    None => missing.push(u.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let started = Instant::now();
        let found = self.store.active_devices(&missing).await?;
        let mut fresh: HashMap<UserId, Vec<DeviceId>> =
            missing.into_iter().map(|u| (u, Vec::new())).collect();
        for (u, d) in &found {
            fresh.entry(u.clone()).or_default().push(d.clone());
        }
        self.cache().found(started, fresh);
        out.extend(found);
        Ok(out)
    }

    /// Whether `device` is an active device of `user`. A device the cached entry lacks (it
    /// logged in through another backend a moment ago) is looked up, and found, refreshes the
    /// entry so deliveries reach it too.
    pub async fn is_active(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let cached = self.devices(std::slice::from_ref(user)).await?;
        if cached.iter().any(|(_, d)| d == device) {
            return Ok(true);
        }
        let found = self.store.active_device(device.as_str()).await?;
        let active = found.is_some_and(|d| d.user == *user);
        if active {
            self.invalidate(user);
        }
        Ok(active)
    }

    /// Forget `user`'s devices (after a log-in or a revocation), including what lookups
    /// still running will find.
    pub fn invalidate(&self, user: &UserId) {
        self.cache().invalidate(user, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> UserId {
        UserId::from_trusted(n.to_owned())
    }

    fn devices(ids: &[&str]) -> HashMap<UserId, Vec<DeviceId>> {
        let ds = ids.iter().map(|d| DeviceId::from_trusted((*d).to_owned()));
        HashMap::from([(user("bob"), ds.collect())])
    }

    #[test]
    fn an_older_lookup_does_not_overwrite_a_newer_one() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        // The lookup that started later (and saw the new laptop) lands first.
        cache.found(t1, devices(&["phone", "laptop"]));
        cache.found(t0, devices(&["phone"]));
        assert_eq!(cache.get(&user("bob"), t1).map(<[_]>::len), Some(2));
    }

    #[test]
    fn a_lookup_older_than_an_invalidation_is_not_kept() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        cache.invalidate(&user("bob"), t1);
        cache.found(t0, devices(&["phone"]));
        assert!(cache.get(&user("bob"), t1).is_none());
        // A lookup that started after the invalidation is kept, until it is TTL old.
        let t2 = t1 + Duration::from_millis(5);
        cache.found(t2, devices(&["phone", "laptop"]));
        assert_eq!(cache.get(&user("bob"), t2).map(<[_]>::len), Some(2));
        assert!(cache.get(&user("bob"), t2 + TTL).is_none());
    }
}
