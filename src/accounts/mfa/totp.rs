//! Authenticator apps (RFC 6238 over RFC 4226): SHA-1, 6 digits, 30-second steps, one step
//! of skew either side — the parameters Google Authenticator, Authy, 1Password and the rest
//! accept. The shared key is sealed under the master key at rest; each time step is
//! accepted at most once (RFC 6238 §5.2, NIST SP 800-63B §5.1.4.2), by one conditional
//! update, so a replayed code or a second parallel use of the same code fails.

use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Totp};
use uuid::Uuid;

use super::{recovery, store_failed, MfaError, MfaService};
use crate::accounts::service::RequestMeta;
use crate::store::{FactorKind, MfaFactor, User};

const STEP_SECS: u64 = 30;
const DIGITS: u8 = 6;
/// RFC 4226 §4 R6 asks for at least 128 bits and recommends 160.
const KEY_BYTES: usize = 20;

/// What the enrollment page and `POST /auth/mfa/totp` show: the key as text and as a QR code
/// of its `otpauth://` URI. Shown once; afterwards only the sealed key exists.
pub struct TotpEnrollment {
    pub factor_id: Uuid,
    /// Base32 (RFC 4648) without padding, as authenticator apps take it typed in.
    pub secret: String,
    pub otpauth_uri: String,
    /// An SVG document, rendered here (no third party sees the key).
    pub qr_svg: String,
}

fn seal_context(factor_id: Uuid) -> Vec<u8> {
    let mut c = b"totp:".to_vec();
    c.extend_from_slice(factor_id.as_bytes());
    c
}

fn totp(key: Vec<u8>, issuer: &str, account: &str) -> Result<Totp, MfaError> {
    let build = |account: &str| {
        totp_rs::Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(1)
            .with_step_duration(STEP_SECS)
            .with_secret(key.clone())
            .with_issuer(Some(issuer.replace(':', " ")))
            .with_account_name(account.replace(':', " "))
            .build()
    };
    build(account).map_err(|e| {
        tracing::error!(error = %e, "TOTP parameters were refused");
        MfaError::Internal
    })
}

