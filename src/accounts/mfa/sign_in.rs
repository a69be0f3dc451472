//! The second step of a sign-in. After the password, a user with a factor (or one a policy or
//! the relying party requires) gets no session yet: a short-lived, single-use server-side
//! record, named by a random token that the page's form (or the API's `mfaToken`) carries,
//! holds the half-finished sign-in until the second factor passes. Any instance can finish
//! it; it is spent by one conditional update.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::policy::{combine_after_link, combine_amr, is_emailed_link, Acr};
use super::{recovery, store_failed, totp, Methods, MfaError, MfaService};
use crate::accounts::service::RequestMeta;
use crate::federation::FEDERATED_AMR;
use crate::random;
use crate::store::{FactorKind, MfaChallenge, User};

pub const PURPOSE: &str = "sign_in";

/// What the record keeps: how far the sign-in got and where it goes next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SignInData {
    /// The methods already passed (`["pwd"]`, or a session's when stepping up).
    pub amr: Vec<String>,
    /// The authorization request to resume (`/authorize?...`), or empty.
    #[serde(default)]
    pub return_to: String,
    /// The `acr` the relying party or a client policy requires, if any.
    #[serde(default)]
    pub required: Option<String>,
    /// No factor yet: the user enrolls one now, before any session exists.
    #[serde(default)]
    pub enroll: bool,
    /// Raising an existing session (`acr_values`, a client requiring MFA) rather than a
    /// fresh sign-in.
    #[serde(default)]
    pub step_up: bool,
    /// The browser session a step-up raises: it must still be live when the factor passes
    /// (a page left open after signing out must not mint a session).
    #[serde(default)]
    pub session_id_hash: Option<String>,
    /// The first step was an emailed link (`amr` `["otp"]`): the second factor makes two.
    #[serde(default)]
    pub emailed_link: bool,
    /// The first step was an upstream provider's sign-in (`amr` `fed` and the upstream's):
    /// the second factor makes two, and the level is that of our own factors.
    #[serde(default)]
    pub federated: bool,
}

/// A sign-in waiting for its second factor.
#[derive(Debug, Clone)]
pub struct PendingSignIn {
    /// The random token naming the record; only its hash is stored.
    pub token: String,
    pub user: User,
    pub methods: Methods,
    pub enroll: bool,
    pub step_up: bool,
    pub return_to: String,
    pub required: Option<Acr>,
}

/// How the first step of a sign-in was passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstFactor {
    /// `pwd`.
    Password,
    /// A mailed sign-in link: `otp` (see [`super::policy::EMAILED_LINK_AMR`]).
    EmailedLink,
    /// An upstream provider signed the person in: `amr` is `fed` followed by the upstream's
    /// own values (`federation::UpstreamProfile::session_amr`).
    Upstream { amr: Vec<String> },
}

impl FirstFactor {
    pub fn amr(&self) -> Vec<String> {
        match self {
            FirstFactor::Password => vec!["pwd".into()],
            FirstFactor::EmailedLink => vec![super::policy::EMAILED_LINK_AMR.into()],
            FirstFactor::Upstream { amr } => amr.clone(),
        }
    }

    /// The level the first step reached alone: one factor, or `mfa` when an upstream says
    /// its sign-in used several (RFC 8176 `mfa`). An upstream's passkey is not ours: it
    /// never reaches `phr` here.
    pub fn level(&self) -> Acr {
        match self {
            FirstFactor::Upstream { amr } if amr.iter().any(|m| m == "mfa") => Acr::Mfa,
            _ => Acr::OneFactor,
        }
    }
}

/// What the password step leads to.
#[derive(Debug)]
pub enum AfterPassword {
    /// No second factor applies: a session of one factor.
    Done {
        amr: Vec<String>,
        acr: Acr,
    },
    Pending(PendingSignIn),
}

/// A completed sign-in: start the session with these methods.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub amr: Vec<String>,
    pub acr: Acr,
    pub return_to: String,
    pub step_up: bool,
    /// Recovery codes made by an enrollment during this sign-in, to show once.
    pub recovery_codes: Option<Vec<String>>,
}

impl MfaService {
    /// After a correct password: done, or a pending sign-in asking for (or enrolling) a
    /// second factor. `required` is what the authorization request or its client asks.
    pub async fn after_password(
        &self,
        user: &User,
        required: Option<Acr>,
        return_to: &str,
    ) -> Result<AfterPassword, MfaError> {
        self.after_first_factor(user, required, return_to, FirstFactor::Password)
            .await
    }

