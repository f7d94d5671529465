//! The shared-state interfaces in this process's memory (one process, or Redis unreachable).

use super::{CachedPage, DevicePresence, PresenceMap, Rate};
use protocol::{ConvId, DeviceId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Above this many entries a map drops what no longer matters before growing further.
const PRUNE_AT: usize = 100_000;

/// (conversation, version, page).
type PageKey = (ConvId, u64, String);

#[derive(Default)]
pub struct Memory {
    /// Bucket → GCRA theoretical arrival time (ms).
    buckets: Mutex<HashMap<String, u64>>,
    presence: Mutex<PresenceMap>,
    /// Conversation → version, bumped on every change.
    versions: Mutex<HashMap<ConvId, u64>>,
    /// (conversation, version, page) → bytes and expiry.
    pages: Mutex<HashMap<PageKey, (CachedPage, Instant)>>,
}

impl Memory {
    /// GCRA: 0 when allowed (and taken), else milliseconds to wait.
    pub fn take(&self, bucket: &str, rate: &Rate, now: i64) -> u64 {
        let now = now.max(0) as u64;
        let mut buckets = self.buckets.lock().expect("bucket lock");
        if buckets.len() > PRUNE_AT {
            buckets.retain(|_, tat| *tat > now);
        }
        let tat = buckets.get(bucket).copied().unwrap_or(now).max(now);
        let allowed_from = tat.saturating_sub(rate.tolerance_ms());
        if now < allowed_from {
            return allowed_from - now;
        }
        buckets.insert(bucket.to_owned(), tat + rate.interval_ms());
        0
    }

    pub fn record_presence(&self, user: &UserId, device: &DeviceId, p: DevicePresence) {
        let mut all = self.presence.lock().expect("presence lock");
        let devices = all.entry(user.clone()).or_default();
        match devices.get(device) {
            Some(cur) if cur.ts > p.ts => {}
            _ => {
                devices.insert(device.clone(), p);
            }
        }
    }

    pub fn presence(&self, users: &[UserId]) -> PresenceMap {
        let all = self.presence.lock().expect("presence lock");
        users
            .iter()
            .filter_map(|u| Some((u.clone(), all.get(u)?.clone())))
            .collect()
    }

    pub fn reset_presence(&self, now: i64) {
        let mut all = self.presence.lock().expect("presence lock");
        for p in all.values_mut().flat_map(|d| d.values_mut()) {
            if p.online {
                *p = DevicePresence {
                    online: false,
                    ts: now,
                };
            }
        }
    }

    pub fn cached_page(&self, conv: &ConvId, page: &str) -> (Option<CachedPage>, u64) {
        let version = self
            .versions
            .lock()
            .expect("versions lock")
            .get(conv)
            .copied()
            .unwrap_or(0);
        let pages = self.pages.lock().expect("pages lock");
        let hit = pages
            .get(&(conv.clone(), version, page.to_owned()))
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(bytes, _)| bytes.clone());
        (hit, version)
    }

    pub fn cache_page(
        &self,
        conv: &ConvId,
        version: u64,
        page: &str,
        bytes: CachedPage,
        ttl: Duration,
    ) {
        let now = Instant::now();
        let mut pages = self.pages.lock().expect("pages lock");
        if pages.len() > PRUNE_AT / 10 {
            pages.retain(|_, (_, expires)| *expires > now);
        }
        pages.insert((conv.clone(), version, page.to_owned()), (bytes, now + ttl));
    }

    pub fn conversation_changed(&self, conv: &ConvId) {
        *self
            .versions
            .lock()
            .expect("versions lock")
            .entry(conv.clone())
            .or_default() += 1;
        self.pages
            .lock()
            .expect("pages lock")
            .retain(|(c, _, _), _| c != conv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_the_sustained_rate() {
        let m = Memory::default();
        let rate = Rate {
            count: 3,
            per: Duration::from_secs(3),
        };
        // A burst of 3 at t=0, then one per second.
        assert_eq!(m.take("k", &rate, 0), 0);
        assert_eq!(m.take("k", &rate, 0), 0);
        assert_eq!(m.take("k", &rate, 0), 0);
        assert_eq!(m.take("k", &rate, 0), 1000);
        assert_eq!(m.take("k", &rate, 400), 600);
        assert_eq!(m.take("k", &rate, 1000), 0);
        assert_eq!(m.take("k", &rate, 1000), 1000);
        // Another key has its own bucket.
        assert_eq!(m.take("other", &rate, 1000), 0);
        // After a quiet period the full burst is back.
        for _ in 0..3 {
            assert_eq!(m.take("k", &rate, 10_000), 0);
        }
        assert!(m.take("k", &rate, 10_000) > 0);
    }
}
