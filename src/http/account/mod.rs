//! `/account/*`: a signed-in person's own pages: profile, sessions, connected apps, security,
//! their data, deleting the account. Each page calls the same services as the JSON API and the
//! console; every form carries CSRF. Never decides an account rule itself.

mod apps;
mod data;
mod delete;
mod passkeys;
mod profile;
pub mod security;
mod sessions;

use poem::http::StatusCode;
use poem::{get, post, Body, Request, Response, Route};

pub use passkeys::{passkey_finish, passkey_start};

use crate::accounts::service::AccountError;
use crate::app::AppState;
use crate::http::account_pages::form_error;
use crate::http::api::meta_of;
use crate::http::pages::{error_page, login_page, Brand};
use crate::http::{checked_form, sentence, session};
use crate::protocol::params::Params;
use crate::store::{BrowserSession, Timestamp, User};

/// The pages a sign-in may return to (see `pages::safe_return_to`).
const PAGES: [&str; 6] = [
    profile::PATH,
    sessions::PATH,
    apps::PATH,
    security::PATH,
    data::PATH,
    delete::PATH,
];

/// Whether `path` is one of the account pages (a place a sign-in may come back to).
pub fn is_page(path: &str) -> bool {
    PAGES.contains(&path)
}

/// Every `/account` route (the router nests them under `/account`).
pub fn routes() -> Route {
    Route::new()
        .at("/", get(profile::show))
        .at("/name", post(profile::save_name))
        .at("/email", post(profile::request_email))
        .at(
            "/email/confirm",
            get(profile::confirm_form).post(profile::confirm),
        )
        .at("/password", post(profile::change_password))
        .at("/sessions", get(sessions::show))
        .at("/sessions/end", post(sessions::end))
        .at("/sessions/end-others", post(sessions::end_others))
        .at("/apps", get(apps::show))
        .at("/apps/revoke", post(apps::revoke))
        .at("/data", get(data::show))
        .at("/data/export", post(data::export))
        .at("/delete", get(delete::show).post(delete::submit))
        .at("/security", get(security::show))
        .at("/security/totp", post(security::totp_start))
        .at("/security/totp/confirm", post(security::totp_confirm))
        .at("/security/passkey", post(passkey_start))
        .at("/security/passkey/finish", post(passkey_finish))
        .at("/security/remove", post(security::remove))
        .at("/security/recovery-codes", post(security::regenerate))
        .at("/security/unlink", post(security::unlink))
}

/// What every account page shows around its own part: the heading, who is signed in, the
/// form token, and the outcome of the last action.
pub struct Frame {
    pub heading: &'static str,
    pub email: String,
    pub csrf: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// A page's frame and the `Set-Cookie` of a new CSRF token, if the browser had none.
fn frame(
    state: &AppState,
    req: &Request,
    heading: &'static str,
    user: &User,
    outcome: Outcome,
) -> (Frame, Vec<String>) {
    let (csrf, cookie) = session::csrf_token(state, req);
    let (notice, error) = match outcome {
        Outcome::None => (None, None),
        Outcome::Done(n) => (Some(n), None),
        Outcome::Refused(_, e) => (None, Some(e)),
    };
    let frame = Frame {
        heading,
        email: user.email.clone(),
        csrf,
        notice,
        error,
    };
    (frame, cookie.into_iter().collect())
}

/// What the last action on a page came to.
pub enum Outcome {
    None,
    Done(String),
    /// Refused, with the status to answer and the words that say why.
    Refused(StatusCode, String),
}

impl Outcome {
    fn status(&self) -> StatusCode {
        match self {
            Outcome::Refused(status, _) => *status,
            _ => StatusCode::OK,
        }
    }
}

fn brand(state: &AppState) -> Brand {
    (&state.settings.branding).into()
}

/// The signed-in browser, or the sign-in page that comes back to `path`.
async fn signed_in(
    state: &AppState,
    req: &Request,
    path: &str,
) -> Result<(BrowserSession, User), Response> {
    session::current(state, req)
        .await
        .ok_or_else(|| login_page(state, req, path, "", None, None))
}

/// A form of the page at `path`: parsed, its CSRF token checked (a wrong or missing one
/// answers 400 and changes nothing), and the browser signed in.
async fn posted(
    state: &AppState,
    req: &Request,
    body: Body,
    path: &str,
) -> Result<(Params, BrowserSession, User), Response> {
    let form = checked_form(state, req, body).await?;
    let (session, user) = signed_in(state, req, path).await?;
    Ok((form, session, user))
}

/// How a refused account action reads on its page (as on the other hosted account pages, but
/// for the current password), or the whole answer for a limit or an outage.
#[allow(clippy::result_large_err)] // a cold path; the response is built once
fn refusal(state: &AppState, req: &Request, e: AccountError) -> Result<Outcome, Response> {
    if let AccountError::InvalidCredentials = e {
        return Ok(Outcome::Refused(
            StatusCode::UNAUTHORIZED,
            "Your current password is not correct.".into(),
        ));
    }
    let (status, text) = form_error(state, req, e)?;
    Ok(Outcome::Refused(status, text))
}

/// A form for a grave change (a new address, deleting the account): [`posted`], then the
/// person confirmed again (the form's `password`, or a recent sign-in for an account without
/// one). Refused: the sign-in page coming back to `path` when a recent sign-in is missing,
/// else the page (`show`) with the refusal.
async fn posted_again(
    state: &AppState,
    req: &Request,
    body: Body,
    path: &str,
    show: fn(&AppState, &Request, &User, Outcome) -> Response,
) -> Result<(Params, User), Response> {
    let (form, session, user) = posted(state, req, body, path).await?;
    let password = form.get("password").unwrap_or("");
    let checked = state
        .accounts
        .reauthenticate(&meta_of(req), &user, session.auth_time, password)
        .await;
    match checked {
        Ok(()) => Ok((form, user)),
        Err(e @ AccountError::ReauthRequired(_)) => Err(login_page(
            state,
            req,
            path,
            &user.email,
            Some(&sentence(&e.to_string())),
            None,
        )),
        Err(e) => Err(match refusal(state, req, e) {
            Ok(outcome) => show(state, req, &user, outcome),
            Err(resp) => resp,
        }),
    }
}

fn outage(state: &AppState, req: &Request) -> Response {
    error_page(
        state,
        req,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
    )
}

/// A moment as the pages show it: `2026-12-03 14:51 UTC`.
fn when(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_page_is_a_place_to_return_to_and_nothing_else() {
        for page in PAGES {
            assert!(is_page(page), "{page}");
        }
        assert!(!is_page("/account/delete?x"));
        assert!(!is_page("https://evil.example/account"));
    }

    #[test]
    fn moments_read_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}
