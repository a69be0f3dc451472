//! The DPoP guard (RFC 9449): the protocol's proof check plus what needs shared state — the
//! `jti` replay cache (Redis when configured, so every instance sees every proof; the
//! database otherwise, or when Redis fails) and the server nonces, whose key every instance
//! derives from the master key. Knows no HTTP.

use std::sync::Arc;

use redis::AsyncCommands;
use tracing::Instrument;

use crate::cache::RedisHandle;
use crate::config::DpopSettings;
use crate::keys::MasterKey;
use crate::protocol::dpop::{self, Nonces, Proof, ProofCheck};
use crate::store::{Store, Timestamp};

/// Why a request's proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopFailure {
    /// RFC 9449 §5 / §7.1 `invalid_dpop_proof`, with a description for the developer.
    Invalid(String),
    /// RFC 9449 §8 / §9 `use_dpop_nonce`: retry with the nonce sent along.
    UseNonce,
    /// The replay cache could not be asked: refuse rather than risk a replay.
    Unavailable,
}

pub struct DpopGuard {
    store: Arc<dyn Store>,
    redis: Option<Arc<RedisHandle>>,
    nonces: Nonces,
    settings: DpopSettings,
}

impl DpopGuard {
    pub fn new(
        store: Arc<dyn Store>,
        redis: Option<Arc<RedisHandle>>,
        master: &MasterKey,
        settings: DpopSettings,
    ) -> DpopGuard {
        let key = master.keyed_hash("dpop nonce key", b"");
        DpopGuard {
            store,
            redis,
            nonces: Nonces::new(key, settings.nonce_window_secs),
            settings,
        }
    }

    /// The algorithms accepted, for discovery and `WWW-Authenticate`'s `algs`.
    pub fn algs(&self) -> &[String] {
        &self.settings.signing_algs
    }

    /// The nonce to send in `DPoP-Nonce` now.
    pub fn nonce(&self, now: Timestamp) -> String {
        self.nonces.current(now)
    }

    /// Checks the proof sent with a `method` request to `url` (with `access_token` at a
    /// protected resource), then spends its `jti`.
    #[tracing::instrument(skip_all)]
    pub async fn check(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        now: Timestamp,
    ) -> Result<Proof, DpopFailure> {
        let check = ProofCheck {
            method,
            url,
            algs: &self.settings.signing_algs,
            access_token,
            now,
            max_age_secs: self.settings.proof_max_age_secs as i64,
            skew_secs: self.settings.clock_skew_secs as i64,
        };
        let verified = dpop::verify(proof, &check).map_err(|e| DpopFailure::Invalid(e.0))?;
        // RFC 9449 §8: a nonce the server asked for, or any nonce at all, must be current.
        match &verified.nonce {
            Some(n) if !self.nonces.accepts(n, now) => return Err(DpopFailure::UseNonce),
            None if self.settings.require_nonce => return Err(DpopFailure::UseNonce),
            _ => {}
        }
        // RFC 9449 §11.1: a proof is used once, on whichever instance sees it first.
        let key = crate::random::hash_secret(&format!("{}.{}", verified.jkt, verified.jti));
        let until = verified.remember_until(&check);
        if !self.first_use(&key, until, now).await? {
            return Err(DpopFailure::Invalid(
                "the DPoP proof was used before; make a new one for each request".into(),
            ));
        }
        Ok(verified)
    }

    async fn first_use(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, DpopFailure> {
        if let Some(redis) = &self.redis {
            let ttl = (until - now).max(1) as u64;
            let set = async {
                let mut conn = redis.connection().await.ok()?;
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::EX(ttl));
                conn.set_options::<_, _, Option<String>>(redis.key("dpop", key), 1, opts)
                    .await
                    .ok()
            }
            .instrument(crate::cache::span("SET"))
            .await;
            match set {
                Some(reply) => return Ok(reply.is_some()),
                None => tracing::warn!("Redis unavailable: DPoP proof id kept in the database"),
            }
        }
        self.store
            .remember_dpop_proof(key, until)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not record a DPoP proof id");
                DpopFailure::Unavailable
            })
    }
}
