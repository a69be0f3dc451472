//! RFC 8628 over HTTP: `POST /device_authorization` (answers and errors as RFC 6749 §5.1/§5.2
//! JSON) and the hosted verification pages: `/device` (enter the code), then the existing
//! sign-in pages, then `/device/confirm` (consent naming the client and the scopes). Parses and
//! shapes; the rules are `protocol::device`'s, the polling is `protocol::token::device_code`.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde::Serialize;

use crate::accounts::mfa::Acr;
use crate::app::AppState;
use crate::clients::GRANT_DEVICE_CODE;
use crate::http::middleware::rate_limit::{self, too_many_page};
use crate::http::pages::{self, error_page, html, Brand, MessagePage, ScopeLine};
use crate::http::{checked_form, oauth, oauth_error_json, read_form, sentence, session};
use crate::limiter::ip_key;
use crate::protocol::authorize::requested_scope;
use crate::protocol::device::{approvable, NotApprovable, UserCode};
use crate::protocol::discovery::endpoint;
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::storage_failed;
use crate::random;
use crate::store::{BrowserSession, Client, DeviceApproval, DeviceGrant, StoreError, User};

/// The verification page (RFC 8628 §3.2 `verification_uri`).
pub const ENTRY_PATH: &str = "/device";
/// The consent step; a sign-in returns here with the normalised code.
pub const CONFIRM_PATH: &str = "/device/confirm";
/// Fresh codes tried when a generated user code is already taken (1 in ~2.5e10 per live code).
const ISSUE_ATTEMPTS: usize = 3;

/// RFC 8628 §3.2. No `Debug`: it carries the device code.
#[derive(Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: u64,
    interval: u64,
}

#[derive(Template)]
#[template(path = "device.html")]
pub struct DeviceEntryPage {
    pub brand: Brand,
    pub csrf: String,
    pub user_code: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "device_consent.html")]
pub struct DeviceConsentPage {
    pub brand: Brand,
    pub csrf: String,
    /// As the device shows it: `XXXX-XXXX`.
    pub user_code: String,
    pub client_name: String,
    /// The client registered itself (RFC 7591): nobody vouched for its name.
    pub unverified: bool,
    pub user_email: String,
    pub scopes: Vec<ScopeLine>,
}

/// `/device/confirm?user_code=XXXXXXXX` for a normalised code: where a sign-in for it returns.
fn confirm_path(code: &UserCode) -> String {
    format!("{CONFIRM_PATH}?user_code={}", code.as_str())
}

/// Whether `return_to` is exactly [`confirm_path`] of some code: a place a sign-in may return
/// to (see `pages::safe_return_to`), and nothing else.
pub fn is_return_path(return_to: &str) -> bool {
    return_to
        .strip_prefix(CONFIRM_PATH)
        .and_then(|rest| rest.strip_prefix("?user_code="))
        .and_then(|code| UserCode::parse(code).ok())
        .is_some_and(|code| return_to == confirm_path(&code))
}

/// `POST /device_authorization` (RFC 8628 §3.1): client authentication exactly as at the token
/// endpoint (public clients send their `client_id`), then a device code and a user code.
#[handler]
pub async fn authorization(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.settings.device.enabled {
        return crate::http::not_found();
    }
    let params = match read_form(req, body).await {
        Ok(p) => p,
        Err(message) => return oauth_error_json(&OAuthError::invalid_request(message)),
    };
    let client = match oauth::authenticate_client(state, req, &params).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match issue(state, req, &client, &params).await {
        Ok(answer) => {
            let mut resp = crate::http::json_response(StatusCode::OK, &answer, "no-store");
            resp.headers_mut()
                .insert("pragma", poem::http::HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => oauth_error_json(&e),
    }
}

async fn issue(
    state: &AppState,
    req: &Request,
    client: &Client,
    params: &Params,
) -> Result<DeviceAuthorizationResponse, OAuthError> {
    // RFC 8628 §3.2 refers to RFC 6749 §5.2: a client not registered for the grant.
    if !client.grant_types.iter().any(|g| g == GRANT_DEVICE_CODE) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("this client is not registered for the {GRANT_DEVICE_CODE} grant"),
        ));
    }
    let scope = requested_scope(params.get("scope"), client)
        .map_err(|(code, message)| OAuthError::new(code, message))?;
    let settings = &state.settings.device;
    let now = state.clock.now();
    for _ in 0..ISSUE_ATTEMPTS {
        // RFC 8628 §5.2: the device code is a 256-bit secret; only its SHA-256 is kept.
        let device_code = random::token(32);
        let user_code = UserCode::generate();
        let grant = DeviceGrant::pending(
            random::hash_secret(&device_code),
            user_code.hash(),
            &client.id,
            &scope.to_string(),
            settings.interval_secs as i64,
            now,
            now + settings.code_ttl_secs as i64,
        );
        match state.store.create_device_grant(&grant).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(storage_failed(e)),
        }
        record(state, req, "issued", &client.id, None).await;
        let verification_uri = endpoint(&state.settings.issuer, ENTRY_PATH);
        let mut complete = url::Url::parse(&verification_uri).map_err(|e| {
            tracing::error!(error = %e, "the verification URI does not parse");
            OAuthError::server_error()
        })?;
        complete
            .query_pairs_mut()
            .append_pair("user_code", &user_code.display());
        return Ok(DeviceAuthorizationResponse {
            device_code,
            user_code: user_code.display(),
            verification_uri,
            verification_uri_complete: complete.to_string(),
            expires_in: settings.code_ttl_secs,
            interval: settings.interval_secs,
        });
    }
    tracing::error!("no free user code after {ISSUE_ATTEMPTS} attempts");
    Err(OAuthError::server_error())
}