    /// [`Self::after_password`] for any first factor: the same policies (a factor the
    /// account has, `required_for_roles`, the client's or request's `acr`) after a password
    /// or an emailed link.
    pub async fn after_first_factor(
        &self,
        user: &User,
        required: Option<Acr>,
        return_to: &str,
        first: FirstFactor,
    ) -> Result<AfterPassword, MfaError> {
        let amr = first.amr();
        let reached = first.level();
        if !self.enabled() {
            if required.is_some_and(|r| r > reached) {
                // A client (or request) that needs MFA gets none from a server without it.
                return Err(MfaError::Disabled);
            }
            return Ok(AfterPassword::Done { amr, acr: reached });
        }
        // An upstream sign-in that already used several factors meets every policy up to `mfa`
        // (an account's own factor, an admin role, a client's `require_mfa`).
        if reached == Acr::Mfa && required.is_none_or(|r| r <= reached) {
            return Ok(AfterPassword::Done { amr, acr: reached });
        }
        let has_factor = !self.factors(user.id).await?.is_empty();
        if !has_factor && !self.required_for(user) && required.is_none() {
            return Ok(AfterPassword::Done {
                amr,
                acr: Acr::OneFactor,
            });
        }
        let data = SignInData {
            amr,
            return_to: return_to.to_string(),
            required: required.map(|r| r.as_str().to_string()),
            enroll: !has_factor,
            step_up: false,
            session_id_hash: None,
            emailed_link: first == FirstFactor::EmailedLink,
            federated: matches!(first, FirstFactor::Upstream { .. }),
        };
        Ok(AfterPassword::Pending(self.hold(user, data).await?))
    }

    /// A signed-in session whose sign-in is weaker than `required`: ask for a factor now
    /// (or enroll one) before the authorization request goes on.
    pub async fn begin_step_up(
        &self,
        user: &User,
        session: &crate::store::BrowserSession,
        required: Acr,
        return_to: &str,
    ) -> Result<PendingSignIn, MfaError> {
        let session_amr = &session.amr;
        self.ensure_enabled()?;
        let has_factor = !self.factors(user.id).await?.is_empty();
        let data = SignInData {
            amr: session_amr.to_vec(),
            return_to: return_to.to_string(),
            required: Some(required.as_str().to_string()),
            enroll: !has_factor,
            step_up: true,
            session_id_hash: Some(session.id_hash.clone()),
            emailed_link: is_emailed_link(session_amr),
            federated: session_amr.iter().any(|m| m == FEDERATED_AMR),
        };
        self.hold(user, data).await
    }

    async fn hold(&self, user: &User, data: SignInData) -> Result<PendingSignIn, MfaError> {
        let token = random::token(32);
        let now = self.clock.now();
        let record = MfaChallenge {
            id_hash: random::hash_secret(&token),
            purpose: PURPOSE.into(),
            user_id: Some(user.id),
            data: serde_json::to_string(&data).map_err(|_| MfaError::Internal)?,
            created_at: now,
            expires_at: now + self.settings.accounts.mfa.sign_in_ttl_secs as i64,
            used_at: None,
        };
        self.store
            .create_challenge(&record)
            .await
            .map_err(store_failed)?;
        self.describe(token, user.clone(), &data).await
    }

    async fn describe(
        &self,
        token: String,
        user: User,
        data: &SignInData,
    ) -> Result<PendingSignIn, MfaError> {
        let factors = self.factors(user.id).await?;
        let required = data.required.as_deref().and_then(Acr::parse);
        let passkey_only = required == Some(Acr::PhishingResistant);
        let methods = Methods {
            totp: !passkey_only && factors.iter().any(|f| f.kind == FactorKind::Totp),
            passkey: self.passkeys.is_some()
                && factors.iter().any(|f| f.kind == FactorKind::Passkey),
            recovery_code: !passkey_only && self.recovery_codes_left(user.id).await? > 0,
        };
        Ok(PendingSignIn {
            token,
            enroll: data.enroll && factors.is_empty(),
            step_up: data.step_up,
            return_to: data.return_to.clone(),
            required,
            methods,
            user,
        })
    }

    /// The record and its live user, if the token names an unspent, unexpired sign-in.
    pub(crate) async fn load(&self, token: &str) -> Result<(SignInData, User), MfaError> {
        if token.is_empty() || token.len() > 128 {
            return Err(MfaError::SignInExpired);
        }
        let now = self.clock.now();
        let record = self
            .store
            .get_challenge(&random::hash_secret(token), PURPOSE, now)
            .await
            .map_err(store_failed)?
            .ok_or(MfaError::SignInExpired)?;
        let data: SignInData =
            serde_json::from_str(&record.data).map_err(|_| MfaError::SignInExpired)?;
        let user = self.live_user(record.user_id).await?;
        Ok((data, user))
    }

