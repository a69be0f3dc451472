//! Registration and email verification: creating an account, spending a verification link,
//! sending a new one. Decides who may register and what a new account looks like; never lets
//! an answer (or its timing) tell whether an address already has an account.

use uuid::Uuid;

use super::policy::check_password;
use super::service::{link_hash, parse_email, parse_name, store_failed, AccountError, RequestMeta};
use super::AccountService;
use crate::events::EventType;
use crate::store::{StoreError, TokenPurpose, User};

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: String,
    pub name: Option<&'a str>,
}

impl AccountService {
    /// Creates an account and mails a verification link. A taken address answers exactly like
    /// success (a user with a fresh id) and mails the owner instead, so registration cannot be
    /// used to learn which addresses have accounts.
    pub async fn register(
        &self,
        meta: &RequestMeta,
        input: Registration<'_>,
    ) -> Result<User, AccountError> {
        if !self.settings.accounts.allow_registration {
            return Err(AccountError::RegistrationClosed);
        }
        let limits = &self.settings.rate_limits;
        if limits.enabled {
            let ip = meta
                .ip
                .map(|ip| crate::limiter::ip_key(ip, limits.ipv6_prefix))
                .unwrap_or_else(|| "unknown".into());
            let d = self
                .limiter
                .hit(&format!("register-ip:{ip}"), limits.register_ip)
                .await;
            if !d.allowed {
                return Err(AccountError::Throttled {
                    name: "register_ip",
                    policy: limits.register_ip,
                    decision: d,
                });
            }
        }
        let email = parse_email(input.email)?;
        let name = parse_name(input.name)?;
        let password = check_password(
            input.password,
            &self.settings.password,
            Some(email.as_str()),
        )?;
        // Hashed whether or not the address is taken: both answers take the same time.
        let hash = self.passwords.hash(&password).await?;
        let now = self.clock.now();
        let user = User {
            id: Uuid::now_v7(),
            email: email.as_str().to_string(),
            email_verified: false,
            name,
            password_hash: Some(hash),
            roles: self.settings.accounts.default_roles.clone(),
            disabled: false,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let registered = self
            .event(EventType::UserRegistered, meta)
            .subject(user.id)
            .actor(Some(user.id))
            .data(serde_json::json!({"email": user.email, "emailVerified": false}));
        match self.store.create_user(&user, &[registered]).await {
            Ok(()) => {
                let mut event = self.audit_event("user.registered", meta);
                event.subject = Some(user.id.to_string());
                self.record(event).await;
                if self.mail_budget(&user.email).await {
                    self.send_verification(&user).await?;
                }
                Ok(user)
            }
            Err(StoreError::Conflict(_)) => {
                let mut event = self.audit_event("user.register_existing", meta);
                let owner = self
                    .store
                    .find_user_by_email(&User::email_key(&user.email))
                    .await
                    .map_err(store_failed)?;
                if let Some(owner) = owner.filter(|o| o.deleted_at.is_none()) {
                    event.subject = Some(owner.id.to_string());
                    if self.mail_budget(&owner.email).await {
                        self.send_already_registered(&owner.email)?;
                    }
                }
                self.record(event).await;
                Ok(user)
            }
            Err(e) => Err(store_failed(e)),
        }
    }

    /// Spends a verification link and marks the address verified.
    pub async fn verify_email(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> Result<Uuid, AccountError> {
        let hash = link_hash(token)?;
        let now = self.clock.now();
        // The link names its user and address; the event is written with the change.
        let link = self
            .store
            .get_account_token(&hash, TokenPurpose::VerifyEmail, now)
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::InvalidToken)?;
        let verified = self
            .event(EventType::UserEmailVerified, meta)
            .subject(link.user_id)
            .actor(Some(link.user_id))
            .data(serde_json::json!({"email": link.email}));
        let user_id = self
            .store
            .verify_email(&hash, now, &[verified])
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::InvalidToken)?;
        self.record_about("user.email_verified", meta, user_id)
            .await;
        Ok(user_id)
    }

    /// Mails a new verification link if `email` belongs to an unverified live account; answers
    /// the same whatever the case.
    pub async fn resend_verification(
        &self,
        _meta: &RequestMeta,
        email: &str,
    ) -> Result<(), AccountError> {
        let email = parse_email(email)?;
        let user = self.live_user_by_email(email.as_str()).await?;
        if let Some(user) = user.filter(|u| !u.email_verified) {
            if self.mail_budget(&user.email).await {
                self.send_verification(&user).await?;
            }
        }
        Ok(())
    }
}
