//! Who an upstream sign-in is here. Identities, not addresses, identify people:
//! - a returning upstream account is found by (provider, subject) alone, whatever its address
//!   is now;
//! - a first-time one is linked to the account of its address only when the provider is
//!   trusted for addresses (`trust_email`) *and* says this one is verified; otherwise the
//!   person must sign in to that account first (its password and second factor), then the
//!   link is made — an upstream that lets anyone claim any address cannot take accounts over;
//! - else a new account when `auto_create` is on (its address verified only if the upstream
//!   vouches for it), or sign-up through it is closed.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{store_failed, FederationError, FederationService, UpstreamProfile};
use crate::accounts::service::RequestMeta;
use crate::accounts::Email;
use crate::random;
use crate::store::{LinkRefusal, MfaChallenge, StoreError, Timestamp, User, UserIdentity};

/// The purpose of a held link's record in the challenge table.
const LINK_PURPOSE: &str = "upstream_link";
/// The page that finishes a held link after the person signed in to the account.
pub const CONFIRM_PATH: &str = "/upstream/link";

/// What an upstream sign-in leads to.
#[derive(Debug)]
pub enum Resolution {
    /// A returning person, or one just linked through a trusted, verified address.
    SignIn(User),
    /// A new account, made just now.
    Created(User),
    /// An account has the upstream's address, which the provider cannot vouch for: the
    /// person must sign in to it to link. `token` names the held link.
    ConfirmLink { user: User, token: String },
}

/// A held link: what to link once the person proved the account is theirs.
#[derive(Debug, Serialize, Deserialize)]
struct HeldLink {
    provider: String,
    subject: String,
    email: Option<String>,
    name: Option<String>,
    return_to: String,
    browser_hash: String,
}

impl FederationService {
    /// Finds, links or creates the account of an upstream sign-in (the rules above).
    #[tracing::instrument(skip_all, fields(provider = %provider))]
    pub async fn resolve(
        &self,
        meta: &RequestMeta,
        provider: &str,
        profile: &UpstreamProfile,
        return_to: &str,
        browser_nonce: &str,
    ) -> Result<Resolution, FederationError> {
        let result = self
            .resolve_inner(meta, provider, profile, return_to, browser_nonce)
            .await;
        match &result {
            Err(e) => self.failed(meta, provider, e).await,
            Ok(Resolution::ConfirmLink { user, .. }) => {
                self.audit_about("upstream.link_held", meta, provider, user.id)
                    .await;
                self.succeeded_metric(provider, "link_required");
            }
            Ok(Resolution::SignIn(_) | Resolution::Created(_)) => {}
        }
        result
    }

