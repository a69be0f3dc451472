//! Magic links: "email me a sign-in link". One service method asks for a link (the login
//! page's form and `POST /auth/magic-link` alike), one follows it. A link is a 256-bit random
//! token, stored only as its SHA-256, valid `accounts.magic_link_ttl_secs`, spent by one
//! conditional update, and usable only in the browser that asked for it: asking binds the
//! link to the SHA-256 of a random nonce the HTTP layer keeps in a cookie of that browser.
//! A followed link is one factor, `amr` `otp` (RFC 8176 §2 has no value for an emailed link;
//! `otp`, a one-time secret delivered out of band, is the closest).
//! Decides when a link is sent and when it signs in; never tells whether an address has an
//! account, never stores or logs a token.

use askama::Template;
use subtle::ConstantTimeEq;

use super::emails::{human_duration, render};
use super::service::{link_hash, store_failed, AccountError, RequestMeta};
use super::{AccountService, Email};
use crate::limiter::{ip_key, Decision, Policy};
use crate::random;
use crate::store::{MagicLink, User};

/// The page a mailed link opens (`?token=...`).
pub const PATH: &str = "/login/magic-link/verify";

/// Why a link does not sign in.
#[derive(Debug, thiserror::Error)]
pub enum MagicLinkError {
    #[error("sign-in links are switched off on this server (accounts.magic_link = false)")]
    Disabled,
    /// The address is not one (nothing is said about accounts).
    #[error("{0}")]
    InvalidEmail(String),
    #[error("this sign-in link has expired; ask for a new one")]
    Expired,
    #[error("this sign-in link was already used; ask for a new one")]
    Used,
    /// The browser has no nonce cookie, or another one: the link is not spent.
    #[error(
        "open the link in the browser where you asked for it (this browser did not ask for it)"
    )]
    OtherBrowser,
    /// An unknown token, or an account that changed its address or was disabled meanwhile.
    #[error("this sign-in link is not valid; ask for a new one")]
    Invalid,
    #[error("too many attempts; retry in {} seconds", .decision.retry_after_secs)]
    Throttled { policy: Policy, decision: Decision },
    #[error("something went wrong; try again in a moment")]
    Internal,
}

impl MagicLinkError {
    /// The `reason` of `magic_link.refused` and of the refused-links metric.
    pub fn reason(&self) -> &'static str {
        match self {
            MagicLinkError::Expired => "expired",
            MagicLinkError::Used => "used",
            MagicLinkError::OtherBrowser => "other_browser",
            MagicLinkError::Throttled { .. } => "throttled",
            _ => "invalid",
        }
    }
}

impl From<AccountError> for MagicLinkError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidToken => MagicLinkError::Invalid,
            AccountError::Invalid { message, .. } => MagicLinkError::InvalidEmail(message),
            _ => MagicLinkError::Internal,
        }
    }
}

/// A followed link: who signed in (its first factor) and the authorization request to go on
/// with (empty when there is none).
#[derive(Debug)]
pub struct LinkSignIn {
    pub user: User,
    pub return_to: String,
}

#[derive(Template)]
#[template(path = "email/magic_link.txt")]
struct LinkText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "email/magic_link.html")]
struct LinkHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
    color: &'a str,
}

const METRIC: &str = "portcullis_magic_links_total";

impl AccountService {
    pub fn magic_links_enabled(&self) -> bool {
        self.settings.accounts.magic_link
    }

    /// Mails a sign-in link to `email` when it names a live account, bound to the browser
    /// whose cookie holds `nonce`, to continue `return_to` (already checked by the caller).
    /// Answers the same whether or not the address has an account, and also when a limit
    /// (per address, per IP) is reached: then nothing is sent.
    #[tracing::instrument(skip_all)]
    pub async fn request_magic_link(
        &self,
        meta: &RequestMeta,
        email: &str,
        nonce: &str,
        return_to: &str,
    ) -> Result<(), MagicLinkError> {
        if !self.magic_links_enabled() {
            return Err(MagicLinkError::Disabled);
        }
        let email = Email::parse(email).map_err(|e| MagicLinkError::InvalidEmail(e.to_string()))?;
        if nonce.len() < 32 || nonce.len() > 128 {
            return Err(MagicLinkError::Internal);
        }
        if let Some(policy) = self.magic_link_throttled(meta, email.as_str()).await {
            let mut event = self.audit_event("magic_link.throttled", meta);
            event.detail = serde_json::json!({"policy": policy});
            self.record(event).await;
            self.metrics.count(METRIC, &[("result", "throttled")]);
            return Ok(());
        }
        let Some(user) = self.live_user_by_email(email.as_str()).await? else {
            self.metrics.count(METRIC, &[("result", "unknown")]);
            return Ok(());
        };
        let ttl = self.settings.accounts.magic_link_ttl_secs;
        // 256 bits from the OS generator; only the SHA-256 hash is kept.
        let value = random::token(32);
        let now = self.clock.now();
        let link = MagicLink {
            token_hash: random::hash_secret(&value),
            nonce_hash: random::hash_secret(nonce),
            user_id: user.id,
            email: user.email.clone(),
            return_to: return_to.to_string(),
            created_at: now,
            expires_at: now + ttl as i64,
            used_at: None,
        };
        self.store
            .create_magic_link(&link)
            .await
            .map_err(store_failed)?;
        self.mail_magic_link(&user, &value, ttl)?;
        self.record_about("magic_link.sent", meta, user.id).await;
        self.metrics.count(METRIC, &[("result", "sent")]);
        Ok(())
    }

