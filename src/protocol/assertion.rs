//! JWT client assertions (RFC 7523 §2.2 and §3, OIDC Core §9 `private_key_jwt`).

use josekit::jwk::Jwk;
use josekit::jws::{EdDSA, JwsVerifier, ES256, ES384, PS256, RS256};
use serde_json::Value;

use crate::protocol::error::OAuthError;
use crate::store::Timestamp;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Assertions may live at most this long (their `exp` minus now), to bound the replay cache.
pub const MAX_ASSERTION_LIFETIME: i64 = 600;

/// Parses a JWK Set, keeping the keys usable for signature checks (private members refused).
pub fn parse_jwks(raw: &str) -> Result<Vec<Jwk>, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for k in keys {
        let map = k.as_object().ok_or("a key is not a JSON object")?;
        if ["d", "p", "q", "k"].iter().any(|m| map.contains_key(*m)) {
            return Err("a key has private members; register public keys only".into());
        }
        out.push(Jwk::from_map(map.clone()).map_err(|e| e.to_string())?);
    }
    if out.is_empty() {
        return Err("the key set is empty".into());
    }
    Ok(out)
}

pub(crate) fn verifier_for(alg: &str, jwk: &Jwk) -> Option<Box<dyn JwsVerifier>> {
    Some(match alg {
        "RS256" => Box::new(RS256.verifier_from_jwk(jwk).ok()?),
        "PS256" => Box::new(PS256.verifier_from_jwk(jwk).ok()?),
        "ES256" => Box::new(ES256.verifier_from_jwk(jwk).ok()?),
        "ES384" => Box::new(ES384.verifier_from_jwk(jwk).ok()?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(jwk).ok()?),
        _ => return None,
    })
}

/// The `sub` of an assertion, unverified: only to know which client's keys to try.
pub fn claimed_client(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sub")?.as_str().map(str::to_string)
}

/// A verified assertion: its `jti` and `exp`, for the replay check.
#[derive(Debug)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: Timestamp,
}

/// RFC 7523 §3: signed by one of the client's keys; `iss` and `sub` are the client id; `aud`
/// names this server (the token endpoint URL or the issuer); `exp` in the future and not too
/// far; `jti` present. The replay check on `jti` is the caller's (it needs storage).
pub fn verify(
    assertion: &str,
    client_id: &str,
    keys: &[Jwk],
    audiences: &[&str],
    now: Timestamp,
) -> Result<VerifiedAssertion, OAuthError> {
    let fail = |why: &str| OAuthError::invalid_client(format!("client assertion rejected: {why}"));
    let header = josekit::jwt::decode_header(assertion).map_err(|_| fail("malformed JWT"))?;
    let alg = header
        .claim("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("no alg"))?;
    let kid = header.claim("kid").and_then(Value::as_str);
    let mut verified = None;
    for key in keys {
        if kid.is_some() && key.key_id() != kid {
            continue;
        }
        if key.algorithm().is_some_and(|a| a != alg) {
            continue;
        }
        let Some(verifier) = verifier_for(alg, key) else {
            continue;
        };
        if let Ok((payload, _)) = josekit::jwt::decode_with_verifier(assertion, &*verifier) {
            verified = Some(payload);
            break;
        }
    }
    let payload =
        verified.ok_or_else(|| fail("signature does not verify with the registered keys"))?;
    let claims = payload.claims_set();
    let text = |n: &str| claims.get(n).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(fail("iss and sub must both be the client_id"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
        _ => false,
    };
    if !aud_ok {
        return Err(fail("aud must be the token endpoint URL or the issuer"));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| fail("no exp"))?;
    if exp <= now {
        return Err(fail("expired"));
    }
    if exp - now > MAX_ASSERTION_LIFETIME {
        return Err(fail("exp is too far in the future (at most 10 minutes)"));
    }
    if claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|nbf| nbf > now + 60)
    {
        return Err(fail("not valid yet"));
    }
    let jti = text("jti").ok_or_else(|| fail("no jti"))?.to_string();
    Ok(VerifiedAssertion { jti, exp })
}
