//! Setting a new password: through a mailed reset link, or by a signed-in user who knows the
//! current one; either way the user is signed out everywhere. Decides when a password may be
//! replaced; never reveals whether an address has an account.

use uuid::Uuid;

use super::policy::check_password;
use super::service::{link_hash, store_failed, AccountError, RequestMeta};
use super::{AccountService, Email};
use crate::events::EventType;
use crate::random;
use crate::store::{TokenPurpose, User};

impl AccountService {
    /// Mails a reset link when `email` has a live account; always answers the same.
    pub async fn request_password_reset(
        &self,
        meta: &RequestMeta,
        email: &str,
    ) -> Result<(), AccountError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let user = self.live_user_by_email(email.as_str()).await?;
        let mut event = self.audit_event("password.reset_requested", meta);
        if let Some(user) = user {
            event.subject = Some(user.id.to_string());
            if self.mail_budget(&user.email).await {
                self.send_reset(&user).await?;
            }
        }
        self.record(event).await;
        Ok(())
    }

    /// The account a reset link is for, if the link is live (for the reset page's form).
    pub async fn reset_link_user(&self, token: &str) -> Result<User, AccountError> {
        let token = self
            .store
            .get_account_token(
                &link_hash(token)?,
                TokenPurpose::PasswordReset,
                self.clock.now(),
            )
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::InvalidToken)?;
        self.store
            .get_user(token.user_id)
            .await
            .map_err(store_failed)?
            .filter(|u| u.deleted_at.is_none() && !u.disabled)
            .ok_or(AccountError::InvalidToken)
    }

    /// Sets a new password through a reset link; signs the user out everywhere.
    pub async fn confirm_password_reset(
        &self,
        meta: &RequestMeta,
        token: &str,
        password: String,
    ) -> Result<Uuid, AccountError> {
        let user = self.reset_link_user(token).await?;
        let password = check_password(password, &self.settings.password, Some(&user.email))?;
        let hash = self.passwords.hash(&password).await?;
        let now = self.clock.now();
        let reset = self
            .event(EventType::UserPasswordReset, meta)
            .subject(user.id)
            .actor(Some(user.id));
        let (user_id, jtis) = self
            .store
            .reset_password(&random::hash_secret(token), &hash, now, &[reset])
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::InvalidToken)?;
        self.sessions.deny_access_tokens(jtis).await;
        self.record_about("password.reset", meta, user_id).await;
        Ok(user_id)
    }

    /// Changes the password of a signed-in user who knows the current one; signs out everywhere.
    pub async fn change_password(
        &self,
        meta: &RequestMeta,
        user: &User,
        current: &str,
        new: String,
    ) -> Result<(), AccountError> {
        let stored = user.password_hash.as_deref();
        if !(self.passwords.verify_or_dummy(current, stored).await && stored.is_some()) {
            let mut event = self.audit_event("password.change_failed", meta);
            event.subject = Some(user.id.to_string());
            self.record(event).await;
            return Err(AccountError::InvalidCredentials);
        }
        let password = check_password(new, &self.settings.password, Some(&user.email))?;
        let hash = self.passwords.hash(&password).await?;
        let changed = self
            .event(EventType::UserPasswordChanged, meta)
            .subject(user.id)
            .actor(Some(user.id));
        let jtis = self
            .store
            .set_password(user.id, &hash, self.clock.now(), &[changed])
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::NotFound)?;
        self.sessions.deny_access_tokens(jtis).await;
        let mut event = self.audit_event("password.changed", meta);
        event.subject = Some(user.id.to_string());
        event.actor = Some(user.id.to_string());
        self.record(event).await;
        Ok(())
    }
}
