//! `/account/security`: a signed-in person's second factors: list, add an authenticator app
//! (or a passkey, in `passkeys.rs`), remove one, make new recovery codes. Changes need a recent sign-in, and are audited and
//! mailed by the MFA service (the same one behind the JSON API).

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use crate::accounts::mfa::MfaError;
use crate::app::AppState;
use crate::http::middleware::rate_limit::too_many_page;
use crate::http::pages::{error_page, html, login_page, Brand, RecoveryCodesPage};
use crate::http::{capitalise, checked_form, sentence, session};
use crate::protocol::params::Params;
use crate::store::{BrowserSession, User};

/// Where the sign-in page returns to after a sign-in for these pages.
pub const PATH: &str = "/account/security";

pub struct FactorLine {
    pub id: String,
    pub name: String,
    pub kind_label: &'static str,
    pub created: String,
    pub last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    brand: Brand,
    /// The account navigation's current entry.
    section: &'static str,
    csrf: String,
    email: String,
    notice: Option<String>,
    error: Option<String>,
    factors: Vec<FactorLine>,
    recovery_left: u64,
    required: bool,
    /// Offer "Add a passkey".
    passkeys: bool,
    /// Upstream accounts that sign this person in, and the providers not linked yet.
    identities: Vec<IdentityLine>,
    link_options: Vec<crate::federation::ProviderButton>,
}

pub struct IdentityLine {
    pub provider: String,
    pub provider_name: String,
    /// The upstream's address (or its subject, when it shared none).
    pub account: String,
    pub linked: String,
    pub last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupPage {
    brand: Brand,
    csrf: String,
    secret: String,
    qr_svg: String,
    error: Option<String>,
}

fn day(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The signed-in browser, or the sign-in page that comes back here.
async fn signed_in(
    state: &AppState,
    req: &Request,
    message: Option<&str>,
) -> Result<(BrowserSession, User), Response> {
    session::current(state, req)
        .await
        .ok_or_else(|| login_page(state, req, PATH, "", message, None))
}

pub(crate) async fn page(
    state: &AppState,
    req: &Request,
    user: &User,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let factors = match state.mfa.summaries(user.id).await {
        Ok(f) => f,
        Err(e) => return failure(state, req, e),
    };
    let recovery_left = state.mfa.recovery_codes_left(user.id).await.unwrap_or(0);
    let linked = match state.federation.identities_of(user.id).await {
        Ok(i) => i,
        Err(_) => return failure(state, req, MfaError::Internal),
    };
    let link_options = state
        .federation
        .buttons()
        .into_iter()
        .filter(|b| !linked.iter().any(|i| i.provider == b.id))
        .collect();
    let identities = linked
        .into_iter()
        .map(|i| IdentityLine {
            provider_name: state
                .federation
                .provider(&i.provider)
                .map_or_else(|| i.provider.clone(), |p| p.name().to_string()),
            account: i.email.clone().unwrap_or_else(|| i.subject.clone()),
            linked: day(i.created_at),
            last_used: i.last_used_at.map(day),
            provider: i.provider,
        })
        .collect();
    let (csrf, cookie) = session::csrf_token(state, req);
    let view = SecurityPage {
        brand: (&state.settings.branding).into(),
        section: "security",
        csrf,
        email: user.email.clone(),
        notice,
        error: error.clone(),
        factors: factors
            .into_iter()
            .map(|f| FactorLine {
                id: f.id.to_string(),
                name: f.name,
                kind_label: match f.kind {
                    crate::store::FactorKind::Totp => "Authenticator app",
                    crate::store::FactorKind::Passkey => "Passkey or security key",
                },
                created: day(f.created_at),
                last_used: f.last_used_at.map(day),
            })
            .collect(),
        recovery_left,
        required: state.mfa.required_for(user),
        passkeys: state.mfa.passkeys_offered(),
        identities,
        link_options,
    };
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    html(status, &view, &cookie.into_iter().collect::<Vec<_>>())
}

pub(super) fn failure(state: &AppState, req: &Request, e: MfaError) -> Response {
    match e {
        MfaError::Throttled { policy, decision } => {
            too_many_page(state, req, "mfa_account", policy, &decision)
        }
        MfaError::Disabled => error_page(
            state,
            req,
            StatusCode::NOT_FOUND,
            "Second factors are off",
            "This server does not offer second factors (accounts.mfa.enabled = false).",
        ),
        MfaError::Internal => error_page(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        ),
        other => error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Second factors",
            &sentence(&other.to_string()),
        ),
    }
}

/// A change: the form (CSRF checked), the session, and a recent enough sign-in.
pub(super) async fn for_change(
    state: &AppState,
    req: &Request,
    body: Body,
) -> Result<(Params, User), Response> {
    let form = checked_form(state, req, body).await?;
    let (session, user) = signed_in(state, req, None).await?;
    if let Err(e) = state.mfa.ensure_recent(session.auth_time) {
        return Err(login_page(
            state,
            req,
            PATH,
            &user.email,
            Some(&sentence(&e.to_string())),
            None,
        ));
    }
    Ok((form, user))
}

/// `GET /account/security`.
#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    match signed_in(state, req, None).await {
        Ok((_, user)) => page(state, req, &user, None, None).await,
        Err(resp) => resp,
    }
}

