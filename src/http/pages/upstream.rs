//! The hosted side of upstream sign-in: the login page's "Sign in with …" buttons post to
//! `/upstream/{id}/start`, the provider sends the browser back to `/upstream/{id}/callback`,
//! and a link held until the person signs in to their existing account finishes at
//! `/upstream/link`. Parses and shapes answers; the rules are the federation service's.

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use super::{continue_sign_in, error_page, login_page_with, redirect, safe_return_to, LoginExtras};
use crate::accounts::mfa::FirstFactor;
use crate::app::AppState;
use crate::federation::linking::{Resolution, CONFIRM_PATH};
use crate::federation::{Callback, FederationError, FLOW_TTL_SECS};
use crate::http::{account, session};
use crate::protocol::params::Params;
use crate::random;

/// The cookie holding the nonce of the browser that started a flow (`__Host-` over https).
const NONCE: &str = "portcullis-upstream";

/// This browser's flow nonce (kept if it has one, so two tabs' flows both work) and the
/// `Set-Cookie` that keeps it for a flow's lifetime.
fn nonce_cookie(state: &AppState, req: &Request) -> (String, String) {
    let nonce = read_nonce(state, req)
        .filter(|n| n.len() >= 32)
        .unwrap_or_else(|| random::token(32));
    let cookie = session::set_cookie(state, NONCE, &nonce, Some(FLOW_TTL_SECS as u64));
    (nonce, cookie)
}

fn read_nonce(state: &AppState, req: &Request) -> Option<String> {
    session::read_cookie(req, &session::cookie_name(state, NONCE))
}

/// The page of a refused upstream sign-in: what happened and what to do.
pub(crate) fn refused(
    state: &AppState,
    req: &Request,
    provider: &str,
    e: &FederationError,
) -> Response {
    let name = state
        .federation
        .provider(provider)
        .map_or("the provider", |p| p.name());
    let (status, title, message) = match e {
        FederationError::UnknownProvider(_) => (
            StatusCode::NOT_FOUND,
            "Unknown sign-in provider".to_string(),
            "This server has no such sign-in provider. Go back and choose one from the sign-in page.".to_string(),
        ),
        FederationError::BadState => (
            StatusCode::BAD_REQUEST,
            "This sign-in is no longer valid".to_string(),
            format!("It expired, was already finished, or was not started here. Start again from the sign-in page and choose {name}."),
        ),
        FederationError::OtherBrowser => (
            StatusCode::FORBIDDEN,
            "Finish the sign-in where you started it".to_string(),
            "This sign-in was started in another browser (or its cookie is gone). Start again from the sign-in page in this browser.".to_string(),
        ),
        FederationError::Denied { code } if code == "access_denied" => (
            StatusCode::FORBIDDEN,
            format!("{name} did not sign you in"),
            format!("The sign-in was cancelled or refused at {name}. Go back to the sign-in page to try again or choose another way."),
        ),
        FederationError::Denied { code } => (
            StatusCode::BAD_GATEWAY,
            format!("{name} did not sign you in"),
            format!("{name} answered with the error \u{201c}{code}\u{201d}. Try again later, or choose another way to sign in."),
        ),
        FederationError::Unreachable(_) => (
            StatusCode::BAD_GATEWAY,
            format!("{name} cannot be reached"),
            format!("{name} did not answer. Try again in a few minutes, or choose another way to sign in."),
        ),
        FederationError::BadResponse(_) | FederationError::InvalidIdToken(_) => (
            StatusCode::BAD_GATEWAY,
            format!("{name}'s answer was not accepted"),
            format!("{name} sent an answer that failed our checks, so you are not signed in. Try again; if it keeps happening, tell the operator of this server (the request id below helps)."),
        ),
        FederationError::SignUpClosed => (
            StatusCode::FORBIDDEN,
            "Sign-up is closed".to_string(),
            format!("There is no account here for your {name} account, and new accounts cannot be made through {name}. If you have an account, sign in to it and link {name} from your security page."),
        ),
        FederationError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong".to_string(),
            "Please try again in a moment.".to_string(),
        ),
        other => (
            if matches!(other, FederationError::NotLinked) {
                StatusCode::NOT_FOUND
            } else if matches!(
                other,
                FederationError::NoEmail | FederationError::AccountDisabled | FederationError::NotFresh
            ) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::CONFLICT
            },
            format!("Sign-in with {name}"),
            crate::http::sentence(&other.to_string()),
        ),
    };
    error_page(state, req, status, &title, &message)
}

