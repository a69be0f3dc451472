//! Signing keys: generation, sealing under the master key, rotation `next -> active -> retired`,
//! signing and the public JWKS. Signing reads an in-memory key ring and never waits on the
//! database; the ring is refreshed from the store periodically and after a local rotation.

pub mod master;
mod verified;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use josekit::jwk::alg::ed::EdCurve;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{EdDSA, JwsHeader, JwsSigner, JwsVerifier, ES256, PS256, RS256};
use josekit::jwt::JwtPayload;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::document::JsonDocument;
use crate::events::{Event, EventType};
use crate::random;
use crate::store::{AuditEvent, KeyState, SigningKeyRecord, Store, StoreError, Timestamp};
pub use master::{MasterKey, MasterKeyError, MasterKeySource};
use verified::{Verified, VerifiedCache};

/// JWS algorithms Portcullis signs with (RFC 7518 §3.1, RFC 8037 §3.1). Each has its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys; the OIDC default for ID tokens.
    Rs256,
    /// RSASSA-PSS with SHA-256, 2048-bit keys.
    Ps256,
    /// ECDSA P-256 with SHA-256; the default for access tokens (about 10x faster to sign).
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 4] = [
        SigningAlg::Rs256,
        SigningAlg::Ps256,
        SigningAlg::Es256,
        SigningAlg::EdDsa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Ps256 => "PS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(name: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// OIDC Core §3.1.3.6 `at_hash`: the left half of the hash the algorithm uses, base64url.
    /// Ed25519 signs with SHA-512, so EdDSA uses SHA-512 (OIDC Core errata set 2).
    pub fn left_half_hash(self, value: &str) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use sha2::{Digest, Sha256, Sha512};
        let digest: Vec<u8> = match self {
            SigningAlg::EdDsa => Sha512::digest(value.as_bytes()).to_vec(),
            _ => Sha256::digest(value.as_bytes()).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }

    /// A fresh key pair: its PKCS#8 DER private key and its public JWK.
    fn generate(self) -> Result<(Vec<u8>, Jwk), KeyError> {
        fn parts(pair: &dyn KeyPair) -> (Vec<u8>, Jwk) {
            (pair.to_der_private_key(), pair.to_jwk_public_key())
        }
        Ok(match self {
            SigningAlg::Rs256 => parts(&RS256.generate_key_pair(2048)?),
            SigningAlg::Ps256 => parts(&PS256.generate_key_pair(2048)?),
            SigningAlg::Es256 => parts(&ES256.generate_key_pair()?),
            SigningAlg::EdDsa => parts(&EdDSA.generate_key_pair(EdCurve::Ed25519)?),
        })
    }

    fn signer(self, der: &[u8], kid: &str) -> Result<Box<dyn JwsSigner>, KeyError> {
        macro_rules! with_kid {
            ($signer:expr) => {{
                let mut s = $signer;
                s.set_key_id(kid);
                Box::new(s) as Box<dyn JwsSigner>
            }};
        }
        Ok(match self {
            SigningAlg::Rs256 => with_kid!(RS256.signer_from_der(der)?),
            SigningAlg::Ps256 => with_kid!(PS256.signer_from_der(der)?),
            SigningAlg::Es256 => with_kid!(ES256.signer_from_der(der)?),
            SigningAlg::EdDsa => with_kid!(EdDSA.signer_from_der(der)?),
        })
    }

    fn verifier(self, jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, KeyError> {
        Ok(match self {
            SigningAlg::Rs256 => Box::new(RS256.verifier_from_jwk(jwk)?),
            SigningAlg::Ps256 => Box::new(PS256.verifier_from_jwk(jwk)?),
            SigningAlg::Es256 => Box::new(ES256.verifier_from_jwk(jwk)?),
            SigningAlg::EdDsa => Box::new(EdDSA.verifier_from_jwk(jwk)?),
        })
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "signing key {kid} cannot be decrypted: the master key is not the one it was sealed with"
    )]
    WrongMasterKey { kid: String },
    #[error("signing key {kid} is unusable: {reason}")]
    Unusable { kid: String, reason: String },
    #[error("no active {0} signing key")]
    NoActiveKey(SigningAlg),
    #[error("cryptography error: {0}")]
    Crypto(String),
}

