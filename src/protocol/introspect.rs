//! Token introspection (RFC 7662) and revocation (RFC 7009): what a token is, and ending it.

use serde_json::{json, Value};

use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::token::refresh_token::revoke_family;
use crate::protocol::token::{storage_failed, TokenContext};
use crate::protocol::tokens::check_access_token;
use crate::random;
use crate::store::{Client, RefreshToken};

/// RFC 7662 §2.2: anything not currently valid is just `{"active": false}`.
fn inactive() -> Value {
    json!({"active": false})
}

/// A live refresh token of `caller` (refresh tokens mean something only to their client).
async fn live_refresh(
    ctx: &TokenContext<'_>,
    caller: &Client,
    token: &str,
) -> Result<Option<RefreshToken>, OAuthError> {
    let found = ctx
        .store
        .get_refresh_token(&random::hash_secret(token))
        .await
        .map_err(storage_failed)?;
    Ok(found.filter(|t| {
        t.client_id == caller.id
            && t.used_at.is_none()
            && t.revoked_at.is_none()
            && ctx.now < t.expires_at
            && ctx.now < t.family_expires_at
    }))
}

pub async fn introspect(
    ctx: &TokenContext<'_>,
    caller: &Client,
    token: &str,
) -> Result<Value, OAuthError> {
    if let Ok((payload, header, _)) = ctx.ring.verify(token) {
        // Tokens of every audience: this provider's own and each registered API's (RFC 8707).
        let Ok(claims) = check_access_token(
            header.token_type(),
            &payload,
            &ctx.settings.issuer,
            None,
            ctx.now,
        ) else {
            return Ok(inactive());
        };
        if ctx
            .deny
            .is_denied(&claims.jti)
            .await
            .map_err(storage_failed)?
        {
            return Ok(inactive());
        }
        // A token of a client that was switched off or deleted is no longer active
        // (RFC 7662 §2.2: "active" means the server would still accept it).
        if ctx
            .clients
            .get(&claims.client_id)
            .await
            .map_err(storage_failed)?
            .is_none()
        {
            return Ok(inactive());
        }
        let set = payload.claims_set();
        let mut answer = json!({
            "active": true,
            "scope": claims.scope.to_string(),
            "client_id": claims.client_id,
            "sub": claims.sub,
            "exp": claims.exp,
            "iat": set.get("iat"),
            "iss": ctx.settings.issuer,
            "aud": set.get("aud"),
            "jti": claims.jti,
            "token_type": "Bearer",
        });
        // RFC 9449 §6.2: a bound token's `cnf` and its type, so the resource server can
        // check the proof it was sent with; RFC 8693 §4.1: `act` of an exchanged token.
        if let Some(jkt) = &claims.cnf_jkt {
            answer["cnf"] = json!({ "jkt": jkt });
            answer["token_type"] = json!("DPoP");
        }
        if let Some(act) = set.get("act") {
            answer["act"] = act.clone();
        }
        return Ok(answer);
    }
    match live_refresh(ctx, caller, token).await? {
        Some(t) => {
            let user_ok = ctx
                .store
                .get_user(t.user_id)
                .await
                .map_err(storage_failed)?
                .is_some_and(|u| !u.disabled && u.deleted_at.is_none());
            if !user_ok {
                return Ok(inactive());
            }
            Ok(json!({
                "active": true,
                "scope": t.scope,
                "client_id": t.client_id,
                "sub": t.user_id.to_string(),
                "exp": t.expires_at,
                "iat": t.created_at,
                "iss": ctx.settings.issuer,
                "token_type": "refresh_token",
            }))
        }
        None => Ok(inactive()),
    }
}

/// RFC 7009 §2.1: a refresh token revokes its whole family; an access token is denied until
/// it expires. Unknown or already dead tokens are fine (§2.2: 200). A token of another client
/// is refused (§2.1).
pub async fn revoke(
    ctx: &TokenContext<'_>,
    caller: &Client,
    token: &str,
) -> Result<(), OAuthError> {
    let not_yours = || {
        OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        )
    };
    let found = ctx
        .store
        .get_refresh_token(&random::hash_secret(token))
        .await
        .map_err(storage_failed)?;
    if let Some(t) = found {
        if t.client_id != caller.id {
            return Err(not_yours());
        }
        if t.revoked_at.is_none() {
            revoke_family(ctx, &t, "refresh.revoked").await;
        }
        return Ok(());
    }
    if let Ok((payload, _, _)) = ctx.ring.verify(token) {
        let set = payload.claims_set();
        if set.get("client_id").and_then(Value::as_str) != Some(caller.id.as_str()) {
            return Err(not_yours());
        }
        let exp = set.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if let (Some(jti), true) = (set.get("jti").and_then(Value::as_str), exp > ctx.now) {
            ctx.deny
                .deny(jti, exp, ctx.now)
                .await
                .map_err(storage_failed)?;
        }
    }
    Ok(())
}
