//! `/account/delete`: deleting one's own account after re-authentication (the current
//! password, or a recent sign-in for an account without one), then the same soft delete as the
//! admin route; the session cookie goes with it.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::{brand, frame, posted_again, refusal, signed_in, Frame, Outcome};
use crate::app::AppState;
use crate::http::api::meta_of;
use crate::http::pages::{html, Brand, MessagePage};
use crate::http::session;
use crate::store::User;

pub const PATH: &str = "/account/delete";

#[derive(Template)]
#[template(path = "account/delete.html")]
struct DeletePage {
    brand: Brand,
    section: &'static str,
    frame: Frame,
    has_password: bool,
    reauth_minutes: u64,
}

fn page(state: &AppState, req: &Request, user: &User, outcome: Outcome) -> Response {
    let status = outcome.status();
    let (frame, cookies) = frame(state, req, "Delete your account", user, outcome);
    let view = DeletePage {
        brand: brand(state),
        section: "profile",
        frame,
        has_password: user.password_hash.is_some(),
        reauth_minutes: state.settings.accounts.mfa.reauth_max_age_secs.div_ceil(60),
    };
    html(status, &view, &cookies)
}

/// `GET /account/delete`: what deleting means, and the form that confirms it.
#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    match signed_in(&state, req, PATH).await {
        Ok((_, user)) => page(&state, req, &user, Outcome::None),
        Err(resp) => resp,
    }
}

/// `POST /account/delete`.
#[handler]
pub async fn submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (_, user) = match posted_again(state, req, body, PATH, page).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    match state
        .accounts
        .delete_own_account(&meta_of(req), &user)
        .await
    {
        Ok(()) => {
            let view = MessagePage {
                brand: brand(state),
                title: "Your account is deleted".into(),
                message: "You are signed out everywhere and no app can use your account any \
                          more."
                    .into(),
            };
            html(
                StatusCode::OK,
                &view,
                &[session::clear_session_cookie(state)],
            )
        }
        Err(e) => match refusal(state, req, e) {
            Ok(outcome) => page(state, req, &user, outcome),
            Err(resp) => resp,
        },
    }
}
