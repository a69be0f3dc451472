//! Sessions: the one place that ends browser sessions — one session (sign-out), every session
//! of a user (password change or reset, disabling, deletion), or the session a new sign-in
//! replaces — and what ending one takes down with it (refresh tokens, access tokens,
//! back-channel logout). Decides what "signed out" revokes; never touches HTTP or cookies.

mod backchannel;

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

pub use backchannel::BACKCHANNEL_EVENT;

use crate::clients::ClientDirectory;
use crate::clock::Clock;
use crate::config::Settings;
use crate::denylist::DenyList;
use crate::keys::KeyManager;
use crate::store::{AuditEvent, BrowserSession, Store, StoreResult, Timestamp};

/// Ends sessions; built once in `app.rs`.
pub struct SessionService {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    deny: Arc<DenyList>,
    clients: Arc<ClientDirectory>,
    keys: Arc<KeyManager>,
    /// For back-channel logout deliveries.
    http: reqwest::Client,
}

impl SessionService {
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        deny: Arc<DenyList>,
        clients: Arc<ClientDirectory>,
        keys: Arc<KeyManager>,
        http: reqwest::Client,
    ) -> SessionService {
        SessionService {
            settings,
            store,
            clock,
            deny,
            clients,
            keys,
            http,
        }
    }

    /// Ends `session`: revokes it and the refresh tokens bound to it (except `offline_access`
    /// ones, which outlive the browser session by design), denies their access tokens, and
    /// sends logout tokens to every client that was issued tokens in it.
    pub async fn end_session(&self, session: &BrowserSession, reason: &str) {
        let now = self.clock.now();
        if let Err(e) = self.store.revoke_session(&session.id_hash, now).await {
            tracing::error!(error = %e, "could not revoke a session");
        }
        match self
            .store
            .revoke_session_refresh_tokens(&session.id_hash, now)
            .await
        {
            Ok(jtis) => self.deny_until_expiry(jtis, now).await,
            Err(e) => tracing::error!(error = %e, "could not revoke a session's refresh tokens"),
        }
        let mut event = AuditEvent::new("session.ended", now);
        event.subject = Some(session.user_id.to_string());
        event.detail = json!({"sid": session.sid, "reason": reason});
        let _ = self.store.record_audit(&event).await;
        self.notify_clients(session).await;
    }

    /// Ends every session of `user_id` (disabling a user): the store revokes the sessions and
    /// refresh tokens, then their access tokens are denied.
    ///
    /// Unlike [`SessionService::end_session`], no back-channel logout token goes out (as
    /// before this room existed): the store revokes everything in one statement and returns
    /// only the access-token ids, not the sessions it ended.
    pub async fn end_all_sessions(&self, user_id: Uuid, now: Timestamp) -> StoreResult<()> {
        let jtis = self.store.sign_out_everywhere(user_id, now).await?;
        self.deny_access_tokens(jtis).await;
        Ok(())
    }

    /// The last step of ending every session of a user when the store already revoked the
    /// sessions and refresh tokens inside a larger transaction (a password change or reset, a
    /// soft delete: the new password and the sign-out must land together). Denies the access
    /// tokens `jtis` were issued with; like [`SessionService::end_all_sessions`], sends no
    /// back-channel logout.
    pub async fn deny_access_tokens(&self, jtis: Vec<String>) {
        self.deny_until_expiry(jtis, self.clock.now()).await;
    }

    /// A new sign-in replaces the browser's previous session (never reusing its id, against
    /// fixation). Only the session row is revoked, unlike [`SessionService::end_session`]:
    /// this is not a sign-out, the browser is signing in again, so the refresh tokens issued
    /// in the old session and the relying parties' sessions are left alone (as they always
    /// were); a user who wants them gone signs out.
    pub async fn replace_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<()> {
        self.store.revoke_session(id_hash, now).await
    }

    /// Puts access tokens on the deny-list until they would have expired anyway.
    async fn deny_until_expiry(&self, jtis: Vec<String>, now: Timestamp) {
        let until = now + self.settings.tokens.access_token_ttl_secs as i64;
        for jti in jtis {
            if let Err(e) = self.deny.deny(&jti, until, now).await {
                tracing::error!(error = %e, "could not deny an access token");
            }
        }
    }
}
