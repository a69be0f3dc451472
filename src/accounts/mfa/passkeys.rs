//! Passkeys in the account's life: registering several (named) on the security page and a
//! passkey as the second factor of a pending sign-in (passwordless sign-in: `passwordless.rs`).
//! Each ceremony's state is a single-use database record keyed by the hash of a random id, never
//! a cookie, so any instance finishes what another began. Decides; never touches HTTP or SQL.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use super::webauthn::{PasskeyError, PasskeyUse, Passkeys, StoredPasskey, CEREMONY_LIFETIME};
use super::{recovery, store_failed, MfaError, MfaService, SignedIn};
use crate::accounts::service::RequestMeta;
use crate::config::Settings;
use crate::random;
use crate::store::{FactorKind, MfaChallenge, MfaFactor, StoreError, User};

/// The purposes of ceremony records; a record only finishes the ceremony it was made for.
const REGISTRATION: &str = "passkey_registration";
const SECOND_FACTOR: &str = "passkey_second_factor";
/// Registering the first passkey of an account during a sign-in that needs `phr`.
const SIGN_IN_REGISTRATION: &str = "passkey_sign_in_registration";
pub(super) const PASSWORDLESS: &str = "passkey_passwordless";

/// What a passkey is called when its owner gives no name.
pub const DEFAULT_NAME: &str = "Passkey";
const MAX_NAME_CHARS: usize = 64;

/// A started ceremony: the id the page posts back, and the options for the browser
/// (`{"publicKey": {...}}`).
pub struct PasskeyCeremony {
    /// The random id naming the stored state; only its hash is stored.
    pub ceremony: String,
    pub options: Value,
}

impl std::fmt::Debug for PasskeyCeremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyCeremony")
            .field("ceremony", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// What a ceremony record holds next to webauthn-rs's state.
#[derive(Serialize, Deserialize)]
pub(super) struct CeremonyRecord {
    pub(super) state: String,
    /// Registration: the name the user gave the new passkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    /// Second factor, and registration during a sign-in: the hash of the pending sign-in's
    /// token, so the answer completes that sign-in and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sign_in: Option<String>,
}

/// The relying party of these settings: RP ID and origin as configured, else from the issuer.
/// `None`, with a warning, when the issuer cannot host WebAuthn (plain http other than
/// localhost, an IP address): passkeys are then simply not offered.
pub(super) fn relying_party(settings: &Settings) -> Option<Passkeys> {
    let mfa = &settings.accounts.mfa;
    let configured = || -> Result<Passkeys, String> {
        let issuer = Url::parse(&settings.issuer).map_err(|e| e.to_string())?;
        let origin = match &mfa.webauthn_origin {
            Some(origin) => Url::parse(origin).map_err(|e| format!("{origin}: {e}"))?,
            None => issuer.clone(),
        };
        let rp_id = match &mfa.webauthn_rp_id {
            Some(id) => id.clone(),
            None => issuer
                .domain()
                .ok_or_else(|| format!("the issuer {issuer} has no domain name"))?
                .to_string(),
        };
        Passkeys::new(&rp_id, &settings.branding.product_name, &origin).map_err(|e| e.to_string())
    };
    match configured() {
        Ok(rp) => Some(rp),
        Err(reason) => {
            if mfa.enabled {
                tracing::warn!(
                    %reason,
                    "passkeys are not offered: set accounts.mfa.webauthn_rp_id and \
                     webauthn_origin, or serve the issuer over https with a domain name"
                );
            }
            None
        }
    }
}

/// A user-facing refusal (a 4xx); only our own configuration or stored data make a 500.
pub(super) fn refused(e: PasskeyError) -> MfaError {
    match e {
        PasskeyError::Configuration(reason) | PasskeyError::Internal(reason) => {
            tracing::error!(%reason, "a passkey ceremony failed on our side");
            MfaError::Internal
        }
        PasskeyError::UnknownCeremony => ceremony_invalid(),
        PasskeyError::AlreadyRegistered => already_registered(),
        PasskeyError::Malformed(_) => MfaError::Invalid {
            code: "passkey_malformed",
            message: e.to_string(),
        },
        other => {
            tracing::info!(reason = %other, "a passkey was refused");
            MfaError::Invalid {
                code: "passkey_refused",
                message: other.to_string(),
            }
        }
    }
}

fn ceremony_invalid() -> MfaError {
    MfaError::Invalid {
        code: "ceremony_invalid",
        message: PasskeyError::UnknownCeremony.to_string(),
    }
}

fn already_registered() -> MfaError {
    MfaError::Invalid {
        code: "passkey_registered",
        message: PasskeyError::AlreadyRegistered.to_string(),
    }
}

/// The name of a new passkey: trimmed, 1 to 64 characters, no control characters; empty means
/// [`DEFAULT_NAME`].
pub fn passkey_name(raw: &str) -> Result<String, MfaError> {
    let name = raw.trim();
    if name.is_empty() {
        return Ok(DEFAULT_NAME.into());
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(MfaError::Invalid {
            code: "invalid_name",
            message: format!(
                "give the passkey a name of at most {MAX_NAME_CHARS} characters, on one line"
            ),
        });
    }
    Ok(name.to_string())
}

/// A stored passkey factor as the ceremonies take it.
pub(super) fn stored(factor: &MfaFactor) -> Option<StoredPasskey> {
    let (Some(id), Some(data)) = (&factor.credential_id, &factor.credential) else {
        return None;
    };
    let backup_eligible = serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_eligible").and_then(Value::as_bool))
        .unwrap_or(false);
    Some(StoredPasskey {
        credential_id: id.clone(),
        data: data.clone(),
        backup_eligible,
    })
}

/// What a passkey just registered proved, as a use of it: the registration ceremony is bound to
/// our origin like an assertion, and the authenticator reports whether it verified the user.
fn registered_use(passkey: &StoredPasskey) -> PasskeyUse {
    let user_verified = serde_json::from_str::<Value>(&passkey.data)
        .ok()
        .and_then(|v| v.pointer("/cred/user_verified").and_then(Value::as_bool))
        .unwrap_or(false);
    PasskeyUse {
        credential_id: passkey.credential_id.clone(),
        user_verified,
        backup_eligible: passkey.backup_eligible,
        backup_state: false,
        updated: None,
    }
}

/// The RFC 8176 methods one verified passkey adds: the key (`hwk`/`swk`), the user-presence
/// test every WebAuthn assertion carries (`user`), and `mfa` when the authenticator also
/// verified the user (a PIN or biometric on top of possession: two kinds of factor).
pub(super) fn methods_of(used: &PasskeyUse) -> Vec<&'static str> {
    let mut amr = vec![used.amr(), "user"];
    if used.user_verified {
        amr.push("mfa");
    }
    amr
}