impl From<josekit::JoseError> for KeyError {
    fn from(e: josekit::JoseError) -> Self {
        KeyError::Crypto(e.to_string())
    }
}

struct ActiveKey {
    kid: String,
    signer: Box<dyn JwsSigner>,
}

/// The keys one instance signs with and publishes, as last read from the store.
pub struct KeyRing {
    active: BTreeMap<SigningAlg, ActiveKey>,
    /// Every published key, by `kid`: what our own endpoints accept.
    verifiers: BTreeMap<String, (SigningAlg, Box<dyn JwsVerifier>)>,
    /// RFC 7517 §5, serialized once per ring: the JWKS endpoint serves these bytes as they are.
    jwks: JsonDocument,
    summary: Vec<KeySummary>,
    /// Shared by every ring the manager loads, so refreshing the keys keeps what was checked.
    verified: Arc<VerifiedCache>,
}

/// What an operator may see of a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeySummary {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
    pub published: bool,
}

impl KeyRing {
    pub fn jwks(&self) -> &JsonDocument {
        &self.jwks
    }

    pub fn summary(&self) -> &[KeySummary] {
        &self.summary
    }

    pub fn active_kid(&self, alg: SigningAlg) -> Option<&str> {
        self.active.get(&alg).map(|k| k.kid.as_str())
    }

    /// Checks the signature of a compact JWT against the published key its `kid` names, and
    /// that the header's `alg` is that key's. Claims are the caller's to check.
    pub fn verify(&self, token: &str) -> Result<(JwtPayload, JwsHeader, SigningAlg), KeyError> {
        let bad = |reason: &str| KeyError::Crypto(reason.to_string());
        let cache_key = VerifiedCache::key(token);
        if let Some(hit) = self.verified.get(&cache_key) {
            // Checked before, by a key that is still published (a revoked key leaves the ring).
            if self
                .verifiers
                .get(&hit.kid)
                .is_some_and(|(alg, _)| *alg == hit.alg)
            {
                return Ok((hit.payload, hit.header, hit.alg));
            }
        }
        let header = josekit::jwt::decode_header(token).map_err(|_| bad("malformed token"))?;
        let kid = header
            .claim("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no kid"))?;
        let (alg, verifier) = self.verifiers.get(kid).ok_or_else(|| bad("unknown kid"))?;
        if header.claim("alg").and_then(Value::as_str) != Some(alg.as_str()) {
            return Err(bad("alg does not match the key"));
        }
        let (payload, header) = josekit::jwt::decode_with_verifier(token, &**verifier)
            .map_err(|_| bad("bad signature"))?;
        let verified = Verified {
            kid: kid.to_string(),
            alg: *alg,
            payload,
            header,
        };
        self.verified.put(cache_key, &verified);
        Ok((verified.payload, verified.header, *alg))
    }

    /// Signs `payload` as a compact JWS with the active key of `alg`; `typ` per RFC 9068 §2.1
    /// (`at+jwt`) or `JWT`.
    pub fn sign(
        &self,
        alg: SigningAlg,
        typ: &str,
        payload: &JwtPayload,
    ) -> Result<String, KeyError> {
        let key = self.active.get(&alg).ok_or(KeyError::NoActiveKey(alg))?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&key.kid);
        Ok(josekit::jwt::encode_with_signer(
            payload,
            &header,
            &*key.signer,
        )?)
    }
}

pub struct KeyManager {
    store: Arc<dyn Store>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    /// Retired keys stay published this long: the longest signed-token lifetime plus the
    /// JWKS cache lifetime, so every token they signed can still be verified.
    retention_secs: i64,
    ring: RwLock<Arc<KeyRing>>,
    verified: Arc<VerifiedCache>,
}

