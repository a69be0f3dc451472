//! Rate limiting: a `RateLimiter` port decided by GCRA (generic cell rate algorithm), with a
//! Redis adapter shared by every instance and an in-process adapter for the embedded default
//! and for Redis outages. Policies (limit per period) come from config.

mod memory;
mod redis;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipnet::Ipv6Net;

use crate::cache::RedisHandle;
pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;

/// One policy: at most `limit` requests per `period_secs`, bursts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub limit: u32,
    pub period_secs: u64,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the current window after this one.
    pub remaining: u32,
    /// Seconds until the budget is whole again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying, when refused.
    pub retry_after_secs: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterError(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request against `key` under `policy`, atomically, and decides.
    async fn hit(&self, key: &str, policy: Policy, now_ms: u64) -> Result<Decision, LimiterError>;
    /// Decides as `hit` would, without counting.
    async fn peek(&self, key: &str, policy: Policy, now_ms: u64) -> Result<Decision, LimiterError>;
    /// Forgets `key` (e.g. a successful login resets its failure budget).
    async fn reset(&self, key: &str) -> Result<(), LimiterError>;
}

/// GCRA on a theoretical arrival time (`tat`, ms): each request moves it by the emission
/// interval; a request is allowed while `tat` stays within one period of now.
/// Returns the decision and the new `tat` to store (None when refused: nothing changes).
pub fn gcra(stored_tat: Option<u64>, policy: Policy, now_ms: u64) -> (Decision, Option<u64>) {
    let period = policy.period_secs.max(1) * 1000;
    let limit = u64::from(policy.limit.max(1));
    let interval = (period / limit).max(1);
    let tat = stored_tat.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(period);
    if now_ms < allow_at {
        let wait = allow_at - now_ms;
        return (
            Decision {
                allowed: false,
                remaining: 0,
                reset_secs: (tat - now_ms).div_ceil(1000),
                retry_after_secs: wait.div_ceil(1000).max(1),
            },
            None,
        );
    }
    let used = new_tat - now_ms;
    let remaining = ((period.saturating_sub(used)) / interval) as u32;
    (
        Decision {
            allowed: true,
            remaining,
            reset_secs: used.div_ceil(1000),
            retry_after_secs: 0,
        },
        Some(new_tat),
    )
}

/// The bucket a client address is counted in by every per-IP policy. An IPv6 client is
/// counted by its `/ipv6_prefix` network: RFC 4291 §2.5.1 gives each host 64 bits of interface
/// identifier, so one machine can pick a fresh address of its /64 for every request (RFC 8981).
/// An IPv4-mapped address (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) is the IPv4 client it maps.
/// Audit records keep the full address; only the limits use this.
pub fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    let v6 = match ip {
        IpAddr::V4(v4) => return v4.to_string(),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return v4.to_string();
    }
    match Ipv6Net::new(v6, ipv6_prefix.min(128)) {
        Ok(net) => net.trunc().to_string(),
        Err(_) => v6.to_string(),
    }
}

/// The limiter the server uses: Redis when configured and reachable, in-process otherwise.
/// While Redis is down it keeps serving with per-instance limits (degraded), logs that once a
/// minute, retries Redis every few seconds, and recovers by itself.
pub struct Limiter {
    redis: Option<RedisLimiter>,
    memory: MemoryLimiter,
    degraded: AtomicBool,
    retry_at: Mutex<Instant>,
    logged_at: Mutex<Option<Instant>>,
}

const RETRY_EVERY: Duration = Duration::from_secs(2);

impl Limiter {
    pub fn new(redis: Option<Arc<RedisHandle>>) -> Limiter {
        Limiter {
            redis: redis.map(RedisLimiter::new),
            memory: MemoryLimiter::default(),
            degraded: AtomicBool::new(false),
            retry_at: Mutex::new(Instant::now()),
            logged_at: Mutex::new(None),
        }
    }

    /// "redis", "memory", or "memory (degraded: Redis unreachable)".
    pub fn mode(&self) -> &'static str {
        match (&self.redis, self.degraded.load(Ordering::Relaxed)) {
            (None, _) => "memory",
            (Some(_), false) => "redis",
            (Some(_), true) => "memory (degraded: Redis unreachable)",
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.redis.is_some() && self.degraded.load(Ordering::Relaxed)
    }