/// The `portcullis_device_codes_total` count and the `device.<event>` audit event.
async fn record(
    state: &AppState,
    req: &Request,
    event: &str,
    client_id: &str,
    user: Option<&User>,
) {
    state
        .metrics
        .count("portcullis_device_codes_total", &[("event", event)]);
    let meta = crate::http::api::meta_of(req);
    let mut audit = state
        .accounts
        .audit_event(&format!("device.{event}"), &meta);
    audit.client_id = Some(client_id.to_string());
    audit.subject = user.map(|u| u.id.to_string());
    state.accounts.record(audit).await;
}

/// `GET /device[?user_code=…]`: the code form, filled in from `verification_uri_complete`
/// (RFC 8628 §3.3.1). Nothing is looked up until the person submits it.
#[handler]
pub fn entry_form(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.settings.device.enabled {
        return not_offered(state, req);
    }
    let params = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let prefill = params.get("user_code").map(shown).unwrap_or_default();
    entry_page(state, req, StatusCode::OK, &prefill, None)
}

/// `POST /device`: the code a person typed.
#[handler]
pub async fn entry_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match posted(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    continue_with(state, req, form.get("user_code").unwrap_or("")).await
}

/// `GET /device/confirm?user_code=…`: where a sign-in for a code returns.
#[handler]
pub async fn confirm_form(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.settings.device.enabled {
        return not_offered(state, req);
    }
    let params = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    continue_with(state, req, params.get("user_code").unwrap_or("")).await
}

/// `POST /device/confirm`: allow or deny (RFC 8628 §3.3).
#[handler]
pub async fn confirm_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match posted(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let step = match signed_in_for(state, req, form.get("user_code").unwrap_or("")).await {
        Ok(step) => step,
        Err(resp) => return resp,
    };
    match form.get("decision") {
        Some("allow") => approve(state, req, &step).await,
        Some("deny") => deny(state, req, &step).await,
        _ => error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Choose Allow or Deny.",
        ),
    }
}

/// A form posted to the pages: refused when the flow is off, or when it does not parse or
/// lacks this browser's CSRF token.
async fn posted(state: &AppState, req: &Request, body: Body) -> Result<Params, Response> {
    if !state.settings.device.enabled {
        return Err(not_offered(state, req));
    }
    checked_form(state, req, body).await
}

/// A live code, its client, and the signed-in person who may decide on it.
struct Step {
    code: UserCode,
    grant: DeviceGrant,
    client: Client,
    session: BrowserSession,
    user: User,
}

/// The code form's answer: the consent page, or first a sign-in (or a second factor).
async fn continue_with(state: &AppState, req: &Request, typed: &str) -> Response {
    match signed_in_for(state, req, typed).await {
        Ok(step) => consent_page(state, req, &step),
        Err(resp) => resp,
    }
}

