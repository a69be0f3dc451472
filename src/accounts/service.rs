//! The account service: the one implementation of the account rules that the hosted pages
//! and the JSON API alike call, holding the ports it uses (built once in `app.rs`). This file
//! holds the service itself, its error, and what every use case shares (audit trail, link
//! tokens, mail budget); each use case lives in a file of its own next to it.
//! Decides what an account may do; never imports `app` or `http`, never writes SQL.

use std::sync::Arc;

use super::{Email, PasswordError, PasswordHasher};
use crate::clock::Clock;
use crate::config::Settings;
use crate::events::{Event, EventType};
use crate::limiter::{Decision, Limiter, Policy};
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::random;
use crate::sessions::SessionService;
use crate::store::{AccountToken, AuditEvent, Store, StoreError, TokenPurpose, User};

/// Who is asking, for throttling and the audit trail (never a secret).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The full client address: audit records keep it whole; limits use `limiter::ip_key`.
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub trace_id: Option<String>,
}

/// The one message for every failed sign-in: nothing tells which part was wrong.
pub const LOGIN_FAILED: &str = "Incorrect email or password.";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Input that breaks a rule; `code` is machine-readable (`invalid_email`, `weak_password`,
    /// `invalid_name`, `invalid_role`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{}", LOGIN_FAILED)]
    InvalidCredentials,
    #[error("verify your email address first: follow the link we sent, or ask for a new one")]
    EmailNotVerified,
    #[error("the link is invalid, expired or already used; ask for a new one")]
    InvalidToken,
    #[error("too many attempts; retry in {} seconds", .decision.retry_after_secs)]
    Throttled {
        name: &'static str,
        policy: Policy,
        decision: Decision,
    },
    #[error("registration is closed on this server (accounts.allow_registration = false)")]
    RegistrationClosed,
    #[error("this needs the admin role")]
    Forbidden,
    #[error("no such user")]
    NotFound,
    /// A grave change (a new email address, deleting the account) of an account without a
    /// password needs a recent sign-in.
    #[error("sign in again first: this change needs a sign-in from the last {0} seconds")]
    ReauthRequired(u64),
    #[error("something went wrong; try again in a moment")]
    Internal,
}

impl AccountError {
    pub(super) fn invalid(code: &'static str, message: impl Into<String>) -> AccountError {
        AccountError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<PasswordError> for AccountError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Hashing => AccountError::Internal,
            other => AccountError::invalid("weak_password", other.to_string()),
        }
    }
}

pub(super) fn store_failed(e: StoreError) -> AccountError {
    tracing::error!(error = %e, "storage failure in the account service");
    AccountError::Internal
}

/// The account use cases (registration, sign-in, verification, passwords, administration),
/// with the ports they use. Cheap to share: held once in `AppState` behind an `Arc`.
pub struct AccountService {
    pub(super) settings: Arc<Settings>,
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) passwords: PasswordHasher,
    pub(super) mailer: Arc<dyn Mailer>,
    pub(super) limiter: Arc<Limiter>,
    pub(super) metrics: Arc<Metrics>,
    /// Signing a user out everywhere (password change or reset, disabling, deletion).
    pub(super) sessions: Arc<SessionService>,
}

