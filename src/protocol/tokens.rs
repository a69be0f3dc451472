//! Minting and checking signed tokens: ID tokens (OIDC Core §2) and JWT access tokens
//! (RFC 9068). Claims only; signing is the key ring's.

use josekit::jwt::JwtPayload;
use serde_json::{json, Map, Value};

use crate::keys::SigningAlg;
use crate::protocol::claims::user_claims;
use crate::protocol::scope::Scope;
use crate::store::{Timestamp, User};

/// What a grant decided; the input to minting.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The user, for user grants; `None` when the client acts for itself.
    pub user: Option<&'a User>,
    pub scope: &'a Scope,
    pub auth_time: Timestamp,
    /// RFC 8176 methods of the sign-in, and the `acr` it reached (`1fa`, `mfa`, `phr`).
    pub amr: &'a [String],
    pub acr: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub now: Timestamp,
    /// RFC 8707: the API the access token is for; `None` is the deployment's audience.
    pub resource: Option<&'a crate::store::ApiResource>,
    /// RFC 8693 §4.1: the actor of a token exchange.
    pub act: Option<&'a Value>,
}

fn payload(map: Map<String, Value>) -> JwtPayload {
    // Every value put in is a string, number, bool or array of strings, which `from_map`
    // accepts; an empty payload would be caught by the tests of every token.
    JwtPayload::from_map(map).unwrap_or_default()
}

/// RFC 9068 §2.2: `iss exp aud sub client_id iat jti`, plus `scope` and `auth_time`.
pub fn access_token_claims(grant: &Grant, audience: &str, ttl: i64, jti: &str) -> JwtPayload {
    let mut m = Map::new();
    m.insert("iss".into(), json!(grant.issuer));
    let sub = grant
        .user
        .map(|u| u.id.to_string())
        .unwrap_or_else(|| grant.client_id.to_string());
    m.insert("sub".into(), json!(sub));
    m.insert("aud".into(), json!(audience));
    m.insert("client_id".into(), json!(grant.client_id));
    m.insert("scope".into(), json!(grant.scope.to_string()));
    m.insert("iat".into(), json!(grant.now));
    m.insert("exp".into(), json!(grant.now + ttl));
    m.insert("jti".into(), json!(jti));
    if let Some(user) = grant.user {
        m.insert("auth_time".into(), json!(grant.auth_time));
        // The user's roles, for resource servers' authorization (RFC 9068 §2.2.3.1 lists
        // `roles` among the claims an access token may carry).
        m.insert("roles".into(), json!(user.roles));
        // RFC 9068 §2.2.1: `acr` and `amr` of the authentication, as in an ID token.
        if !grant.amr.is_empty() {
            m.insert("amr".into(), json!(grant.amr));
        }
        if let Some(acr) = grant.acr {
            m.insert("acr".into(), json!(acr));
        }
    }
    payload(m)
}

/// OIDC Core §2 and §3.1.3.6; profile and email claims when the scope asks (§5.4).
pub fn id_token_claims(
    grant: &Grant,
    user: &User,
    ttl: i64,
    alg: SigningAlg,
    access_token: &str,
) -> JwtPayload {
    let mut m = user_claims(user, grant.scope);
    m.insert("iss".into(), json!(grant.issuer));
    m.insert("aud".into(), json!(grant.client_id));
    m.insert("azp".into(), json!(grant.client_id));
    m.insert("iat".into(), json!(grant.now));
    m.insert("exp".into(), json!(grant.now + ttl));
    m.insert("auth_time".into(), json!(grant.auth_time));
    m.insert("at_hash".into(), json!(alg.left_half_hash(access_token)));
    if !grant.amr.is_empty() {
        m.insert("amr".into(), json!(grant.amr));
    }
    if let Some(acr) = grant.acr {
        m.insert("acr".into(), json!(acr));
    }
    if let Some(nonce) = grant.nonce {
        m.insert("nonce".into(), json!(nonce));
    }
    if let Some(sid) = grant.sid {
        m.insert("sid".into(), json!(sid));
    }
    payload(m)
}

/// The claims of an access token this provider accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub client_id: String,
    pub scope: Scope,
    pub jti: String,
    pub exp: Timestamp,
    /// When the user signed in (user tokens only).
    pub auth_time: Option<Timestamp>,
    /// The level that sign-in reached (`1fa`, `mfa`, `phr`), when the token carries one.
    pub acr: Option<String>,
    /// RFC 9449 §6.1: the thumbprint of the key a DPoP-bound token is bound to.
    pub cnf_jkt: Option<String>,
    /// The audiences (`aud`) of the token.
    pub aud: Vec<String>,
}

/// RFC 9068 §4: after the signature, check `typ`, `iss`, `aud` and `exp`. Without an
/// `audience` any audience will do (introspection answers for every API's tokens).
pub fn check_access_token(
    typ: Option<&str>,
    claims: &JwtPayload,
    issuer: &str,
    audience: Option<&str>,
    now: Timestamp,
) -> Result<AccessClaims, &'static str> {
    if !matches!(typ, Some("at+jwt") | Some("application/at+jwt")) {
        return Err("not an access token");
    }
    let set = claims.claims_set();
    let text = |name: &str| set.get(name).and_then(Value::as_str).map(str::to_string);
    if text("iss").as_deref() != Some(issuer) {
        return Err("issued by someone else");
    }
    let aud: Vec<String> = match set.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let aud_ok = match audience {
        Some(wanted) => aud.iter().any(|a| a == wanted),
        None => !aud.is_empty(),
    };
    if !aud_ok {
        return Err("not meant for this audience");
    }
    let exp = set.get("exp").and_then(Value::as_i64).ok_or("no expiry")?;
    if exp <= now {
        return Err("expired");
    }
    Ok(AccessClaims {
        sub: text("sub").ok_or("no subject")?,
        client_id: text("client_id").ok_or("no client_id")?,
        scope: Scope::parse(&text("scope").unwrap_or_default()).map_err(|_| "bad scope")?,
        jti: text("jti").ok_or("no jti")?,
        exp,
        auth_time: set.get("auth_time").and_then(Value::as_i64),
        acr: text("acr"),
        cnf_jkt: set
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
            .map(str::to_string),
        aud,
    })
}
