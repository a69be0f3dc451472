//! Adding a passkey on `/account/security`: `POST /account/security/passkey` (a name) shows the
//! page that runs the browser's ceremony, whose answer goes to `POST
//! /account/security/passkey/finish`. Both need the CSRF token and a recent sign-in; the MFA
//! service audits and mails the change.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::security::{failure, for_change, page, recovery_page};
use crate::accounts::mfa::webauthn::options_for_html;
use crate::accounts::mfa::MfaError;
use crate::app::AppState;
use crate::http::capitalise;
use crate::http::pages::{html, Brand};
use crate::http::session;

#[derive(Template)]
#[template(path = "passkey_setup.html")]
struct PasskeySetupPage {
    brand: Brand,
    csrf: String,
    email: String,
    name: String,
    ceremony: String,
    /// `{"publicKey": {...}}`, escaped for a script block.
    options: String,
}

/// `POST /account/security/passkey`: starts the registration of a passkey with the given name.
#[handler]
pub async fn passkey_start(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let raw_name = form.get("name").unwrap_or("");
    let name = match crate::accounts::mfa::passkey_name(raw_name) {
        Ok(name) => name,
        Err(e) => return page(state, req, &user, None, Some(capitalise(&e.to_string()))).await,
    };
    let started = match state.mfa.start_passkey_registration(&user, &name).await {
        Ok(started) => started,
        Err(e @ (MfaError::Invalid { .. } | MfaError::PasskeysUnavailable)) => {
            return page(state, req, &user, None, Some(capitalise(&e.to_string()))).await
        }
        Err(e) => return failure(state, req, e),
    };
    let (csrf, cookie) = session::csrf_token(state, req);
    let view = PasskeySetupPage {
        brand: (&state.settings.branding).into(),
        csrf,
        email: user.email.clone(),
        name,
        ceremony: started.ceremony,
        options: options_for_html(&started.options),
    };
    html(
        StatusCode::OK,
        &view,
        &cookie.into_iter().collect::<Vec<_>>(),
    )
}

/// `POST /account/security/passkey/finish`: the browser's answer; the passkey is stored only if
/// it verifies. The first factor of an account comes with its recovery codes, shown once.
#[handler]
pub async fn passkey_finish(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, user) = match for_change(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let meta = crate::http::api::meta_of(req);
    let done = state
        .mfa
        .finish_passkey_registration(
            &meta,
            &user,
            form.get("ceremony").unwrap_or(""),
            form.get("credential").unwrap_or(""),
        )
        .await;
    match done {
        Ok(Some(codes)) => recovery_page(state, codes),
        Ok(None) => page(state, req, &user, Some("Passkey added.".into()), None).await,
        Err(e @ (MfaError::Invalid { .. } | MfaError::PasskeysUnavailable)) => {
            page(state, req, &user, None, Some(capitalise(&e.to_string()))).await
        }
        Err(e) => failure(state, req, e),
    }
}
