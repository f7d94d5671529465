//! Ephemeral state several instances share but the database need not keep: presence and last
//! seen, rate-limit buckets, and a cache of recent history pages. In Redis when `--redis-url`
//! is set; in this process's memory otherwise.
//!
//! Nothing here is the only copy of anything durable, so losing Redis degrades and loses
//! nothing: presence falls back to the database's copy, rate limits to per-process buckets,
//! and the history cache is skipped. Redis calls are bounded by a short timeout, so a dead
//! Redis costs a request milliseconds, not its answer.
//!
//! Memory state is shared only within one process: a split-role backend without Redis keeps
//! no presence or cache of its own (another backend may have seen the newer event) and uses
//! the database instead.

mod limits;
mod memory;
mod redis;

use crate::util::now_ms;
use protocol::{ConvId, DeviceId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use self::limits::{address_key, Limit, Limits, Rate};
pub use self::redis::connect as connect_redis;

/// A device's presence as recorded: online or not, and when that was last true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicePresence {
    pub online: bool,
    pub ts: i64,
}

pub type PresenceMap = HashMap<UserId, HashMap<DeviceId, DevicePresence>>;

/// A cached history page: the messages (before per-viewer decoration) and whether more follow.
pub type CachedPage = Vec<u8>;

#[derive(Clone)]
pub struct Shared {
    redis: Option<self::redis::Redis>,
    local: Arc<memory::Memory>,
    /// One process serves everyone (`--role all`): its memory is the shared state.
    local_is_shared: bool,
    limits: Limits,
    /// Redis calls that failed (and fell back).
    pub redis_errors: Arc<AtomicU64>,
}

/// How long a cached history page lives (a page is also dropped when its conversation changes).
const PAGE_TTL: Duration = Duration::from_secs(120);

impl Shared {
    /// State in this process only. `local_is_shared`: this process is the whole server.
    pub fn memory(limits: Limits, local_is_shared: bool) -> Self {
        Self {
            redis: None,
            local: Arc::new(memory::Memory::default()),
            local_is_shared,
            limits,
            redis_errors: Arc::default(),
        }
    }

    /// State in Redis (see [`connect_redis`]).
    pub fn redis(limits: Limits, redis: self::redis::Redis) -> Self {
        Self {
            redis: Some(redis),
            ..Self::memory(limits, false)
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    fn failed(&self, what: &str, e: &::redis::RedisError) {
        let n = self.redis_errors.fetch_add(1, Ordering::Relaxed);
        // One line per 100 failures is enough to see it in the logs; /metrics has them all.
        if n.is_multiple_of(100) {
            tracing::warn!(error = %e, what, failures = n + 1, "Redis unavailable; degrading");
        }
    }

    /// Takes one action from `limit`'s bucket for `key`. `Err(wait)` when over the limit.
    pub async fn take(&self, limit: Limit, key: &str) -> Result<(), Duration> {
        let Some(rate) = self.limits.get(limit) else {
            return Ok(());
        };
        let bucket = format!("{}:{key}", limit.name());
        if let Some(r) = &self.redis {
            match r.take(&bucket, &rate).await {
                Ok(wait_ms) => return wait_or_go(wait_ms),
                Err(e) => self.failed("rate limit", &e),
            }
        }
        wait_or_go(self.local.take(&bucket, &rate, now_ms()))
    }

    /// [`Shared::take`] as a typed error: `rate_limited` with `details.retry_after_ms`.
    pub async fn limit(&self, limit: Limit, key: &str) -> crate::error::Result<()> {
        self.limit_n(limit, key, 1).await
    }

    /// [`Shared::limit`] for `n` actions at once (all refused once one is over the limit).
    pub async fn limit_n(&self, limit: Limit, key: &str, n: usize) -> crate::error::Result<()> {
        let mut taken = Ok(());
        for _ in 0..n {
            taken = self.take(limit, key).await;
            if taken.is_err() {
                break;
            }
        }
        taken.map_err(|wait| {
            let ms = wait.as_millis().max(1) as u64;
            protocol::ErrorBody::new(
                protocol::ErrorCode::RateLimited,
                format!("too many {} requests; retry in {ms} ms", limit.name()),
            )
            .with_details(serde_json::json!({ "retry_after_ms": ms }))
            .into()
        })
    }

    /// Records a device's presence event; events older than the one recorded are ignored.
    pub async fn record_presence(&self, user: &UserId, device: &DeviceId, p: DevicePresence) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.record_presence(user, device, p).await {
                self.failed("presence", &e);
            }
        } else if self.local_is_shared {
            self.local.record_presence(user, device, p);
        }
    }

    /// The recorded presence of `users`' devices; `None` when there is no shared record to
    /// ask (the caller uses the database's).
    pub async fn presence(&self, users: &[UserId]) -> Option<PresenceMap> {
        if let Some(r) = &self.redis {
            return match r.presence(users).await {
                Ok(p) => Some(p),
                Err(e) => {
                    self.failed("presence", &e);
                    None
                }
            };
        }
        self.local_is_shared.then(|| self.local.presence(users))
    }

    /// The broker has just started: every device recorded online went offline `now`.
    pub async fn reset_presence(&self, now: i64) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.reset_presence(now).await {
                self.failed("presence reset", &e);
            }
        }
        self.local.reset_presence(now);
    }

    /// The cached page `(before, limit)` of `conv`, with the version it belongs to (pass it
    /// to [`Shared::cache_page`]); `(None, None)` when there is no cache to ask.
    pub async fn cached_page(
        &self,
        conv: &ConvId,
        page: &str,
    ) -> (Option<CachedPage>, Option<u64>) {
        if let Some(r) = &self.redis {
            return match r.cached_page(conv, page).await {
                Ok((hit, version)) => (hit, Some(version)),
                Err(e) => {
                    self.failed("history cache", &e);
                    (None, None)
                }
            };
        }
        if !self.local_is_shared {
            return (None, None);
        }
        let (hit, version) = self.local.cached_page(conv, page);
        (hit, Some(version))
    }

    /// Caches a page read while `conv` was at `version`; a change since then makes it unseen.
    pub async fn cache_page(&self, conv: &ConvId, version: u64, page: &str, bytes: CachedPage) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.cache_page(conv, version, page, &bytes, PAGE_TTL).await {
                self.failed("history cache", &e);
            }
        } else if self.local_is_shared {
            self.local.cache_page(conv, version, page, bytes, PAGE_TTL);
        }
    }

    /// `conv`'s messages changed (after the commit): its cached pages are stale.
    pub async fn conversation_changed(&self, conv: &ConvId) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.conversation_changed(conv).await {
                // Readers may now see a stale page until it expires; say so loudly.
                tracing::error!(error = %e, %conv, "history cache not invalidated");
                self.failed("history cache", &e);
            }
        } else {
            self.local.conversation_changed(conv);
        }
    }

    /// Answers `PING` (for `/readyz`): `None` without Redis.
    pub async fn ping(&self) -> Option<Result<(), String>> {
        let r = self.redis.as_ref()?;
        Some(r.ping().await.map_err(|e| e.to_string()))
    }
}

fn wait_or_go(wait_ms: u64) -> Result<(), Duration> {
    if wait_ms == 0 {
        Ok(())
    } else {
        Err(Duration::from_millis(wait_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("30/10s"),
            Ok(Some(Rate {
                count: 30,
                per: Duration::from_secs(10)
            }))
        );
        assert_eq!(Rate::parse("off"), Ok(None));
        assert!(Rate::parse("0/1s").is_err());
        assert!(Rate::parse("10").is_err());
        assert!(Rate::parse("x/1s").is_err());
    }
}
