//! Sessions: the one place that ends browser sessions — one session (sign-out), every session
//! of a user (password change or reset, disabling, deletion), or the session a new sign-in
//! replaces — and what ending one takes down with it (refresh tokens, access tokens,
//! back-channel logout). Decides what "signed out" revokes; never touches HTTP or cookies.

mod backchannel;

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

pub use backchannel::BACKCHANNEL_EVENT;

use crate::clock::Clock;
use crate::config::Settings;
use crate::denylist::DenyList;
use crate::keys::KeyManager;
use crate::store::{AuditEvent, BrowserSession, ConsentRecord, Store, StoreResult, Timestamp};

/// Ends sessions; built once in `app.rs`.
pub struct SessionService {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    deny: Arc<DenyList>,
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
        keys: Arc<KeyManager>,
        http: reqwest::Client,
    ) -> SessionService {
        SessionService {
            settings,
            store,
            clock,
            deny,
            keys,
            http,
        }
    }

    /// Ends `session`: revokes it and the refresh tokens bound to it (except `offline_access`
    /// ones, which outlive the browser session by design), denies their access tokens, and
    /// sends logout tokens to every client that was issued tokens in it.
    pub async fn end_session(&self, session: &BrowserSession, reason: &str) {
        self.end_session_as(session, reason, None).await
    }

    /// [`SessionService::end_session`] on someone's behalf: the audit event names `actor`.
    pub async fn end_session_as(
        &self,
        session: &BrowserSession,
        reason: &str,
        actor: Option<&str>,
    ) {
        if let Err(e) = self.try_end_session(session, reason, actor).await {
            tracing::error!(error = %e, "could not revoke a session");
        }
    }

    /// Ends the session if it is still live: false (nothing else done) when another request
    /// ended it first; an error when the store failed to revoke it.
    async fn try_end_session(
        &self,
        session: &BrowserSession,
        reason: &str,
        actor: Option<&str>,
    ) -> StoreResult<bool> {
        let now = self.clock.now();
        let ended = crate::events::Event::new(crate::events::EventType::SessionEnded, now)
            .subject(session.user_id)
            .actor(actor)
            .data(json!({"sessionId": session.sid, "reason": reason}));
        if !self
            .store
            .revoke_session(&session.id_hash, now, &[ended])
            .await?
        {
            return Ok(false);
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
        event.actor = actor.map(str::to_string);
        event.detail = json!({"sid": session.sid, "reason": reason});
        let _ = self.store.record_audit(&event).await;
        self.notify_clients(session).await;
        Ok(true)
    }

    /// The user's live sessions, most recently active first.
    pub async fn user_sessions(&self, user_id: Uuid) -> StoreResult<Vec<BrowserSession>> {
        let now = self.clock.now();
        self.store
            .user_sessions(user_id, now, self.idle_since(now))
            .await
    }

    /// Sessions last seen at or before this are idle, hence over (`sessions.idle_timeout_secs`).
    pub fn idle_since(&self, now: Timestamp) -> Timestamp {
        now - self.settings.sessions.idle_timeout_secs as i64
    }

    /// Ends the live session whose public id is `sid`, if it belongs to `owner` (when one is
    /// given: a person ending one of their own). False when there is no such session.
    pub async fn end_session_by_sid(
        &self,
        sid: &str,
        owner: Option<Uuid>,
        actor: &str,
        reason: &str,
    ) -> StoreResult<bool> {
        let Some(session) = self.store.session_by_sid(sid).await? else {
            return Ok(false);
        };
        if owner.is_some_and(|o| o != session.user_id) {
            return Ok(false);
        }
        self.try_end_session(&session, reason, Some(actor)).await
    }

    /// Ends every live session of the user except `keep` (the `id_hash` of the session making
    /// the request); returns how many ended. Each one is ended like a sign-out.
    pub async fn end_other_sessions(
        &self,
        user_id: Uuid,
        keep: Option<&str>,
        actor: &str,
        reason: &str,
    ) -> StoreResult<usize> {
        // Every unrevoked session, idle or expired ones too: their refresh tokens outlive the
        // idle timeout and must not survive a "sign out everywhere". Only live ones count in
        // the answer (the person saw those).
        let now = self.clock.now();
        let idle_since = self.idle_since(now);
        let sessions = self
            .store
            .user_sessions(user_id, Timestamp::MIN, Timestamp::MIN)
            .await?;
        let mut ended = 0;
        for session in sessions.iter().filter(|s| Some(s.id_hash.as_str()) != keep) {
            let live = session.expires_at > now && session.last_seen_at > idle_since;
            if self.try_end_session(session, reason, Some(actor)).await? && live {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// What the user allowed which client.
    pub async fn consents(&self, user_id: Uuid) -> StoreResult<Vec<ConsentRecord>> {
        self.store.user_consents(user_id).await
    }

    /// Withdraws a consent: the client loses it and every refresh token it holds for the
    /// user, in one transaction, and their access tokens are denied. With `owner`, only that
    /// user's consent. False when there is no such consent.
    pub async fn revoke_consent(
        &self,
        id: Uuid,
        owner: Option<Uuid>,
        actor: &str,
    ) -> StoreResult<bool> {
        let now = self.clock.now();
        let Some(gone) = self.store.revoke_consent(id, owner, now).await? else {
            return Ok(false);
        };
        self.deny_until_expiry(gone.jtis, now).await;
        let mut event = AuditEvent::new("consent.revoked", now);
        event.actor = Some(actor.to_string());
        event.subject = Some(gone.user_id.to_string());
        event.client_id = Some(gone.client_id);
        event.detail = json!({"scope": gone.scope});
        let _ = self.store.record_audit(&event).await;
        Ok(true)
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
        // Not a sign-out: no `session.ended` (the new sign-in emits `user.signed_in`).
        self.store
            .revoke_session(id_hash, now, &[])
            .await
            .map(|_| ())
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
