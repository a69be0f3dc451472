//! DPoP (RFC 9449): checking a proof JWT against the request it came with, the RFC 7638
//! thumbprint a token is bound to, and server nonces any instance can check. Pure: the replay
//! cache and the headers are the adapters'; time and the nonce key are arguments.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::Jwk;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::protocol::assertion::verifier_for;
use crate::store::Timestamp;

/// The algorithms this server can check (RFC 9449 §5.1 `dpop_signing_alg_values_supported`
/// lists the configured subset): asymmetric only, never `none` or a MAC (§4.3 step 5).
pub const SUPPORTED_ALGS: [&str; 5] = ["ES256", "ES384", "PS256", "RS256", "EdDSA"];

/// Longest accepted proof, so a hostile header costs little to refuse.
const MAX_PROOF_LEN: usize = 8 * 1024;

/// What a proof must match, and the server's limits.
pub struct ProofCheck<'a> {
    /// The request's method (`htm`, RFC 9449 §4.3 step 8).
    pub method: &'a str,
    /// The URL of the endpoint (`htu`, §4.3 step 9), without query and fragment.
    pub url: &'a str,
    /// The algorithms accepted (a subset of [`SUPPORTED_ALGS`]).
    pub algs: &'a [String],
    /// With an access token (at a protected resource): `ath` must be its hash (§4.3 step 12).
    pub access_token: Option<&'a str>,
    pub now: Timestamp,
    /// How old a proof may be (by its `iat`), and how far in the future (clock skew).
    pub max_age_secs: i64,
    pub skew_secs: i64,
}

/// A proof that passed every check but the replay cache's (which needs shared state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key: the `cnf.jkt` it binds (RFC 9449 §6.1).
    pub jkt: String,
    pub jti: String,
    pub iat: Timestamp,
    /// The server nonce the proof carries, if any (checked by the caller, §8).
    pub nonce: Option<String>,
}

impl Proof {
    /// Until when the proof's `jti` must be remembered: as long as its `iat` is acceptable.
    pub fn remember_until(&self, check: &ProofCheck) -> Timestamp {
        self.iat + check.max_age_secs + check.skew_secs
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub String);

fn bad(message: impl Into<String>) -> ProofError {
    ProofError(message.into())
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad(format!("the DPoP proof's {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad(format!("the DPoP proof's {what} is not a JSON object"))),
    }
}

/// RFC 9449 §4.3 steps 2-9, 11 and 12 (step 1, one header only, is the adapter's; step 10,
/// the nonce, the caller's; and the `jti` replay check needs the shared cache).
pub fn verify(proof: &str, check: &ProofCheck) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(bad("the DPoP proof is too large"));
    }
    let parts: Vec<&str> = proof.split('.').collect();
    let [header_b64, payload_b64, _signature] = parts.as_slice() else {
        return Err(bad("the DPoP proof is not a compact JWS"));
    };
    let header = decode_json(header_b64, "header")?;
    // §4.3 step 4.
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(bad("the DPoP proof's typ must be dpop+jwt"));
    }
    // §4.3 step 5: an asymmetric algorithm this server accepts.
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !check.algs.iter().any(|a| a == alg) || !SUPPORTED_ALGS.contains(&alg) {
        return Err(bad(format!(
            "the DPoP proof's alg {alg:?} is not accepted; use one of {}",
            check.algs.join(" ")
        )));
    }
    // §4.3 step 7: the key is public; a private member would publish the client's key.
    let jwk_map = match header.get("jwk") {
        Some(Value::Object(m)) => m.clone(),
        _ => return Err(bad("the DPoP proof's header has no jwk")),
    };
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|m| jwk_map.contains_key(*m))
    {
        return Err(bad("the DPoP proof's jwk holds a private key"));
    }
    let jkt =
        thumbprint(&jwk_map).ok_or_else(|| bad("the DPoP proof's jwk is not a public key"))?;
    let jwk = Jwk::from_map(jwk_map).map_err(|_| bad("the DPoP proof's jwk is malformed"))?;
    // §4.3 step 6: the signature, with the key in the header (josekit checks `alg` matches).
    let verifier =
        verifier_for(alg, &jwk).ok_or_else(|| bad("the DPoP proof's jwk does not fit its alg"))?;
    josekit::jws::deserialize_compact(proof, &*verifier)
        .map_err(|_| bad("the DPoP proof's signature does not verify"))?;

    // §4.3 step 3 and §4.2: the required claims.
    let claims = decode_json(payload_b64, "payload")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| bad("the DPoP proof has no jti"))?;
    let htm = text("htm").ok_or_else(|| bad("the DPoP proof has no htm"))?;
    let htu = text("htu").ok_or_else(|| bad("the DPoP proof has no htu"))?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("the DPoP proof has no iat"))?;
    // §4.3 step 8.
    if htm != check.method {
        return Err(bad(format!(
            "the DPoP proof is for {htm}, not this {} request",
            check.method
        )));
    }
    // §4.3 step 9: compared without query and fragment, after RFC 3986 §6 normalisation.
    if !same_target(htu, check.url) {
        return Err(bad("the DPoP proof's htu is not this endpoint's URL"));
    }
    // §4.3 step 11 and §11.1: a bounded window around now.
    if iat > check.now + check.skew_secs {
        return Err(bad("the DPoP proof's iat is in the future"));
    }
    if iat < check.now - check.max_age_secs - check.skew_secs {
        return Err(bad("the DPoP proof is too old; make a new one"));
    }
    // §4.3 step 12 / §7.1: `ath` binds the proof to the access token it is sent with.
    if let Some(token) = check.access_token {
        match text("ath") {
            Some(ath) if ath == access_token_hash(token) => {}
            Some(_) => return Err(bad("the DPoP proof's ath does not match the access token")),
            None => return Err(bad("the DPoP proof has no ath for the access token")),
        }
    }
    Ok(Proof {
        jkt,
        jti: jti.to_string(),
        iat,
        nonce: text("nonce").map(str::to_string),
    })
}

