//! Password sign-in for the login page and the JSON API: throttled per IP and per account,
//! uniform in its answers, upgrading old hashes afterwards. Decides whether a sign-in
//! succeeds; never tells which part of a failed one was wrong.

use super::policy::needs_rehash;
use super::service::{AccountError, RequestMeta};
use super::{AccountService, Email};
use crate::events::EventType;
use crate::limiter::Decision;
use crate::store::{Timestamp, User};

impl AccountService {
    /// Password sign-in for the login page and `POST /auth/login`. Attempts are counted before
    /// the hash is checked; unknown accounts cost a dummy hash; every failure reads the same.
    pub async fn sign_in(
        &self,
        meta: &RequestMeta,
        username: &str,
        password: &str,
    ) -> Result<User, AccountError> {
        let account_keys = self.throttle(meta, username).await?;
        let user = match Email::parse(username) {
            Ok(email) => self.live_user_by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let started = std::time::Instant::now();
        let ok = self
            .passwords
            .verify_or_dummy(password, hash.as_deref())
            .await
            && hash.is_some();
        self.metrics.observe(
            "portcullis_password_hash_duration_seconds",
            &[("op", "verify")],
            started.elapsed(),
        );
        let account = user.as_ref().map(|u| u.id.to_string());
        let Some(user) = user.filter(|_| ok) else {
            self.record(self.audit_event("login.failed", meta)).await;
            self.emit_sign_in_failure(meta, account, &account_keys)
                .await;
            self.metrics
                .count("portcullis_logins_total", &[("result", "failure")]);
            self.slow_down(&account_keys).await;
            return Err(AccountError::InvalidCredentials);
        };
        for (key, _) in &account_keys {
            self.limiter.reset(key).await;
        }
        if let Some(stored) = hash.filter(|h| needs_rehash(h, &self.settings.password)) {
            self.rehash_later(&user, stored, password);
        }
        // Only someone who knows the password learns that the address is unverified.
        if self.settings.accounts.require_verified_email && !user.email_verified {
            let mut event = self.audit_event("login.unverified", meta);
            event.subject = Some(user.id.to_string());
            self.record(event).await;
            return Err(AccountError::EmailNotVerified);
        }
        self.metrics
            .count("portcullis_logins_total", &[("result", "success")]);
        Ok(user)
    }

    /// `user.sign_in_failed`, and `user.locked_out` when this failure spent the last attempt
    /// an account budget allowed (once per window, however long an attack goes on).
    async fn emit_sign_in_failure(
        &self,
        meta: &RequestMeta,
        account: Option<String>,
        account_keys: &[(String, Decision)],
    ) {
        let ip = meta.ip.map(|ip| ip.to_string());
        let mut failed = self
            .event(EventType::UserSignInFailed, meta)
            .data(serde_json::json!({"ip": ip}));
        failed.subject = account.clone();
        let mut events = vec![failed];
        if let Some((_, d)) = account_keys.iter().find(|(_, d)| d.remaining == 0) {
            let mut locked = self
                .event(EventType::UserLockedOut, meta)
                .data(serde_json::json!({"ip": ip, "retryAfterSecs": d.reset_secs}));
            locked.subject = account;
            events.push(locked);
        }
        self.emit(&events).await;
    }

    /// Confirms that the person at a signed-in browser is the account's owner before a grave
    /// change (a new email address, deleting the account): the current password when the
    /// account has one, checked like a sign-in (the same limits, on the hashing pool); for an
    /// account without one, a sign-in (`auth_time`) within `accounts.mfa.reauth_max_age_secs`.
    #[tracing::instrument(skip_all, fields(user = %user.id))]
    pub async fn reauthenticate(
        &self,
        meta: &RequestMeta,
        user: &User,
        auth_time: Timestamp,
        password: &str,
    ) -> Result<(), AccountError> {
        let Some(hash) = user.password_hash.as_deref() else {
            let max = self.settings.accounts.mfa.reauth_max_age_secs;
            if self.clock.now() - auth_time > max as i64 {
                return Err(AccountError::ReauthRequired(max));
            }
            return Ok(());
        };
        let account_keys = self.throttle(meta, &user.email).await?;
        if !self.passwords.verify(password, hash).await {
            let mut event = self.audit_event("reauth.failed", meta);
            event.subject = Some(user.id.to_string());
            self.record(event).await;
            self.slow_down(&account_keys).await;
            return Err(AccountError::InvalidCredentials);
        }
        for (key, _) in &account_keys {
            self.limiter.reset(key).await;
        }
        Ok(())
    }

    /// Hashes the password again at the configured cost, after the answer has gone out; only if
    /// the stored hash is still the one that was checked.
    fn rehash_later(&self, user: &User, old_hash: String, password: &str) {
        let Ok(password) = super::Password::parse(password.to_string(), &self.settings.password)
        else {
            // Below today's length policy: it will be replaced at the next password change.
            return;
        };
        let (passwords, store) = (self.passwords.clone(), self.store.clone());
        let id = user.id;
        tokio::spawn(async move {
            let Ok(new_hash) = passwords.hash(&password).await else {
                return;
            };
            match store.rehash_password(id, &old_hash, &new_hash).await {
                Ok(true) => {
                    tracing::info!(user = %id, "password hash upgraded to the configured cost")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not store an upgraded password hash"),
            }
        });
    }

    /// Counts a sign-in attempt per IP, per account from this IP, and per account in all. The
    /// per-account-and-IP budget is below the per-account one, so one IP alone cannot lock a
    /// victim out. Returns the account keys (reset on success) and their decisions.
    async fn throttle(
        &self,
        meta: &RequestMeta,
        username: &str,
    ) -> Result<Vec<(String, Decision)>, AccountError> {
        let limits = &self.settings.rate_limits;
        if !limits.enabled {
            return Ok(vec![]);
        }
        let ip = meta
            .ip
            .map(|ip| crate::limiter::ip_key(ip, limits.ipv6_prefix))
            .unwrap_or_default();
        let d = self
            .limiter
            .hit(&format!("login-ip:{ip}"), limits.login_ip)
            .await;
        if !d.allowed {
            return Err(AccountError::Throttled {
                name: "login_ip",
                policy: limits.login_ip,
                decision: d,
            });
        }
        let Ok(email) = Email::parse(username) else {
            return Ok(vec![]);
        };
        let account = User::email_key(email.as_str());
        let mut keys = Vec::new();
        for (name, key, policy) in [
            (
                "login_account_ip",
                format!("login-acct-ip:{account}:{ip}"),
                limits.login_account_ip,
            ),
            (
                "login_account",
                format!("login-acct:{account}"),
                limits.login_account,
            ),
        ] {
            let d = self.limiter.hit(&key, policy).await;
            if !d.allowed {
                let mut event = self.audit_event("login.throttled", meta);
                event.detail = serde_json::json!({"policy": name});
                self.record(event).await;
                self.metrics
                    .count("portcullis_logins_total", &[("result", "throttled")]);
                return Err(AccountError::Throttled {
                    name,
                    policy,
                    decision: d,
                });
            }
            keys.push((key, d));
        }
        Ok(keys)
    }

    /// Progressive delay: once half of the per-account-and-IP budget is spent, each failure
    /// answers a little later (250 ms doubling, at most 4 s).
    async fn slow_down(&self, keys: &[(String, Decision)]) {
        let Some((_, d)) = keys.first() else { return };
        let half = self.settings.rate_limits.login_account_ip.limit / 2;
        if d.remaining < half {
            let steps = (half - d.remaining).min(4);
            let ms = (250u64 << steps).min(4000);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}