impl MfaService {
    /// Whether this server offers passkeys (second factors on, and a usable relying party).
    pub fn passkeys_offered(&self) -> bool {
        self.enabled() && self.passkeys.is_some()
    }

    pub(super) fn relying_party(&self) -> Result<&Passkeys, MfaError> {
        self.ensure_enabled()?;
        self.passkeys.as_ref().ok_or(MfaError::PasskeysUnavailable)
    }

    /// The user's confirmed passkeys, with the factor each one is.
    async fn passkeys_of(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<(MfaFactor, StoredPasskey)>, MfaError> {
        Ok(self
            .factors(user_id)
            .await?
            .into_iter()
            .filter(|f| f.kind == FactorKind::Passkey)
            .filter_map(|f| stored(&f).map(|p| (f, p)))
            .collect())
    }

    pub(super) async fn hold_ceremony(
        &self,
        purpose: &str,
        user_id: Option<Uuid>,
        record: &CeremonyRecord,
        options: Value,
    ) -> Result<PasskeyCeremony, MfaError> {
        let ceremony = random::token(32);
        let now = self.clock.now();
        let challenge = MfaChallenge {
            id_hash: random::hash_secret(&ceremony),
            purpose: purpose.into(),
            user_id,
            data: serde_json::to_string(record).map_err(|_| MfaError::Internal)?,
            created_at: now,
            expires_at: now + CEREMONY_LIFETIME.as_secs() as i64,
            used_at: None,
        };
        self.store
            .create_challenge(&challenge)
            .await
            .map_err(store_failed)?;
        Ok(PasskeyCeremony { ceremony, options })
    }

    /// Spends a ceremony record of this purpose: it is used once, whether or not its answer
    /// then verifies.
    pub(super) async fn spend_ceremony(
        &self,
        purpose: &str,
        ceremony: &str,
    ) -> Result<(Option<Uuid>, CeremonyRecord), MfaError> {
        if ceremony.is_empty() || ceremony.len() > 128 {
            return Err(ceremony_invalid());
        }
        let record = self
            .store
            .consume_challenge(&random::hash_secret(ceremony), purpose, self.clock.now())
            .await
            .map_err(store_failed)?
            .ok_or_else(ceremony_invalid)?;
        let data = serde_json::from_str(&record.data).map_err(|_| ceremony_invalid())?;
        Ok((record.user_id, data))
    }

    pub(super) async fn passkey_failed(
        &self,
        meta: &RequestMeta,
        user_id: Uuid,
        e: PasskeyError,
    ) -> MfaError {
        self.audit(
            meta,
            "mfa.failed",
            user_id,
            serde_json::json!({"method": "passkey", "reason": e.to_string()}),
        )
        .await;
        self.metrics.count(
            "portcullis_mfa_verifications_total",
            &[("method", "passkey"), ("result", "failure")],
        );
        refused(e)
    }

    /// Starts registering a passkey named `name` for a signed-in user (the caller checked the
    /// recent sign-in). The account's passkeys are excluded (WebAuthn §5.4 `excludeCredentials`).
    #[tracing::instrument(skip_all, fields(user = %user.id))]
    pub async fn start_passkey_registration(
        &self,
        user: &User,
        name: &str,
    ) -> Result<PasskeyCeremony, MfaError> {
        let rp = self.relying_party()?;
        let name = passkey_name(name)?;
        let exclude: Vec<StoredPasskey> = self
            .passkeys_of(user.id)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let display_name = user.name.as_deref().unwrap_or("");
        let (options, state) = rp
            .start_registration(user.id, &user.email, display_name, &exclude)
            .map_err(refused)?;
        let record = CeremonyRecord {
            state,
            name: Some(name),
            sign_in: None,
        };
        self.hold_ceremony(REGISTRATION, Some(user.id), &record, options)
            .await
    }

    /// Verifies the browser's answer and stores the passkey, confirmed at once. At the first
    /// factor of the account, answers the new recovery codes (shown once), written in the same
    /// transaction as the confirmation.
    #[tracing::instrument(skip_all, fields(user = %user.id))]
    pub async fn finish_passkey_registration(
        &self,
        meta: &RequestMeta,
        user: &User,
        ceremony: &str,
        credential: &str,
    ) -> Result<Option<Vec<String>>, MfaError> {
        let rp = self.relying_party()?;
        let (owner, record) = self.spend_ceremony(REGISTRATION, ceremony).await?;
        if owner != Some(user.id) {
            return Err(ceremony_invalid());
        }
        let passkey = match rp.finish_registration(user.id, &record.state, credential) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.count(
                    "portcullis_mfa_verifications_total",
                    &[("method", "passkey_enroll"), ("result", "failure")],
                );
                return Err(refused(e));
            }
        };
        let name = record.name.unwrap_or_else(|| DEFAULT_NAME.into());
        self.store_passkey(meta, user, &passkey, &name).await
    }

    /// Stores a verified new passkey, confirmed at once, audits and mails it. At the first factor
    /// of the account, answers the new recovery codes (shown once), written in the same
    /// transaction as the confirmation.
    async fn store_passkey(
        &self,
        meta: &RequestMeta,
        user: &User,
        passkey: &StoredPasskey,
        name: &str,
    ) -> Result<Option<Vec<String>>, MfaError> {
        // WebAuthn §7.1 step 22: a credential id registered to anyone is refused.
        if self
            .store
            .find_passkey(&passkey.credential_id)
            .await
            .map_err(store_failed)?
            .is_some()
        {
            return Err(already_registered());
        }
        let now = self.clock.now();
        let factor = MfaFactor {
            id: Uuid::now_v7(),
            user_id: user.id,
            kind: FactorKind::Passkey,
            name: name.to_string(),
            secret_sealed: None,
            last_step: None,
            credential_id: Some(passkey.credential_id.clone()),
            credential: Some(passkey.data.clone()),
            // Confirmed below, with the recovery codes of a first factor in one transaction.
            confirmed_at: None,
            created_at: now,
            last_used_at: None,
        };
        match self.store.create_factor(&factor).await {
            Ok(()) => {}
            // Another request registered the same credential meanwhile.
            Err(StoreError::Conflict(_)) => return Err(already_registered()),
            Err(e) => return Err(store_failed(e)),
        }
        // Made every time; kept (and shown) only if this turns out to be the first factor.
        let all_codes = recovery::generate();
        let hashes: Vec<String> = all_codes
            .iter()
            .map(|code| recovery::hash(self.keys.master(), user.id, code))
            .collect();
        let enrolled = self.enrolled_event(meta, user, factor.id, "passkey");
        let confirmed = self
            .store
            .confirm_factor(factor.id, user.id, 0, now, &hashes, &[enrolled])
            .await;
        let first = match confirmed {
            Ok(Some(first)) => first,
            other => {
                if let Err(e) = self
                    .store
                    .delete_factor(user.id, factor.id, false, &[])
                    .await
                {
                    tracing::error!(error = %e, "an unconfirmed passkey could not be removed");
                }
                return Err(other.map_or_else(store_failed, |_| MfaError::Internal));
            }
        };
        let codes = first.then_some(all_codes);
        self.audit(
            meta,
            "mfa.enrolled",
            user.id,
            serde_json::json!({"kind": "passkey", "factor": factor.id}),
        )
        .await;
        self.metrics.count(
            "portcullis_mfa_changes_total",
            &[("op", "enrolled"), ("kind", "passkey")],
        );
        self.accounts.send_security_notice(
            user,
            &format!("A passkey was added to your account as a second factor: {name}."),
        );
        Ok(codes)
    }

    /// The passkey ceremony of a pending sign-in, bound to it and its user; `None` when the
    /// user has no passkey or this server offers none.
    #[tracing::instrument(skip_all, fields(user = %pending.user.id))]
    pub async fn passkey_options_for(
        &self,
        pending: &super::PendingSignIn,
    ) -> Result<Option<PasskeyCeremony>, MfaError> {
        let Some(rp) = self.passkeys.as_ref().filter(|_| self.enabled()) else {
            return Ok(None);
        };
        let credentials: Vec<StoredPasskey> = self
            .passkeys_of(pending.user.id)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if credentials.is_empty() {
            return Ok(None);
        }
        let (options, state) = rp
            .start_authentication(pending.user.id, &credentials)
            .map_err(refused)?;
        let record = CeremonyRecord {
            state,
            name: None,
            sign_in: Some(random::hash_secret(&pending.token)),
        };
        self.hold_ceremony(SECOND_FACTOR, Some(pending.user.id), &record, options)
            .await
            .map(Some)
    }

    /// The registration ceremony of a pending sign-in that needs `phr` from an account with no
    /// passkey, bound to that sign-in and its user; `None` when this server offers no passkeys,
    /// the sign-in needs less, or the account already has a passkey to use.
    #[tracing::instrument(skip_all, fields(user = %pending.user.id))]
    pub async fn passkey_enrollment_for(
        &self,
        pending: &super::PendingSignIn,
    ) -> Result<Option<PasskeyCeremony>, MfaError> {
        let Some(rp) = self.passkeys.as_ref().filter(|_| self.enabled()) else {
            return Ok(None);
        };
        if pending.required != Some(super::Acr::PhishingResistant) {
            return Ok(None);
        }
        let exclude: Vec<StoredPasskey> = self
            .passkeys_of(pending.user.id)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if !exclude.is_empty() {
            return Ok(None);
        }
        let user = &pending.user;
        let (options, state) = rp
            .start_registration(
                user.id,
                &user.email,
                user.name.as_deref().unwrap_or(""),
                &exclude,
            )
            .map_err(refused)?;
        let record = CeremonyRecord {
            state,
            name: None,
            sign_in: Some(random::hash_secret(&pending.token)),
        };
        self.hold_ceremony(SIGN_IN_REGISTRATION, Some(user.id), &record, options)
            .await
            .map(Some)
    }

    /// Adds a passkey named `name` during a pending sign-in that needs `phr` (the answer to
    /// [`Self::passkey_enrollment_for`]) and completes the sign-in with it. Attempts count
    /// against the account's second-factor budget before anything is checked; the ceremony is
    /// spent whatever the outcome. A first factor comes with its recovery codes, shown once.
    #[tracing::instrument(skip_all)]
    pub async fn enroll_passkey_for_sign_in(
        &self,
        meta: &RequestMeta,
        token: &str,
        ceremony: &str,
        credential: &str,
        name: &str,
    ) -> Result<SignedIn, MfaError> {
        let rp = self.relying_party()?;
        let (data, user) = self.load(token).await?;
        let reset_key = self.throttle(meta, user.id).await?;
        let name = passkey_name(name)?;
        let (owner, record) = self.spend_ceremony(SIGN_IN_REGISTRATION, ceremony).await?;
        if owner != Some(user.id) || record.sign_in != Some(random::hash_secret(token)) {
            return Err(ceremony_invalid());
        }
        let passkey = match rp.finish_registration(user.id, &record.state, credential) {
            Ok(p) => p,
            Err(e) => return Err(self.passkey_failed(meta, user.id, e).await),
        };
        let recovery_codes = self.store_passkey(meta, &user, &passkey, &name).await?;
        let used = registered_use(&passkey);
        self.finish(
            meta,
            token,
            user,
            data,
            &methods_of(&used),
            "passkey_enroll",
            recovery_codes,
            reset_key,
        )
        .await
    }

    /// Completes a pending sign-in with a passkey. Attempts count against the account's
    /// second-factor budget before anything is checked; the ceremony is spent whatever the
    /// outcome, the sign-in only when the passkey verified. Satisfies a required `phr`.
    #[tracing::instrument(skip_all)]
    pub async fn complete_with_passkey(
        &self,
        meta: &RequestMeta,
        token: &str,
        ceremony: &str,
        credential: &str,
    ) -> Result<SignedIn, MfaError> {
        let rp = self.relying_party()?;
        let (data, user) = self.load(token).await?;
        let reset_key = self.throttle(meta, user.id).await?;
        let (owner, record) = self.spend_ceremony(SECOND_FACTOR, ceremony).await?;
        if owner != Some(user.id) || record.sign_in != Some(random::hash_secret(token)) {
            return Err(ceremony_invalid());
        }
        let passkeys = self.passkeys_of(user.id).await?;
        let credentials: Vec<StoredPasskey> = passkeys.iter().map(|(_, p)| p.clone()).collect();
        let used = match rp.finish_authentication(user.id, &record.state, credential, &credentials)
        {
            Ok(used) => used,
            Err(e) => {
                self.failed_attempt(meta, &user).await;
                return Err(self.passkey_failed(meta, user.id, e).await);
            }
        };
        let factor = passkeys
            .iter()
            .find(|(_, p)| p.credential_id == used.credential_id)
            .map(|(f, _)| f.id)
            .ok_or(MfaError::Internal)?;
        self.store
            .touch_passkey(
                factor,
                used.updated.as_ref().map(|p| p.data.as_str()),
                self.clock.now(),
            )
            .await
            .map_err(store_failed)?;
        self.finish(
            meta,
            token,
            user,
            data,
            &methods_of(&used),
            "passkey",
            None,
            reset_key,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkey_names_are_one_line_of_at_most_64_characters() {
        assert_eq!(passkey_name("  ").unwrap(), DEFAULT_NAME);
        assert_eq!(passkey_name(" Work laptop ").unwrap(), "Work laptop");
        assert_eq!(passkey_name(&"é".repeat(64)).unwrap().chars().count(), 64);
        assert!(passkey_name(&"a".repeat(65)).is_err());
        assert!(passkey_name("two\nlines").is_err());
    }

    #[test]
    fn an_http_ip_issuer_offers_no_passkeys_and_localhost_does() {
        let mut settings = Settings {
            issuer: "http://127.0.0.1:8080".into(),
            ..Default::default()
        };
        assert!(relying_party(&settings).is_none());
        settings.issuer = "http://localhost:8080".into();
        assert!(relying_party(&settings).is_some());
        settings.issuer = "https://id.example.com".into();
        assert!(relying_party(&settings).is_some());
        settings.accounts.mfa.webauthn_rp_id = Some("example.com".into());
        assert!(relying_party(&settings).is_some());
        settings.accounts.mfa.webauthn_rp_id = Some("other.org".into());
        assert!(relying_party(&settings).is_none());
    }
}
