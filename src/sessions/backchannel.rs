//! OpenID Connect Back-Channel Logout 1.0: the logout tokens that tell relying parties a
//! session ended. Decides what a logout token says and how it is delivered (background tasks
//! with retries and a timeout); never makes the user's request wait on a relying party.

use std::time::Duration;

use josekit::jwt::JwtPayload;
use serde_json::json;

use super::SessionService;
use crate::keys::SigningAlg;
use crate::random;
use crate::store::{BrowserSession, Client};

/// Back-Channel Logout §2.4: the event that makes a JWT a logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

const ATTEMPTS: u32 = 3;

impl SessionService {
    /// Sends logout tokens to every client that was issued tokens in `session`.
    pub(super) async fn notify_clients(&self, session: &BrowserSession) {
        let client_ids = self
            .store
            .clients_of_session(&session.id_hash)
            .await
            .unwrap_or_default();
        for client_id in client_ids {
            // From the store, not the directory: a switched-off client is still told.
            let Ok(Some(client)) = self.store.get_client(&client_id).await else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            match self.logout_token(&client, session) {
                Ok(token) => {
                    let http = self.http.clone();
                    tokio::spawn(deliver(http, uri, token, client.id.clone()));
                }
                Err(e) => tracing::error!(error = %e, "could not sign a logout token"),
            }
        }
    }

    /// Back-Channel Logout §2.4: `iss aud iat exp jti events sid sub`, never a `nonce`;
    /// `typ: logout+jwt` (§2.4 recommends explicit typing).
    fn logout_token(
        &self,
        client: &Client,
        session: &BrowserSession,
    ) -> Result<String, crate::keys::KeyError> {
        let now = self.clock.now();
        let claims = json!({
        "iss": self.settings.issuer,
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
            .or_else(|| SigningAlg::parse(&self.settings.oauth.id_token_alg))
            .unwrap_or(SigningAlg::Rs256);
        self.keys.ring().sign(alg, "logout+jwt", &payload)
    }
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
