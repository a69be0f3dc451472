//! What a resource server needs to accept Portcullis access tokens, with ordinary libraries
//! only (josekit, reqwest, poem): the JWKS fetched from discovery and cached, fetched again
//! when a token names a key it does not know (rotation); RFC 9068 checks (`typ`, `iss`,
//! `aud`, `exp`), the scopes a route needs, and for DPoP-bound tokens (RFC 9449 §7) a fresh
//! proof of the bound key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::{EdDSA, JwsVerifier, ES256, ES384, PS256, RS256};
use poem::http::{HeaderValue, StatusCode};
use poem::web::Data;
use poem::{handler, EndpointExt, Request, Response, Route};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Algorithms this server checks, for access tokens and DPoP proofs alike.
const ALGS: [&str; 5] = ["ES256", "ES384", "PS256", "RS256", "EdDSA"];
/// How long the JWKS is trusted before it is fetched again (keep it below the issuer's
/// `Cache-Control` max-age); an unknown `kid` is looked up at most this often.
const JWKS_TTL: Duration = Duration::from_secs(300);
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// How old a DPoP proof may be, and how far a clock may be off.
const PROOF_MAX_AGE: i64 = 60;
const SKEW: i64 = 5;

pub struct Guard {
    issuer: String,
    /// This API's resource identifier: tokens must name it in `aud`.
    audience: String,
    /// This server's own URL as clients call it, for the proofs' `htu`.
    public_url: String,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// How often a token naming an unknown key may make the JWKS be fetched again.
    refetch_every: Duration,
    /// DPoP proof ids seen within their validity window (one instance; share it in Redis
    /// when the API runs on several).
    seen: Mutex<HashMap<String, i64>>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Jwk>,
    fetched: Option<Instant>,
}

/// Why a request is refused, and how to say it (RFC 6750 §3, RFC 9449 §7.1).
#[derive(Debug)]
pub enum Refusal {
    InvalidToken(String),
    InsufficientScope(String),
    InvalidProof(String),
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn verifier(alg: &str, jwk: &Jwk) -> Option<Box<dyn JwsVerifier>> {
    Some(match alg {
        "ES256" => Box::new(ES256.verifier_from_jwk(jwk).ok()?),
        "ES384" => Box::new(ES384.verifier_from_jwk(jwk).ok()?),
        "PS256" => Box::new(PS256.verifier_from_jwk(jwk).ok()?),
        "RS256" => Box::new(RS256.verifier_from_jwk(jwk).ok()?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(jwk).ok()?),
        _ => return None,
    })
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// RFC 7638 JWK thumbprint.
fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut m = Map::new();
    for name in members {
        m.insert((*name).into(), jwk.get(*name)?.clone());
    }
    let text = serde_json::to_string(&Value::Object(m)).ok()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())))
}

