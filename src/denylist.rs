//! The access-token deny-list: JWT access tokens revoked before they expire (RFC 7009 §2).
//! In Redis when configured (shared by every instance, entries expire by themselves), in the
//! database otherwise. If Redis fails, writes and reads fall back to the database.

use std::sync::Arc;

use redis::AsyncCommands;
use tracing::Instrument;

use crate::cache::RedisHandle;
use crate::store::{Store, StoreError, Timestamp};

pub struct DenyList {
    store: Arc<dyn Store>,
    redis: Option<Arc<RedisHandle>>,
}

impl DenyList {
    pub fn new(store: Arc<dyn Store>, redis: Option<Arc<RedisHandle>>) -> DenyList {
        DenyList { store, redis }
    }

    /// Denies `jti` until `expires_at` (after which the token is dead anyway).
    pub async fn deny(
        &self,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(redis) = &self.redis {
            let ttl = (expires_at - now).max(1) as u64;
            let written = async {
                let mut conn = redis.connection().await.ok()?;
                conn.set_ex::<_, _, ()>(redis.key("deny", jti), 1, ttl)
                    .await
                    .ok()
            }
            .instrument(crate::cache::span("SET"))
            .await;
            if written.is_some() {
                return Ok(());
            }
            tracing::warn!("Redis unavailable: deny-list entry written to the database");
        }
        self.store.deny_access_token(jti, expires_at).await
    }

    pub async fn is_denied(&self, jti: &str) -> Result<bool, StoreError> {
        if let Some(redis) = &self.redis {
            let hit = async {
                let mut conn = redis.connection().await.ok()?;
                conn.exists::<_, bool>(redis.key("deny", jti)).await.ok()
            }
            .instrument(crate::cache::span("EXISTS"))
            .await;
            if hit == Some(true) {
                return Ok(true);
            }
        }
        // Not in Redis (or Redis is down): entries written while Redis was down live in the
        // database.
        self.store.is_access_token_denied(jti).await
    }
}