/// Throttles the attempt, finds the live grant of `typed`, and makes sure someone is signed in
/// strongly enough for its client: otherwise the page to show instead (the code form with
/// what is wrong, the login page, or the second factor).
async fn signed_in_for(state: &AppState, req: &Request, typed: &str) -> Result<Step, Response> {
    throttle(state, req).await?;
    let code = UserCode::parse(typed).map_err(|e| {
        entry_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            &shown(typed),
            Some(sentence(&e.to_string())),
        )
    })?;
    let now = state.clock.now();
    let found = state
        .store
        .find_device_grant_by_user_code(&code.hash())
        .await
        .map_err(|e| unavailable(state, req, e))?;
    let refused = |reason| refusal(state, req, &code, reason);
    approvable(found.as_ref(), now).map_err(refused)?;
    let grant = found.ok_or_else(|| refused(NotApprovable::Unknown))?;
    // A client switched off or deleted meanwhile is unknown here too.
    let client = match state.clients.get(&grant.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return Err(refused(NotApprovable::Unknown)),
        Err(e) => return Err(unavailable(state, req, e)),
    };
    let return_to = confirm_path(&code);
    let Some((session, user)) = session::current(state, req).await else {
        return Err(pages::login_page(
            state,
            req,
            &return_to,
            "",
            None,
            Some(client.name.clone()),
        ));
    };
    // The client's own requirement, as at /authorize (the MFA policy of roles already applied
    // when the session started).
    if client.require_mfa && Acr::of_session(session.acr.as_deref()) < Acr::Mfa {
        return Err(
            match state
                .mfa
                .begin_step_up(&user, &session, Acr::Mfa, &return_to)
                .await
            {
                Ok(pending) => pages::mfa_page(state, req, &pending, None).await,
                Err(e) => pages::mfa_failure(state, req, e),
            },
        );
    }
    Ok(Step {
        code,
        grant,
        client,
        session,
        user,
    })
}

/// RFC 8628 §5.1: user codes are guessable in principle (20^8 ≈ 2.56e10 of them), so every
/// lookup of one counts against the client IP and against the browser (its CSRF cookie),
/// atomically and before the lookup, whatever its outcome.
///
/// The arithmetic, with the defaults (`device.user_code_ip` 30 per 600 s, a code lives
/// `device.code_ttl_secs` = 600 s): GCRA admits the burst of 30 and then one per 20 s, so one
/// IP (or IPv6 /64) gets at most 30 + 600/20 = 60 tries within a code's lifetime. With L codes
/// live at once each try hits one with probability L / 2.56e10: for L = 1,000 that is
/// 60 × 1,000 / 2.56e10 ≈ 2.3e-6 per IP per lifetime, so an even chance takes some 2e5 IPs
/// working for the whole ten minutes, while one guessing browser (10 per 600 s: at most 20
/// tries) fares worse still. And a hit only lets the guesser approve the device for the
/// guesser's own account, under a consent page naming the client.
async fn throttle(state: &AppState, req: &Request) -> Result<(), Response> {
    let limits = &state.settings.rate_limits;
    if !limits.enabled {
        return Ok(());
    }
    let d = &state.settings.device;
    let mut buckets = Vec::with_capacity(2);
    if let Some(ip) = rate_limit::client_ip(req) {
        buckets.push((
            "device_user_code_ip",
            d.user_code_ip,
            format!("device-code-ip:{}", ip_key(ip, limits.ipv6_prefix)),
        ));
    }
    if let Some(browser) = session::browser_id(state, req) {
        buckets.push((
            "device_user_code_browser",
            d.user_code_browser,
            format!("device-code-browser:{browser}"),
        ));
    }
    for (name, policy, key) in buckets {
        let decision = state.limiter.hit(&key, policy).await;
        if !decision.allowed {
            return Err(too_many_page(state, req, name, policy, &decision));
        }
    }
    Ok(())
}

async fn approve(state: &AppState, req: &Request, step: &Step) -> Response {
    let now = state.clock.now();
    let approval = DeviceApproval {
        user_id: step.user.id,
        session_id_hash: step.session.id_hash.clone(),
        auth_time: step.session.auth_time,
        amr: step.session.amr.clone(),
        acr: Some(
            Acr::of_session(step.session.acr.as_deref())
                .as_str()
                .to_string(),
        ),
    };
    match state
        .store
        .approve_device_grant(&step.code.hash(), &approval, now)
        .await
    {
        Ok(true) => {}
        // Decided or expired since the page was shown.
        Ok(false) => return refusal(state, req, &step.code, NotApprovable::AlreadyUsed),
        Err(e) => return unavailable(state, req, e),
    }
    // Remembered like any consent, so it shows among the person's connected apps and
    // withdrawing it revokes what the device holds.
    let scope = Scope::parse(&step.grant.scope).unwrap_or_default();
    if let Err(e) = oauth::grant_consent(state, &step.user, &step.client.id, &scope).await {
        tracing::warn!(error = %e, "could not record the consent of a device approval");
    }
    record(state, req, "approved", &step.client.id, Some(&step.user)).await;
    message(
        state,
        "You may return to your device",
        format!(
            "{} is now connected to your account. You may return to your device; it continues \
             on its own.",
            step.client.name
        ),
    )
}

