//! Second factors: authenticator apps (`totp.rs`), passkeys (`passkeys.rs` and `passwordless.rs`
//! over the ceremonies of `webauthn.rs`), recovery codes (`recovery.rs`), the
//! half-finished sign-in that waits for one (`sign_in.rs`), and the rules of who needs one and
//! what a sign-in is worth (`policy.rs`). One service behind the hosted pages, the account
//! pages and the JSON API. Decides; never touches HTTP or SQL.

mod passkeys;
mod passwordless;
pub mod policy;
mod recovery;
mod sign_in;
mod totp;
pub mod webauthn;

use std::sync::Arc;

use uuid::Uuid;

pub use passkeys::{passkey_name, PasskeyCeremony, DEFAULT_NAME as DEFAULT_PASSKEY_NAME};
pub use policy::{Acr, AcrRequest};
pub use sign_in::{AfterPassword, FirstFactor, PendingSignIn, SignedIn};
pub use totp::TotpEnrollment;

use super::service::RequestMeta;
use super::AccountService;
use crate::clock::Clock;
use crate::config::Settings;
use crate::events::EventType;
use crate::keys::KeyManager;
use crate::limiter::{Decision, Limiter, Policy};
use crate::metrics::Metrics;
use crate::store::{FactorKind, MfaFactor, Store, StoreError, Timestamp, User};

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("second factors are switched off on this server (accounts.mfa.enabled = false)")]
    Disabled,
    #[error("that code is not right, or it was already used; enter the current one")]
    InvalidCode,
    #[error("this sign-in has expired or was already completed; sign in again")]
    SignInExpired,
    #[error("too many attempts; retry in {} seconds", .decision.retry_after_secs)]
    Throttled { policy: Policy, decision: Decision },
    #[error("no authenticator-app setup is waiting for a code; start the setup again")]
    NoEnrollment,
    #[error("no such second factor")]
    NotFound,
    #[error("you must keep at least one second factor: add another one before removing this")]
    LastFactor,
    #[error("add a second factor first: recovery codes back up an authenticator app or passkey")]
    NoFactor,
    #[error(
        "sign in again first: changing second factors needs a sign-in from the last {0} seconds"
    )]
    ReauthRequired(u64),
    #[error("this sign-in needs a passkey or security key")]
    NeedsPasskey,
    #[error("the second factor of this account is locked after too many wrong attempts in a row; an administrator must reset it")]
    Locked,
    #[error("passkeys are not offered on this server")]
    PasskeysUnavailable,
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("something went wrong; try again in a moment")]
    Internal,
}

impl MfaError {
    /// The machine-readable `code` of the account API's `ErrorResponse`.
    pub fn code(&self) -> &'static str {
        match self {
            MfaError::Disabled => "mfa_disabled",
            MfaError::InvalidCode => "invalid_code",
            MfaError::SignInExpired => "mfa_token_invalid",
            MfaError::Throttled { .. } => "too_many_requests",
            MfaError::NoEnrollment => "no_enrollment",
            MfaError::NotFound => "not_found",
            MfaError::LastFactor => "last_factor",
            MfaError::NoFactor => "no_factor",
            MfaError::ReauthRequired(_) => "reauthentication_required",
            MfaError::NeedsPasskey => "passkey_required",
            MfaError::Locked => "mfa_locked",
            MfaError::PasskeysUnavailable => "passkeys_unavailable",
            MfaError::Invalid { code, .. } => code,
            MfaError::Internal => "internal_error",
        }
    }
}

fn store_failed(e: StoreError) -> MfaError {
    tracing::error!(error = %e, "storage failure in the MFA service");
    MfaError::Internal
}

/// Consecutive failed second-factor attempts after which the factor is locked until an
/// administrator resets it (NIST SP 800-63B §5.2.2 allows at most 100).
pub const MAX_CONSECUTIVE_FAILURES: i64 = 100;

/// A confirmed factor as the user sees it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorSummary {
    pub id: Uuid,
    pub kind: FactorKind,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

impl From<&MfaFactor> for FactorSummary {
    fn from(f: &MfaFactor) -> Self {
        FactorSummary {
            id: f.id,
            kind: f.kind,
            name: f.name.clone(),
            created_at: f.created_at,
            last_used_at: f.last_used_at,
        }
    }
}

/// The ways a pending sign-in can be completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Methods {
    pub totp: bool,
    pub passkey: bool,
    pub recovery_code: bool,
}

