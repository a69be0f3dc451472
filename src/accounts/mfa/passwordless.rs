//! Passwordless sign-in: a discoverable passkey names its owner (the user handle) and, once its
//! signature verifies against the credential stored for that owner, signs in on its own. The
//! ceremony is a single-use database record like the others; no pending sign-in is involved.

use super::passkeys::{methods_of, refused, stored, CeremonyRecord, PASSWORDLESS};
use super::policy::{combine_amr, Acr};
use super::webauthn::PasskeyError;
use super::{store_failed, MfaError, MfaService, PasskeyCeremony, SignedIn};
use crate::accounts::service::RequestMeta;

impl MfaService {
    /// Starts a passwordless sign-in: any discoverable passkey for our RP ID may answer (also
    /// through the browser's autofill). Answers `{"publicKey": {...}, "mediation": ...}`.
    pub async fn start_passwordless(&self) -> Result<PasskeyCeremony, MfaError> {
        let rp = self.relying_party()?;
        let (options, state) = rp.start_discoverable().map_err(refused)?;
        let record = CeremonyRecord {
            state,
            name: None,
            sign_in: None,
        };
        self.hold_ceremony(PASSWORDLESS, None, &record, options)
            .await
    }

    /// Finishes a passwordless sign-in: the passkey names its owner (user handle), which must
    /// be the account the credential is stored for; a verified passkey is two factors on its
    /// own (possession and the authenticator's user verification), so the sign-in is `phr`.
    #[tracing::instrument(skip_all)]
    pub async fn complete_passwordless(
        &self,
        meta: &RequestMeta,
        ceremony: &str,
        credential: &str,
        return_to: &str,
    ) -> Result<SignedIn, MfaError> {
        let rp = self.relying_party()?;
        let (_, record) = self.spend_ceremony(PASSWORDLESS, ceremony).await?;
        // Refusals before the owner is known have no account to audit; they are counted.
        let unknown = |e: PasskeyError| {
            self.metrics.count(
                "portcullis_mfa_verifications_total",
                &[("method", "passkey"), ("result", "failure")],
            );
            refused(e)
        };
        let (claimed, credential_id) = rp.identify(credential).map_err(unknown)?;
        let factor = self
            .store
            .find_passkey(&credential_id)
            .await
            .map_err(store_failed)?
            .filter(|f| f.confirmed_at.is_some());
        // The user handle is unsigned: it must name the credential's owner (WebAuthn §7.2).
        let Some((factor, passkey)) = factor
            .filter(|f| f.user_id == claimed)
            .and_then(|f| stored(&f).map(|p| (f, p)))
        else {
            return Err(unknown(PasskeyError::UnknownCredential));
        };
        let user = self
            .store
            .get_user(factor.user_id)
            .await
            .map_err(store_failed)?
            .filter(|u| !u.disabled && u.deleted_at.is_none())
            .ok_or_else(|| unknown(PasskeyError::UnknownCredential))?;
        let used = match rp.finish_discoverable(&record.state, credential, user.id, &passkey) {
            Ok(used) => used,
            Err(e) => return Err(self.passkey_failed(meta, user.id, e).await),
        };
        if self.settings.accounts.require_verified_email && !user.email_verified {
            return Err(MfaError::Invalid {
                code: "email_not_verified",
                message: "verify your email address first: follow the link we sent you".into(),
            });
        }
        let now = self.clock.now();
        self.store
            .touch_passkey(
                factor.id,
                used.updated.as_ref().map(|p| p.data.as_str()),
                now,
            )
            .await
            .map_err(store_failed)?;
        let amr = combine_amr(&[], &methods_of(&used));
        let acr = Acr::of_amr(&amr);
        self.audit(
            meta,
            "mfa.succeeded",
            user.id,
            serde_json::json!({"method": "passkey", "passwordless": true}),
        )
        .await;
        self.metrics.count(
            "portcullis_mfa_verifications_total",
            &[("method", "passkey"), ("result", "success")],
        );
        Ok(SignedIn {
            user,
            amr,
            acr,
            return_to: return_to.to_string(),
            step_up: false,
            recovery_codes: None,
        })
    }
}
