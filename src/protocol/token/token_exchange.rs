//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a confidential
//! client trades a user's token (one of our access tokens or ID tokens) for an access token
//! to one of the APIs it is allowed, never with more scope, optionally naming who acts
//! (`act`, §4.1). No refresh token and no ID token are issued; every exchange is audited.
//!
//! Policy: the subject (and actor) token must be the exchanging client's own — an access
//! token issued to it or addressed to its client id, or an ID token issued to it — so a client
//! can never turn a token it obtained from another client into one in its own name; a
//! sender-constrained (DPoP) token is not exchanged; the target must be among the client's
//! resources (RFC 8707 `invalid_target`); the scope only narrows, within the client's own;
//! and the new token expires no later than the subject token.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::{new_jti, storage_failed, TokenContext, TokenResponse};
use crate::protocol::tokens::{check_access_token, Grant};
use crate::store::{AuditEvent, Client, Timestamp};

/// RFC 8693 §3.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A token presented as subject or actor, once verified.
struct Presented {
    sub: String,
    /// Scope of an access token; `None` for an ID token.
    scope: Option<Scope>,
    auth_time: Option<Timestamp>,
    amr: Vec<String>,
    acr: Option<String>,
    /// The presented token's own `act` (a delegation chain, RFC 8693 §4.1).
    act: Option<Value>,
    exp: Timestamp,
}

fn invalid(description: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request(description)
}

/// RFC 8693 §2.2.2: an invalid or unacceptable token is `invalid_request`.
async fn verify(
    ctx: &TokenContext<'_>,
    client: &Client,
    token: &str,
    token_type: &str,
    role: &str,
) -> Result<Presented, OAuthError> {
    let refused = || {
        invalid(format!(
            "the {role} token is invalid, expired or not acceptable"
        ))
    };
    let (payload, header, _) = ctx.ring.verify(token).map_err(|_| refused())?;
    let set = payload.claims_set();
    let text = |name: &str| set.get(name).and_then(Value::as_str).map(str::to_string);
    let amr: Vec<String> = set
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match token_type {
        ACCESS_TOKEN_TYPE => {
            let claims = check_access_token(
                header.token_type(),
                &payload,
                &ctx.settings.issuer,
                None,
                ctx.now,
            )
            .map_err(|_| refused())?;
            if ctx.deny.is_denied(&claims.jti).await.map_err(storage_failed)? {
                return Err(refused());
            }
            // Policy: the client's own token (issued to it, or addressed to it). A token of
            // another client's — say, one it was handed — must not become one in its name.
            if claims.client_id != client.id && !claims.aud.contains(&client.id) {
                return Err(invalid(format!(
                    "the {role} token was issued to another client"
                )));
            }
            // RFC 9449: a bound token is useless without its key; an exchange must not
            // turn it into a bearer token (or one bound to another key).
            if claims.cnf_jkt.is_some() {
                return Err(invalid(format!(
                    "the {role} token is DPoP-bound and cannot be exchanged"
                )));
            }
            Ok(Presented {
                sub: claims.sub,
                scope: Some(claims.scope),
                auth_time: claims.auth_time,
                amr,
                acr: claims.acr,
                act: set.get("act").cloned(),
                exp: claims.exp,
            })
        }
        ID_TOKEN_TYPE => {
            // OIDC Core §3.1.3.7: ours, unexpired, and (as subject) issued to this client.
            let ours = text("iss").as_deref() == Some(ctx.settings.issuer.as_str());
            let live = set
                .get("exp")
                .and_then(Value::as_i64)
                .is_some_and(|e| e > ctx.now);
            let aud_ok = match set.get("aud") {
                Some(Value::String(a)) => *a == client.id,
                Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(&client.id)),
                _ => false,
            };
            let is_id_token = header.token_type() == Some("JWT") && set.contains_key("auth_time");
            // Subject or actor, an ID token issued to this client only.
            if !(ours && live && is_id_token && aud_ok) {
                return Err(refused());
            }
            Ok(Presented {
                sub: text("sub").ok_or_else(refused)?,
                scope: None,
                auth_time: set.get("auth_time").and_then(Value::as_i64),
                amr,
                acr: text("acr"),
                act: None,
                exp: set.get("exp").and_then(Value::as_i64).unwrap_or(ctx.now),
            })
        }
        other => Err(invalid(format!(
            "{role}_token_type {other:?} is not supported; use {ACCESS_TOKEN_TYPE} or {ID_TOKEN_TYPE}"
        ))),
    }
}

