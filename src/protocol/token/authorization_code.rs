//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3).

use crate::protocol::error::OAuthError;
use crate::protocol::params::Params;
use crate::protocol::pkce::{self, Method};
use crate::protocol::scope::Scope;
use crate::protocol::token::{new_jti, refresh_token, storage_failed, TokenContext, TokenResponse};
use crate::protocol::tokens::Grant;
use crate::random;
use crate::store::{AuditEvent, AuthorizationCode, Client, Timestamp, User};

/// One description for every bad code, so a probe learns nothing about which check failed.
const BAD_CODE: &str = "the authorization code is invalid, expired, or was already used";

pub async fn exchange(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let code_hash = random::hash_secret(code);
    let stored = ctx
        .store
        .get_code(&code_hash)
        .await
        .map_err(storage_failed)?
        .ok_or_else(|| OAuthError::invalid_grant(BAD_CODE))?;

    // RFC 6749 §4.1.2: a code used twice revokes what was issued from it.
    if stored.used_at.is_some() {
        revoke_replayed(ctx, &stored).await;
        return Err(OAuthError::invalid_grant(BAD_CODE));
    }
    // RFC 6749 §4.1.3: the code must have been issued to this client.
    if stored.client_id != client.id {
        return Err(OAuthError::invalid_grant(BAD_CODE));
    }
    if ctx.now >= stored.expires_at {
        return Err(OAuthError::invalid_grant(BAD_CODE));
    }
    // RFC 6749 §4.1.3: redirect_uri must repeat the authorization request's, if it had one.
    match params.get("redirect_uri") {
        Some(uri) if uri != stored.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ))
        }
        None if stored.redirect_uri_given => {
            return Err(OAuthError::invalid_request(
                "redirect_uri is required: the authorization request had one",
            ))
        }
        _ => {}
    }
    // RFC 7636 §4.6, and RFC 9700 §2.1.1: a verifier without a challenge is refused too.
    match (&stored.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let method = stored
                .code_challenge_method
                .as_deref()
                .and_then(Method::parse)
                .unwrap_or(Method::S256);
            if !pkce::verify(method, challenge, verifier) {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is missing")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier sent, but the authorization request had no code_challenge",
            ))
        }
        (None, None) => {}
    }

    // RFC 9449 §10: a code bound to a key is redeemed only with a proof of that key.
    if let Some(bound) = &stored.dpop_jkt {
        if ctx.dpop_jkt != Some(bound.as_str()) {
            return Err(OAuthError::invalid_grant(
                "the code is bound to a DPoP key: send a DPoP proof of that key",
            ));
        }
    }
    // RFC 8707 §2.2: checked before the code is spent, so a wrong resource costs nothing.
    let target = ctx.target(client, params, &stored.resources).await?;
    let user = ctx
        .store
        .get_user(stored.user_id)
        .await
        .map_err(storage_failed)?
        .filter(|u| !u.disabled && u.deleted_at.is_none())
        .ok_or_else(|| OAuthError::invalid_grant(BAD_CODE))?;
    // The one atomic step: of concurrent redemptions exactly one passes.
    let jti = new_jti();
    if !ctx
        .store
        .consume_code(&code_hash, ctx.now, &jti)
        .await
        .map_err(storage_failed)?
    {
        if let Ok(Some(winner)) = ctx.store.get_code(&code_hash).await {
            revoke_replayed(ctx, &winner).await;
        }
        return Err(OAuthError::invalid_grant(BAD_CODE));
    }

    let scope = Scope::parse(&stored.scope).unwrap_or_default();
    let signed_in = UserGrant {
        user: &user,
        scope: &scope,
        session_id_hash: stored.session_id_hash.as_deref(),
        auth_code_hash: Some(&code_hash),
        auth_time: stored.auth_time,
        amr: &stored.amr,
        acr: stored.acr.as_deref(),
        nonce: stored.nonce.as_deref(),
        resources: &stored.resources,
        target: target.as_ref(),
    };
    mint_for_user(ctx, client, &signed_in, &jti).await
}

/// What a user's sign-in granted a client, as a redeemed authorization code (or an approved
/// device code, RFC 8628) carries it into the tokens.
pub struct UserGrant<'a> {
    pub user: &'a User,
    pub scope: &'a Scope,
    /// The browser session of the sign-in: the ID token's `sid`, and refresh tokens bound to it.
    pub session_id_hash: Option<&'a str>,
    /// The code redeemed, so that a replay of it revokes the refresh tokens it issued.
    pub auth_code_hash: Option<&'a str>,
    pub auth_time: Timestamp,
    pub amr: &'a [String],
    pub acr: Option<&'a str>,
    pub nonce: Option<&'a str>,
    /// RFC 8707: the resources granted at authorization, and the one this token is for.
    pub resources: &'a [String],
    pub target: Option<&'a crate::store::ApiResource>,
}

/// The access token (with `jti`), an ID token for OpenID scopes (with the session's `sid`),
/// and a refresh token as configured for the client.
pub async fn mint_for_user(
    ctx: &TokenContext<'_>,
    client: &Client,
    g: &UserGrant<'_>,
    jti: &str,
) -> Result<TokenResponse, OAuthError> {
    let sid = match g.session_id_hash {
        Some(h) => ctx
            .store
            .get_session(h)
            .await
            .map_err(storage_failed)?
            .map(|s| s.sid),
        None => None,
    };
    let grant = Grant {
        issuer: &ctx.settings.issuer,
        client_id: &client.id,
        user: Some(g.user),
        scope: g.scope,
        auth_time: g.auth_time,
        amr: g.amr,
        acr: g.acr,
        nonce: g.nonce,
        sid: sid.as_deref(),
        now: ctx.now,
        resource: g.target,
        act: None,
    };
    let refresh = if refresh_token::may_issue(client, g.scope) {
        let first = refresh_token::FirstToken {
            client_id: &client.id,
            user_id: g.user.id,
            scope: g.scope,
            session_id_hash: g.session_id_hash,
            auth_code_hash: g.auth_code_hash,
            auth_time: g.auth_time,
            amr: g.amr,
            acr: g.acr,
            access_token_jti: jti,
            events: &[],
            resources: g.resources,
            // RFC 9449 §5: public clients' refresh tokens are bound to the proof's key
            // (a confidential client's are bound to its authentication already).
            dpop_jkt: ctx.dpop_jkt.filter(|_| client.is_public()),
        };
        Some(refresh_token::issue_first(ctx, &first).await?)
    } else {
        None
    };
    ctx.mint(client, &grant, jti, refresh)
}

/// Denies the access token issued from the code and revokes its refresh tokens.
async fn revoke_replayed(ctx: &TokenContext<'_>, code: &AuthorizationCode) {
    let until = ctx.now + ctx.settings.tokens.access_token_ttl_secs as i64;
    if let Some(jti) = &code.access_token_jti {
        if let Err(e) = ctx.deny.deny(jti, until, ctx.now).await {
            tracing::error!(error = %e, "could not deny the access token of a replayed code");
        }
    }
    match ctx
        .store
        .revoke_tokens_from_code(&code.code_hash, ctx.now)
        .await
    {
        Ok(jtis) => {
            for jti in jtis {
                let _ = ctx.deny.deny(&jti, until, ctx.now).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not revoke the refresh tokens of a replayed code")
        }
    }
    let mut event = AuditEvent::new("code.replayed", ctx.now);
    event.client_id = Some(code.client_id.clone());
    event.subject = Some(code.user_id.to_string());
    let _ = ctx.store.record_audit(&event).await;
    tracing::warn!(client_id = %code.client_id, "authorization code replayed; tokens revoked");
}
