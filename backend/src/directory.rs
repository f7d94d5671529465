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
    cache: Mutex<HashMap<UserId, (Instant, Vec<DeviceId>)>>,
}

impl Directory {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The active devices of `users`, as (user, device) pairs.
    pub async fn devices(&self, users: &[UserId]) -> Result<Vec<(UserId, DeviceId)>> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().expect("directory lock");
            for u in users {
                match cache.get(u) {
                    Some((at, devs)) if at.elapsed() < TTL => {
                        out.extend(devs.iter().map(|d| (u.clone(), d.clone())))
                    }
                    _ => missing.push(u.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let found = self.store.active_devices(&missing).await?;
        let mut fresh: HashMap<UserId, Vec<DeviceId>> =
            missing.into_iter().map(|u| (u, Vec::new())).collect();
        for (u, d) in &found {
            fresh.entry(u.clone()).or_default().push(d.clone());
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().expect("directory lock");
        if cache.len() + fresh.len() > MAX_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        for (u, devs) in fresh {
            cache.insert(u, (now, devs));
        }
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

    /// Forget `user`'s devices (after a log-in or a revocation).
    pub fn invalidate(&self, user: &UserId) {
        self.cache.lock().expect("directory lock").remove(user);
    }
}