/// `POST /upstream/{id}/start`: a login page's button (keeping its authorization request in
/// `return_to`), or the security page's "Link" (`link=1`, for the signed-in person).
#[handler]
pub async fn start(
    req: &Request,
    Path(provider): Path<String>,
    body: Body,
    state: Data<&AppState>,
) -> Response {
    let state = *state;
    let form = match crate::http::checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let meta = crate::http::api::meta_of(req);
    let linking = form.get("link") == Some("1");
    let (return_to, link_user) = if linking {
        let Some((current, user)) = session::current(state, req).await else {
            return login_page_with(
                state,
                req,
                account::security::PATH,
                "",
                None,
                LoginExtras::default(),
            );
        };
        // Adding a way into an account needs a recent sign-in, like any security change.
        if let Err(e) = state.mfa.ensure_recent(current.auth_time) {
            let extras = LoginExtras {
                notice: Some(crate::http::sentence(&e.to_string())),
                ..Default::default()
            };
            return login_page_with(
                state,
                req,
                account::security::PATH,
                &user.email,
                None,
                extras,
            );
        }
        (account::security::PATH.to_string(), Some(user.id))
    } else {
        (
            safe_return_to(form.get("return_to"))
                .unwrap_or("")
                .to_string(),
            None,
        )
    };
    let hints = if linking {
        // Adding a way in: ask the provider to sign the person in afresh, so the account
        // linked is the one they just signed in to, not one left signed in on this device.
        crate::federation::Hints {
            prompt_login: true,
            ..Default::default()
        }
    } else {
        crate::http::oauth::upstream_hints_for(state, &return_to).await
    };
    let (nonce, cookie) = nonce_cookie(state, req);
    match Box::pin(
        state
            .federation
            .begin(&meta, &provider, &return_to, &nonce, link_user, hints),
    )
    .await
    {
        Ok(url) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("location", url)
            .header("set-cookie", cookie)
            .header("cache-control", "no-store")
            .finish(),
        Err(e) => refused(state, req, &provider, &e),
    }
}

/// `GET /upstream/{id}/callback`: the provider's answer (RFC 6749 §4.1.2).
#[handler]
pub async fn callback(
    req: &Request,
    Path(provider): Path<String>,
    state: Data<&AppState>,
) -> Response {
    let state = *state;
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let owned = |name: &str| query.get(name).map(str::to_string);
    let callback = Callback {
        state: query.get("state").unwrap_or("").to_string(),
        code: owned("code"),
        error: owned("error"),
        error_description: owned("error_description"),
        iss: owned("iss"),
    };
    let meta = crate::http::api::meta_of(req);
    let nonce = read_nonce(state, req);
    let finished = match Box::pin(state.federation.finish(
        &meta,
        &provider,
        &callback,
        nonce.as_deref(),
    ))
    .await
    {
        Ok(f) => f,
        Err(e) => return refused(state, req, &provider, &e),
    };
    if let Some(user_id) = finished.link_user {
        // Linking from the security page: still the same person, still signed in.
        let Some((_, user)) = session::current(state, req)
            .await
            .filter(|(_, u)| u.id == user_id)
        else {
            return refused(state, req, &provider, &FederationError::BadState);
        };
        return match state
            .federation
            .link_signed_in(&meta, &user, &provider, &finished.profile)
            .await
        {
            Ok(()) => {
                let name = state
                    .federation
                    .provider(&provider)
                    .map_or("", |p| p.name());
                account::security::page(
                    state,
                    req,
                    &user,
                    Some(format!("{name} is linked: you can sign in with it now.")),
                    None,
                )
                .await
            }
            Err(e) => refused(state, req, &provider, &e),
        };
    }
    let return_to = safe_return_to(Some(&finished.return_to))
        .unwrap_or("")
        .to_string();
    let nonce = nonce.unwrap_or_default();
    let resolution = match state
        .federation
        .resolve(&meta, &provider, &finished.profile, &return_to, &nonce)
        .await
    {
        Ok(r) => r,
        Err(e) => return refused(state, req, &provider, &e),
    };
    let (user, created) = match resolution {
        Resolution::SignIn(user) => (user, false),
        Resolution::Created(user) => (user, true),
        Resolution::ConfirmLink { user, token } => {
            let name = state
                .federation
                .provider(&provider)
                .map_or("", |p| p.name());
            let confirm = format!("{CONFIRM_PATH}?pending={token}");
            let extras = LoginExtras {
                notice: Some(format!(
                    "An account for {} already exists here. {name} could not confirm that this \
                     address is yours, so sign in to that account once to link {name} to it.",
                    user.email
                )),
                hide_upstream: true,
                ..Default::default()
            };
            return login_page_with(state, req, &confirm, &user.email, None, extras);
        }
    };
    state
        .federation
        .signed_in(&meta, &provider, &user, created)
        .await;
    let trust_amr = state
        .federation
        .provider(&provider)
        .is_some_and(|p| p.config.trust_amr);
    let first = FirstFactor::Upstream {
        amr: finished.profile.session_amr(trust_amr),
    };
    Box::pin(continue_sign_in(
        state, req, &meta, &user, first, &return_to,
    ))
    .await
}

/// `GET /upstream/link?pending=...`: after the person signed in to their existing account,
/// the held link is made, and the sign-in goes on where it was going.
#[handler]
pub async fn confirm_link(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let token = query.get("pending").unwrap_or("");
    let here = format!("{CONFIRM_PATH}?pending={token}");
    let Some((current, user)) = session::current(state, req).await else {
        let back = safe_return_to(Some(&here)).unwrap_or("");
        return login_page_with(state, req, back, "", None, LoginExtras::default());
    };
    let meta = crate::http::api::meta_of(req);
    let nonce = read_nonce(state, req);
    match state
        .federation
        .confirm_link(&meta, token, &user, current.auth_time, nonce.as_deref())
        .await
    {
        Ok((provider, return_to)) => {
            let return_to = safe_return_to(Some(&return_to)).unwrap_or("");
            if return_to.is_empty() {
                let name = state
                    .federation
                    .provider(&provider)
                    .map_or("", |p| p.name());
                return account::security::page(
                    state,
                    req,
                    &user,
                    Some(format!("{name} is linked: you can sign in with it now.")),
                    None,
                )
                .await;
            }
            redirect(super::next_after_sign_in(state, return_to))
        }
        Err(e) => refused(state, req, "", &e),
    }
}
