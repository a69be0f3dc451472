//! Hosted pages (askama): login, consent, error, messages, and the stylesheet; the passkey
//! forms and their script in `pages/passkey.rs`. Server-rendered, usable without JavaScript
//! (passkeys aside, which need it), every form with a CSRF token.

pub mod magic_link;
pub mod passkey;
pub mod upstream;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response};

use crate::accounts::mfa::webauthn::options_for_html;
use crate::accounts::mfa::{Acr, FirstFactor, MfaError, PendingSignIn, SignedIn};
use crate::accounts::service::{AccountError, RequestMeta};
use crate::app::AppState;
use crate::config::BrandingSettings;
use crate::http::middleware::rate_limit::too_many_page;
use crate::http::middleware::request_id::{RequestId, TraceId};
use crate::http::{oauth, session};
use crate::protocol::claims::describe_scope;
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::store::User;

/// The one inline script of any page (form_post's auto-submit); the CSP allows it by hash.
pub const FORM_POST_SCRIPT: &str = "document.forms[0].submit()";

const STYLESHEET: &str = include_str!("../../templates/static/portcullis.css");

pub use crate::accounts::service::LOGIN_FAILED;

#[derive(Debug, Clone)]
pub struct Brand {
    pub product_name: String,
    pub logo_url: Option<String>,
    pub primary_color: String,
}

