//! The account rules, one implementation used by the hosted pages and the JSON API alike:
//! registration, password sign-in (throttled, uniform), email verification, password reset
//! and change, profile and role updates, soft delete, and the audit trail of each.

use std::net::IpAddr;

use askama::Template;
use uuid::Uuid;

use super::policy::{check_password, needs_rehash};
use super::{Email, PasswordError, Role};
use crate::app::AppState;
use crate::limiter::{ip_key, Decision, Policy};
use crate::mail::{send_later, OutgoingMail};
use crate::random;
use crate::store::{AccountToken, AuditEvent, StoreError, TokenPurpose, User};

/// Who is asking, for throttling and the audit trail (never a secret).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The full client address: audit records keep it whole; limits use `limiter::ip_key`.
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub trace_id: Option<String>,
}

/// The one message for every failed sign-in: nothing tells which part was wrong.
pub const LOGIN_FAILED: &str = "Incorrect email or password.";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Input that breaks a rule; `code` is machine-readable (`invalid_email`, `weak_password`,
    /// `invalid_name`, `invalid_role`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{}", LOGIN_FAILED)]
    InvalidCredentials,
    #[error("verify your email address first: follow the link we sent, or ask for a new one")]
    EmailNotVerified,
    #[error("the link is invalid, expired or already used; ask for a new one")]
    InvalidToken,
    #[error("too many attempts; retry in {} seconds", .decision.retry_after_secs)]
    Throttled {
        name: &'static str,
        policy: Policy,
        decision: Decision,
    },
    #[error("registration is closed on this server (accounts.allow_registration = false)")]
    RegistrationClosed,
    #[error("this needs the admin role")]
    Forbidden,
    #[error("no such user")]
    NotFound,
    #[error("something went wrong; try again in a moment")]
    Internal,
}

impl AccountError {
    fn invalid(code: &'static str, message: impl Into<String>) -> AccountError {
        AccountError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<PasswordError> for AccountError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Hashing => AccountError::Internal,
            other => AccountError::invalid("weak_password", other.to_string()),
        }
    }
}

fn store_failed(e: StoreError) -> AccountError {
    tracing::error!(error = %e, "storage failure in the account service");
    AccountError::Internal
}

/// An audit event stamped with the request's IP, user agent and trace id.
pub fn audit_event(state: &AppState, kind: &str, meta: &RequestMeta) -> AuditEvent {
    let mut event = AuditEvent::new(kind, state.clock.now());
    event.ip = meta.ip.map(|ip| ip.to_string());
    event.user_agent = meta
        .user_agent
        .as_ref()
        .map(|ua| ua.chars().take(256).collect());
    event.trace_id = meta.trace_id.clone();
    event
}

async fn record(state: &AppState, event: AuditEvent) {
    if let Err(e) = state.store.record_audit(&event).await {
        tracing::error!(error = %e, kind = %event.kind, "could not record an audit event");
    }
}

/// Records an event about one user.
async fn record_about(state: &AppState, kind: &str, meta: &RequestMeta, subject: impl ToString) {
    let mut event = audit_event(state, kind, meta);
    event.subject = Some(subject.to_string());
    record(state, event).await;
}

pub fn is_admin(user: &User) -> bool {
    user.roles.iter().any(|r| r == "admin")
}

/// A display name: trimmed, at most 100 characters, no control characters.
pub fn parse_name(raw: Option<&str>) -> Result<Option<String>, AccountError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AccountError::invalid(
            "invalid_name",
            "the name must be at most 100 characters, without control characters",
        ));
    }
    Ok(Some(name.to_string()))
}

fn parse_email(raw: &str) -> Result<Email, AccountError> {
    Email::parse(raw).map_err(|e| AccountError::invalid("invalid_email", e.to_string()))
}