impl KeyManager {
    /// Makes sure every algorithm has an active and a next key, then loads the ring.
    pub async fn start(
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        retention_secs: u64,
        verify_cache_entries: usize,
    ) -> Result<KeyManager, KeyError> {
        ensure_keys(&*store, &master, &*clock).await?;
        let verified = Arc::new(VerifiedCache::new(verify_cache_entries, clock.clone()));
        let ring = load_ring(
            &*store,
            &master,
            clock.now(),
            retention_secs as i64,
            verified.clone(),
        )
        .await?;
        Ok(KeyManager {
            store,
            master,
            clock,
            retention_secs: retention_secs as i64,
            ring: RwLock::new(Arc::new(ring)),
            verified,
        })
    }

    /// The master key, for other values sealed at rest (e.g. a refresh token's successor).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the keys from the store (another instance may have rotated them).
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let ring = load_ring(
            &*self.store,
            &self.master,
            self.clock.now(),
            self.retention_secs,
            self.verified.clone(),
        )
        .await?;
        let mut guard = match self.ring.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(ring);
        Ok(())
    }

    /// For every algorithm: the next key becomes active, the active key retires, a new next
    /// key is made; retired keys past their retention are deleted. Returns the new active kids.
    pub async fn rotate(&self) -> Result<Vec<(SigningAlg, String)>, KeyError> {
        self.rotate_by(None).await
    }

    /// [`KeyManager::rotate`] on an operator's request: the audit event names `actor`.
    pub async fn rotate_by(
        &self,
        actor: Option<&str>,
    ) -> Result<Vec<(SigningAlg, String)>, KeyError> {
        let now = self.clock.now();
        let records = self.store.list_signing_keys().await?;
        for alg in SigningAlg::ALL {
            let new_next = new_record(alg, KeyState::Next, &self.master, now)?;
            let of = |state| find_key(&records, alg, state);
            let rotated = rotated_event(
                alg,
                of(KeyState::Next),
                of(KeyState::Active),
                &new_next,
                now,
            )
            .actor(actor);
            self.store
                .rotate_signing_keys(&new_next, now, None, &[rotated])
                .await?;
        }
        self.store
            .purge_retired_keys(now - self.retention_secs)
            .await?;
        self.refresh().await?;
        let ring = self.ring();
        let promoted: Vec<(SigningAlg, String)> = ring
            .active
            .iter()
            .map(|(alg, k)| (*alg, k.kid.clone()))
            .collect();
        let mut event = AuditEvent::new("keys.rotated", now);
        event.actor = actor.map(str::to_string);
        event.detail = json!({
            "active": promoted.iter().map(|(a, k)| json!({"alg": a.as_str(), "kid": k})).collect::<Vec<_>>()
        });
        self.store.record_audit(&event).await?;
        Ok(promoted)
    }
}

impl KeyManager {
    /// Emergency revocation of a compromised key: if it signs, its algorithm rotates first;
    /// then the key is deleted, so it leaves the JWKS at once and every token it signed stops
    /// verifying (after verifiers' JWKS caches expire). Returns false for an unknown kid.
    pub async fn revoke(&self, kid: &str) -> Result<bool, KeyError> {
        self.revoke_by(kid, None).await
    }

    /// [`KeyManager::revoke`] on an operator's request: the audit event names `actor`.
    pub async fn revoke_by(&self, kid: &str, actor: Option<&str>) -> Result<bool, KeyError> {
        let records = self.store.list_signing_keys().await?;
        let Some(record) = records.iter().find(|k| k.kid == kid) else {
            return Ok(false);
        };
        let now = self.clock.now();
        if let (KeyState::Active | KeyState::Next, Some(alg)) =
            (record.state, SigningAlg::parse(&record.alg))
        {
            let mut active = find_key(&records, alg, KeyState::Active);
            let mut next = find_key(&records, alg, KeyState::Next);
            let rounds = if record.state == KeyState::Next { 2 } else { 1 };
            // A compromised next key must never sign: replace it by rotating twice.
            for _ in 0..rounds {
                let new_next = new_record(alg, KeyState::Next, &self.master, now)?;
                let rotated = rotated_event(alg, next.clone(), active, &new_next, now).actor(actor);
                self.store
                    .rotate_signing_keys(&new_next, now, None, &[rotated])
                    .await?;
                (active, next) = (next, Some(new_next.kid));
            }
        }
        let revoked = Event::new(EventType::KeyRevoked, now)
            .subject(kid)
            .actor(actor)
            .data(json!({"alg": record.alg}));
        let removed = self.store.delete_retired_key(kid, &[revoked]).await?;
        let mut event = AuditEvent::new("keys.revoked", now);
        event.actor = actor.map(str::to_string);
        event.detail = json!({"kid": kid});
        self.store.record_audit(&event).await?;
        self.refresh().await?;
        Ok(removed)
    }