async fn deny(state: &AppState, req: &Request, step: &Step) -> Response {
    let now = state.clock.now();
    match state
        .store
        .deny_device_grant(&step.code.hash(), step.user.id, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return refusal(state, req, &step.code, NotApprovable::AlreadyUsed),
        Err(e) => return unavailable(state, req, e),
    }
    record(state, req, "denied", &step.client.id, Some(&step.user)).await;
    message(
        state,
        "Request denied",
        format!(
            "{} was not given access to your account. You can close this page.",
            step.client.name
        ),
    )
}

fn consent_page(state: &AppState, req: &Request, step: &Step) -> Response {
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = DeviceConsentPage {
        brand: (&state.settings.branding).into(),
        csrf,
        user_code: step.code.display(),
        client_name: step.client.name.clone(),
        unverified: step.client.dynamic,
        user_email: step.user.email.clone(),
        scopes: pages::scope_lines(&Scope::parse(&step.grant.scope).unwrap_or_default()),
    };
    html(
        StatusCode::OK,
        &page,
        &cookie.into_iter().collect::<Vec<_>>(),
    )
}

fn entry_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    user_code: &str,
    error: Option<String>,
) -> Response {
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = DeviceEntryPage {
        brand: (&state.settings.branding).into(),
        csrf,
        user_code: user_code.to_string(),
        error,
    };
    html(status, &page, &cookie.into_iter().collect::<Vec<_>>())
}

/// The code form again, saying why this code cannot be used (never which accounts exist).
fn refusal(state: &AppState, req: &Request, code: &UserCode, reason: NotApprovable) -> Response {
    let (status, message) = match reason {
        NotApprovable::Unknown => (
            StatusCode::NOT_FOUND,
            "That code is not known. Check the code your device shows and try again.",
        ),
        NotApprovable::Expired => (
            StatusCode::GONE,
            "That code has expired. Start again on your device to get a new one.",
        ),
        NotApprovable::AlreadyUsed => (
            StatusCode::GONE,
            "That code was already used. Start again on your device to get a new one.",
        ),
    };
    entry_page(
        state,
        req,
        status,
        &code.display(),
        Some(message.to_string()),
    )
}

fn message(state: &AppState, title: &str, message: String) -> Response {
    let page = MessagePage {
        brand: (&state.settings.branding).into(),
        title: title.to_string(),
        message,
    };
    html(StatusCode::OK, &page, &[])
}

fn unavailable(state: &AppState, req: &Request, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "device verification could not read its state");
    error_page(
        state,
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Please try again in a moment.",
    )
}

fn not_offered(state: &AppState, req: &Request) -> Response {
    error_page(
        state,
        req,
        StatusCode::NOT_FOUND,
        "Not available",
        "Signing in devices with a code is not offered here.",
    )
}

/// What to put back in the code field: the code as a device shows it when it parses, else
/// (a typo to correct) the first characters typed.
fn shown(typed: &str) -> String {
    match UserCode::parse(typed) {
        Ok(code) => code.display(),
        Err(_) => typed.chars().take(16).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_confirm_path_of_a_code_is_a_return_path() {
        assert!(is_return_path("/device/confirm?user_code=BCDFGHJK"));
        for bad in [
            "/device/confirm?user_code=bcdfghjk",
            "/device/confirm?user_code=BCDF-GHJK",
            "/device/confirm?user_code=BCDFGHJK&x=1",
            "/device/confirm?user_code=BCDFGHJ",
            "/device/confirm",
            "/device",
            "//evil.example/device/confirm?user_code=BCDFGHJK",
        ] {
            assert!(!is_return_path(bad), "{bad}");
        }
    }

    #[test]
    fn the_field_shows_a_code_in_its_display_form_and_typos_as_typed() {
        assert_eq!(shown("bcdfghjk"), "BCDF-GHJK");
        assert_eq!(shown("xyz"), "xyz");
        assert_eq!(shown(&"a".repeat(100)).len(), 16);
    }
}