    async fn live_user(&self, id: Option<Uuid>) -> Result<User, MfaError> {
        let id = id.ok_or(MfaError::SignInExpired)?;
        self.store
            .get_user(id)
            .await
            .map_err(store_failed)?
            .filter(|u| !u.disabled && u.deleted_at.is_none())
            .ok_or(MfaError::SignInExpired)
    }

    /// The pending sign-in named by `token`, to show its page again.
    pub async fn pending(&self, token: &str) -> Result<PendingSignIn, MfaError> {
        let (data, user) = self.load(token).await?;
        self.describe(token.to_string(), user, &data).await
    }

    /// Completes a pending sign-in with an authenticator-app code or a recovery code (or,
    /// while enrolling, the new app's first code). Attempts are counted per account before
    /// the code is checked; the record is spent only when the code passed.
    pub async fn complete_with_code(
        &self,
        meta: &RequestMeta,
        token: &str,
        code: &str,
    ) -> Result<SignedIn, MfaError> {
        self.ensure_enabled()?;
        let (data, user) = self.load(token).await?;
        let required = data.required.as_deref().and_then(Acr::parse);
        if required == Some(Acr::PhishingResistant) {
            return Err(MfaError::NeedsPasskey);
        }
        let reset_key = self.throttle(meta, user.id).await?;
        let enrolling = data.enroll && self.factors(user.id).await?.is_empty();
        let mut recovery_codes = None;
        let method = if enrolling {
            recovery_codes = self.confirm_totp_checked(meta, &user, code).await?;
            Some("totp")
        } else if let Some(digits) = totp::normalize_code(code) {
            self.verify_totp(&user, &digits).await?.then_some("totp")
        } else if recovery::normalize(code).is_some() {
            self.use_recovery_code(meta, &user, code)
                .await?
                .then_some("recovery_code")
        } else {
            None
        };
        let Some(method) = method else {
            self.failed_attempt(meta, &user).await;
            self.audit(meta, "mfa.failed", user.id, serde_json::json!({}))
                .await;
            self.metrics.count(
                "portcullis_mfa_verifications_total",
                &[("method", "code"), ("result", "failure")],
            );
            return Err(MfaError::InvalidCode);
        };
        self.finish(
            meta,
            token,
            user,
            data,
            &["otp"],
            method,
            recovery_codes,
            reset_key,
        )
        .await
    }

    /// Spends the record and reports the completed sign-in.
    #[allow(clippy::too_many_arguments)] // the parts of one completed sign-in
    pub(crate) async fn finish(
        &self,
        meta: &RequestMeta,
        token: &str,
        user: User,
        data: SignInData,
        added_amr: &[&str],
        method: &str,
        recovery_codes: Option<Vec<String>>,
        reset_key: Option<String>,
    ) -> Result<SignedIn, MfaError> {
        let now = self.clock.now();
        if let Some(hash) = &data.session_id_hash {
            let live = self
                .store
                .get_session(hash)
                .await
                .map_err(store_failed)?
                .is_some_and(|s| s.user_id == user.id && now < s.expires_at);
            if !live {
                return Err(MfaError::SignInExpired);
            }
        }
        if self
            .store
            .consume_challenge(&random::hash_secret(token), PURPOSE, now)
            .await
            .map_err(store_failed)?
            .is_none()
        {
            return Err(MfaError::SignInExpired);
        }
        if let Some(key) = reset_key {
            self.limiter.reset(&key).await;
        }
        self.passed_attempt(user.id).await;
        let amr = if data.emailed_link || data.federated {
            combine_after_link(&data.amr, added_amr)
        } else {
            combine_amr(&data.amr, added_amr)
        };
        let acr = if data.federated {
            // Our own chain: the upstream sign-in as one factor, then ours.
            Acr::of_amr(&combine_after_link(&[FEDERATED_AMR.to_string()], added_amr))
        } else {
            Acr::of_amr(&amr)
        };
        self.audit(
            meta,
            "mfa.succeeded",
            user.id,
            serde_json::json!({"method": method, "step_up": data.step_up}),
        )
        .await;
        self.metrics.count(
            "portcullis_mfa_verifications_total",
            &[("method", method), ("result", "success")],
        );
        Ok(SignedIn {
            user,
            amr,
            acr,
            return_to: data.return_to,
            step_up: data.step_up,
            recovery_codes,
        })
    }
}