/// The QR code of an `otpauth://` URI as an SVG document (paths only: no script, no style).
fn qr_svg(uri: &str) -> Result<String, MfaError> {
    Ok(qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| {
            tracing::error!(error = %e, "the QR code could not be made");
            MfaError::Internal
        })?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// Only the digits of what was typed ("123 456" and "123-456" are fine).
pub(super) fn normalize_code(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (digits.len() == DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// The time step in `[now - 1, now + 1]` whose code is `code`, if any, later than
/// `after` (the last accepted step).
pub(super) fn matching_step(totp: &Totp, code: &str, now: i64, after: Option<i64>) -> Option<i64> {
    let current = now.max(0) as u64 / STEP_SECS;
    let mut found = None;
    // Every step of the window is computed and compared, whichever matches.
    for step in current.saturating_sub(1)..=current + 1 {
        let expected = totp.generate(step * STEP_SECS).to_string();
        let same: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        let fresh = after.is_none_or(|last| step as i64 > last);
        if same && fresh && found.is_none() {
            found = Some(step as i64);
        }
    }
    found
}

impl MfaService {
    fn open_key(&self, factor: &MfaFactor) -> Result<Vec<u8>, MfaError> {
        let sealed = factor.secret_sealed.as_deref().ok_or(MfaError::Internal)?;
        self.keys
            .master()
            .open(&seal_context(factor.id), sealed)
            .map_err(|e| {
                tracing::error!(error = %e, factor = %factor.id, "a TOTP key could not be opened");
                MfaError::Internal
            })
    }

    fn totp_of(&self, factor: &MfaFactor, user: &User) -> Result<Totp, MfaError> {
        let key = self.open_key(factor)?;
        totp(key, &self.settings.branding.product_name, &user.email)
    }

    /// Starts an authenticator-app enrollment: a new key, stored sealed and unconfirmed
    /// (replacing any earlier unconfirmed one) until the first code proves the app has it.
    pub async fn begin_totp(&self, user: &User) -> Result<TotpEnrollment, MfaError> {
        self.ensure_enabled()?;
        let mut key = vec![0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let id = Uuid::now_v7();
        let totp = totp(
            key.clone(),
            &self.settings.branding.product_name,
            &user.email,
        )?;
        let otpauth_uri = totp.to_url().map_err(|e| {
            tracing::error!(error = %e, "no otpauth URI for a TOTP key");
            MfaError::Internal
        })?;
        let qr_svg = qr_svg(&otpauth_uri)?;
        let now = self.clock.now();
        let factor = MfaFactor {
            id,
            user_id: user.id,
            kind: FactorKind::Totp,
            name: "Authenticator app".into(),
            secret_sealed: Some(self.keys.master().seal(&seal_context(id), &key)),
            last_step: None,
            credential_id: None,
            credential: None,
            confirmed_at: None,
            created_at: now,
            last_used_at: None,
        };
        self.store
            .create_factor(&factor)
            .await
            .map_err(store_failed)?;
        Ok(TotpEnrollment {
            factor_id: id,
            secret: totp.secret().to_base32(),
            otpauth_uri,
            qr_svg,
        })
    }

    /// The enrollment page's key: the one still waiting for its first code (so a page shown
    /// again after a typo keeps the key already scanned), or a new one.
    pub async fn enrollment_for(&self, user: &User) -> Result<TotpEnrollment, MfaError> {
        self.ensure_enabled()?;
        let all = self
            .store
            .list_factors(user.id)
            .await
            .map_err(store_failed)?;
        let fresh_since = self.clock.now() - self.settings.accounts.mfa.sign_in_ttl_secs as i64;
        let waiting = all.iter().rev().find(|f| {
            f.kind == FactorKind::Totp && f.confirmed_at.is_none() && f.created_at >= fresh_since
        });
        let Some(factor) = waiting else {
            return self.begin_totp(user).await;
        };
        let totp = self.totp_of(factor, user)?;
        let otpauth_uri = totp.to_url().map_err(|_| MfaError::Internal)?;
        Ok(TotpEnrollment {
            factor_id: factor.id,
            secret: totp.secret().to_base32(),
            qr_svg: qr_svg(&otpauth_uri)?,
            otpauth_uri,
        })
    }

    /// Finishes the enrollment with the app's current code. At the first factor of the
    /// account, answers the new recovery codes (shown once). Attempts count against the
    /// account's second-factor budget.
    pub async fn confirm_totp(
        &self,
        meta: &RequestMeta,
        user: &User,
        code: &str,
    ) -> Result<Option<Vec<String>>, MfaError> {
        self.ensure_enabled()?;
        let reset_key = self.throttle(meta, user.id).await?;
        let codes = self.confirm_totp_checked(meta, user, code).await?;
        if let Some(key) = reset_key {
            self.limiter.reset(&key).await;
        }
        Ok(codes)
    }

    /// `confirm_totp` once the attempt was counted.
    pub(super) async fn confirm_totp_checked(
        &self,
        meta: &RequestMeta,
        user: &User,
        code: &str,
    ) -> Result<Option<Vec<String>>, MfaError> {
        let all = self
            .store
            .list_factors(user.id)
            .await
            .map_err(store_failed)?;
        let Some(pending) = all
            .iter()
            .rev()
            .find(|f| f.kind == FactorKind::Totp && f.confirmed_at.is_none())
        else {
            return Err(MfaError::NoEnrollment);
        };
        let code = normalize_code(code).ok_or(MfaError::InvalidCode)?;
        let now = self.clock.now();
        let totp = self.totp_of(pending, user)?;
        let Some(step) = matching_step(&totp, &code, now, None) else {
            self.metrics.count(
                "portcullis_mfa_verifications_total",
                &[("method", "totp_enroll"), ("result", "failure")],
            );
            return Err(MfaError::InvalidCode);
        };
        // Made every time; kept (and shown) only if this turns out to be the first factor.
        let codes = recovery::generate();
        let hashes: Vec<String> = codes
            .iter()
            .map(|code| recovery::hash(self.keys.master(), user.id, code))
            .collect();
        let enrolled = self.enrolled_event(meta, user, pending.id, "totp");
        let Some(first) = self
            .store
            .confirm_factor(pending.id, user.id, step, now, &hashes, &[enrolled])
            .await
            .map_err(store_failed)?
        else {
            return Err(MfaError::NoEnrollment);
        };
        let codes = first.then_some(codes);
        self.audit(
            meta,
            "mfa.enrolled",
            user.id,
            serde_json::json!({"kind": "totp", "factor": pending.id}),
        )
        .await;
        self.metrics.count(
            "portcullis_mfa_changes_total",
            &[("op", "enrolled"), ("kind", "totp")],
        );
        self.accounts.send_security_notice(
            user,
            "An authenticator app was added to your account as a second factor.",
        );
        Ok(codes)
    }

    /// Checks a code against the user's confirmed authenticator apps, spending its step.
    /// `Ok(false)`: no app of the user accepts it (wrong, stale or already used).
    pub(super) async fn verify_totp(&self, user: &User, code: &str) -> Result<bool, MfaError> {
        let now = self.clock.now();
        for factor in self.factors(user.id).await? {
            if factor.kind != FactorKind::Totp {
                continue;
            }
            let totp = self.totp_of(&factor, user)?;
            let Some(step) = matching_step(&totp, code, now, factor.last_step) else {
                continue;
            };
            // The conditional update decides between parallel uses of one code.
            if self
                .store
                .use_totp_step(factor.id, step, now)
                .await
                .map_err(store_failed)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Totp {
        // RFC 6238 Appendix B's SHA-1 key.
        totp(
            b"12345678901234567890".to_vec(),
            "Portcullis",
            "a@example.com",
        )
        .unwrap()
    }

    #[test]
    fn rfc_6238_test_vectors_hold() {
        // Appendix B, truncated to 6 digits: T = 59 s -> 94287082, T = 1111111109 -> 07081804.
        let t = app();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert_eq!(t.generate(1_111_111_109).to_string(), "081804");
    }

    #[test]
    fn the_window_is_one_step_either_side_and_each_step_counts_once() {
        let t = app();
        let now = 1_111_111_109;
        let step = now / 30;
        let code_at = |s: i64| t.generate((s * 30) as u64).to_string();
        assert_eq!(matching_step(&t, &code_at(step), now, None), Some(step));
        assert_eq!(
            matching_step(&t, &code_at(step - 1), now, None),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&t, &code_at(step + 1), now, None),
            Some(step + 1)
        );
        assert_eq!(matching_step(&t, &code_at(step - 2), now, None), None);
        assert_eq!(matching_step(&t, &code_at(step + 2), now, None), None);
        assert_eq!(
            matching_step(&t, &code_at(step), now, Some(step)),
            None,
            "a used step is refused"
        );
        assert_eq!(
            matching_step(&t, &code_at(step - 1), now, Some(step)),
            None,
            "so is an older one"
        );
    }

    #[test]
    fn typed_codes_are_normalized() {
        assert_eq!(normalize_code("123 456").as_deref(), Some("123456"));
        assert_eq!(normalize_code("123-456").as_deref(), Some("123456"));
        assert_eq!(normalize_code("12345"), None);
        assert_eq!(normalize_code("12345a"), None);
        assert_eq!(normalize_code("١٢٣٤٥٦"), None, "ASCII digits only");
    }
}