/// RFC 9449 §4.2 `ath`: base64url of the SHA-256 of the access token's ASCII.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// RFC 7638 §3: SHA-256 over the required members only, in lexicographic order, without
/// whitespace. `None` for a key type without public members to hash.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = Map::new();
    for m in members {
        canonical.insert(
            (*m).to_string(),
            Value::String(jwk.get(*m)?.as_str()?.to_string()),
        );
    }
    // serde_json's map is ordered by key and writes no whitespace.
    let text = serde_json::to_string(&Value::Object(canonical)).ok()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())))
}

fn same_target(htu: &str, expected: &str) -> bool {
    let strip = |raw: &str| {
        url::Url::parse(raw).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u
        })
    };
    match (strip(htu), strip(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Server nonces (RFC 9449 §8, §9): a MAC of the current time window under a key every
/// instance derives from the master key, so any instance accepts another's nonce without
/// shared state. A nonce is good for the window it was made in and the next one.
pub struct Nonces {
    key: [u8; 32],
    window_secs: i64,
}

impl Nonces {
    pub fn new(key: [u8; 32], window_secs: u64) -> Nonces {
        Nonces {
            key,
            window_secs: window_secs.max(1) as i64,
        }
    }

    fn mac(&self, window: i64) -> [u8; 32] {
        use hmac::digest::KeyInit;
        use hmac::Mac;
        // RFC 2104 §2: a key shorter than the block (64 bytes) is padded with zeros.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.key);
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new(&block.into());
        mac.update(&window.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The nonce to hand out now.
    pub fn current(&self, now: Timestamp) -> String {
        let window = now.div_euclid(self.window_secs);
        let mut raw = window.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.mac(window)[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was made by an instance of this deployment in this window or the last.
    pub fn accepts(&self, nonce: &str, now: Timestamp) -> bool {
        use subtle::ConstantTimeEq;
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        if raw.len() != 24 {
            return false;
        }
        let mut window_bytes = [0u8; 8];
        window_bytes.copy_from_slice(&raw[..8]);
        let window = i64::from_be_bytes(window_bytes);
        let current = now.div_euclid(self.window_secs);
        if window != current && window != current - 1 {
            return false;
        }
        bool::from(self.mac(window)[..16].ct_eq(&raw[8..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let Value::Object(map) = jwk else { panic!() };
        assert_eq!(
            thumbprint(&map).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn nonces_of_one_key_are_accepted_for_two_windows_only() {
        let a = Nonces::new([7; 32], 300);
        let b = Nonces::new([7; 32], 300);
        let other = Nonces::new([8; 32], 300);
        let n = a.current(1_000_000);
        assert!(b.accepts(&n, 1_000_000));
        assert!(b.accepts(&n, 1_000_000 + 300));
        assert!(!b.accepts(&n, 1_000_000 + 900));
        assert!(!other.accepts(&n, 1_000_000));
        assert!(!b.accepts("garbage", 1_000_000));
    }

    #[test]
    fn htu_ignores_query_and_fragment_and_normalises() {
        assert!(same_target(
            "https://AS.example.com:443/token?x=1",
            "https://as.example.com/token"
        ));
        assert!(!same_target(
            "https://as.example.com/other",
            "https://as.example.com/token"
        ));
    }
}
