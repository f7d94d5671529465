//! The shared-state interfaces in this process's memory (one process, or Redis unreachable).

use super::{CachedPage, DevicePresence, PresenceMap, Rate};
use protocol::{ConvId, DeviceId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Above this many entries a map drops what no longer matters before growing further.
const PRUNE_AT: usize = 100_000;

/// Most bytes of history pages this process keeps; past it, expired pages go, then all.
const PAGES_BYTES: usize = 64 << 20;

/// One conversation's cached page: its version, name, bytes and expiry.
type Page = (u64, String, CachedPage, Instant);

/// The cached pages (one per conversation) and their total size.
#[derive(Default)]
struct Pages {
    by_conv: HashMap<ConvId, Page>,
    bytes: usize,
}

impl Pages {
    fn remove(&mut self, conv: &ConvId) {
        if let Some((_, _, bytes, _)) = self.by_conv.remove(conv) {
            self.bytes -= bytes.len();
        }
    }
}

/// Bucket → GCRA theoretical arrival time (ms), pruned of spent buckets when it grows past
/// `prune_at`, which then doubles over what stayed: however many buckets are live, a check
/// costs amortised O(1).
struct Buckets {
    tat: HashMap<String, u64>,
    prune_at: usize,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            tat: HashMap::new(),
            prune_at: PRUNE_AT,
        }
    }
}

#[derive(Default)]
pub struct Memory {
    buckets: Mutex<Buckets>,
    presence: Mutex<PresenceMap>,
    /// Conversation → version, bumped on every change.
    versions: Mutex<HashMap<ConvId, u64>>,
    /// Conversation → its newest page, as of a version.
    pages: Mutex<Pages>,
}

impl Memory {
    /// GCRA: 0 when allowed (and taken), else milliseconds to wait.
    pub fn take(&self, bucket: &str, rate: &Rate, now: i64) -> u64 {
        let now = now.max(0) as u64;
        let mut buckets = self.buckets.lock().expect("bucket lock");
        if buckets.tat.len() > buckets.prune_at {
            buckets.tat.retain(|_, tat| *tat > now);
            buckets.prune_at = PRUNE_AT.max(2 * buckets.tat.len());
        }
        let tat = buckets.tat.get(bucket).copied().unwrap_or(now).max(now);
        let allowed_from = tat.saturating_sub(rate.tolerance_ms());
        if now < allowed_from {
            return allowed_from - now;
        }
        buckets
            .tat
            .insert(bucket.to_owned(), tat + rate.interval_ms());
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
            .by_conv
            .get(conv)
            .filter(|(v, name, _, expires)| {
                *v == version && name == page && *expires > Instant::now()
            })
            .map(|(_, _, bytes, _)| bytes.clone());
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
        pages.remove(conv);
        if pages.bytes + bytes.len() > PAGES_BYTES || pages.by_conv.len() >= PRUNE_AT {
            pages.by_conv.retain(|_, (_, _, _, expires)| *expires > now);
            pages.bytes = pages.by_conv.values().map(|(_, _, b, _)| b.len()).sum();
            if pages.bytes + bytes.len() > PAGES_BYTES || pages.by_conv.len() >= PRUNE_AT {
                // Still full of fresh pages: it is only a cache.
                *pages = Pages::default();
            }
        }
        pages.bytes += bytes.len();
        pages
            .by_conv
            .insert(conv.clone(), (version, page.to_owned(), bytes, now + ttl));
    }

    pub fn conversation_changed(&self, conv: &ConvId) {
        *self
            .versions
            .lock()
            .expect("versions lock")
            .entry(conv.clone())
            .or_default() += 1;
        self.pages.lock().expect("pages lock").remove(conv);
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

    #[tokio::test]
    async fn the_page_cache_keeps_one_page_per_conversation_within_its_bytes() {
        let m = Memory::default();
        let ttl = Duration::from_secs(60);
        let conv = |n: usize| ConvId::from_trusted(format!("c{n}"));
        // A conversation's newer page replaces its older one; a change drops it.
        m.cache_page(&conv(0), 0, "top", vec![1; 10], ttl);
        m.cache_page(&conv(0), 0, "top", vec![2; 10], ttl);
        assert_eq!(m.cached_page(&conv(0), "top"), (Some(vec![2; 10]), 0));
        assert_eq!(m.pages.lock().unwrap().bytes, 10);
        m.conversation_changed(&conv(0));
        assert_eq!(m.cached_page(&conv(0), "top"), (None, 1));
        assert_eq!(m.pages.lock().unwrap().bytes, 0);
        // Many big pages never hold more than the cap.
        let page = 1 << 20;
        for n in 0..(PAGES_BYTES / page) * 3 {
            m.cache_page(&conv(n), 0, "top", vec![0; page], ttl);
            assert!(m.pages.lock().unwrap().bytes <= PAGES_BYTES);
        }
    }
}
