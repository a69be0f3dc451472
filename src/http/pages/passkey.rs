//! The passkey side of the sign-in pages: the browser script, a passkey as the second factor
//! (`POST /login/mfa/passkey`), the first passkey of an account added during a sign-in that
//! needs one (`POST /login/mfa/passkey/register`) and passwordless sign-in from the login page (`POST
//! /login/passkey/options`, then `POST /login/passkey`). Every form is CSRF-checked; what a
//! browser posts is judged by the MFA service, and a bad answer is a 4xx page, never a 500.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::{error_page, login_page, mfa_failure, mfa_page, safe_return_to, signed_in};
use crate::accounts::mfa::webauthn::BROWSER_SCRIPT;
use crate::accounts::mfa::MfaError;
use crate::app::AppState;
use crate::http::middleware::rate_limit::too_many_page;
use crate::http::{checked_form, error_body, json_response, read_form, session};

/// `GET /static/webauthn.js`: our one script, cached like the stylesheet.
#[handler]
pub fn script() -> Response {
    Response::builder()
        .content_type("application/javascript; charset=utf-8")
        .header("cache-control", "public, max-age=3600")
        .body(BROWSER_SCRIPT)
}

/// `POST /login/mfa/passkey`: a passkey's answer for a pending sign-in; a session starts only
/// when it verifies. A refused passkey shows the second-factor page again, with a new ceremony.
#[handler]
pub async fn second_factor(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let token = form.get("mfa_token").unwrap_or("");
    let meta = crate::http::api::meta_of(req);
    let done = state
        .mfa
        .complete_with_passkey(
            &meta,
            token,
            form.get("ceremony").unwrap_or(""),
            form.get("credential").unwrap_or(""),
        )
        .await;
    answer_pending(state, req, &meta, token, done).await
}

/// `POST /login/mfa/passkey/register`: the first passkey of an account, added during a sign-in
/// that needs one (`acr_values=phr`); it completes that sign-in. A refused answer shows the
/// second-factor page again, with a new ceremony.
#[handler]
pub async fn enroll(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let token = form.get("mfa_token").unwrap_or("");
    let meta = crate::http::api::meta_of(req);
    let done = state
        .mfa
        .enroll_passkey_for_sign_in(
            &meta,
            token,
            form.get("ceremony").unwrap_or(""),
            form.get("credential").unwrap_or(""),
            form.get("name").unwrap_or(""),
        )
        .await;
    answer_pending(state, req, &meta, token, done).await
}

/// `POST /login/passkey/options` (called by the script, CSRF-checked): a new passwordless
/// ceremony, `{"ceremony": "<id>", "publicKey": {...}, "mediation": ...}`. Its rate is the
/// default per-address limit every request gets.
#[handler]
pub async fn passwordless_options(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let refuse = |status, error: &str, description: &str| {
        json_response(status, &error_body(error, description), "no-store")
    };
    let form = match read_form(req, body).await {
        Ok(form) => form,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, "invalid_request", &m),
    };
    if !session::csrf_ok(state, req, form.get("csrf")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the CSRF token is missing or wrong; reload the page",
        );
    }
    match state.mfa.start_passwordless().await {
        Ok(started) => {
            let mut answer = started.options;
            if let Some(object) = answer.as_object_mut() {
                object.insert("ceremony".into(), started.ceremony.into());
            }
            json_response(StatusCode::OK, &answer, "no-store")
        }
        Err(e @ (MfaError::Disabled | MfaError::PasskeysUnavailable)) => {
            refuse(StatusCode::NOT_FOUND, e.code(), &e.to_string())
        }
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}

/// `POST /login/passkey`: a discoverable passkey's answer signs in without a password, then
/// returns to the authorization request like the password form does.
#[handler]
pub async fn passwordless(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let return_to = safe_return_to(form.get("return_to")).unwrap_or("");
    let meta = crate::http::api::meta_of(req);
    let done = state
        .mfa
        .complete_passwordless(
            &meta,
            form.get("ceremony").unwrap_or(""),
            form.get("credential").unwrap_or(""),
            return_to,
        )
        .await;
    match done {
        Ok(done) => signed_in(state, req, &meta, done).await,
        Err(e @ (MfaError::Invalid { .. } | MfaError::PasskeysUnavailable)) => {
            let client_name = crate::http::oauth::client_name_for(state, return_to).await;
            login_page(
                state,
                req,
                return_to,
                "",
                Some(&crate::http::sentence(&e.to_string())),
                client_name,
            )
        }
        Err(MfaError::Throttled { policy, decision }) => {
            too_many_page(state, req, "mfa_account", policy, &decision)
        }
        Err(MfaError::Disabled) => error_page(
            state,
            req,
            StatusCode::NOT_FOUND,
            "Passkeys are off",
            "This server does not offer passkeys; sign in with your password.",
        ),
        Err(_) => error_page(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        ),
    }
}

/// The answer to a passkey form of a pending sign-in: the session, the second-factor page
/// again (with a new ceremony) for a refused passkey, or the error page.
async fn answer_pending(
    state: &AppState,
    req: &Request,
    meta: &crate::accounts::service::RequestMeta,
    token: &str,
    done: Result<crate::accounts::mfa::SignedIn, MfaError>,
) -> Response {
    match done {
        Ok(done) => signed_in(state, req, meta, done).await,
        Err(e @ (MfaError::Invalid { .. } | MfaError::PasskeysUnavailable)) => {
            match state.mfa.pending(token).await {
                Ok(pending) => {
                    let message = crate::http::sentence(&e.to_string());
                    mfa_page(state, req, &pending, Some(&message)).await
                }
                Err(other) => mfa_failure(state, req, other),
            }
        }
        Err(e) => mfa_failure(state, req, e),
    }
}