impl AccountService {
    #[allow(clippy::too_many_arguments)] // one per port; built once, in `app.rs`
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        passwords: PasswordHasher,
        mailer: Arc<dyn Mailer>,
        limiter: Arc<Limiter>,
        metrics: Arc<Metrics>,
        sessions: Arc<SessionService>,
    ) -> AccountService {
        AccountService {
            settings,
            store,
            clock,
            passwords,
            mailer,
            limiter,
            metrics,
            sessions,
        }
    }

    /// An audit event stamped with the request's IP, user agent and trace id.
    pub fn audit_event(&self, kind: &str, meta: &RequestMeta) -> AuditEvent {
        let mut event = AuditEvent::new(kind, self.clock.now());
        event.ip = meta.ip.map(|ip| ip.to_string());
        event.user_agent = meta
            .user_agent
            .as_ref()
            .map(|ua| ua.chars().take(256).collect());
        event.trace_id = meta.trace_id.clone();
        event
    }

    /// A domain event stamped with the time and the request's trace id (never its IP: events
    /// that need it put it in their data).
    pub fn event(&self, kind: EventType, meta: &RequestMeta) -> Event {
        Event::new(kind, self.clock.now()).trace(meta.trace_id.as_deref())
    }

    /// Writes events that accompany no other change; a failure is logged, not the caller's.
    pub async fn emit(&self, events: &[Event]) {
        if let Err(e) = self.store.record_events(events).await {
            tracing::error!(error = %e, "could not write events to the outbox");
        }
    }

    pub async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, kind = %event.kind, "could not record an audit event");
        }
    }

    /// Records an event about one user.
    pub(super) async fn record_about(
        &self,
        kind: &str,
        meta: &RequestMeta,
        subject: impl ToString,
    ) {
        let mut event = self.audit_event(kind, meta);
        event.subject = Some(subject.to_string());
        self.record(event).await;
    }

    /// Counts one mail caused for `email`; false once the address had its share (the caller then
    /// answers as usual but sends nothing: no mail bombing through our relay).
    pub(super) async fn mail_budget(&self, email: &str) -> bool {
        let limits = &self.settings.rate_limits;
        if !limits.enabled {
            return true;
        }
        let key = format!("mail:{}", User::email_key(email));
        self.limiter.hit(&key, limits.account_email).await.allowed
    }

    /// Stores a new single-use token for `user`, proving the address `email` it is mailed to,
    /// and returns its value (mailed, never stored).
    pub(super) async fn new_token(
        &self,
        user: &User,
        email: &str,
        purpose: TokenPurpose,
        ttl_secs: u64,
    ) -> Result<String, AccountError> {
        // 256 bits from the OS generator; only the SHA-256 hash is kept.
        let value = random::token(32);
        let now = self.clock.now();
        let token = AccountToken {
            token_hash: random::hash_secret(&value),
            purpose,
            user_id: user.id,
            email: email.to_string(),
            created_at: now,
            expires_at: now + ttl_secs as i64,
            used_at: None,
        };
        self.store
            .create_account_token(&token)
            .await
            .map_err(store_failed)?;
        Ok(value)
    }

    pub(super) async fn live_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<User>, AccountError> {
        Ok(self
            .store
            .find_user_by_email(&User::email_key(email))
            .await
            .map_err(store_failed)?
            .filter(|u| u.deleted_at.is_none() && !u.disabled))
    }
}

pub fn is_admin(user: &User) -> bool {
    user.roles.iter().any(|r| r == "admin")
}

/// A display name: trimmed, at most 100 characters, no control characters.
pub fn parse_name(raw: Option<&str>) -> Result<Option<String>, AccountError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AccountError::invalid(
            "invalid_name",
            "the name must be at most 100 characters, without control characters",
        ));
    }
    Ok(Some(name.to_string()))
}

/// The stored hash of a mailed link's token, if the value can be one (a link that was cut
/// or padded is simply invalid).
pub(super) fn link_hash(token: &str) -> Result<String, AccountError> {
    if token.is_empty() || token.len() > 256 {
        return Err(AccountError::InvalidToken);
    }
    Ok(random::hash_secret(token))
}

pub(super) fn parse_email(raw: &str) -> Result<Email, AccountError> {
    Email::parse(raw).map_err(|e| AccountError::invalid("invalid_email", e.to_string()))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name(Some("  Ada  ")).unwrap(), Some("Ada".into()));
        assert_eq!(parse_name(Some("   ")).unwrap(), None);
        assert!(parse_name(Some(&"x".repeat(101))).is_err());
        assert!(parse_name(Some("a\u{0}b")).is_err());
    }
}
