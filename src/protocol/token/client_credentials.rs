//! `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client acting for itself.
//! A JWT access token with `sub` = the client id; no refresh token (§4.4.3), no ID token.

use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::{new_jti, TokenContext, TokenResponse};
use crate::protocol::tokens::Grant;
use crate::store::Client;

/// Scopes that only make sense with a user behind them.
const USER_SCOPES: [&str; 5] = ["openid", "profile", "email", "offline_access", "roles"];

pub async fn exchange(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use client_credentials",
        ));
    }
    let allowed = Scope::parse(&client.scope).unwrap_or_default();
    let scope = match params.get("scope") {
        Some(raw) => {
            let asked = Scope::parse(raw)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if let Some(bad) = asked
                .iter()
                .find(|s| USER_SCOPES.contains(s) || !allowed.contains(s))
            {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {bad:?} is not available to this client without a user"),
                ));
            }
            asked
        }
        None => Scope::parse(
            &allowed
                .iter()
                .filter(|s| !USER_SCOPES.contains(s))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .unwrap_or_default(),
    };
    // RFC 8707 §2: any API the client is allowed.
    let target = ctx.target(client, params, &[]).await?;
    let grant = Grant {
        issuer: &ctx.settings.issuer,
        client_id: &client.id,
        user: None,
        scope: &scope,
        auth_time: ctx.now,
        amr: &[],
        acr: None,
        nonce: None,
        sid: None,
        now: ctx.now,
        resource: target.as_ref(),
        act: None,
    };
    ctx.mint(client, &grant, &new_jti(), None)
}
