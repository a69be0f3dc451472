//! A bounded memory of JWTs whose signatures this instance has already checked, so a resource
//! call that presents the same access token again (userinfo, introspection) skips the ES256 or
//! RS256 verification, three quarters of such a request's work (bench/RESULTS.md, profile).
//!
//! It decides nothing about claims: expiry, audience and the deny-list are checked by the
//! caller on every use, cached or not. It never holds a token: entries are keyed by the
//! SHA-256 of the whole compact token (header, payload *and* signature, so a forged payload
//! next to a genuine signature can never hit), and hold only the decoded, non-secret claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use josekit::jws::JwsHeader;
use josekit::jwt::JwtPayload;
use sha2::{Digest, Sha256};

use super::SigningAlg;
use crate::clock::Clock;
use crate::store::Timestamp;

/// What a successful verification found, remembered until the token's `exp`.
#[derive(Clone)]
pub(super) struct Verified {
    /// The key that checked it: a hit counts only while that key is still published.
    pub kid: String,
    pub alg: SigningAlg,
    pub payload: JwtPayload,
    pub header: JwsHeader,
}

struct Entry {
    verified: Verified,
    expires_at: Timestamp,
}

pub struct VerifiedCache {
    capacity: usize,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl VerifiedCache {
    /// `capacity` 0 turns the cache off.
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> VerifiedCache {
        VerifiedCache {
            capacity,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(super) fn get(&self, key: &[u8; 32]) -> Option<Verified> {
        if self.capacity == 0 {
            return None;
        }
        let now = self.clock.now();
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|e| now < e.expires_at)
            .map(|e| e.verified.clone())
    }

    /// Remembers a verified token that carries an `exp`; one without is not cached (it would
    /// never leave but by eviction).
    pub(super) fn put(&self, key: [u8; 32], verified: &Verified) {
        if self.capacity == 0 {
            return;
        }
        let Some(expires_at) = verified
            .payload
            .claim("exp")
            .and_then(serde_json::Value::as_i64)
        else {
            return;
        };
        let now = self.clock.now();
        if expires_at <= now {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now < e.expires_at);
            // Leave at least an eighth free (dropping arbitrary live entries if expiry did
            // not), so a full cache costs one sweep per capacity/8 inserts, not one each.
            let room = self.capacity.div_ceil(8);
            let excess = (entries.len() + room).saturating_sub(self.capacity);
            let drop: Vec<[u8; 32]> = entries.keys().take(excess).copied().collect();
            for k in drop {
                entries.remove(&k);
            }
        }
        entries.insert(
            key,
            Entry {
                verified: verified.clone(),
                expires_at,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn verified(exp: Option<i64>) -> Verified {
        let mut payload = JwtPayload::new();
        if let Some(exp) = exp {
            payload
                .set_claim("exp", Some(serde_json::json!(exp)))
                .unwrap();
        }
        Verified {
            kid: "k".into(),
            alg: SigningAlg::Es256,
            payload,
            header: JwsHeader::new(),
        }
    }

    #[test]
    fn entries_last_until_exp_and_the_size_stays_bounded() {
        let clock = ManualClock::new(1000);
        let cache = VerifiedCache::new(16, Arc::new(clock.clone()));
        let k = VerifiedCache::key("a.b.c");
        cache.put(k, &verified(Some(1010)));
        assert!(cache.get(&k).is_some());
        assert!(cache.get(&VerifiedCache::key("a.b.d")).is_none());
        clock.advance(10);
        assert!(cache.get(&k).is_none(), "expired entries never hit");

        for i in 0..100 {
            cache.put(VerifiedCache::key(&format!("t{i}")), &verified(Some(5000)));
            assert!(cache.len() <= 16);
        }
        cache.put(VerifiedCache::key("one more"), &verified(Some(5000)));
        assert!(cache.get(&VerifiedCache::key("one more")).is_some());
    }

    #[test]
    fn tokens_without_exp_or_already_expired_are_not_kept() {
        let cache = VerifiedCache::new(16, Arc::new(ManualClock::new(1000)));
        cache.put(VerifiedCache::key("x"), &verified(None));
        cache.put(VerifiedCache::key("y"), &verified(Some(999)));
        assert_eq!(cache.len(), 0);
        let off = VerifiedCache::new(0, Arc::new(ManualClock::new(1000)));
        off.put(VerifiedCache::key("z"), &verified(Some(5000)));
        assert!(off.get(&VerifiedCache::key("z")).is_none());
    }
}
