//! `grant_type=refresh_token` (RFC 6749 §6, RFC 9700 §4.14.2): every use rotates the token;
//! presenting a used one is reuse and revokes the whole family, except inside an optional
//! short grace window that answers with the very same successor.

use uuid::Uuid;

use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::{new_jti, storage_failed, TokenContext, TokenResponse};
use crate::protocol::tokens::Grant;
use crate::random;
use crate::store::{AuditEvent, Client, RefreshGrant, RefreshToken};

const BAD_TOKEN: &str = "the refresh token is invalid, expired or revoked";

/// Refresh tokens go to clients registered for the grant that asked for `offline_access`
/// (OIDC Core §11) or that are configured to always get them.
pub fn may_issue(client: &Client, scope: &Scope) -> bool {
    client.grant_types.iter().any(|g| g == "refresh_token")
        && (scope.contains("offline_access") || client.always_issue_refresh_token)
}

/// The grant a family starts from.
pub struct FirstToken<'a> {
    pub client_id: &'a str,
    pub user_id: Uuid,
    pub scope: &'a Scope,
    pub session_id_hash: Option<&'a str>,
    pub auth_code_hash: Option<&'a str>,
    pub auth_time: i64,
    /// How the user signed in; every token of the family repeats it.
    pub amr: &'a [String],
    pub acr: Option<&'a str>,
    pub access_token_jti: &'a str,
    /// Written with the token (the API's `user.signed_in`).
    pub events: &'a [crate::events::Event],
    /// RFC 8707: the resources granted at authorization.
    pub resources: &'a [String],
    /// RFC 9449 §5: the key a public client's refresh tokens are bound to.
    pub dpop_jkt: Option<&'a str>,
}

/// Starts a new family and returns its first token.
pub async fn issue_first(
    ctx: &TokenContext<'_>,
    first: &FirstToken<'_>,
) -> Result<String, OAuthError> {
    let value = random::token(32);
    let t = &ctx.settings.tokens;
    let family_expires_at = ctx.now + t.refresh_absolute_ttl_secs as i64;
    let token = RefreshToken {
        id: Uuid::now_v7(),
        token_hash: random::hash_secret(&value),
        family_id: Uuid::now_v7(),
        parent_id: None,
        generation: 0,
        client_id: first.client_id.to_string(),
        user_id: first.user_id,
        scope: first.scope.to_string(),
        session_id_hash: first.session_id_hash.map(str::to_string),
        auth_code_hash: first.auth_code_hash.map(str::to_string),
        user_agent: None,
        auth_time: first.auth_time,
        created_at: ctx.now,
        expires_at: (ctx.now + t.refresh_idle_ttl_secs as i64).min(family_expires_at),
        family_expires_at,
        used_at: None,
        revoked_at: None,
        access_token_jti: Some(first.access_token_jti.to_string()),
        successor_sealed: None,
        reuse_count: 0,
        amr: first.amr.to_vec(),
        acr: first.acr.map(str::to_string),
        resources: first.resources.to_vec(),
        dpop_jkt: first.dpop_jkt.map(str::to_string),
    };
    ctx.store
        .create_refresh_token(&token, first.events)
        .await
        .map_err(storage_failed)?;
    Ok(value)
}

