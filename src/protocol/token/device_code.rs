//! `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4-3.5): a device
//! polls with its device code until the user decided on `/device`; an approval is redeemed
//! once, for the same tokens as an authorization code.

use crate::protocol::device::{decide_poll, Poll};
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::authorization_code::{mint_for_user, UserGrant};
use crate::protocol::token::{new_jti, storage_failed, TokenContext, TokenResponse};
use crate::random;
use crate::store::{AuditEvent, Client, DeviceGrant};

/// One description for unknown codes, codes of other clients and spent codes.
const BAD_CODE: &str = "the device code is invalid or was already used";

pub async fn exchange(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = params
        .get("device_code")
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    let hash = random::hash_secret(code);
    let grant = ctx
        .store
        .get_device_grant(&hash)
        .await
        .map_err(storage_failed)?
        .ok_or_else(|| OAuthError::invalid_grant(BAD_CODE))?;
    // RFC 8628 §3.4 (RFC 6749 §5.2): the code must have been issued to this client.
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(BAD_CODE));
    }
    match decide_poll(&grant, ctx.now) {
        Poll::Pending => {
            if !record_poll(ctx, &hash, grant.interval_secs, grant.last_polled_at).await? {
                // Another poll of this code got in at the same moment (or the grant just
                // changed): polling in parallel is polling too fast.
                return Err(OAuthError::new(
                    ErrorCode::SlowDown,
                    format!(
                        "polled too soon; wait {} seconds between requests",
                        grant.interval_secs + 5
                    ),
                ));
            }
            Err(OAuthError::new(
                ErrorCode::AuthorizationPending,
                "the user has not yet approved the request; keep polling",
            ))
        }
        Poll::SlowDown { new_interval } => {
            record_poll(ctx, &hash, new_interval, grant.last_polled_at).await?;
            Err(OAuthError::new(
                ErrorCode::SlowDown,
                format!(
                    "polled too soon; wait {new_interval} seconds between requests from now on"
                ),
            ))
        }
        Poll::Denied => Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the user denied the request",
        )),
        Poll::Expired => {
            expired(ctx, &grant).await;
            Err(OAuthError::new(
                ErrorCode::ExpiredToken,
                "the device code has expired; start a new device authorization",
            ))
        }
        Poll::Spent => Err(OAuthError::invalid_grant(BAD_CODE)),
        Poll::Redeem => redeem(ctx, client, params, &grant).await,
    }
}

/// RFC 8628 §3.5: every poll of a pending grant is the start of the next interval; false when
/// a parallel poll recorded itself first.
async fn record_poll(
    ctx: &TokenContext<'_>,
    hash: &str,
    interval: i64,
    seen: Option<i64>,
) -> Result<bool, OAuthError> {
    ctx.store
        .record_device_poll(hash, ctx.now, interval, seen)
        .await
        .map_err(storage_failed)
}

/// Marks the grant expired; the one poll that does so counts and audits it.
async fn expired(ctx: &TokenContext<'_>, grant: &DeviceGrant) {
    match ctx
        .store
        .expire_device_grant(&grant.device_code_hash, ctx.now)
        .await
    {
        Ok(true) => {
            ctx.metrics
                .count("portcullis_device_codes_total", &[("event", "expired")]);
            let mut event = AuditEvent::new("device.expired", ctx.now);
            event.client_id = Some(grant.client_id.clone());
            event.subject = grant.user_id.map(|u| u.to_string());
            event.detail = serde_json::json!({"was": grant.status.as_str()});
            let _ = ctx.store.record_audit(&event).await;
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not mark a device code expired"),
    }
}

async fn redeem(
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &Params,
    grant: &DeviceGrant,
) -> Result<TokenResponse, OAuthError> {
    let user = match grant.user_id {
        Some(id) => ctx.store.get_user(id).await.map_err(storage_failed)?,
        None => None,
    }
    .filter(|u| !u.disabled && u.deleted_at.is_none())
    .ok_or_else(|| OAuthError::invalid_grant(BAD_CODE))?;

    // RFC 8707 §2: any API the client is allowed, checked before the code is spent.
    let target = ctx.target(client, params, &[]).await?;
    // The one atomic step: of concurrent polls after the approval exactly one passes.
    let jti = new_jti();
    if !ctx
        .store
        .redeem_device_grant(&grant.device_code_hash, ctx.now, &jti)
        .await
        .map_err(storage_failed)?
    {
        return Err(OAuthError::invalid_grant(BAD_CODE));
    }
    let scope = Scope::parse(&grant.scope).unwrap_or_default();
    let signed_in = UserGrant {
        resources: &[],
        target: target.as_ref(),
        user: &user,
        scope: &scope,
        session_id_hash: grant.session_id_hash.as_deref(),
        auth_code_hash: None,
        auth_time: grant.auth_time.unwrap_or(ctx.now),
        amr: &grant.amr,
        acr: grant.acr.as_deref(),
        // RFC 8628 has no nonce: the device never sent an authorization request.
        nonce: None,
    };
    mint_for_user(ctx, client, &signed_in, &jti).await
}