    async fn resolve_inner(
        &self,
        meta: &RequestMeta,
        provider_id: &str,
        profile: &UpstreamProfile,
        return_to: &str,
        browser_nonce: &str,
    ) -> Result<Resolution, FederationError> {
        let provider = self
            .provider(provider_id)
            .ok_or_else(|| FederationError::UnknownProvider(provider_id.to_string()))?;
        let now = self.clock.now();
        let email = profile
            .email
            .as_deref()
            .and_then(|e| Email::parse(e).ok())
            .map(|e| e.as_str().to_string());
        if let Some(identity) = self
            .store
            .find_identity(provider_id, &profile.subject)
            .await
            .map_err(store_failed)?
        {
            let user = self.live_user(identity.user_id).await?;
            self.store
                .touch_identity(
                    provider_id,
                    &profile.subject,
                    email.as_deref(),
                    profile.name.as_deref(),
                    now,
                )
                .await
                .map_err(store_failed)?;
            return Ok(Resolution::SignIn(user));
        }
        let identity = |user_id: Uuid| UserIdentity {
            provider: provider_id.to_string(),
            subject: profile.subject.clone(),
            user_id,
            email: email.clone(),
            name: profile.name.clone(),
            created_at: now,
            last_used_at: Some(now),
        };
        if let Some(address) = &email {
            let owner = self
                .store
                .find_user_by_email(&User::email_key(address))
                .await
                .map_err(store_failed)?
                .filter(|u| u.deleted_at.is_none());
            if let Some(owner) = owner {
                // Linked on the provider's word only to an account whose own address was
                // proved: an unverified account may be someone else's claim to the address,
                // set up in advance (pre-account takeover). A disabled account gets the same
                // page as any other (its sign-in will fail): nothing tells them apart.
                if provider.config.trust_email
                    && profile.email_verified
                    && owner.email_verified
                    && !owner.disabled
                {
                    self.link(&identity(owner.id)).await?;
                    self.audit_about("upstream.linked", meta, provider_id, owner.id)
                        .await;
                    return Ok(Resolution::SignIn(owner));
                }
                let token = self
                    .hold_link(&owner, provider_id, profile, return_to, browser_nonce, now)
                    .await?;
                return Ok(Resolution::ConfirmLink { user: owner, token });
            }
        }
        if !provider.config.auto_create {
            return Err(FederationError::SignUpClosed);
        }
        let Some(address) = email.clone() else {
            return Err(FederationError::NoEmail);
        };
        let user = User {
            id: Uuid::new_v4(),
            email: address,
            // Verified only if a provider trusted for addresses vouches for it.
            email_verified: provider.config.trust_email && profile.email_verified,
            name: profile.name.clone(),
            password_hash: None,
            roles: self.settings.accounts.default_roles.clone(),
            disabled: false,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let registered = crate::events::Event::new(crate::events::EventType::UserRegistered, now)
            .trace(meta.trace_id.as_deref())
            .subject(user.id)
            .actor(Some(user.id))
            .data(serde_json::json!({
                "email": user.email,
                "emailVerified": user.email_verified,
                "provider": provider_id,
            }));
        match self
            .store
            .create_user_with_identity(&user, &identity(user.id), &[registered])
            .await
        {
            Ok(()) => {}
            // The address (or the identity) was taken by a parallel sign-up: nothing was
            // written; starting again finds it.
            Err(StoreError::Conflict(_)) => return Err(FederationError::BadState),
            Err(e) => return Err(store_failed(e)),
        }
        self.audit_about("upstream.account_created", meta, provider_id, user.id)
            .await;
        Ok(Resolution::Created(user))
    }

    async fn live_user(&self, id: Uuid) -> Result<User, FederationError> {
        let user = self
            .store
            .get_user(id)
            .await
            .map_err(store_failed)?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(FederationError::Internal)?;
        if user.disabled {
            return Err(FederationError::AccountDisabled);
        }
        Ok(user)
    }

    async fn link(&self, identity: &UserIdentity) -> Result<(), FederationError> {
        match self
            .store
            .link_identity(identity)
            .await
            .map_err(store_failed)?
        {
            Ok(()) => Ok(()),
            Err(LinkRefusal::IdentityTaken) => Err(FederationError::LinkedElsewhere),
            Err(LinkRefusal::ProviderTaken) => Err(FederationError::ProviderTaken),
            Err(LinkRefusal::NoUser) => Err(FederationError::AccountDisabled),
        }
    }

    async fn hold_link(
        &self,
        owner: &User,
        provider: &str,
        profile: &UpstreamProfile,
        return_to: &str,
        browser_nonce: &str,
        now: Timestamp,
    ) -> Result<String, FederationError> {
        let token = random::token(32);
        let held = HeldLink {
            provider: provider.to_string(),
            subject: profile.subject.clone(),
            email: profile.email.clone(),
            name: profile.name.clone(),
            return_to: return_to.to_string(),
            browser_hash: random::hash_secret(browser_nonce),
        };
        let record = MfaChallenge {
            id_hash: random::hash_secret(&token),
            purpose: LINK_PURPOSE.into(),
            user_id: Some(owner.id),
            data: serde_json::to_string(&held).map_err(|_| FederationError::Internal)?,
            created_at: now,
            expires_at: now + super::FLOW_TTL_SECS,
            used_at: None,
        };
        self.store
            .create_challenge(&record)
            .await
            .map_err(store_failed)?;
        Ok(token)
    }

    /// Finishes a held link for `user`, who signed in (at `auth_time`) after it was held, in
    /// the browser that held it. Answers where the sign-in goes on.
    pub async fn confirm_link(
        &self,
        meta: &RequestMeta,
        token: &str,
        user: &User,
        auth_time: Timestamp,
        browser_nonce: Option<&str>,
    ) -> Result<(String, String), FederationError> {
        if token.is_empty() || token.len() > 128 {
            return Err(FederationError::BadState);
        }
        let now = self.clock.now();
        let id_hash = random::hash_secret(token);
        let record = self
            .store
            .get_challenge(&id_hash, LINK_PURPOSE, now)
            .await
            .map_err(store_failed)?
            .ok_or(FederationError::BadState)?;
        let held: HeldLink =
            serde_json::from_str(&record.data).map_err(|_| FederationError::BadState)?;
        let same_browser = browser_nonce.is_some_and(|n| {
            bool::from(
                random::hash_secret(n)
                    .as_bytes()
                    .ct_eq(held.browser_hash.as_bytes()),
            )
        });
        // The proof: this account's own sign-in, made after the link was held.
        if record.user_id != Some(user.id) || auth_time < record.created_at || !same_browser {
            return Err(FederationError::BadState);
        }
        if self
            .store
            .consume_challenge(&id_hash, LINK_PURPOSE, now)
            .await
            .map_err(store_failed)?
            .is_none()
        {
            return Err(FederationError::BadState);
        }
        let identity = UserIdentity {
            provider: held.provider.clone(),
            subject: held.subject,
            user_id: user.id,
            email: held.email,
            name: held.name,
            created_at: now,
            last_used_at: Some(now),
        };
        if let Err(e) = self.link(&identity).await {
            self.failed(meta, &held.provider, &e).await;
            return Err(e);
        }
        self.audit_about("upstream.linked", meta, &held.provider, user.id)
            .await;
        Ok((held.provider, held.return_to))
    }

    /// Links the upstream account that just signed in to `user` (from the security page).
    pub async fn link_signed_in(
        &self,
        meta: &RequestMeta,
        user: &User,
        provider: &str,
        profile: &UpstreamProfile,
    ) -> Result<(), FederationError> {
        let now = self.clock.now();
        let identity = UserIdentity {
            provider: provider.to_string(),
            subject: profile.subject.clone(),
            user_id: user.id,
            email: profile.email.clone(),
            name: profile.name.clone(),
            created_at: now,
            last_used_at: None,
        };
        if let Err(e) = self.link(&identity).await {
            self.failed(meta, provider, &e).await;
            return Err(e);
        }
        self.audit_about("upstream.linked", meta, provider, user.id)
            .await;
        self.succeeded_metric(provider, "linked");
        Ok(())
    }

    /// A user's linked identities, oldest first.
    pub async fn identities_of(&self, user_id: Uuid) -> Result<Vec<UserIdentity>, FederationError> {
        self.store
            .identities_of(user_id)
            .await
            .map_err(store_failed)
    }

    /// Unlinks `user`'s identity at `provider`, unless it is their last way to sign in.
    pub async fn unlink(
        &self,
        meta: &RequestMeta,
        user: &User,
        provider: &str,
    ) -> Result<(), FederationError> {
        let done = self
            .store
            .unlink_identity(user.id, provider, self.clock.now())
            .await
            .map_err(store_failed)?;
        match done {
            None => Err(FederationError::NotLinked),
            Some(false) => Err(FederationError::LastMethod),
            Some(true) => {
                self.audit_about("upstream.unlinked", meta, provider, user.id)
                    .await;
                Ok(())
            }
        }
    }

    /// A successful upstream sign-in (a session starts next).
    pub async fn signed_in(&self, meta: &RequestMeta, provider: &str, user: &User, created: bool) {
        self.audit_about("upstream.succeeded", meta, provider, user.id)
            .await;
        self.succeeded_metric(provider, if created { "created" } else { "success" });
    }

    async fn audit_about(&self, kind: &str, meta: &RequestMeta, provider: &str, user: Uuid) {
        let mut event = self.event(kind, meta, provider);
        event.subject = Some(user.to_string());
        self.record(event).await;
    }
}