pub async fn exchange(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    // One read for the token, its user and its session's `sid`.
    let RefreshGrant {
        token: stored,
        user,
        sid,
    } = ctx
        .store
        .get_refresh_grant(&random::hash_secret(presented))
        .await
        .map_err(storage_failed)?
        .ok_or_else(|| OAuthError::invalid_grant(BAD_TOKEN))?;
    // RFC 6749 §6: the token is bound to the client it was issued to.
    if stored.client_id != client.id || stored.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    // RFC 6749 §6: the scope may be narrowed, never widened.
    let granted = Scope::parse(&stored.scope).unwrap_or_default();
    let requested = match params.get("scope") {
        None => Ok(granted.clone()),
        Some(raw) => match Scope::parse(raw) {
            Ok(asked) if asked.is_subset_of(&granted) => Ok(asked),
            Ok(_) => Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "the scope may not exceed what was originally granted",
            )),
            Err(e) => Err(OAuthError::new(ErrorCode::InvalidScope, e.to_string())),
        },
    };
    // A used token is reuse whatever else the request says (a wrong scope must not spare
    // the family).
    if stored.used_at.is_some() {
        return match requested {
            Ok(scope) => redeem_used(ctx, client, &stored, &scope).await,
            Err(_) => {
                revoke_family(ctx, &stored, "refresh.reuse_detected").await;
                Err(OAuthError::invalid_grant(BAD_TOKEN))
            }
        };
    }
    let scope = requested?;
    if ctx.now >= stored.expires_at || ctx.now >= stored.family_expires_at {
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    check_binding(ctx, &stored)?;
    // RFC 8707 §2.2: any resource granted at authorization, one per request.
    let target = ctx.target(client, params, &stored.resources).await?;
    let user = user
        .filter(is_active)
        .ok_or_else(|| OAuthError::invalid_grant(BAD_TOKEN))?;

    let value = random::token(32);
    let jti = new_jti();
    let successor = RefreshToken {
        id: Uuid::now_v7(),
        token_hash: random::hash_secret(&value),
        parent_id: Some(stored.id),
        generation: stored.generation + 1,
        created_at: ctx.now,
        expires_at: (ctx.now + ctx.settings.tokens.refresh_idle_ttl_secs as i64)
            .min(stored.family_expires_at),
        used_at: None,
        revoked_at: None,
        access_token_jti: Some(jti.clone()),
        successor_sealed: None,
        reuse_count: 0,
        ..stored.clone()
    };
    let sealed = (ctx.settings.tokens.refresh_grace_secs > 0)
        .then(|| ctx.master.seal(successor.id.as_bytes(), value.as_bytes()));
    let won = ctx
        .store
        .rotate_refresh_token(stored.id, &successor, sealed.as_deref(), ctx.now)
        .await
        .map_err(storage_failed)?;
    if !won {
        // Another request rotated it a moment ago: that makes this one a reuse (or, inside
        // the grace window, a second redemption answered with the same successor).
        let again = ctx
            .store
            .get_refresh_token(&stored.token_hash)
            .await
            .map_err(storage_failed)?
            .ok_or_else(|| OAuthError::invalid_grant(BAD_TOKEN))?;
        return redeem_used(ctx, client, &again, &scope).await;
    }
    let mut grant = grant_for(ctx, client, &user, &stored, &scope);
    grant.sid = sid.as_deref();
    grant.resource = target.as_ref();
    ctx.mint(client, &grant, &jti, Some(value))
}

/// RFC 9449 §5: a refresh token bound to a key is usable only with a proof of that key.
fn check_binding(ctx: &TokenContext<'_>, stored: &RefreshToken) -> Result<(), OAuthError> {
    match (&stored.dpop_jkt, ctx.dpop_jkt) {
        (None, _) => Ok(()),
        (Some(bound), Some(presented)) if bound == presented => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            "the refresh token is bound to another DPoP key",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant(
            "the refresh token is bound to a DPoP key: send a DPoP proof of it",
        )),
    }
}

