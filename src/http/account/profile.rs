//! `/account`: the profile: name, email address (changed through a link to the new address),
//! password. Each form calls the account service the JSON API calls.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::{brand, frame, outage, posted, posted_again, refusal, signed_in, Frame, Outcome};
use crate::accounts::service::AccountError;
use crate::accounts::UserPatch;
use crate::app::AppState;
use crate::http::account_pages::AccountForm;
use crate::http::api::meta_of;
use crate::http::pages::{error_page, html, Brand, MessagePage};
use crate::http::{checked_form, session};
use crate::protocol::params::Params;
use crate::store::User;

pub const PATH: &str = "/account";

#[derive(Template)]
#[template(path = "account/profile.html")]
struct ProfilePage {
    brand: Brand,
    section: &'static str,
    frame: Frame,
    name: String,
    email_verified: bool,
    has_password: bool,
    min_password: usize,
    max_password: usize,
}

fn page(state: &AppState, req: &Request, user: &User, outcome: Outcome) -> Response {
    let status = outcome.status();
    let (frame, cookies) = frame(state, req, "Your profile", user, outcome);
    let view = ProfilePage {
        brand: brand(state),
        section: "profile",
        frame,
        name: user.name.clone().unwrap_or_default(),
        email_verified: user.email_verified,
        has_password: user.password_hash.is_some(),
        min_password: state.settings.password.min_length,
        max_password: state.settings.password.max_length,
    };
    html(status, &view, &cookies)
}

/// The page again after an action, or the whole answer for a limit or an outage.
fn after(
    state: &AppState,
    req: &Request,
    user: &User,
    result: Result<String, AccountError>,
) -> Response {
    match result {
        Ok(notice) => page(state, req, user, Outcome::Done(notice)),
        Err(e) => match refusal(state, req, e) {
            Ok(outcome) => page(state, req, user, outcome),
            Err(resp) => resp,
        },
    }
}

/// `GET /account`.
#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    match signed_in(&state, req, PATH).await {
        Ok((_, user)) => page(&state, req, &user, Outcome::None),
        Err(resp) => resp,
    }
}

/// `POST /account/name`: the person's own name (empty removes it).
#[handler]
pub async fn save_name(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, _, user) = match posted(state, req, body, PATH).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let patch = UserPatch {
        name: Some(form.get("name").map(str::to_string)),
        ..Default::default()
    };
    match state
        .accounts
        .update_user(&meta_of(req), &user, user.id, patch)
        .await
    {
        Ok(updated) => page(state, req, &updated, Outcome::Done("Name saved.".into())),
        Err(e) => after(state, req, &user, Err(e)),
    }
}

/// `POST /account/email`: after the current password (or a recent sign-in), a link to the new
/// address; nothing changes until it is followed.
#[handler]
pub async fn request_email(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, user) = match posted_again(state, req, body, PATH, page).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let meta = meta_of(req);
    let new_email = form.get("new_email").unwrap_or("").trim().to_string();
    let result = state
        .accounts
        .request_email_change(&meta, &user, &new_email)
        .await
        .map(|()| {
            // The same words whether or not the address is free.
            format!(
                "If {new_email} can be used, a link to confirm it is on its way there. \
                 Your address changes when you follow it."
            )
        });
    after(state, req, &user, result)
}

/// `POST /account/password`: the current password and a new one. Every session of the account
/// ends, as with any password change; this browser continues in a new session carrying the
/// same sign-in.
#[handler]
pub async fn change_password(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, session, user) = match posted(state, req, body, PATH).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let current = form.get("current_password").unwrap_or("");
    let new = form.get("new_password").unwrap_or("").to_string();
    if let Err(e) = state
        .accounts
        .change_password(&meta_of(req), &user, current, new)
        .await
    {
        return after(state, req, &user, Err(e));
    }
    let cookie = match session::renew(state, req, &session).await {
        Ok((_, cookie)) => cookie,
        Err(e) => {
            tracing::error!(error = %e, "could not renew the session after a password change");
            return outage(state, req);
        }
    };
    let mut resp = page(
        state,
        req,
        &user,
        Outcome::Done("Password changed. Your other sessions were signed out.".into()),
    );
    if let Ok(value) = cookie.parse() {
        resp.headers_mut().append("set-cookie", value);
    }
    resp
}

fn token_of(req: &Request) -> String {
    Params::parse(req.uri().query().unwrap_or("").as_bytes())
        .ok()
        .and_then(|q| q.get("token").map(str::to_string))
        .unwrap_or_default()
}

fn dead_link(state: &AppState, req: &Request) -> Response {
    error_page(
        state,
        req,
        StatusCode::BAD_REQUEST,
        "This link does not work",
        "The link to confirm a new email address is invalid, expired or already used, or that \
         address cannot be used. Ask for a new one on your profile page.",
    )
}

/// `GET /account/email/confirm?token=…`: a button, so that a mail scanner fetching the link
/// does not spend it. Works signed out too: the link itself proves the new address.
#[handler]
pub fn confirm_form(req: &Request, state: Data<&AppState>) -> Response {
    let token = token_of(req);
    if token.is_empty() {
        return dead_link(&state, req);
    }
    let (csrf, cookie) = session::csrf_token(&state, req);
    let view = AccountForm {
        brand: brand(&state),
        csrf,
        title: "Confirm your new email address".into(),
        intro: Some("One click and your account uses this address.".into()),
        error: None,
        action: "/account/email/confirm",
        hidden: vec![("token".into(), token)],
        fields: vec![],
        button: "Confirm new address",
        links: vec![],
        min_password: state.settings.password.min_length,
        max_password: state.settings.password.max_length,
    };
    html(
        StatusCode::OK,
        &view,
        &cookie.into_iter().collect::<Vec<_>>(),
    )
}

/// `POST /account/email/confirm`: spends the link; the account takes the new address.
#[handler]
pub async fn confirm(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let token = form.get("token").unwrap_or("");
    match state
        .accounts
        .confirm_email_change(&meta_of(req), token)
        .await
    {
        Ok(_) => {
            let view = MessagePage {
                brand: brand(state),
                title: "Email address changed".into(),
                message: "Your account now uses the new address, and it is confirmed. \
                          Sign in with it from now on."
                    .into(),
            };
            html(StatusCode::OK, &view, &[])
        }
        Err(AccountError::Internal) => outage(state, req),
        Err(_) => dead_link(state, req),
    }
}