    /// Scheduled rotation: an algorithm whose active key has signed for `every_secs` moves on,
    /// but only once its next key has been published for `prepublish_secs` (the JWKS cache
    /// lifetime), so verifiers already hold it. Compare-and-swap on the active key: of several
    /// instances checking at once, one rotates. Returns the algorithms rotated.
    pub async fn rotate_if_due(
        &self,
        every_secs: u64,
        prepublish_secs: u64,
    ) -> Result<Vec<SigningAlg>, KeyError> {
        let now = self.clock.now();
        let records = self.store.list_signing_keys().await?;
        let mut rotated = Vec::new();
        for alg in SigningAlg::ALL {
            let of = |state: KeyState| {
                records
                    .iter()
                    .find(|k| k.alg == alg.as_str() && k.state == state)
            };
            let (Some(active), Some(next)) = (of(KeyState::Active), of(KeyState::Next)) else {
                continue;
            };
            let due = active.activated_at.unwrap_or(active.created_at) + every_secs as i64 <= now;
            let published_long_enough = next.created_at + prepublish_secs as i64 <= now;
            if !(due && published_long_enough) {
                continue;
            }
            let new_next = new_record(alg, KeyState::Next, &self.master, now)?;
            let event = rotated_event(
                alg,
                Some(next.kid.clone()),
                Some(active.kid.clone()),
                &new_next,
                now,
            );
            match self
                .store
                .rotate_signing_keys(&new_next, now, Some(&active.kid), &[event])
                .await
            {
                Ok(()) => {
                    tracing::info!(alg = alg.as_str(), kid = %next.kid, "scheduled key rotation: next key now signs");
                    rotated.push(alg);
                }
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !rotated.is_empty() {
            self.store
                .purge_retired_keys(now - self.retention_secs)
                .await?;
            let mut event = AuditEvent::new("keys.rotated", now);
            event.actor = Some("schedule".into());
            event.detail = json!({"algs": rotated.iter().map(|a| a.as_str()).collect::<Vec<_>>()});
            self.store.record_audit(&event).await?;
            self.refresh().await?;
        }
        Ok(rotated)
    }
}

fn find_key(records: &[SigningKeyRecord], alg: SigningAlg, state: KeyState) -> Option<String> {
    records
        .iter()
        .find(|k| k.alg == alg.as_str() && k.state == state)
        .map(|k| k.kid.clone())
}

/// `key.rotated`: `promoted` starts signing, `retired` stops, `new_next` is published.
fn rotated_event(
    alg: SigningAlg,
    promoted: Option<String>,
    retired: Option<String>,
    new_next: &SigningKeyRecord,
    now: Timestamp,
) -> Event {
    let mut event = Event::new(EventType::KeyRotated, now).data(json!({
        "alg": alg.as_str(),
        "retired": retired,
        "next": new_next.kid,
    }));
    event.subject = promoted;
    event
}

fn new_record(
    alg: SigningAlg,
    state: KeyState,
    master: &MasterKey,
    now: Timestamp,
) -> Result<SigningKeyRecord, KeyError> {
    let kid = random::token(12);
    let (der, mut jwk) = alg.generate()?;
    jwk.set_key_id(&kid);
    jwk.set_key_use("sig");
    jwk.set_algorithm(alg.as_str());
    Ok(SigningKeyRecord {
        private_key: master.seal(kid.as_bytes(), &der),
        kid,
        alg: alg.as_str().to_string(),
        state,
        public_jwk: jwk.to_string(),
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
    })
}

/// First start: an algorithm without keys gets an active and a next key, in one transaction.
/// If another instance does the same at the same moment, the unique indexes keep one set.
async fn ensure_keys(
    store: &dyn Store,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<(), KeyError> {
    let existing = store.list_signing_keys().await?;
    let missing: Vec<SigningAlg> = SigningAlg::ALL
        .into_iter()
        .filter(|alg| {
            !existing
                .iter()
                .any(|k| k.alg == alg.as_str() && k.state == KeyState::Active)
        })
        .collect();
    let now = clock.now();
    // Every key is generated at once on the blocking pool (RSA generation dominates a first
    // start; this spreads it over the cores instead of one key after another).
    let jobs: Vec<_> = missing
        .iter()
        .flat_map(|&alg| [(alg, KeyState::Active), (alg, KeyState::Next)])
        .map(|(alg, state)| {
            let master = master.clone();
            tokio::task::spawn_blocking(move || new_record(alg, state, &master, now))
        })
        .collect();
    let mut records = Vec::with_capacity(jobs.len());
    for job in jobs {
        records.push(
            job.await
                .map_err(|e| KeyError::Crypto(format!("key generation: {e}")))??,
        );
    }
    for pair in records.chunks(2) {
        if store.insert_initial_keys(pair).await? {
            tracing::info!(alg = %pair[0].alg, kid = %pair[0].kid, "generated signing keys");
        }
    }
    Ok(())
}

async fn load_ring(
    store: &dyn Store,
    master: &MasterKey,
    now: Timestamp,
    retention_secs: i64,
    verified: Arc<VerifiedCache>,
) -> Result<KeyRing, KeyError> {
    let records = store.list_signing_keys().await?;
    let mut active = BTreeMap::new();
    let mut verifiers = BTreeMap::new();
    let mut published = Vec::new();
    let mut summary = Vec::new();
    for record in &records {
        let is_published = match record.state {
            KeyState::Next | KeyState::Active => true,
            KeyState::Retired => record.retired_at.unwrap_or(0) + retention_secs > now,
        };
        summary.push(KeySummary {
            kid: record.kid.clone(),
            alg: record.alg.clone(),
            state: record.state,
            created_at: record.created_at,
            activated_at: record.activated_at,
            retired_at: record.retired_at,
            published: is_published,
        });
        if is_published {
            let jwk: Value =
                serde_json::from_str(&record.public_jwk).map_err(|e| KeyError::Unusable {
                    kid: record.kid.clone(),
                    reason: e.to_string(),
                })?;
            if let Some(alg) = SigningAlg::parse(&record.alg) {
                let parsed =
                    Jwk::from_map(jwk.as_object().cloned().unwrap_or_default()).map_err(|e| {
                        KeyError::Unusable {
                            kid: record.kid.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                verifiers.insert(record.kid.clone(), (alg, alg.verifier(&parsed)?));
            }
            published.push(jwk);
        }
        if record.state == KeyState::Active {
            let Some(alg) = SigningAlg::parse(&record.alg) else {
                continue;
            };
            let der = master
                .open(record.kid.as_bytes(), &record.private_key)
                .map_err(|_| KeyError::WrongMasterKey {
                    kid: record.kid.clone(),
                })?;
            let signer = alg
                .signer(&der, &record.kid)
                .map_err(|e| KeyError::Unusable {
                    kid: record.kid.clone(),
                    reason: e.to_string(),
                })?;
            active.insert(
                alg,
                ActiveKey {
                    kid: record.kid.clone(),
                    signer,
                },
            );
        }
    }
    Ok(KeyRing {
        active,
        verifiers,
        jwks: JsonDocument::new(&json!({ "keys": published }))
            .map_err(|e| KeyError::Crypto(format!("cannot serialize the JWKS: {e}")))?,
        summary,
        verified,
    })
}