/// A token that was already rotated: the grace window's same successor, or reuse.
async fn redeem_used(
    ctx: &TokenContext<'_>,
    client: &Client,
    stored: &RefreshToken,
    scope: &Scope,
) -> Result<TokenResponse, OAuthError> {
    let grace = ctx.settings.tokens.refresh_grace_secs as i64;
    let within = stored.used_at.is_some_and(|used| ctx.now - used <= grace);
    if grace > 0 && within && stored.revoked_at.is_none() {
        if let Some(sealed) = &stored.successor_sealed {
            let max = i64::from(ctx.settings.tokens.refresh_grace_reuse_count);
            if ctx
                .store
                .claim_grace_reuse(stored.id, max)
                .await
                .map_err(storage_failed)?
            {
                let successor = ctx
                    .store
                    .refresh_successor(stored.id)
                    .await
                    .map_err(storage_failed)?;
                if let Some(successor) = successor.filter(|s| s.used_at.is_none()) {
                    if let Ok(value) = ctx.master.open(successor.id.as_bytes(), sealed) {
                        let value =
                            String::from_utf8(value).map_err(|_| OAuthError::server_error())?;
                        check_binding(ctx, stored)?;
                        let user = active_user(ctx, stored).await?;
                        let grant = grant_for(ctx, client, &user, stored, scope);
                        return ctx.mint(client, &grant, &new_jti(), Some(value));
                    }
                }
            }
        }
    }
    revoke_family(ctx, stored, "refresh.reuse_detected").await;
    Err(OAuthError::invalid_grant(BAD_TOKEN))
}

/// Revokes the family of `token` and denies the access tokens it issued.
pub async fn revoke_family(ctx: &TokenContext<'_>, token: &RefreshToken, event: &str) {
    // RFC 9700 §4.14.2: a reused refresh token revokes its family; the event is written with
    // the revocation.
    let reuse = (event == "refresh.reuse_detected").then(|| {
        crate::events::Event::new(crate::events::EventType::TokenRefreshReuseDetected, ctx.now)
            .subject(token.user_id)
            .client(Some(&token.client_id))
            .data(serde_json::json!({"familyId": token.family_id, "generation": token.generation}))
    });
    match ctx
        .store
        .revoke_refresh_family(token.family_id, ctx.now, reuse.as_slice())
        .await
    {
        Ok(jtis) => {
            let until = ctx.now + ctx.settings.tokens.access_token_ttl_secs as i64;
            for jti in jtis {
                let _ = ctx.deny.deny(&jti, until, ctx.now).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "could not revoke a refresh family"),
    }
    let mut audit = AuditEvent::new(event, ctx.now);
    audit.client_id = Some(token.client_id.clone());
    audit.subject = Some(token.user_id.to_string());
    audit.detail = serde_json::json!({"family": token.family_id, "generation": token.generation});
    let _ = ctx.store.record_audit(&audit).await;
    if event == "refresh.reuse_detected" {
        ctx.metrics
            .count("portcullis_refresh_reuse_detected_total", &[]);
        tracing::warn!(client_id = %token.client_id, family = %token.family_id, "refresh token reuse: family revoked");
    }
}

async fn active_user(
    ctx: &TokenContext<'_>,
    token: &RefreshToken,
) -> Result<crate::store::User, OAuthError> {
    ctx.store
        .get_user(token.user_id)
        .await
        .map_err(storage_failed)?
        .filter(is_active)
        .ok_or_else(|| OAuthError::invalid_grant(BAD_TOKEN))
}

/// A disabled or deleted user's refresh tokens mint nothing.
fn is_active(user: &crate::store::User) -> bool {
    !user.disabled && user.deleted_at.is_none()
}

fn grant_for<'a>(
    ctx: &'a TokenContext<'_>,
    client: &'a Client,
    user: &'a crate::store::User,
    token: &'a RefreshToken,
    scope: &'a Scope,
) -> Grant<'a> {
    Grant {
        issuer: &ctx.settings.issuer,
        client_id: &client.id,
        user: Some(user),
        scope,
        auth_time: token.auth_time,
        // OIDC Core §12.2: the ID token of a refresh says how the user signed in originally.
        amr: &token.amr,
        acr: token.acr.as_deref(),
        // OIDC Core §12.2: no nonce in ID tokens from a refresh.
        nonce: None,
        sid: None,
        now: ctx.now,
        resource: None,
        act: None,
    }
}