/// Counts one mail caused for `email`; false once the address had its share (the caller then
/// answers as usual but sends nothing: no mail bombing through our relay).
async fn mail_budget(state: &AppState, email: &str) -> bool {
    let limits = &state.settings.rate_limits;
    if !limits.enabled {
        return true;
    }
    let key = format!("mail:{}", User::email_key(email));
    state.limiter.hit(&key, limits.account_email).await.allowed
}

// ---------------------------------------------------------------------------------------------
// Mail

#[derive(Template)]
#[template(path = "email/verify.txt")]
struct VerifyText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "email/verify.html")]
struct VerifyHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
    color: &'a str,
}

#[derive(Template)]
#[template(path = "email/reset.txt")]
struct ResetText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "email/reset.html")]
struct ResetHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
    color: &'a str,
}

#[derive(Template)]
#[template(path = "email/exists.txt")]
struct ExistsText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/exists.html")]
struct ExistsHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 && s >= 86400 => plural(s / 86400, "day"),
        s if s % 3600 == 0 && s >= 3600 => plural(s / 3600, "hour"),
        s => plural(s.div_ceil(60), "minute"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn deliver(state: &AppState, to: &str, subject: String, text: String, html: String) {
    send_later(
        state.mailer.clone(),
        OutgoingMail {
            to: to.to_string(),
            subject,
            text,
            html,
        },
    );
}

fn render(t: &impl Template) -> Result<String, AccountError> {
    t.render().map_err(|e| {
        tracing::error!(error = %e, "an email template failed to render");
        AccountError::Internal
    })
}

/// Stores a new single-use token for `user` and returns its value (mailed, never stored).
async fn new_token(
    state: &AppState,
    user: &User,
    purpose: TokenPurpose,
    ttl_secs: u64,
) -> Result<String, AccountError> {
    // 256 bits from the OS generator; only the SHA-256 hash is kept.
    let value = random::token(32);
    let now = state.clock.now();
    let token = AccountToken {
        token_hash: random::hash_secret(&value),
        purpose,
        user_id: user.id,
        email: user.email.clone(),
        created_at: now,
        expires_at: now + ttl_secs as i64,
        used_at: None,
    };
    state
        .store
        .create_account_token(&token)
        .await
        .map_err(store_failed)?;
    Ok(value)
}

/// Stores a new link token and mails the link; `compose` renders (subject, text, html) from
/// the link and its lifetime in words.
async fn send_link(
    state: &AppState,
    user: &User,
    purpose: TokenPurpose,
    ttl: u64,
    path: &str,
    compose: impl FnOnce(&str, &str) -> Result<(String, String, String), AccountError>,
) -> Result<(), AccountError> {
    let value = new_token(state, user, purpose, ttl).await?;
    let link = format!("{}{path}?token={value}", state.settings.issuer);
    let (subject, text, html) = compose(&link, &human_duration(ttl))?;
    deliver(state, &user.email, subject, text, html);
    Ok(())
}

async fn send_verification(state: &AppState, user: &User) -> Result<(), AccountError> {
    let ttl = state.settings.accounts.verify_email_ttl_secs;
    let b = &state.settings.branding;
    send_link(
        state,
        user,
        TokenPurpose::VerifyEmail,
        ttl,
        "/verify-email",
        |link, valid_for| {
            let (product, email) = (b.product_name.as_str(), user.email.as_str());
            Ok((
                format!("Confirm your email address for {product}"),
                render(&VerifyText {
                    product,
                    email,
                    link,
                    valid_for,
                })?,
                render(&VerifyHtml {
                    product,
                    email,
                    link,
                    valid_for,
                    color: &b.primary_color,
                })?,
            ))
        },
    )
    .await
}

async fn send_reset(state: &AppState, user: &User) -> Result<(), AccountError> {
    let ttl = state.settings.accounts.password_reset_ttl_secs;
    let b = &state.settings.branding;
    send_link(
        state,
        user,
        TokenPurpose::PasswordReset,
        ttl,
        "/reset-password",
        |link, valid_for| {
            let (product, email) = (b.product_name.as_str(), user.email.as_str());
            Ok((
                format!("Reset your {product} password"),
                render(&ResetText {
                    product,
                    email,
                    link,
                    valid_for,
                })?,
                render(&ResetHtml {
                    product,
                    email,
                    link,
                    valid_for,
                    color: &b.primary_color,
                })?,
            ))
        },
    )
    .await
}

fn send_already_registered(state: &AppState, email: &str) -> Result<(), AccountError> {
    let link = format!("{}/forgot-password", state.settings.issuer);
    let b = &state.settings.branding;
    let text = render(&ExistsText {
        product: &b.product_name,
        email,
        link: &link,
    })?;
    let html = render(&ExistsHtml {
        product: &b.product_name,
        email,
        link: &link,
    })?;
    let subject = format!("You already have a {} account", b.product_name);
    deliver(state, email, subject, text, html);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Registration and verification

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: String,
    pub name: Option<&'a str>,
}

/// Creates an account and mails a verification link. A taken address answers exactly like
/// success (a user with a fresh id) and mails the owner instead, so registration cannot be
/// used to learn which addresses have accounts.
pub async fn register(
    state: &AppState,
    meta: &RequestMeta,
    input: Registration<'_>,
) -> Result<User, AccountError> {
    if !state.settings.accounts.allow_registration {
        return Err(AccountError::RegistrationClosed);
    }
    let limits = &state.settings.rate_limits;
    if limits.enabled {
        let ip = meta
            .ip
            .map(|ip| ip_key(ip, limits.ipv6_prefix))
            .unwrap_or_else(|| "unknown".into());
        let d = state
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
        &state.settings.password,
        Some(email.as_str()),
    )?;
    // Hashed whether or not the address is taken: both answers take the same time.
    let hash = state.passwords.hash(&password).await?;
    let now = state.clock.now();
    let user = User {
        id: Uuid::now_v7(),
        email: email.as_str().to_string(),
        email_verified: false,
        name,
        password_hash: Some(hash),
        roles: state.settings.accounts.default_roles.clone(),
        disabled: false,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    match state.store.create_user(&user).await {
        Ok(()) => {
            let mut event = audit_event(state, "user.registered", meta);
            event.subject = Some(user.id.to_string());
            record(state, event).await;
            if mail_budget(state, &user.email).await {
                send_verification(state, &user).await?;
            }
            Ok(user)
        }
        Err(StoreError::Conflict(_)) => {
            let mut event = audit_event(state, "user.register_existing", meta);
            let owner = state
                .store
                .find_user_by_email(&User::email_key(&user.email))
                .await
                .map_err(store_failed)?;
            if let Some(owner) = owner.filter(|o| o.deleted_at.is_none()) {
                event.subject = Some(owner.id.to_string());
                if mail_budget(state, &owner.email).await {
                    send_already_registered(state, &owner.email)?;
                }
            }
            record(state, event).await;
            Ok(user)
        }
        Err(e) => Err(store_failed(e)),
    }
}

/// Spends a verification link and marks the address verified.
pub async fn verify_email(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
) -> Result<Uuid, AccountError> {
    if token.is_empty() || token.len() > 256 {
        return Err(AccountError::InvalidToken);
    }
    let user_id = state
        .store
        .verify_email(&random::hash_secret(token), state.clock.now())
        .await
        .map_err(store_failed)?
        .ok_or(AccountError::InvalidToken)?;
    record_about(state, "user.email_verified", meta, user_id).await;
    Ok(user_id)
}

/// Mails a new verification link if `email` belongs to an unverified live account; answers
/// the same whatever the case.
pub async fn resend_verification(
    state: &AppState,
    _meta: &RequestMeta,
    email: &str,
) -> Result<(), AccountError> {
    let email = parse_email(email)?;
    let user = live_user_by_email(state, email.as_str()).await?;
    if let Some(user) = user.filter(|u| !u.email_verified) {
        if mail_budget(state, &user.email).await {
            send_verification(state, &user).await?;
        }
    }
    Ok(())
}

async fn live_user_by_email(state: &AppState, email: &str) -> Result<Option<User>, AccountError> {
    Ok(state
        .store
        .find_user_by_email(&User::email_key(email))
        .await
        .map_err(store_failed)?
        .filter(|u| u.deleted_at.is_none() && !u.disabled))
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/// Password sign-in for the login page and `POST /auth/login`. Attempts are counted before
/// the hash is checked; unknown accounts cost a dummy hash; every failure reads the same.
pub async fn sign_in(
    state: &AppState,
    meta: &RequestMeta,
    username: &str,
    password: &str,
) -> Result<User, AccountError> {
    let account_keys = throttle(state, meta, username).await?;
    let user = match Email::parse(username) {
        Ok(email) => live_user_by_email(state, email.as_str()).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let started = std::time::Instant::now();
    let ok = state
        .passwords
        .verify_or_dummy(password, hash.as_deref())
        .await
        && hash.is_some();
    state.metrics.observe(
        "portcullis_password_hash_duration_seconds",
        &[("op", "verify")],
        started.elapsed(),
    );
    let Some(user) = user.filter(|_| ok) else {
        record(state, audit_event(state, "login.failed", meta)).await;
        state
            .metrics
            .count("portcullis_logins_total", &[("result", "failure")]);
        slow_down(state, &account_keys).await;
        return Err(AccountError::InvalidCredentials);
    };
    for (key, _) in &account_keys {
        state.limiter.reset(key).await;
    }
    if let Some(stored) = hash.filter(|h| needs_rehash(h, &state.settings.password)) {
        rehash_later(state, &user, stored, password);
    }
    // Only someone who knows the password learns that the address is unverified.
    if state.settings.accounts.require_verified_email && !user.email_verified {
        let mut event = audit_event(state, "login.unverified", meta);
        event.subject = Some(user.id.to_string());
        record(state, event).await;
        return Err(AccountError::EmailNotVerified);
    }
    state
        .metrics
        .count("portcullis_logins_total", &[("result", "success")]);
    Ok(user)
}

/// Hashes the password again at the configured cost, after the answer has gone out; only if
/// the stored hash is still the one that was checked.
fn rehash_later(state: &AppState, user: &User, old_hash: String, password: &str) {
    let Ok(password) = super::Password::parse(password.to_string(), &state.settings.password)
    else {
        // Below today's length policy: it will be replaced at the next password change.
        return;
    };
    let state = state.clone();
    let id = user.id;
    tokio::spawn(async move {
        let Ok(new_hash) = state.passwords.hash(&password).await else {
            return;
        };
        match state.store.rehash_password(id, &old_hash, &new_hash).await {
            Ok(true) => tracing::info!(user = %id, "password hash upgraded to the configured cost"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not store an upgraded password hash"),
        }
    });
}

/// Counts a sign-in attempt per IP, per account from this IP, and per account in all. The
/// per-account-and-IP budget is below the per-account one, so one IP alone cannot lock a
/// victim out. Returns the account keys (reset on success) and their decisions.
async fn throttle(
    state: &AppState,
    meta: &RequestMeta,
    username: &str,
) -> Result<Vec<(String, Decision)>, AccountError> {
    let limits = &state.settings.rate_limits;
    if !limits.enabled {
        return Ok(vec![]);
    }
    let ip = meta
        .ip
        .map(|ip| ip_key(ip, limits.ipv6_prefix))
        .unwrap_or_default();
    let d = state
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
        let d = state.limiter.hit(&key, policy).await;
        if !d.allowed {
            let mut event = audit_event(state, "login.throttled", meta);
            event.detail = serde_json::json!({"policy": name});
            record(state, event).await;
            state
                .metrics
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
async fn slow_down(state: &AppState, keys: &[(String, Decision)]) {
    let Some((_, d)) = keys.first() else { return };
    let half = state.settings.rate_limits.login_account_ip.limit / 2;
    if d.remaining < half {
        let steps = (half - d.remaining).min(4);
        let ms = (250u64 << steps).min(4000);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Passwords

/// Mails a reset link when `email` has a live account; always answers the same.
pub async fn request_password_reset(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
) -> Result<(), AccountError> {
    let Ok(email) = Email::parse(email) else {
        return Ok(());
    };
    let user = live_user_by_email(state, email.as_str()).await?;
    let mut event = audit_event(state, "password.reset_requested", meta);
    if let Some(user) = user {
        event.subject = Some(user.id.to_string());
        if mail_budget(state, &user.email).await {
            send_reset(state, &user).await?;
        }
    }
    record(state, event).await;
    Ok(())
}

/// The account a reset link is for, if the link is live (for the reset page's form).
pub async fn reset_link_user(state: &AppState, token: &str) -> Result<User, AccountError> {
    if token.is_empty() || token.len() > 256 {
        return Err(AccountError::InvalidToken);
    }
    let token = state
        .store
        .get_account_token(
            &random::hash_secret(token),
            TokenPurpose::PasswordReset,
            state.clock.now(),
        )
        .await
        .map_err(store_failed)?
        .ok_or(AccountError::InvalidToken)?;
    state
        .store
        .get_user(token.user_id)
        .await
        .map_err(store_failed)?
        .filter(|u| u.deleted_at.is_none() && !u.disabled)
        .ok_or(AccountError::InvalidToken)
}

/// Sets a new password through a reset link; signs the user out everywhere.
pub async fn confirm_password_reset(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
    password: String,
) -> Result<Uuid, AccountError> {
    let user = reset_link_user(state, token).await?;
    let password = check_password(password, &state.settings.password, Some(&user.email))?;
    let hash = state.passwords.hash(&password).await?;
    let now = state.clock.now();
    let (user_id, jtis) = state
        .store
        .reset_password(&random::hash_secret(token), &hash, now)
        .await
        .map_err(store_failed)?
        .ok_or(AccountError::InvalidToken)?;
    deny_all(state, jtis).await;
    record_about(state, "password.reset", meta, user_id).await;
    Ok(user_id)
}

/// Changes the password of a signed-in user who knows the current one; signs out everywhere.
pub async fn change_password(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    current: &str,
    new: String,
) -> Result<(), AccountError> {
    let stored = user.password_hash.as_deref();
    if !(state.passwords.verify_or_dummy(current, stored).await && stored.is_some()) {
        let mut event = audit_event(state, "password.change_failed", meta);
        event.subject = Some(user.id.to_string());
        record(state, event).await;
        return Err(AccountError::InvalidCredentials);
    }
    let password = check_password(new, &state.settings.password, Some(&user.email))?;
    let hash = state.passwords.hash(&password).await?;
    let jtis = state
        .store
        .set_password(user.id, &hash, state.clock.now())
        .await
        .map_err(store_failed)?
        .ok_or(AccountError::NotFound)?;
    deny_all(state, jtis).await;
    let mut event = audit_event(state, "password.changed", meta);
    event.subject = Some(user.id.to_string());
    event.actor = Some(user.id.to_string());
    record(state, event).await;
    Ok(())
}

/// Puts access tokens on the deny-list until they would have expired anyway.
async fn deny_all(state: &AppState, jtis: Vec<String>) {
    let now = state.clock.now();
    let until = now + state.settings.tokens.access_token_ttl_secs as i64;
    for jti in jtis {
        if let Err(e) = state.deny.deny(&jti, until, now).await {
            tracing::error!(error = %e, "could not deny an access token");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Administration

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub email_verified: Option<bool>,
}

impl UserPatch {
    fn admin_only(&self) -> bool {
        self.roles.is_some() || self.disabled.is_some() || self.email_verified.is_some()
    }
}

/// A live user by id, as `actor` may see it: admins see anyone, others only themselves.
pub async fn visible_user(state: &AppState, actor: &User, id: Uuid) -> Result<User, AccountError> {
    if actor.id != id && !is_admin(actor) {
        return Err(AccountError::Forbidden);
    }
    state
        .store
        .get_user(id)
        .await
        .map_err(store_failed)?
        .filter(|u| u.deleted_at.is_none())
        .ok_or(AccountError::NotFound)
}

/// Applies `patch`: a user may change their own profile fields (the name); roles and flags
/// need the admin role. Disabling a user signs them out everywhere.
pub async fn update_user(
    state: &AppState,
    meta: &RequestMeta,
    actor: &User,
    id: Uuid,
    patch: UserPatch,
) -> Result<User, AccountError> {
    if patch.admin_only() && !is_admin(actor) {
        return Err(AccountError::Forbidden);
    }
    let mut user = visible_user(state, actor, id).await?;
    let before_roles = user.roles.clone();
    if let Some(name) = patch.name {
        user.name = parse_name(name.as_deref())?;
    }
    if let Some(roles) = patch.roles {
        let mut parsed = Vec::new();
        for raw in roles {
            let role = Role::parse(&raw)
                .map_err(|e| AccountError::invalid("invalid_role", e.to_string()))?;
            if !state
                .settings
                .accounts
                .roles
                .iter()
                .any(|r| r == role.as_str())
            {
                return Err(AccountError::invalid(
                    "invalid_role",
                    format!(
                        "unknown role {:?}; the configured roles are: {}",
                        role.as_str(),
                        state.settings.accounts.roles.join(", ")
                    ),
                ));
            }
            if !parsed.contains(&raw) {
                parsed.push(raw);
            }
        }
        user.roles = parsed;
    }
    let disabling = patch.disabled == Some(true) && !user.disabled;
    if let Some(disabled) = patch.disabled {
        user.disabled = disabled;
    }
    if let Some(verified) = patch.email_verified {
        user.email_verified = verified;
    }
    user.updated_at = state.clock.now();
    let written = state.store.update_user(&user).await.map_err(store_failed)?;
    if !written {
        return Err(AccountError::NotFound);
    }
    if disabling {
        let jtis = state
            .store
            .sign_out_everywhere(user.id, user.updated_at)
            .await
            .map_err(store_failed)?;
        deny_all(state, jtis).await;
    }
    let mut event = audit_event(state, "user.updated", meta);
    event.actor = Some(actor.id.to_string());
    event.subject = Some(user.id.to_string());
    event.detail = serde_json::json!({"disabled": user.disabled});
    if before_roles != user.roles {
        event.kind = "user.roles_changed".into();
        event.detail = serde_json::json!({"from": before_roles, "to": user.roles});
    }
    record(state, event).await;
    Ok(user)
}

/// Soft delete (admin only): the row stays with `deleted_at` so the address cannot be
/// registered by someone else; sessions, refresh tokens, access tokens and links die now.
pub async fn delete_user(
    state: &AppState,
    meta: &RequestMeta,
    actor: &User,
    id: Uuid,
) -> Result<(), AccountError> {
    if !is_admin(actor) {
        return Err(AccountError::Forbidden);
    }
    let jtis = state
        .store
        .soft_delete_user(id, state.clock.now())
        .await
        .map_err(store_failed)?
        .ok_or(AccountError::NotFound)?;
    deny_all(state, jtis).await;
    let mut event = audit_event(state, "user.deleted", meta);
    event.actor = Some(actor.id.to_string());
    event.subject = Some(id.to_string());
    record(state, event).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(86400), "1 day");
        assert_eq!(human_duration(1800), "30 minutes");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(90), "2 minutes");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name(Some("  Ada  ")).unwrap(), Some("Ada".into()));
        assert_eq!(parse_name(Some("   ")).unwrap(), None);
        assert!(parse_name(Some(&"x".repeat(101))).is_err());
        assert!(parse_name(Some("a\u{0}b")).is_err());
    }
}