impl Guard {
    pub fn new(issuer: &str, audience: &str, public_url: &str) -> Guard {
        Guard {
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: audience.to_string(),
            public_url: public_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            keys: RwLock::new(Keys::default()),
            refetch_every: REFETCH_AT_MOST_EVERY,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Shortens (in tests) how often unknown keys are looked up.
    #[allow(dead_code)]
    pub fn refetch_unknown_keys_every(mut self, every: Duration) -> Guard {
        self.refetch_every = every;
        self
    }

    fn cached(&self, kid: &str) -> (Option<Jwk>, bool) {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let fresh = keys.fetched.is_some_and(|t| t.elapsed() < JWKS_TTL);
        let may_refetch = keys
            .fetched
            .is_none_or(|t| t.elapsed() >= self.refetch_every);
        match keys.by_kid.get(kid) {
            Some(k) if fresh => (Some(k.clone()), false),
            found => (found.cloned(), may_refetch),
        }
    }

    /// The issuer's key `kid`: from the cache, or from the JWKS named by discovery.
    async fn key(&self, kid: &str) -> Option<Jwk> {
        let (found, refetch) = self.cached(kid);
        if !refetch {
            return found;
        }
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
                *cache = Keys {
                    by_kid: keys,
                    fetched: Some(Instant::now()),
                };
                cache.by_kid.get(kid).cloned()
            }
            // The issuer is unreachable: keep using what was fetched before.
            Err(_) => found,
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Jwk>, reqwest::Error> {
        let discovery: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await?
            .json()
            .await?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let jwks: Value = self.http.get(jwks_uri).send().await?.json().await?;
        let mut out = HashMap::new();
        for k in jwks["keys"].as_array().into_iter().flatten() {
            if let (Some(kid), Some(map)) = (k["kid"].as_str(), k.as_object()) {
                if let Ok(jwk) = Jwk::from_map(map.clone()) {
                    out.insert(kid.to_string(), jwk);
                }
            }
        }
        Ok(out)
    }

    /// The token's claims when it may call `method path` with `scope`.
    pub async fn check(&self, req: &Request, scope: &str) -> Result<Value, Refusal> {
        let invalid = |m: &str| Refusal::InvalidToken(m.to_string());
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| invalid("no access token"))?;
        let (scheme, token) = auth.split_once(' ').ok_or_else(|| invalid("malformed"))?;
        let dpop = scheme.eq_ignore_ascii_case("dpop");
        if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid("use the Bearer or DPoP scheme"));
        }
        let token = token.trim();
        // RFC 9068 §4: signature by the issuer's key, `typ` at+jwt.
        let header = josekit::jwt::decode_header(token).map_err(|_| invalid("not a JWT"))?;
        let kid = header
            .claim("kid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let alg = header
            .claim("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !ALGS.contains(&alg) {
            return Err(invalid("unsupported algorithm"));
        }
        let jwk = self
            .key(kid)
            .await
            .ok_or_else(|| invalid("unknown signing key"))?;
        let v = verifier(alg, &jwk).ok_or_else(|| invalid("unusable signing key"))?;
        let (payload, header) =
            josekit::jwt::decode_with_verifier(token, &*v).map_err(|_| invalid("bad signature"))?;
        if !matches!(header.token_type(), Some("at+jwt" | "application/at+jwt")) {
            return Err(invalid("not an access token"));
        }
        let claims = Value::Object(payload.claims_set().clone());
        if claims["iss"].as_str() != Some(self.issuer.as_str()) {
            return Err(invalid("wrong issuer"));
        }
        let aud_ok = match &claims["aud"] {
            Value::String(a) => *a == self.audience,
            Value::Array(l) => l.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid("not meant for this API"));
        }
        if claims["exp"].as_i64().is_none_or(|exp| exp <= now()) {
            return Err(invalid("expired"));
        }
        // RFC 9449 §7: a bound token needs the DPoP scheme and a proof of its key; a bearer
        // token must not come with the DPoP scheme.
        match (claims["cnf"]["jkt"].as_str(), dpop) {
            (Some(jkt), true) => self.check_proof(req, token, jkt)?,
            (Some(_), false) => return Err(invalid("a DPoP-bound token needs the DPoP scheme")),
            (None, true) => return Err(invalid("not a DPoP-bound token")),
            (None, false) => {}
        }
        let granted = claims["scope"].as_str().unwrap_or_default();
        if !granted.split(' ').any(|s| s == scope) {
            return Err(Refusal::InsufficientScope(format!("needs scope {scope}")));
        }
        Ok(claims)
    }

    /// RFC 9449 §4.3: the proof's header, signature, `htm`, `htu`, `iat`, `ath`, `jti`, and
    /// that its key is the one the token is bound to.
    fn check_proof(&self, req: &Request, token: &str, jkt: &str) -> Result<(), Refusal> {
        let bad = |m: &str| Refusal::InvalidProof(m.to_string());
        let mut all = req.headers().get_all("dpop").iter();
        let proof = all
            .next()
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| bad("a DPoP-bound token needs a DPoP proof"))?;
        if all.next().is_some() {
            return Err(bad("one DPoP header only"));
        }
        let header = proof
            .split('.')
            .next()
            .and_then(b64_json)
            .ok_or_else(|| bad("malformed"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") || !ALGS.contains(&alg) {
            return Err(bad("typ must be dpop+jwt, alg asymmetric"));
        }
        let jwk_map = header
            .get("jwk")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no jwk"))?;
        if jwk_map.contains_key("d") || thumbprint(jwk_map).as_deref() != Some(jkt) {
            return Err(bad("the proof's key is not the token's"));
        }
        let jwk = Jwk::from_map(jwk_map.clone()).map_err(|_| bad("bad jwk"))?;
        let v = verifier(alg, &jwk).ok_or_else(|| bad("bad jwk"))?;
        let (payload, _) =
            josekit::jws::deserialize_compact(proof, &*v).map_err(|_| bad("bad signature"))?;
        let c: Value = serde_json::from_slice(&payload).map_err(|_| bad("malformed"))?;
        let url = format!("{}{}", self.public_url, req.uri().path());
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        let iat = c["iat"].as_i64().unwrap_or(0);
        let t = now();
        if c["htm"].as_str() != Some(req.method().as_str())
            || c["htu"]
                .as_str()
                .map(|u| u.split(['?', '#']).next().unwrap_or(u))
                != Some(&url)
            || c["ath"].as_str() != Some(ath.as_str())
            || iat > t + SKEW
            || iat < t - PROOF_MAX_AGE - SKEW
        {
            return Err(bad("the proof is not for this request"));
        }
        let jti = c["jti"].as_str().ok_or_else(|| bad("no jti"))?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, until| *until > t);
        if seen
            .insert(format!("{jkt}.{jti}"), iat + PROOF_MAX_AGE + SKEW)
            .is_some()
        {
            return Err(bad("the proof was used before"));
        }
        Ok(())
    }
}

impl Refusal {
    pub fn into_response(self) -> Response {
        let (status, challenge, code, message) = match self {
            Refusal::InvalidToken(m) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer error=\"invalid_token\", error_description=\"{m}\""),
                "invalid_token",
                m,
            ),
            Refusal::InsufficientScope(m) => (
                StatusCode::FORBIDDEN,
                format!("Bearer error=\"insufficient_scope\", error_description=\"{m}\""),
                "insufficient_scope",
                m,
            ),
            Refusal::InvalidProof(m) => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "DPoP error=\"invalid_dpop_proof\", error_description=\"{m}\", algs=\"{}\"",
                    ALGS.join(" ")
                ),
                "invalid_dpop_proof",
                m,
            ),
        };
        let mut resp = Response::builder()
            .status(status)
            .content_type("application/json")
            .body(json!({"error": code, "error_description": message}).to_string());
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert("www-authenticate", v);
        }
        resp
    }
}

/// `GET /orders`: needs `orders:read`.
#[handler]
async fn orders(req: &Request, guard: Data<&Arc<Guard>>) -> Response {
    match guard.check(req, "orders:read").await {
        Ok(claims) => Response::builder()
            .content_type("application/json")
            .body(json!({"customer": claims["sub"], "orders": []}).to_string()),
        Err(refusal) => refusal.into_response(),
    }
}

/// The API's routes.
pub fn app(guard: Arc<Guard>) -> impl poem::Endpoint {
    Route::new().at("/orders", poem::get(orders)).data(guard)
}
