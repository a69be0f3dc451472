//! Ending a browser session and telling the relying parties (OpenID Connect Back-Channel
//! Logout 1.0). Logout tokens go out from background tasks with retries and a timeout, so
//! the user's request never waits on a relying party.

use std::time::Duration;

use josekit::jwt::JwtPayload;
use serde_json::json;

use crate::app::AppState;
use crate::keys::SigningAlg;
use crate::random;
use crate::store::{AuditEvent, BrowserSession, Client};

/// Back-Channel Logout §2.4: the event that makes a JWT a logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

const ATTEMPTS: u32 = 3;

/// Ends `session`: revokes it and the refresh tokens bound to it (except `offline_access`
/// ones, which outlive the browser session by design), denies their access tokens, and sends
/// logout tokens to every client that was issued tokens in it.
pub async fn end_session(state: &AppState, session: &BrowserSession, reason: &str) {
    let now = state.clock.now();
    if let Err(e) = state.store.revoke_session(&session.id_hash, now).await {
        tracing::error!(error = %e, "could not revoke a session");
    }
    match state
        .store
        .revoke_session_refresh_tokens(&session.id_hash, now)
        .await
    {
        Ok(jtis) => {
            let until = now + state.settings.tokens.access_token_ttl_secs as i64;
            for jti in jtis {
                let _ = state.deny.deny(&jti, until, now).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "could not revoke a session's refresh tokens"),
    }
    let mut event = AuditEvent::new("session.ended", now);
    event.subject = Some(session.user_id.to_string());
    event.detail = json!({"sid": session.sid, "reason": reason});
    let _ = state.store.record_audit(&event).await;

    let client_ids = state
        .store
        .clients_of_session(&session.id_hash)
        .await
        .unwrap_or_default();
    for client_id in client_ids {
        let Ok(Some(client)) = state.clients.get(&client_id).await else {
            continue;
        };
        let Some(uri) = client.backchannel_logout_uri.clone() else {
            continue;
        };
        match logout_token(state, &client, session) {
            Ok(token) => {
                let http = state.http.clone();
                tokio::spawn(deliver(http, uri, token, client.id.clone()));
            }
            Err(e) => tracing::error!(error = %e, "could not sign a logout token"),
        }
    }
}

/// Back-Channel Logout §2.4: `iss aud iat exp jti events sid sub`, never a `nonce`;
/// `typ: logout+jwt` (§2.4 recommends explicit typing).
fn logout_token(
    state: &AppState,
    client: &Client,
    session: &BrowserSession,
) -> Result<String, crate::keys::KeyError> {
    let now = state.clock.now();
    let claims = json!({
        "iss": state.settings.issuer,
        "aud": client.id,
        "iat": now,
        "exp": now + 120,
        "jti": random::token(16),
        "sub": session.user_id.to_string(),
        "sid": session.sid,
        "events": { BACKCHANNEL_EVENT: {} },
    });
    let payload = JwtPayload::from_map(claims.as_object().cloned().unwrap_or_default())
        .map_err(|e| crate::keys::KeyError::Crypto(e.to_string()))?;
    let alg = client
        .id_token_signed_response_alg
        .as_deref()
        .and_then(SigningAlg::parse)
        .or_else(|| SigningAlg::parse(&state.settings.oauth.id_token_alg))
        .unwrap_or(SigningAlg::Rs256);
    state.keys.ring().sign(alg, "logout+jwt", &payload)
}

/// §2.5: POST `logout_token` as a form; a 2xx means received. Retries with backoff.
async fn deliver(http: reqwest::Client, uri: String, token: String, client_id: String) {
    for attempt in 1..=ATTEMPTS {
        let sent = http
            .post(&uri)
            .timeout(Duration::from_secs(5))
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(client_id = %client_id, "back-channel logout delivered");
                return;
            }
            Ok(resp) => {
                tracing::warn!(client_id = %client_id, status = resp.status().as_u16(), attempt, "back-channel logout refused")
            }
            Err(e) => {
                tracing::warn!(client_id = %client_id, error = %e, attempt, "back-channel logout failed")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
        }
    }
    tracing::error!(client_id = %client_id, "back-channel logout gave up after {ATTEMPTS} attempts");
}