async fn setup_page(
    state: &AppState,
    req: &Request,
    user: &User,
    error: Option<String>,
) -> Response {
    let enrollment = match state.mfa.enrollment_for(user).await {
        Ok(e) => e,
        Err(e) => return failure(state, req, e),
    };
    let (csrf, cookie) = session::csrf_token(state, req);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let view = TotpSetupPage {
        brand: (&state.settings.branding).into(),
        csrf,
        secret: enrollment.secret,
        qr_svg: enrollment.qr_svg,
        error,
    };
    html(status, &view, &cookie.into_iter().collect::<Vec<_>>())
}

/// `POST /account/security/totp`: the key and QR code of a new authenticator app.
#[handler]
pub async fn totp_start(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (_, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    setup_page(state, req, &user, None).await
}

/// `POST /account/security/totp/confirm`: the app's first code turns it on.
#[handler]
pub async fn totp_confirm(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let meta = crate::http::api::meta_of(req);
    match state
        .mfa
        .confirm_totp(&meta, &user, form.get("code").unwrap_or(""))
        .await
    {
        Ok(Some(codes)) => recovery_page(state, codes),
        Ok(None) => {
            page(
                state,
                req,
                &user,
                Some("Authenticator app added.".into()),
                None,
            )
            .await
        }
        Err(e @ MfaError::InvalidCode) => {
            setup_page(state, req, &user, Some(capitalise(&e.to_string()))).await
        }
        Err(MfaError::NoEnrollment) => {
            page(
                state,
                req,
                &user,
                None,
                Some(capitalise(&MfaError::NoEnrollment.to_string())),
            )
            .await
        }
        Err(e) => failure(state, req, e),
    }
}

pub(super) fn recovery_page(state: &AppState, codes: Vec<String>) -> Response {
    let view = RecoveryCodesPage {
        brand: (&state.settings.branding).into(),
        codes,
        next: PATH.into(),
    };
    html(StatusCode::OK, &view, &[])
}

/// `POST /account/security/remove`: removes one factor (not the last one under a policy).
#[handler]
pub async fn remove(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let Some(id) = form.get("id").and_then(|v| uuid::Uuid::parse_str(v).ok()) else {
        return page(
            state,
            req,
            &user,
            None,
            Some("No such second factor.".into()),
        )
        .await;
    };
    let meta = crate::http::api::meta_of(req);
    match state.mfa.remove_factor(&meta, &user, id).await {
        Ok(()) => {
            page(
                state,
                req,
                &user,
                Some("Second factor removed.".into()),
                None,
            )
            .await
        }
        Err(e @ (MfaError::LastFactor | MfaError::NotFound)) => {
            page(state, req, &user, None, Some(capitalise(&e.to_string()))).await
        }
        Err(e) => failure(state, req, e),
    }
}

/// `POST /account/security/recovery-codes`: ten new codes; the old ones stop working.
#[handler]
pub async fn regenerate(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (_, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let meta = crate::http::api::meta_of(req);
    match state.mfa.regenerate_recovery_codes(&meta, &user).await {
        Ok(codes) => recovery_page(state, codes),
        Err(e @ MfaError::NoFactor) => {
            page(state, req, &user, None, Some(capitalise(&e.to_string()))).await
        }
        Err(e) => failure(state, req, e),
    }
}

/// `POST /account/security/unlink`: stops an upstream account signing this person in, unless
/// it is their last way to sign in.
#[handler]
pub async fn unlink(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let provider = form.get("provider").unwrap_or("");
    let meta = crate::http::api::meta_of(req);
    let name = state
        .federation
        .provider(provider)
        .map_or_else(|| provider.to_string(), |p| p.name().to_string());
    match state.federation.unlink(&meta, &user, provider).await {
        Ok(()) => {
            page(
                state,
                req,
                &user,
                Some(format!("{name} is unlinked.")),
                None,
            )
            .await
        }
        Err(crate::federation::FederationError::Internal) => {
            failure(state, req, MfaError::Internal)
        }
        Err(e) => page(state, req, &user, None, Some(sentence(&e.to_string()))).await,
    }
}
