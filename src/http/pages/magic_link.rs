//! The hosted pages of magic links: "Email me a sign-in link" (a form, reached from the login
//! page when `accounts.magic_link` is on) and the page a mailed link opens. Asking sets the
//! browser's nonce cookie; following the link signs in like a password does
//! ([`super::continue_sign_in`]) and goes on with the authorization request the login page
//! was showing. Parses and shapes answers; the rules are the account service's.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::{continue_sign_in, error_page, html, safe_return_to, Brand, MessagePage};
use crate::accounts::magic_link::MagicLinkError;
use crate::accounts::mfa::FirstFactor;
use crate::app::AppState;
use crate::http::middleware::rate_limit::too_many_page;
use crate::http::session;
use crate::protocol::params::Params;
use crate::random;

/// The cookie holding the nonce of the browser that asked for a link (`__Host-` over https).
const NONCE: &str = "portcullis-magic-link";

#[derive(Template)]
#[template(path = "magic_link.html")]
struct MagicLinkForm {
    brand: Brand,
    csrf: String,
    return_to: String,
    email: String,
    error: Option<String>,
    back: String,
}

/// The login page's link to the form, keeping the pending authorization request.
pub fn form_href(return_to: &str) -> String {
    if return_to.is_empty() {
        return "/login/magic-link".into();
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    format!("/login/magic-link?{query}")
}

/// This browser's nonce, and the `Set-Cookie` value that keeps it for a link's lifetime (a
/// browser that asks twice keeps its nonce, so both links work there).
pub(crate) fn nonce_cookie(state: &AppState, req: &Request) -> (String, String) {
    let nonce = read_nonce(state, req)
        .filter(|n| n.len() >= 32)
        .unwrap_or_else(|| random::token(32));
    let ttl = state.settings.accounts.magic_link_ttl_secs;
    let cookie = session::set_cookie(state, NONCE, &nonce, Some(ttl));
    (nonce, cookie)
}

fn read_nonce(state: &AppState, req: &Request) -> Option<String> {
    session::read_cookie(req, &session::cookie_name(state, NONCE))
}

fn disabled(state: &AppState, req: &Request) -> Response {
    error_page(
        state,
        req,
        StatusCode::NOT_FOUND,
        "Sign-in links are off",
        "This server does not send sign-in links. Sign in with your password instead.",
    )
}

fn form(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    return_to: &str,
    email: &str,
    error: Option<String>,
) -> Response {
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = MagicLinkForm {
        brand: (&state.settings.branding).into(),
        csrf,
        return_to: return_to.to_string(),
        email: email.to_string(),
        error,
        back: if return_to.is_empty() {
            "/login".into()
        } else {
            return_to.to_string()
        },
    };
    html(status, &page, &cookie.into_iter().collect::<Vec<_>>())
}

/// `GET /login/magic-link`: the form asking for the address.
#[handler]
pub fn request_form(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.accounts.magic_links_enabled() {
        return disabled(state, req);
    }
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let return_to = safe_return_to(query.get("return_to")).unwrap_or("");
    form(state, req, StatusCode::OK, return_to, "", None)
}

/// `POST /login/magic-link`: mails the link (when the address has an account and no limit is
/// reached) and says the same thing either way.
#[handler]
pub async fn request_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.accounts.magic_links_enabled() {
        return disabled(state, req);
    }
    let form_data = match crate::http::checked_form(state, req, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let return_to = safe_return_to(form_data.get("return_to")).unwrap_or("");
    let email = form_data.get("email").unwrap_or("").trim().to_string();
    let (nonce, cookie) = nonce_cookie(state, req);
    let meta = crate::http::api::meta_of(req);
    match state
        .accounts
        .request_magic_link(&meta, &email, &nonce, return_to)
        .await
    {
        Ok(()) => {
            let ttl = state.settings.accounts.magic_link_ttl_secs;
            let page = MessagePage {
                brand: (&state.settings.branding).into(),
                title: "Check your email".into(),
                message: format!(
                    "If {email} has an account, a sign-in link is on its way. Open it in this \
                     browser within {} minutes; it works once.",
                    ttl.div_ceil(60)
                ),
            };
            html(StatusCode::OK, &page, &[cookie])
        }
        Err(MagicLinkError::InvalidEmail(message)) => form(
            state,
            req,
            StatusCode::UNPROCESSABLE_ENTITY,
            return_to,
            &email,
            Some(crate::http::sentence(&message)),
        ),
        Err(MagicLinkError::Disabled) => disabled(state, req),
        Err(_) => error_page(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        ),
    }
}

/// `GET /login/magic-link/verify?token=...`: the mailed link. In the browser that asked for
/// it, signs in (then the second factor, if the policy asks for one) and goes on with the
/// authorization request; anywhere else it is refused and stays unspent.
#[handler]
pub async fn follow(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let token = query.get("token").unwrap_or("");
    let meta = crate::http::api::meta_of(req);
    let nonce = read_nonce(state, req);
    let signed_in = match state
        .accounts
        .follow_magic_link(&meta, token, nonce.as_deref())
        .await
    {
        Ok(signed_in) => signed_in,
        Err(e) => return refused(state, req, e),
    };
    let return_to = safe_return_to(Some(&signed_in.return_to)).unwrap_or("");
    continue_sign_in(
        state,
        req,
        &meta,
        &signed_in.user,
        FirstFactor::EmailedLink,
        return_to,
    )
    .await
}

fn refused(state: &AppState, req: &Request, e: MagicLinkError) -> Response {
    let (status, title, message) = match &e {
        MagicLinkError::Disabled => return disabled(state, req),
        MagicLinkError::Throttled { policy, decision } => {
            return too_many_page(state, req, "login_ip", *policy, decision)
        }
        MagicLinkError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.".to_string(),
        ),
        MagicLinkError::OtherBrowser => (
            StatusCode::FORBIDDEN,
            "Open the link in the browser where you asked for it",
            "This sign-in link works only in the browser where it was asked for. Open it \
             there (copy the link into that browser), or ask for a new link here. The link \
             has not been used."
                .to_string(),
        ),
        other => (
            StatusCode::BAD_REQUEST,
            "This sign-in link does not work",
            crate::http::sentence(&other.to_string()),
        ),
    };
    error_page(state, req, status, title, &message)
}