    /// The first policy (`per_address`, `per_ip`) the request exceeds, if any. Both count
    /// whether or not the address has an account, so the answers cannot tell.
    async fn magic_link_throttled(&self, meta: &RequestMeta, email: &str) -> Option<&'static str> {
        if !self.settings.rate_limits.enabled {
            return None;
        }
        let a = &self.settings.accounts;
        let ip = meta
            .ip
            .map(|ip| ip_key(ip, self.settings.rate_limits.ipv6_prefix))
            .unwrap_or_default();
        let checks = [
            ("per_ip", format!("magic-ip:{ip}"), a.magic_link_per_ip),
            (
                "per_address",
                format!("magic-addr:{}", User::email_key(email)),
                a.magic_link_per_address,
            ),
        ];
        for (name, key, policy) in checks {
            if !self.limiter.hit(&key, policy).await.allowed {
                return Some(name);
            }
        }
        None
    }

    fn mail_magic_link(&self, user: &User, value: &str, ttl: u64) -> Result<(), AccountError> {
        let b = &self.settings.branding;
        let link = format!("{}{PATH}?token={value}", self.settings.issuer);
        let valid_for = human_duration(ttl);
        let (product, email) = (b.product_name.as_str(), user.email.as_str());
        let text = render(&LinkText {
            product,
            email,
            link: &link,
            valid_for: &valid_for,
        })?;
        let html = render(&LinkHtml {
            product,
            email,
            link: &link,
            valid_for: &valid_for,
            color: &b.primary_color,
        })?;
        self.deliver(&user.email, format!("Sign in to {product}"), text, html);
        Ok(())
    }

    /// Follows a mailed link in a browser whose nonce cookie holds `nonce`: spends it (one
    /// conditional update: of two parallel clicks one signs in) and names its live account.
    /// A link followed in another browser is refused and stays unspent, so opening it on a
    /// phone (or a mail scanner fetching it) does not waste it. Sign-ins by link count
    /// against `rate_limits.login_ip` like password attempts.
    #[tracing::instrument(skip_all)]
    pub async fn follow_magic_link(
        &self,
        meta: &RequestMeta,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<LinkSignIn, MagicLinkError> {
        if !self.magic_links_enabled() {
            return Err(MagicLinkError::Disabled);
        }
        let mut subject = None;
        let outcome = self.spend_link(meta, token, nonce, &mut subject).await;
        match &outcome {
            Ok(signed_in) => {
                self.record_about("magic_link.used", meta, signed_in.user.id)
                    .await;
                self.metrics.count(METRIC, &[("result", "used")]);
            }
            Err(e @ (MagicLinkError::Disabled | MagicLinkError::Internal)) => {
                tracing::debug!(error = %e, "sign-in link not followed");
            }
            Err(e) => {
                let mut event = self.audit_event("magic_link.refused", meta);
                event.subject = subject.map(|id: uuid::Uuid| id.to_string());
                event.detail = serde_json::json!({"reason": e.reason()});
                self.record(event).await;
                self.metrics
                    .count(METRIC, &[("result", "refused"), ("reason", e.reason())]);
            }
        }
        outcome
    }

    async fn spend_link(
        &self,
        meta: &RequestMeta,
        token: &str,
        nonce: Option<&str>,
        subject: &mut Option<uuid::Uuid>,
    ) -> Result<LinkSignIn, MagicLinkError> {
        let limits = &self.settings.rate_limits;
        if limits.enabled {
            let ip = meta
                .ip
                .map(|ip| ip_key(ip, limits.ipv6_prefix))
                .unwrap_or_default();
            let d = self
                .limiter
                .hit(&format!("login-ip:{ip}"), limits.login_ip)
                .await;
            if !d.allowed {
                return Err(MagicLinkError::Throttled {
                    policy: limits.login_ip,
                    decision: d,
                });
            }
        }
        let hash = link_hash(token)?;
        let link = self
            .store
            .find_magic_link(&hash)
            .await
            .map_err(store_failed)?
            .ok_or(MagicLinkError::Invalid)?;
        *subject = Some(link.user_id);
        let now = self.clock.now();
        if link.used_at.is_some() {
            return Err(MagicLinkError::Used);
        }
        if now >= link.expires_at {
            return Err(MagicLinkError::Expired);
        }
        let nonce_hash = nonce
            .filter(|n| !n.is_empty() && n.len() <= 128)
            .map(random::hash_secret)
            .unwrap_or_default();
        if !bool::from(nonce_hash.as_bytes().ct_eq(link.nonce_hash.as_bytes())) {
            return Err(MagicLinkError::OtherBrowser);
        }
        let Some(link) = self
            .store
            .consume_magic_link(&hash, &nonce_hash, now)
            .await
            .map_err(store_failed)?
        else {
            // A parallel click won, or the account changed its address or was disabled.
            let again = self
                .store
                .find_magic_link(&hash)
                .await
                .map_err(store_failed)?;
            return Err(match again {
                Some(l) if l.used_at.is_some() => MagicLinkError::Used,
                _ => MagicLinkError::Invalid,
            });
        };
        let user = self
            .store
            .get_user(link.user_id)
            .await
            .map_err(store_failed)?
            .filter(|u| u.deleted_at.is_none() && !u.disabled)
            .ok_or(MagicLinkError::Invalid)?;
        Ok(LinkSignIn {
            user,
            return_to: link.return_to,
        })
    }
}