impl Methods {
    /// As the API lists them: `totp`, `passkey`, `recovery_code`.
    pub fn names(&self) -> Vec<String> {
        [
            (self.totp, "totp"),
            (self.passkey, "passkey"),
            (self.recovery_code, "recovery_code"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n.to_string())
        .collect()
    }
}

/// The multi-factor use cases, with the ports they use; built once in `app.rs`.
pub struct MfaService {
    pub(crate) settings: Arc<Settings>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: Arc<KeyManager>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) metrics: Arc<Metrics>,
    /// The audit trail and mail of the account service.
    pub(crate) accounts: Arc<AccountService>,
    /// Our WebAuthn relying party; `None` when the issuer cannot host passkeys.
    pub(crate) passkeys: Option<webauthn::Passkeys>,
}

impl MfaService {
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        keys: Arc<KeyManager>,
        limiter: Arc<Limiter>,
        metrics: Arc<Metrics>,
        accounts: Arc<AccountService>,
    ) -> MfaService {
        MfaService {
            passkeys: passkeys::relying_party(&settings),
            settings,
            store,
            clock,
            keys,
            limiter,
            metrics,
            accounts,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.accounts.mfa.enabled
    }

    fn ensure_enabled(&self) -> Result<(), MfaError> {
        if self.enabled() {
            Ok(())
        } else {
            Err(MfaError::Disabled)
        }
    }

    /// The user's confirmed factors, oldest first.
    pub async fn factors(&self, user_id: Uuid) -> Result<Vec<MfaFactor>, MfaError> {
        let all = self
            .store
            .list_factors(user_id)
            .await
            .map_err(store_failed)?;
        Ok(all
            .into_iter()
            .filter(|f| f.confirmed_at.is_some())
            .collect())
    }

    pub async fn summaries(&self, user_id: Uuid) -> Result<Vec<FactorSummary>, MfaError> {
        Ok(self
            .factors(user_id)
            .await?
            .iter()
            .map(Into::into)
            .collect())
    }

    pub async fn recovery_codes_left(&self, user_id: Uuid) -> Result<u64, MfaError> {
        self.store
            .count_recovery_codes(user_id)
            .await
            .map_err(store_failed)
    }

    /// Whether `accounts.mfa.required_for_roles` puts this user under the policy.
    pub fn required_for(&self, user: &User) -> bool {
        self.enabled()
            && policy::role_requires_mfa(
                &user.roles,
                &self.settings.accounts.mfa.required_for_roles,
            )
    }

    /// Whether an admin whose sign-in reached `acr` may change things (admin API and console
    /// writes): always when the MFA policy does not cover them, else only after a second
    /// factor (`mfa` or `phr`).
    pub fn allows_admin_write(&self, user: &User, acr: Option<&str>) -> bool {
        !self.required_for(user) || Acr::of_session(acr) >= Acr::Mfa
    }

    /// Changing factors needs a sign-in no older than `accounts.mfa.reauth_max_age_secs`.
    pub fn ensure_recent(&self, auth_time: Timestamp) -> Result<(), MfaError> {
        let max = self.settings.accounts.mfa.reauth_max_age_secs;
        if self.clock.now() - auth_time > max as i64 {
            return Err(MfaError::ReauthRequired(max));
        }
        Ok(())
    }

    /// Removes one factor. The last one of a user under a policy stays; with the last one
    /// gone, the recovery codes go too (they back up factors that no longer exist).
    pub async fn remove_factor(
        &self,
        meta: &RequestMeta,
        user: &User,
        id: Uuid,
    ) -> Result<(), MfaError> {
        let factors = self.factors(user.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == id) else {
            return Err(MfaError::NotFound);
        };
        let keep_one = self.required_for(user);
        let removed = self
            .accounts
            .event(EventType::UserMfaRemoved, meta)
            .subject(user.id)
            .actor(Some(user.id))
            .data(serde_json::json!({"factorId": id, "kind": factor.kind.as_str()}));
        match self
            .store
            .delete_factor(user.id, id, keep_one, &[removed])
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(MfaError::NotFound),
            Err(StoreError::Conflict(_)) => return Err(MfaError::LastFactor),
            Err(e) => return Err(store_failed(e)),
        }
        if factors.len() == 1 {
            self.store
                .replace_recovery_codes(user.id, &[], self.clock.now())
                .await
                .map_err(store_failed)?;
        }
        let kind = factor.kind.as_str();
        self.audit(
            meta,
            "mfa.removed",
            user.id,
            serde_json::json!({"kind": kind, "factor": id}),
        )
        .await;
        self.metrics.count(
            "portcullis_mfa_changes_total",
            &[("op", "removed"), ("kind", kind)],
        );
        self.accounts.send_security_notice(
            user,
            &format!(
                "A second factor was removed from your account: {}.",
                factor.name
            ),
        );
        Ok(())
    }

    /// `user.mfa_enrolled`, written with the confirmation of the factor.
    pub(crate) fn enrolled_event(
        &self,
        meta: &RequestMeta,
        user: &User,
        factor: Uuid,
        kind: &str,
    ) -> crate::events::Event {
        self.accounts
            .event(EventType::UserMfaEnrolled, meta)
            .subject(user.id)
            .actor(Some(user.id))
            .data(serde_json::json!({"factorId": factor, "kind": kind}))
    }

    /// An administrator's reset: every factor and recovery code of the user goes (a lost
    /// phone); the user enrolls again at the next sign-in if a policy requires it.
    pub async fn reset(
        &self,
        meta: &RequestMeta,
        actor: Option<&User>,
        user: &User,
    ) -> Result<u64, MfaError> {
        let event = self
            .accounts
            .event(EventType::UserMfaRemoved, meta)
            .subject(user.id)
            .actor(actor.map(|a| a.id))
            .data(serde_json::json!({"all": true}));
        let removed = self
            .store
            .delete_all_factors(user.id, &[event])
            .await
            .map_err(store_failed)?;
        let mut event = self.accounts.audit_event("mfa.reset", meta);
        event.subject = Some(user.id.to_string());
        event.actor = actor.map(|a| a.id.to_string());
        event.detail = serde_json::json!({"factors": removed});
        self.accounts.record(event).await;
        self.metrics.count(
            "portcullis_mfa_changes_total",
            &[("op", "reset"), ("kind", "all")],
        );
        self.accounts.send_security_notice(
            user,
            "An administrator removed every second factor from your account.",
        );
        Ok(removed)
    }

    pub(crate) async fn audit(
        &self,
        meta: &RequestMeta,
        kind: &str,
        user_id: Uuid,
        detail: serde_json::Value,
    ) {
        let mut event = self.accounts.audit_event(kind, meta);
        event.subject = Some(user_id.to_string());
        event.detail = detail;
        self.accounts.record(event).await;
    }

    /// Counts one second-factor attempt for the account before it is checked (so parallel
    /// guesses cannot slip past the budget); returns the limiter key to reset on success.
    pub(crate) async fn throttle(
        &self,
        meta: &RequestMeta,
        user_id: Uuid,
    ) -> Result<Option<String>, MfaError> {
        // NIST SP 800-63B §5.2.2: at most 100 consecutive failures, whatever the rate.
        let failures = self
            .store
            .mfa_failures(user_id)
            .await
            .map_err(store_failed)?;
        if failures >= MAX_CONSECUTIVE_FAILURES {
            self.metrics.count(
                "portcullis_mfa_verifications_total",
                &[("method", "any"), ("result", "locked")],
            );
            return Err(MfaError::Locked);
        }
        let limits = &self.settings.rate_limits;
        if !limits.enabled {
            return Ok(None);
        }
        let key = format!("mfa-acct:{user_id}");
        let d = self.limiter.hit(&key, limits.mfa_account).await;
        if !d.allowed {
            self.audit(meta, "mfa.throttled", user_id, serde_json::json!({}))
                .await;
            self.metrics.count(
                "portcullis_mfa_verifications_total",
                &[("method", "any"), ("result", "throttled")],
            );
            return Err(MfaError::Throttled {
                policy: limits.mfa_account,
                decision: d,
            });
        }
        Ok(Some(key))
    }

    /// Counts a wrong second factor towards the lockout; at the limit the owner is mailed.
    pub(crate) async fn failed_attempt(&self, meta: &RequestMeta, user: &User) {
        match self.store.record_mfa_failure(user.id).await {
            Ok(n) if n == MAX_CONSECUTIVE_FAILURES => {
                self.audit(
                    meta,
                    "mfa.locked",
                    user.id,
                    serde_json::json!({"failures": n}),
                )
                .await;
                self.accounts.send_security_notice(
                    user,
                    "Your second factor was locked after too many wrong codes in a row. \
                     Ask an administrator to reset it.",
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not count a failed second factor"),
        }
    }

    /// A passed second factor starts the lockout count again.
    pub(crate) async fn passed_attempt(&self, user_id: Uuid) {
        if let Err(e) = self.store.reset_mfa_failures(user_id).await {
            tracing::error!(error = %e, "could not reset the failed second-factor count");
        }
    }
}
