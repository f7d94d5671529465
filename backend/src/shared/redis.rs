//! The shared-state interfaces in Redis. Keys (all under the prefix, `courier:` by default):
//! - `rl:{limit}:{key}`: a GCRA bucket (its theoretical arrival time, ms), expiring when full;
//! - `presence:{user}`: a hash, device → `{0|1}:{ts}`;
//! - `hv:{conv}`: the conversation's history version; `hp:{conv}:{version}:{page}`: a page.
//!
//! Read-modify-write steps are Lua scripts, so concurrent backends never interleave them.

use super::{CachedPage, DevicePresence, PresenceMap, Rate};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, RedisResult, Script};
use protocol::{ConvId, DeviceId, UserId};
use std::sync::Arc;
use std::time::Duration;

/// Presence is kept this long after a device's last event.
const PRESENCE_TTL_MS: u64 = 90 * 86_400_000;

#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
}

struct Scripts {
    take: Script,
    presence: Script,
    reset: Script,
}

/// Connects to `url` (`redis://host:6379/0`). Fails when Redis does not answer now; later
/// outages are survived (calls fail fast and the connection is re-made in the background).
/// Every key starts with `prefix`, so several deployments can share one Redis.
pub async fn connect(url: &str, prefix: &str) -> RedisResult<Redis> {
    let client = ::redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let mut conn = client.get_connection_manager_with_config(config).await?;
    let _: String = ::redis::cmd("PING").query_async(&mut conn).await?;
    Ok(Redis {
        conn,
        prefix: prefix.into(),
        scripts: Arc::new(Scripts {
            // KEYS[1] bucket; ARGV interval, tolerance (ms). Returns 0 or ms to wait.
            take: Script::new(
                r"
                local t = redis.call('TIME')
                local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                local interval = tonumber(ARGV[1])
                local tolerance = tonumber(ARGV[2])
                local tat = tonumber(redis.call('GET', KEYS[1]) or now)
                if tat < now then tat = now end
                local allowed_from = tat - tolerance
                if now < allowed_from then return allowed_from - now end
                tat = tat + interval
                redis.call('SET', KEYS[1], tat, 'PX', tat - now + 1)
                return 0
                ",
            ),
            // KEYS[1] presence hash; ARGV device, online (0/1), ts, ttl ms.
            presence: Script::new(
                r"
                local cur = redis.call('HGET', KEYS[1], ARGV[1])
                if cur then
                    local ts = tonumber(string.match(cur, ':(-?%d+)$'))
                    if ts and ts > tonumber(ARGV[3]) then return 0 end
                end
                redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
                redis.call('PEXPIRE', KEYS[1], ARGV[4])
                return 1
                ",
            ),
            // KEYS[1] presence hash; ARGV now: every online device went offline now.
            reset: Script::new(
                r"
                local all = redis.call('HGETALL', KEYS[1])
                for i = 1, #all, 2 do
                    if string.sub(all[i + 1], 1, 1) == '1' then
                        redis.call('HSET', KEYS[1], all[i], '0:' .. ARGV[1])
                    end
                end
                return 1
                ",
            ),
        }),
    })
}

fn parse_presence(v: &str) -> Option<DevicePresence> {
    let (online, ts) = v.split_once(':')?;
    Some(DevicePresence {
        online: online == "1",
        ts: ts.parse().ok()?,
    })
}

impl Redis {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn presence_key(&self, user: &UserId) -> String {
        self.key(&format!("presence:{user}"))
    }

    pub async fn take(&self, bucket: &str, rate: &Rate) -> RedisResult<u64> {
        self.scripts
            .take
            .key(self.key(&format!("rl:{bucket}")))
            .arg(rate.interval_ms())
            .arg(rate.tolerance_ms())
            .invoke_async(&mut self.conn.clone())
            .await
    }

    pub async fn record_presence(
        &self,
        user: &UserId,
        device: &DeviceId,
        p: DevicePresence,
    ) -> RedisResult<()> {
        let _: i64 = self
            .scripts
            .presence
            .key(self.presence_key(user))
            .arg(device.as_str())
            .arg(u8::from(p.online))
            .arg(p.ts)
            .arg(PRESENCE_TTL_MS)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub async fn presence(&self, users: &[UserId]) -> RedisResult<PresenceMap> {
        if users.is_empty() {
            return Ok(PresenceMap::new());
        }
        let mut pipe = ::redis::pipe();
        for u in users {
            pipe.hgetall(self.presence_key(u));
        }
        let rows: Vec<Vec<(String, String)>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(users
            .iter()
            .zip(rows)
            .filter(|(_, devices)| !devices.is_empty())
            .map(|(u, devices)| {
                let devices = devices
                    .into_iter()
                    .filter_map(|(d, v)| Some((DeviceId::from_trusted(d), parse_presence(&v)?)))
                    .collect();
                (u.clone(), devices)
            })
            .collect())
    }

    pub async fn reset_presence(&self, now: i64) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = {
            let mut iter: ::redis::AsyncIter<String> =
                conn.scan_match(self.key("presence:*")).await?;
            let mut keys = Vec::new();
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(k?);
            }
            keys
        };
        for key in keys {
            let _: i64 = self
                .scripts
                .reset
                .key(key)
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    pub async fn cached_page(
        &self,
        conv: &ConvId,
        page: &str,
    ) -> RedisResult<(Option<CachedPage>, u64)> {
        let mut conn = self.conn.clone();
        let version: Option<u64> = conn.get(self.key(&format!("hv:{conv}"))).await?;
        let version = version.unwrap_or(0);
        let hit: Option<Vec<u8>> = conn
            .get(self.key(&format!("hp:{conv}:{version}:{page}")))
            .await?;
        Ok((hit, version))
    }

    pub async fn cache_page(
        &self,
        conv: &ConvId,
        version: u64,
        page: &str,
        bytes: &[u8],
        ttl: Duration,
    ) -> RedisResult<()> {
        let _: () = self
            .conn
            .clone()
            .pset_ex(
                self.key(&format!("hp:{conv}:{version}:{page}")),
                bytes,
                ttl.as_millis() as u64,
            )
            .await?;
        Ok(())
    }

    pub async fn conversation_changed(&self, conv: &ConvId) -> RedisResult<()> {
        let _: u64 = self
            .conn
            .clone()
            .incr(self.key(&format!("hv:{conv}")), 1)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let _: String = ::redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