    fn should_try_redis(&self) -> bool {
        if !self.degraded.load(Ordering::Relaxed) {
            return true;
        }
        let mut at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= *at {
            *at = Instant::now() + RETRY_EVERY;
            true
        } else {
            false
        }
    }

    fn note_failure(&self, e: &LimiterError) {
        self.degraded.store(true, Ordering::Relaxed);
        let mut last = self.logged_at.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %e, "rate limiting degraded to per-instance limits");
        }
    }

    fn note_success(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis is back: rate limits are shared again");
        }
    }

    pub async fn hit(&self, key: &str, policy: Policy) -> Decision {
        self.decide(key, policy, true).await
    }

    /// Whether a request would pass, without counting it.
    pub async fn peek(&self, key: &str, policy: Policy) -> Decision {
        self.decide(key, policy, false).await
    }

    async fn decide(&self, key: &str, policy: Policy, consume: bool) -> Decision {
        let now_ms = now_ms();
        if let Some(redis) = &self.redis {
            if self.should_try_redis() {
                let answer = if consume {
                    redis.hit(key, policy, now_ms).await
                } else {
                    redis.peek(key, policy, now_ms).await
                };
                match answer {
                    Ok(d) => {
                        self.note_success();
                        return d;
                    }
                    Err(e) => self.note_failure(&e),
                }
            }
        }
        // The in-process limiter cannot fail.
        let local = if consume {
            self.memory.hit(key, policy, now_ms).await
        } else {
            self.memory.peek(key, policy, now_ms).await
        };
        local.unwrap_or(Decision {
            allowed: true,
            remaining: 0,
            reset_secs: 0,
            retry_after_secs: 0,
        })
    }

    pub async fn reset(&self, key: &str) {
        if let Some(redis) = &self.redis {
            if !self.is_degraded() && redis.reset(key).await.is_err() {
                self.degraded.store(true, Ordering::Relaxed);
            }
        }
        let _ = self.memory.reset(key).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str, prefix: u8) -> String {
        ip_key(ip.parse().unwrap(), prefix)
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_key() {
        assert_eq!(key("2001:db8:1:2::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64),
            key("2001:db8:1:2::1", 64)
        );
        assert_ne!(key("2001:db8:1:3::1", 64), key("2001:db8:1:2::1", 64));
    }

    #[test]
    fn the_ipv6_prefix_length_is_configurable() {
        assert_eq!(key("2001:db8:1:2::1", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8:1:3::1", 48), key("2001:db8:1:2::1", 48));
        assert_eq!(key("2001:db8:1:2::1", 128), "2001:db8:1:2::1/128");
        assert_ne!(key("2001:db8:1:2::2", 128), key("2001:db8:1:2::1", 128));
    }

    #[test]
    fn ipv4_and_ipv4_mapped_ipv6_addresses_share_the_ipv4_key() {
        assert_eq!(key("203.0.113.5", 64), "203.0.113.5");
        assert_eq!(key("::ffff:203.0.113.5", 64), "203.0.113.5");
        assert_ne!(key("::ffff:203.0.113.6", 64), key("203.0.113.5", 64));
        // Only mapped addresses: a native IPv6 address that happens to end alike is not IPv4.
        assert_eq!(key("::203.0.113.5", 64), "::/64");
    }

    #[test]
    fn gcra_allows_the_burst_then_refuses_until_the_window_moves() {
        let p = Policy {
            limit: 3,
            period_secs: 60,
        };
        let mut tat = None;
        let now = 1_000_000;
        for left in [2, 1, 0] {
            let (d, t) = gcra(tat, p, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = t;
        }
        let (d, t) = gcra(tat, p, now);
        assert!(!d.allowed && t.is_none());
        assert_eq!(d.retry_after_secs, 20, "one emission interval");
        let (d, _) = gcra(tat, p, now + 20_000);
        assert!(d.allowed, "one slot back after an interval");
    }
}