pub async fn exchange(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    // RFC 8693 §2.1 and §5: only a client that authenticated.
    if client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use token exchange",
        ));
    }
    let required = |name: &str| {
        params
            .get(name)
            .ok_or_else(|| invalid(format!("{name} is missing")))
    };
    let subject_token = required("subject_token")?;
    let subject_type = required("subject_token_type")?;
    if let Some(t) = params.get("requested_token_type") {
        if t != ACCESS_TOKEN_TYPE {
            return Err(invalid(format!(
                "requested_token_type {t:?} is not supported; this server issues {ACCESS_TOKEN_TYPE}"
            )));
        }
    }
    let target = exchange_target(ctx, client, params).await?;
    let subject = verify(ctx, client, subject_token, subject_type, "subject").await?;
    // RFC 8693 §2.1: actor_token_type comes with actor_token, and only with it.
    let actor = match (params.get("actor_token"), params.get("actor_token_type")) {
        (Some(token), Some(t)) => Some(verify(ctx, client, token, t, "actor").await?),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "actor_token and actor_token_type go together (RFC 8693 §2.1)",
            ))
        }
    };
    let user = match Uuid::parse_str(&subject.sub) {
        Ok(id) => ctx.store.get_user(id).await.map_err(storage_failed)?,
        Err(_) => None,
    }
    .filter(|u| !u.disabled && u.deleted_at.is_none())
    .ok_or_else(|| invalid("the subject token's subject is not an active user"))?;

    // Narrowing only: at most what the subject token carries (for an ID token, what the user
    // granted this client), within the client's own scope, then only the target's scopes.
    let ceiling = match subject.scope.clone() {
        Some(s) => s,
        None => Scope::parse(
            &ctx.store
                .get_consent(user.id, &client.id)
                .await
                .map_err(storage_failed)?
                .unwrap_or_default(),
        )
        .unwrap_or_default(),
    };
    let allowed = Scope::parse(&client.scope).unwrap_or_default();
    let ceiling = Scope::parse(
        &ceiling
            .iter()
            .filter(|s| allowed.contains(s))
            .collect::<Vec<_>>()
            .join(" "),
    )
    .unwrap_or_default();
    let scope = match params.get("scope") {
        None => ceiling.clone(),
        Some(raw) => {
            let asked = Scope::parse(raw)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if !asked.is_subset_of(&ceiling) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "token exchange narrows the scope; it never adds to it",
                ));
            }
            asked
        }
    };
    let scope = crate::protocol::resource::narrow(&scope, &target);
    if scope.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!(
                "none of the subject token's scopes belong to {:?}",
                target.identifier
            ),
        ));
    }
    // RFC 8693 §4.1: the actor, with the subject token's earlier actors nested inside; with
    // no new actor, the subject token's chain is kept.
    let act = match actor.as_ref() {
        Some(a) => {
            let mut act = json!({ "sub": a.sub });
            if let Some(prior) = &subject.act {
                act["act"] = prior.clone();
            }
            Some(act)
        }
        None => subject.act.clone(),
    };
    // The new token lives no longer than the subject token: an exchange (or a chain of them)
    // never outlasts the revocation of what it came from.
    let remaining = subject.exp - ctx.now;
    if remaining <= 0 {
        return Err(invalid("the subject token has expired"));
    }
    let mut target = target;
    let ttl = target
        .access_token_ttl_secs
        .unwrap_or(ctx.settings.tokens.access_token_ttl_secs as i64);
    target.access_token_ttl_secs = Some(ttl.min(remaining));
    let grant = Grant {
        issuer: &ctx.settings.issuer,
        client_id: &client.id,
        user: Some(&user),
        scope: &scope,
        auth_time: subject.auth_time.unwrap_or(ctx.now),
        amr: &subject.amr,
        acr: subject.acr.as_deref(),
        nonce: None,
        sid: None,
        now: ctx.now,
        resource: Some(&target),
        act: act.as_ref(),
    };
    let mut tokens = ctx.mint(client, &grant, &new_jti(), None)?;
    // RFC 8693 §2.2.1.
    tokens.issued_token_type = Some(ACCESS_TOKEN_TYPE);

    let mut event = AuditEvent::new("token.exchanged", ctx.now);
    event.client_id = Some(client.id.clone());
    event.subject = Some(user.id.to_string());
    event.detail = json!({
        "resource": target.identifier,
        "scope": scope.to_string(),
        "subject_token_type": subject_type,
        "actor": actor.as_ref().map(|a| a.sub.clone()),
    });
    ctx.store
        .record_audit(&event)
        .await
        .map_err(storage_failed)?;
    Ok(tokens)
}

/// RFC 8693 §2.1: `resource` (an RFC 8707 URI) and `audience` (here: the same registered
/// identifiers) name the one API the new token is for; it must be among the client's.
async fn exchange_target(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<crate::store::ApiResource, OAuthError> {
    let invalid_target = |d: &str| OAuthError::new(ErrorCode::InvalidTarget, d);
    let audiences = params.get_all("audience");
    let resource = ctx.target(client, params, &[]).await?;
    match (resource, audiences.as_slice()) {
        (Some(r), []) => Ok(r),
        (Some(r), [a]) if *a == r.identifier => Ok(r),
        (Some(_), _) => Err(invalid_target(
            "resource and audience name different targets; name one",
        )),
        (None, [a]) => {
            let mut as_resource = Params::default();
            as_resource.set("resource", Some((*a).to_string()));
            ctx.target(client, &as_resource, &[])
                .await?
                .ok_or_else(|| invalid_target("unknown audience"))
        }
        (None, []) => Err(invalid_target(
            "name the resource (or audience) the new token is for",
        )),
        (None, _) => Err(invalid_target("name one audience per request")),
    }
}