impl From<&BrandingSettings> for Brand {
    fn from(b: &BrandingSettings) -> Self {
        Brand {
            product_name: b.product_name.clone(),
            logo_url: b.logo_url.clone(),
            primary_color: b.primary_color.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub brand: Brand,
    pub csrf: String,
    pub return_to: String,
    pub username: String,
    pub error: Option<String>,
    pub client_name: Option<String>,
    pub allow_registration: bool,
    /// Offer "Sign in with a passkey" (and passkeys in the username's autofill).
    pub passkeys: bool,
    /// "Email me a sign-in link" (`accounts.magic_link`), keeping the pending request.
    pub magic_link_href: Option<String>,
    /// An explanation above the form (not an error).
    pub notice: Option<String>,
    /// "Sign in with …", one button per `[[upstream]]` provider.
    pub upstreams: Vec<crate::federation::ProviderButton>,
}

pub struct ScopeLine {
    pub name: String,
    pub description: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub brand: Brand,
    pub csrf: String,
    pub return_to: String,
    pub client_name: String,
    /// The client registered itself (RFC 7591): nobody vouched for its name.
    pub unverified: bool,
    pub user_email: String,
    pub scopes: Vec<ScopeLine>,
}

/// The key of an authenticator-app enrollment, shown once.
pub struct TotpSetup {
    pub secret: String,
    pub qr_svg: String,
}

/// The second step of a sign-in: a code field (authenticator app or recovery code), a
/// passkey button, or the enrollment of a first factor.
#[derive(Template)]
#[template(path = "mfa.html")]
pub struct MfaPage {
    pub brand: Brand,
    pub csrf: String,
    pub mfa_token: String,
    pub reason: String,
    pub error: Option<String>,
    pub user_email: String,
    pub enroll: Option<TotpSetup>,
    pub methods: crate::accounts::mfa::Methods,
    /// WebAuthn ceremony id and request options (JSON, `<` escaped), when a passkey can be used.
    pub passkey_ceremony: String,
    pub passkey_options: String,
    /// WebAuthn registration ceremony id and creation options, when this sign-in needs a
    /// passkey the account does not have yet: "Add a passkey to continue".
    pub enroll_ceremony: String,
    pub enroll_options: String,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage {
    pub brand: Brand,
    pub codes: Vec<String>,
    pub next: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub brand: Brand,
    pub title: String,
    pub message: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub brand: Brand,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub brand: Brand,
    pub csrf: String,
    pub client_name: Option<String>,
    pub fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage {
    pub brand: Brand,
    pub redirect_uri: String,
    pub fields: Vec<(String, String)>,
}

/// An HTML response that is never cached and never framed (clickjacking on a login or
/// consent page would let another site collect clicks).
pub fn html(status: StatusCode, page: &impl Template, cookies: &[String]) -> Response {
    let body = match page.render() {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer");
    for cookie in cookies {
        builder = builder.header("set-cookie", cookie.as_str());
    }
    builder.body(body)
}

pub fn error_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let page = ErrorPage {
        brand: (&state.settings.branding).into(),
        title: title.to_string(),
        message: message.to_string(),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        trace_id: req.extensions().get::<TraceId>().map(|t| t.0.clone()),
    };
    html(status, &page, &[])
}

#[handler]
pub fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header("cache-control", "public, max-age=3600")
        .body(STYLESHEET)
}

/// Renders the login form, setting the CSRF cookie when the browser has none.
pub fn login_page(
    state: &AppState,
    req: &Request,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    client_name: Option<String>,
) -> Response {
    let extras = LoginExtras {
        client_name,
        ..Default::default()
    };
    login_page_with(state, req, return_to, username, error, extras)
}

/// What a login page may show besides the form.
#[derive(Debug, Default)]
pub struct LoginExtras {
    pub client_name: Option<String>,
    pub notice: Option<String>,
    /// No "Sign in with …" buttons (the page asks for this account's own sign-in).
    pub hide_upstream: bool,
}

/// [`login_page`] with a notice, or without the upstream providers' buttons.
pub fn login_page_with(
    state: &AppState,
    req: &Request,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    extras: LoginExtras,
) -> Response {
    let LoginExtras {
        client_name,
        notice,
        hide_upstream,
    } = extras;
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = LoginPage {
        brand: (&state.settings.branding).into(),
        csrf,
        return_to: return_to.to_string(),
        username: username.to_string(),
        error: error.map(str::to_string),
        client_name,
        allow_registration: state.settings.accounts.allow_registration,
        passkeys: state.mfa.passkeys_offered(),
        magic_link_href: state
            .accounts
            .magic_links_enabled()
            .then(|| magic_link::form_href(return_to)),
        notice,
        upstreams: if hide_upstream {
            Vec::new()
        } else {
            state.federation.buttons()
        },
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    html(status, &page, &cookie.into_iter().collect::<Vec<_>>())
}

pub fn consent_page(
    state: &AppState,
    req: &Request,
    return_to: &str,
    client_name: &str,
    user: &User,
    scope: &Scope,
) -> Response {
    render_consent(state, req, return_to, (client_name, false), user, scope)
}

/// The consent page for `client`; one that registered itself is shown as an unverified
/// application.
pub fn consent_page_for(
    state: &AppState,
    req: &Request,
    return_to: &str,
    client: &crate::store::Client,
    user: &User,
    scope: &Scope,
) -> Response {
    render_consent(
        state,
        req,
        return_to,
        (&client.name, client.dynamic),
        user,
        scope,
    )
}

fn render_consent(
    state: &AppState,
    req: &Request,
    return_to: &str,
    (client_name, unverified): (&str, bool),
    user: &User,
    scope: &Scope,
) -> Response {
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = ConsentPage {
        brand: (&state.settings.branding).into(),
        csrf,
        return_to: return_to.to_string(),
        client_name: client_name.to_string(),
        unverified,
        user_email: user.email.clone(),
        scopes: scope_lines(scope),
    };
    html(
        StatusCode::OK,
        &page,
        &cookie.into_iter().collect::<Vec<_>>(),
    )
}

/// The consent page's words for each scope (`claims::describe_scope`).
pub fn scope_lines(scope: &Scope) -> Vec<ScopeLine> {
    scope
        .iter()
        .map(|s| ScopeLine {
            name: s.to_string(),
            description: describe_scope(s),
        })
        .collect()
}

/// Only our own authorization endpoint, one of the account pages, or the device flow's
/// confirmation of a code may be a place to return to (no open redirect).
pub fn safe_return_to(raw: Option<&str>) -> Option<&str> {
    raw.filter(|r| {
        (r.starts_with("/authorize?") || is_own_page(r)) && !r.contains(['\r', '\n', '#'])
    })
}

/// A page of ours (not an authorization request) a sign-in may return to.
fn is_own_page(return_to: &str) -> bool {
    crate::http::account::is_page(return_to)
        || crate::http::device::is_return_path(return_to)
        || is_held_link(return_to)
}

/// The page finishing an upstream link held until this sign-in (`federation/linking.rs`).
fn is_held_link(return_to: &str) -> bool {
    return_to
        .strip_prefix(crate::federation::linking::CONFIRM_PATH)
        .and_then(|rest| rest.strip_prefix("?pending="))
        .is_some_and(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Where a finished sign-in goes: the authorization request it interrupted, or a page of ours.
pub(crate) fn next_after_sign_in(state: &AppState, return_to: &str) -> String {
    if is_own_page(return_to) {
        crate::protocol::discovery::endpoint(&state.settings.issuer, return_to)
    } else {
        oauth::resume_url(state, return_to, "login")
    }
}

#[handler]
pub fn login_form(req: &Request, state: Data<&AppState>) -> Response {
    login_page(&state, req, "", "", None, None)
}

/// `POST /login`: checks the password, starts a fresh session, returns to the authorization
/// request (or says "signed in" when there is none).
#[handler]
pub async fn login_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match crate::http::checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let return_to = safe_return_to(form.get("return_to")).unwrap_or("");
    let username = form.get("username").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("");

    // Counted before the hash is checked, atomically, so parallel guesses cannot slip past
    // (cf. GHSA-7h8m-vrxx-vr4m); the same rules as `POST /auth/login`.
    let meta = crate::http::api::meta_of(req);
    let user = match state.accounts.sign_in(&meta, &username, password).await {
        Ok(user) => user,
        Err(AccountError::Throttled {
            name,
            policy,
            decision,
        }) => return too_many_page(state, req, name, policy, &decision),
        Err(e) => {
            let message = match e {
                AccountError::EmailNotVerified => {
                    "Verify your email address first: follow the link we sent you. \
                     No mail? Ask for a new link below."
                }
                AccountError::InvalidCredentials => LOGIN_FAILED,
                _ => "Something went wrong. Please try again in a moment.",
            };
            let client_name = oauth::client_name_for(state, return_to).await;
            return login_page(state, req, return_to, &username, Some(message), client_name);
        }
    };
    continue_sign_in(state, req, &meta, &user, FirstFactor::Password, return_to).await
}

/// After the first factor of a sign-in (a password, or an emailed link): the session when no
/// second factor applies, else the second-factor page (the MFA policy, the client's or the
/// request's `acr`); then on to `return_to`.
pub(crate) async fn continue_sign_in(
    state: &AppState,
    req: &Request,
    meta: &RequestMeta,
    user: &User,
    first: FirstFactor,
    return_to: &str,
) -> Response {
    let required = oauth::required_acr_for(state, return_to).await;
    match state
        .mfa
        .after_first_factor(user, required, return_to, first)
        .await
    {
        Ok(crate::accounts::mfa::AfterPassword::Done { amr, acr }) => {
            start_session(state, req, meta, user, &amr, acr, return_to, None).await
        }
        Ok(crate::accounts::mfa::AfterPassword::Pending(pending)) => {
            mfa_page(state, req, &pending, None).await
        }
        Err(e) => mfa_failure(state, req, e),
    }
}

/// The second-factor page of a pending sign-in (or its enrollment of a first factor).
pub async fn mfa_page(
    state: &AppState,
    req: &Request,
    pending: &PendingSignIn,
    error: Option<&str>,
) -> Response {
    let passkey_only = pending.required == Some(Acr::PhishingResistant);
    let enroll = if pending.enroll && !passkey_only {
        match state.mfa.enrollment_for(&pending.user).await {
            Ok(e) => Some(TotpSetup {
                secret: e.secret,
                qr_svg: e.qr_svg,
            }),
            Err(e) => return mfa_failure(state, req, e),
        }
    } else {
        None
    };
    let client_name = oauth::client_name_for(state, &pending.return_to).await;
    let (enroll_ceremony, enroll_options) = if passkey_only && !pending.methods.passkey {
        match state.mfa.passkey_enrollment_for(pending).await {
            Ok(Some(c)) => (c.ceremony, options_for_html(&c.options)),
            Ok(None) => Default::default(),
            // The page then says what is needed, as where passkeys are not offered.
            Err(e) => {
                tracing::warn!(error = %e, "no passkey registration for the second-factor page");
                Default::default()
            }
        }
    } else {
        Default::default()
    };
    let reason = if passkey_only && !pending.methods.passkey && !enroll_ceremony.is_empty() {
        match &client_name {
            Some(name) => format!(
                "{name} asks for a passkey or security key, and your account has none yet. \
                 Add one to continue."
            ),
            None => "This sign-in needs a passkey or security key, and your account has none \
                     yet. Add one to continue."
                .to_string(),
        }
    } else if passkey_only && !pending.methods.passkey {
        "This sign-in needs a passkey or security key, and your account has none yet. \
         Sign in somewhere you can add one, then try again."
            .to_string()
    } else if passkey_only {
        "This sign-in needs a passkey or security key.".to_string()
    } else if pending.enroll {
        match (&client_name, pending.required) {
            (Some(name), Some(_)) => {
                format!("{name} asks for a second factor. Add an authenticator app to continue.")
            }
            _ => "Your account needs a second factor. Add an authenticator app to continue.".into(),
        }
    } else if pending.step_up {
        match &client_name {
            Some(name) => format!("{name} asks you to confirm with a second factor."),
            None => "Confirm with a second factor to continue.".into(),
        }
    } else if pending.methods.totp {
        "Enter the code from your authenticator app.".into()
    } else if pending.methods.passkey {
        "Use your passkey or security key to finish signing in.".into()
    } else {
        "Use your second factor to finish signing in.".into()
    };
    let (passkey_ceremony, passkey_options) = if pending.methods.passkey {
        match state.mfa.passkey_options_for(pending).await {
            Ok(Some(c)) => (c.ceremony, options_for_html(&c.options)),
            Ok(None) => Default::default(),
            // The other methods still work; the page just offers no passkey.
            Err(e) => {
                tracing::warn!(error = %e, "no passkey ceremony for the second-factor page");
                Default::default()
            }
        }
    } else {
        Default::default()
    };
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = MfaPage {
        brand: (&state.settings.branding).into(),
        csrf,
        mfa_token: pending.token.clone(),
        reason,
        error: error.map(str::to_string),
        user_email: pending.user.email.clone(),
        enroll,
        methods: pending.methods,
        passkey_ceremony,
        passkey_options,
        enroll_ceremony,
        enroll_options,
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    html(status, &page, &cookie.into_iter().collect::<Vec<_>>())
}

/// A second-factor problem that is not a wrong code: an expired sign-in, a limit, an outage.
pub(crate) fn mfa_failure(state: &AppState, req: &Request, e: MfaError) -> Response {
    match e {
        MfaError::Throttled { policy, decision } => {
            too_many_page(state, req, "mfa_account", policy, &decision)
        }
        MfaError::SignInExpired => login_page(
            state,
            req,
            "",
            "",
            Some("That sign-in expired or was already finished. Sign in again."),
            None,
        ),
        MfaError::Disabled => error_page(
            state,
            req,
            StatusCode::FORBIDDEN,
            "Second factors are off",
            "This server does not offer second factors, and this sign-in needs one.",
        ),
        MfaError::Internal => error_page(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        ),
        MfaError::Locked => error_page(
            state,
            req,
            StatusCode::FORBIDDEN,
            "Second factor locked",
            &crate::http::sentence(&MfaError::Locked.to_string()),
        ),
        // Every other refusal is the user's to fix, and says how.
        other => error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Second factor",
            &crate::http::sentence(&other.to_string()),
        ),
    }
}

/// `POST /login/mfa`: the code of an authenticator app (or a recovery code, or the first code
/// of an enrollment) for a pending sign-in; a session starts only when it passes.
#[handler]
pub async fn mfa_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match crate::http::checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let token = form.get("mfa_token").unwrap_or("");
    let code = form.get("code").unwrap_or("");
    let meta = crate::http::api::meta_of(req);
    match state.mfa.complete_with_code(&meta, token, code).await {
        Ok(done) => signed_in(state, req, &meta, done).await,
        Err(e @ (MfaError::InvalidCode | MfaError::NeedsPasskey | MfaError::NoEnrollment)) => {
            match state.mfa.pending(token).await {
                Ok(pending) => mfa_page(state, req, &pending, Some(&e.to_string())).await,
                Err(other) => mfa_failure(state, req, other),
            }
        }
        Err(e) => mfa_failure(state, req, e),
    }
}

/// A completed two-step sign-in: the session, then the recovery codes of a new enrollment or
/// the authorization request.
pub async fn signed_in(
    state: &AppState,
    req: &Request,
    meta: &RequestMeta,
    done: SignedIn,
) -> Response {
    start_session(
        state,
        req,
        meta,
        &done.user,
        &done.amr,
        done.acr,
        &done.return_to,
        done.recovery_codes,
    )
    .await
}

/// Starts the session of a finished sign-in and moves on: to the recovery codes when an
/// enrollment just made them, else back to the authorization request (or a "signed in" page).
#[allow(clippy::too_many_arguments)] // the facts of one finished sign-in
async fn start_session(
    state: &AppState,
    req: &Request,
    meta: &RequestMeta,
    user: &User,
    amr: &[String],
    acr: Acr,
    return_to: &str,
    recovery_codes: Option<Vec<String>>,
) -> Response {
    let (session, cookie) = match session::start(state, req, user, amr, acr).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "could not start a session");
            return error_page(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again in a moment.",
            );
        }
    };
    let mut event = state.accounts.audit_event("login.succeeded", meta);
    event.subject = Some(user.id.to_string());
    event.detail = serde_json::json!({"sid": session.sid, "amr": amr, "acr": acr.as_str()});
    let _ = state.store.record_audit(&event).await;
    let return_to = safe_return_to(Some(return_to)).unwrap_or("");
    if let Some(codes) = recovery_codes {
        let next = if return_to.is_empty() {
            crate::http::account::security::PATH.to_string()
        } else {
            next_after_sign_in(state, return_to)
        };
        let page = RecoveryCodesPage {
            brand: (&state.settings.branding).into(),
            codes,
            next,
        };
        return html(StatusCode::OK, &page, &[cookie]);
    }
    if return_to.is_empty() {
        let page = MessagePage {
            brand: (&state.settings.branding).into(),
            title: "You are signed in".into(),
            message: format!("Signed in as {}.", user.email),
        };
        return html(StatusCode::OK, &page, &[cookie]);
    }
    let next = next_after_sign_in(state, return_to);
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", next)
        .header("set-cookie", cookie)
        .header("cache-control", "no-store")
        .finish()
}

/// `POST /consent`: records an allow (then resumes the request) or answers `access_denied`.
#[handler]
pub async fn consent_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match crate::http::checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let Some(return_to) = safe_return_to(form.get("return_to")) else {
        return error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The consent form is incomplete.",
        );
    };
    let query = return_to.trim_start_matches("/authorize?");
    let params = match Params::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                state,
                req,
                StatusCode::BAD_REQUEST,
                "Bad request",
                &e.to_string(),
            )
        }
    };
    let Some((_, user)) = session::current(state, req).await else {
        // Signed out meanwhile: start over, which asks for a login.
        return redirect(oauth::resume_url(state, return_to, ""));
    };
    oauth::consent_decision(state, req, &params, &user, form.get("decision"), return_to).await
}

pub fn redirect(location: String) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", location)
        .header("cache-control", "no-store")
        .finish()
}
