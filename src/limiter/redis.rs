//! The Redis limiter: one atomic round trip per decision (a GCRA Lua script, loaded once and
//! called by its SHA), keys namespaced under `<redis.namespace>:rl:` and expiring with their window.

use std::sync::Arc;

use async_trait::async_trait;
use redis::Script;

use super::{Decision, LimiterError, Policy, RateLimiter};
use crate::cache::RedisHandle;

/// KEYS[1] = key; ARGV = now_ms, period_ms, interval_ms, consume (1 counts the request,
/// 0 only looks).
/// Returns {allowed, remaining, reset_ms, retry_ms}; the same arithmetic as `limiter::gcra`.
const GCRA: &str = r#"
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
end
return {1, math.floor((period - (new_tat - now)) / interval), new_tat - now, 0}
"#;

pub struct RedisLimiter {
    redis: Arc<RedisHandle>,
    script: Script,
}

impl RedisLimiter {
    pub fn new(redis: Arc<RedisHandle>) -> RedisLimiter {
        RedisLimiter {
            redis,
            script: Script::new(GCRA),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(&self, key: &str, policy: Policy, now_ms: u64) -> Result<Decision, LimiterError> {
        self.run(key, policy, now_ms, true).await
    }

    async fn peek(&self, key: &str, policy: Policy, now_ms: u64) -> Result<Decision, LimiterError> {
        self.run(key, policy, now_ms, false).await
    }

    #[tracing::instrument(name = "redis", skip_all, fields(db.system = "redis", db.operation = "DEL", otel.kind = "client"))]
    async fn reset(&self, key: &str) -> Result<(), LimiterError> {
        let mut conn = self.redis.connection().await.map_err(LimiterError)?;
        redis::cmd("DEL")
            .arg(self.redis.key("rl", key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| LimiterError(format!("{:?}", e.kind())))
    }
}

impl RedisLimiter {
    #[tracing::instrument(name = "redis", skip_all, fields(db.system = "redis", db.operation = "EVALSHA", otel.kind = "client"))]
    async fn run(
        &self,
        key: &str,
        policy: Policy,
        now_ms: u64,
        consume: bool,
    ) -> Result<Decision, LimiterError> {
        let mut conn = self.redis.connection().await.map_err(LimiterError)?;
        let period = policy.period_secs.max(1) * 1000;
        let interval = (period / u64::from(policy.limit.max(1))).max(1);
        let mut invocation = self.script.key(self.redis.key("rl", key));
        invocation
            .arg(now_ms)
            .arg(period)
            .arg(interval)
            .arg(if consume { "1" } else { "0" });
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (allowed, remaining, reset_ms, retry_ms) =
            tokio::time::timeout(std::time::Duration::from_millis(500), call)
                .await
                .map_err(|_| LimiterError("Redis did not answer in time".into()))?
                .map_err(|e| LimiterError(format!("{:?}", e.kind())))?;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u32,
            reset_secs: (reset_ms.max(0) as u64).div_ceil(1000),
            retry_after_secs: if allowed == 1 {
                0
            } else {
                (retry_ms.max(0) as u64).div_ceil(1000).max(1)
            },
        })
    }
}
